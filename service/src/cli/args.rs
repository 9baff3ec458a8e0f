//! Flag groups shared by several commands. Every flag also reads a `STAMPEDE_*` variable.

use std::time::Duration;

use clap::Args;

use stampede_core::Error;
use stampede_core::batches::Batches;
use stampede_core::kafka::KafkaConfig;
use stampede_core::store::StoreConfig;

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL.
    #[arg(
        long,
        env = "STAMPEDE_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Upper bound on any one Redis call, in milliseconds; past it the request gets 503.
    #[arg(long, env = "STAMPEDE_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Multiplexed Redis connections to spread calls over; also how many issue batches of
    /// one campaign are with Redis at once.
    #[arg(long, env = "STAMPEDE_REDIS_CONNECTIONS", default_value_t = 2)]
    pub redis_connections: usize,
}

impl RedisArgs {
    /// The store settings these flags describe.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.redis_url.clone(),
            connections: self.redis_connections,
            timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
        }
    }
}

/// How to reach Kafka.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "STAMPEDE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
}

impl KafkaArgs {
    /// The Kafka settings these flags describe, with SASL and TLS from the environment
    /// only (`STAMPEDE_KAFKA_SECURITY_PROTOCOL`, `…_SASL_MECHANISM`, `…_SASL_USERNAME`,
    /// `…_SASL_PASSWORD`, `…_CA_FILE` or `…_CA_PEM`): a password on a command line would
    /// show in `ps`.
    pub fn config(&self) -> Result<KafkaConfig, Error> {
        KafkaConfig::with_env_security(self.kafka_brokers.clone())
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "STAMPEDE_DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://stampede:stampede@127.0.0.1:5432/stampede"
    )]
    pub database_url: String,
}

/// Everything a relay needs, shared by `serve` (in-process relay) and `relay`.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Redis (the campaigns' outbox streams).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Kafka (the campaign topics).
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// This relay's consumer name in the outbox groups (default: `<hostname>-<role>`). A
    /// restarted relay with the same name resumes its own pending entries at once.
    #[arg(long, env = "STAMPEDE_RELAY_CONSUMER")]
    pub relay_consumer: Option<String>,
    /// Outbox entries read per batch while the relay keeps up (a backlog grows reads up to
    /// 8 times this).
    #[arg(long, env = "STAMPEDE_RELAY_BATCH", default_value_t = 2_000)]
    pub relay_batch: usize,
    /// After a short read, wait this long (milliseconds) for entries to gather before the
    /// next: fewer, larger reads, acknowledgements and deletions in Redis. 0: read at once.
    #[arg(long, env = "STAMPEDE_RELAY_GATHER_MS", default_value_t = 50)]
    pub relay_gather_ms: u64,
    /// Producer linger, in milliseconds (Kafka's client takes at most 900 000).
    #[arg(long, env = "STAMPEDE_RELAY_LINGER_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=900_000))]
    pub relay_linger_ms: u32,
    /// Entries another relay left pending this long are claimed, in milliseconds.
    #[arg(long, env = "STAMPEDE_RELAY_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub relay_claim_idle_ms: u64,
    /// Relay only these campaigns (comma-separated ids); default: every campaign in the
    /// registry but load tests' shadows (their coupons are not real). The operator sets
    /// it to the issuer's own campaign.
    #[arg(long, env = "STAMPEDE_RELAY_CAMPAIGNS", value_delimiter = ',')]
    pub relay_campaigns: Vec<String>,
    /// When a batch outbox entry travels to Kafka as one message: `auto` once every consumer
    /// of the campaign's topic is a writer that reads batch messages (writers of earlier
    /// releases dead-letter them), `always`, or `never` (a message per coupon).
    #[arg(long, env = "STAMPEDE_RELAY_MESSAGE_BATCHES", default_value_t = Batches::Auto,
          value_name = "auto|always|never")]
    pub relay_message_batches: Batches,
}

impl RelayArgs {
    /// The relay settings for a relay running as `role`.
    pub fn config(&self, role: &str) -> Result<crate::relay::RelayConfig, Error> {
        Ok(crate::relay::RelayConfig {
            redis_url: self.redis.redis_url.clone(),
            kafka: self.kafka.config()?,
            consumer: self
                .relay_consumer
                .clone()
                .unwrap_or_else(|| format!("{}-{role}", hostname())),
            batch: self.relay_batch.max(1),
            gather: std::time::Duration::from_millis(self.relay_gather_ms),
            linger_ms: self.relay_linger_ms,
            claim_idle: Duration::from_millis(self.relay_claim_idle_ms.max(100)),
            campaigns: scope(&self.relay_campaigns),
            message_batches: self.relay_message_batches,
        })
    }
}

/// A campaign list flag as a scope: empty means every campaign.
pub fn scope(ids: &[String]) -> Option<std::collections::HashSet<String>> {
    let ids: std::collections::HashSet<String> = ids
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// This machine's (or pod's) name.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "stampede".into())
}

/// The waiting rooms' HMAC key (`serve`): every replica of a campaign's issuer needs the
/// same one, or a token one signed is refused by the next. Never logged.
#[derive(Debug, Clone, Args)]
pub struct WaitingRoomArgs {
    /// A file holding the key (at least 32 bytes; a trailing newline is not part of it),
    /// e.g. a mounted Secret.
    #[arg(long, env = "STAMPEDE_WAITING_ROOM_KEY_FILE")]
    pub waiting_room_key_file: Option<std::path::PathBuf>,
    /// The key itself. Prefer the variable (from a Secret) or the file: a flag shows in the
    /// process list.
    #[arg(long, env = "STAMPEDE_WAITING_ROOM_KEY", hide_env_values = true)]
    pub waiting_room_key: Option<crate::auth::Secret>,
}

impl WaitingRoomArgs {
    /// The key these flags give, `None` when neither does (campaigns with a waiting room
    /// then answer 503 `waiting_room_unavailable`); a short or unreadable one is refused,
    /// naming the flag, never printing the key.
    pub fn key(&self) -> Result<Option<stampede_core::waiting_room::token::TokenKey>, Error> {
        use stampede_core::waiting_room::token::TokenKey;
        let named = |flag: &str, e: Error| Error::InvalidInput(format!("{flag}: {e}"));
        match (&self.waiting_room_key_file, &self.waiting_room_key) {
            (Some(_), Some(_)) => Err(Error::InvalidInput(
                "give one of --waiting-room-key-file and --waiting-room-key".into(),
            )),
            (Some(path), None) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    Error::InvalidInput(format!("--waiting-room-key-file {}: {e}", path.display()))
                })?;
                let key = TokenKey::new(&bytes);
                key.map(Some)
                    .map_err(|e| named("--waiting-room-key-file", e))
            }
            (None, Some(secret)) => TokenKey::new(&secret.0)
                .map(Some)
                .map_err(|e| named("--waiting-room-key (STAMPEDE_WAITING_ROOM_KEY)", e)),
            (None, None) => Ok(None),
        }
    }
}
