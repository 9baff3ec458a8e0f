//! Command-line interface: the service's roles (`serve`, `relay`, `writer`) and its admin
//! commands (`campaign …`, `migrate`, `audit`).

mod args;
mod auth;
mod campaign;
mod pipeline;
mod waiting_room;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use args::{DatabaseArgs, KafkaArgs, RedisArgs, RelayArgs, WaitingRoomArgs};
pub use auth::{AuthArgs, AuthMode, TokenArgs};
pub use campaign::CampaignCommand;
pub use pipeline::{AuditArgs, MigrateArgs, RelayRoleArgs, WriterArgs};

use crate::http::limits::{LimitConfig, Rate};
use crate::server::{
    CampaignScope, DEFAULT_BODY_TIMEOUT_MS, DEFAULT_EPOCH_CHECK_MS, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SOLDOUT_RECHECK_MS, DEFAULT_USER_BURST, DEFAULT_USER_RATE,
    Listeners, ServeConfig, default_max_in_flight, serve,
};
use stampede_core::Error;
use stampede_core::batches::Batches;
use stampede_core::store::fence::FenceConfig;

/// Stampede issuance service.
#[derive(Debug, Parser)]
#[command(name = "stampede-service", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The service's roles and admin commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the issuance HTTP API (and, unless --no-relay, relay the outbox to Kafka).
    Serve(Box<ServeArgs>),
    /// Relay outbox streams to Kafka (standalone).
    Relay(RelayRoleArgs),
    /// Write issuances from Kafka to PostgreSQL.
    Writer(WriterArgs),
    /// Apply the database schema migrations.
    Migrate(MigrateArgs),
    /// Compare Redis with PostgreSQL for a campaign; exit 1 when anything is wrong.
    Audit(AuditArgs),
    /// Create and administer campaigns.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Print HS256 bearer tokens for users, one a line (secret from a variable).
    Token(TokenArgs),
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve the public API on.
    #[arg(long, env = "STAMPEDE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address to serve /metrics, /healthz and /readyz on (never the public port).
    #[arg(
        long,
        env = "STAMPEDE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Requests in flight before new ones get 503 `overloaded` (default: 1 024 per core).
    #[arg(long, env = "STAMPEDE_MAX_IN_FLIGHT", default_value_t = default_max_in_flight())]
    pub max_in_flight: usize,
    /// How often a sold-out campaign's stock is re-read, in milliseconds.
    #[arg(long, env = "STAMPEDE_SOLDOUT_RECHECK_MS", default_value_t = DEFAULT_SOLDOUT_RECHECK_MS)]
    pub soldout_recheck_ms: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STAMPEDE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Milliseconds a request body may take to arrive before 408 `request_timeout`; it is
    /// read before the request takes an in-flight slot.
    #[arg(long, env = "STAMPEDE_BODY_TIMEOUT_MS", default_value_t = DEFAULT_BODY_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Milliseconds a request may take from its headers to its answer before 503 `timeout`.
    #[arg(long, env = "STAMPEDE_REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// After SIGTERM, milliseconds to go on serving while /readyz answers 503 `draining`,
    /// so that load balancers stop sending before the listener closes (0: close at once;
    /// the operator sets 5 000 on issuer pods).
    #[arg(long, env = "STAMPEDE_DRAIN_DELAY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub drain_delay_ms: u64,
    /// Do not run the outbox relay in this process (run `stampede-service relay` instead).
    #[arg(long, env = "STAMPEDE_NO_RELAY")]
    pub no_relay: bool,
    /// When the coupons of an issue script call that issues several go out as one outbox
    /// entry (fewer Redis commands per issuance, for the issue script and the relay):
    /// `auto` once every live relay of the campaign reads batch entries (relays record it in
    /// the campaign; an older relay would drop them as malformed), `always`, or `never`.
    /// A bare `--outbox-batches` is `always`.
    #[arg(long, env = "STAMPEDE_OUTBOX_BATCHES", default_value_t = Batches::Auto,
          num_args = 0..=1, default_missing_value = "always")]
    pub outbox_batches: Batches,
    /// When a new coupon is acknowledged: `local` once the Redis primary has it; `replica`
    /// once `--durability-replicas` replicas have it too (a failover then loses nothing
    /// that was acknowledged; a replica that does not answer in time means 503).
    #[arg(long, env = "STAMPEDE_DURABILITY", value_enum, default_value_t = Durability::Local)]
    pub durability: Durability,
    /// Replicas that must hold an issuance before it is acknowledged (`replica` only).
    #[arg(long, env = "STAMPEDE_DURABILITY_REPLICAS", default_value_t = 1)]
    pub durability_replicas: u32,
    /// How long to wait for them, in milliseconds (`replica` only).
    #[arg(long, env = "STAMPEDE_DURABILITY_TIMEOUT_MS", default_value_t = 500)]
    pub durability_timeout_ms: u64,
    /// How often to check, in milliseconds, whether Redis restarted or failed over (its
    /// run id or replication id changed): its campaigns are then suspended, since it may
    /// have lost acknowledged coupons, until `audit` and `campaign unsuspend`.
    #[arg(long, env = "STAMPEDE_EPOCH_CHECK_MS", default_value_t = DEFAULT_EPOCH_CHECK_MS,
          value_parser = clap::value_parser!(u64).range(50..))]
    pub epoch_check_ms: u64,
    /// The campaigns this issuer serves, comma-separated, each `<name>=<id>` (clients use
    /// `name` in URLs; Redis, Kafka and PostgreSQL keep it under `id`) or just `<id>`; their
    /// load tests' shadow campaigns come with them. Others get 404 `campaign_not_found`.
    /// Default: every campaign in Redis (local rehearsal; the operator always sets it).
    #[arg(long, env = "STAMPEDE_CAMPAIGNS", value_delimiter = ',')]
    pub campaigns: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    waiting_room: WaitingRoomArgs,
}

/// Per-user and per-client budgets (`serve`); a user or client past its budget gets 429
/// `rate_limited` with Retry-After. Each replica counts on its own.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Requests per second one user may make (0: no limit).
    #[arg(long, env = "STAMPEDE_USER_RATE", default_value_t = DEFAULT_USER_RATE)]
    pub user_rate: u32,
    /// Requests one user may make at once on top of the rate.
    #[arg(long, env = "STAMPEDE_USER_BURST", default_value_t = DEFAULT_USER_BURST)]
    pub user_burst: u32,
    /// Requests per second one client address may make (0, the default: no limit; turn it
    /// on where clients reach the service directly or through `--client-ip-header`).
    /// Load-test shadow campaigns are exempt.
    #[arg(long, env = "STAMPEDE_CLIENT_RATE", default_value_t = 0)]
    pub client_rate: u32,
    /// Requests one client address may make at once on top of the rate.
    #[arg(long, env = "STAMPEDE_CLIENT_BURST", default_value_t = 100)]
    pub client_burst: u32,
    /// Take the client address from this header's last entry (e.g. `X-Forwarded-For`, as
    /// the proxy in front of the service appends it); only behind a proxy that sets it, or
    /// clients choose their own address.
    #[arg(long, env = "STAMPEDE_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
}

impl LimitArgs {
    /// The budgets; a header name that is not one is refused, naming the flag.
    fn config(&self) -> Result<LimitConfig, Error> {
        let client_ip_header = self
            .client_ip_header
            .as_deref()
            .map(|h| {
                h.parse::<axum::http::HeaderName>().map_err(|_| {
                    Error::InvalidInput(format!("--client-ip-header: {h:?} is not a header name"))
                })
            })
            .transpose()?;
        Ok(LimitConfig {
            per_user: Rate::new(self.user_rate, self.user_burst),
            per_client: Rate::new(self.client_rate, self.client_burst),
            client_ip_header,
        })
    }
}

/// When an issuance is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// Once the Redis primary holds it (AOF `everysec`: a host crash can lose the last
    /// second; a failover to a lagging replica can lose what it had not received).
    Local,
    /// Once the replicas hold it too (one WAIT per batch of acknowledgements).
    Replica,
}

impl ServeArgs {
    /// The replica fence, when `--durability replica`.
    fn fence(&self) -> Option<FenceConfig> {
        (self.durability == Durability::Replica).then(|| FenceConfig {
            replicas: self.durability_replicas.max(1),
            timeout: Duration::from_millis(self.durability_timeout_ms.max(1)),
        })
    }
}

/// Runs the parsed command until it finishes or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => {
            let auth = a.auth.config()?;
            let listeners = Listeners {
                api: tokio::net::TcpListener::bind(a.listen).await?,
                ops: tokio::net::TcpListener::bind(a.metrics_listen).await?,
            };
            let config = ServeConfig {
                store: a.relay.redis.store_config(),
                max_in_flight: a.max_in_flight,
                soldout_recheck: Duration::from_millis(a.soldout_recheck_ms.max(10)),
                max_body_bytes: a.max_body_bytes,
                body_timeout: Duration::from_millis(a.body_timeout_ms),
                request_timeout: Duration::from_millis(a.request_timeout_ms),
                drain_delay: Duration::from_millis(a.drain_delay_ms),
                relay: (!a.no_relay).then(|| a.relay.config("serve")).transpose()?,
                outbox_batches: a.outbox_batches,
                durability: a.fence(),
                epoch_check: Duration::from_millis(a.epoch_check_ms),
                limits: a.limits.config()?,
                auth,
                campaigns: CampaignScope::parse(&a.campaigns)?,
                waiting_room_key: a.waiting_room.key()?,
            };
            if config.campaigns.is_every() {
                tracing::warn!(
                    "no --campaigns: serving every campaign in this Redis (local rehearsal only)"
                );
            }
            serve(listeners, config, shutdown).await
        }
        Command::Relay(a) => pipeline::relay(a, shutdown).await,
        Command::Writer(a) => pipeline::writer(a, shutdown).await,
        Command::Migrate(a) => pipeline::migrate(a).await,
        Command::Audit(a) => pipeline::audit(a).await,
        Command::Campaign(c) => campaign::run(c).await,
        Command::Token(a) => auth::token(a),
    }
}

/// Prints one JSON line.
fn print(v: serde_json::Value) -> Result<(), Error> {
    println!("{v}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn outbox_batches(args: &[&str]) -> Result<Batches, String> {
        let cli = Cli::try_parse_from([&["stampede-service", "serve"], args].concat())
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(a) => Ok(a.outbox_batches),
            _ => unreachable!("parsed serve"),
        }
    }

    #[test]
    fn outbox_batches_are_auto_unless_told_and_a_bare_flag_means_always() {
        assert_eq!(outbox_batches(&[]), Ok(Batches::Auto));
        assert_eq!(outbox_batches(&["--outbox-batches"]), Ok(Batches::Always));
        assert_eq!(
            outbox_batches(&["--outbox-batches", "never"]),
            Ok(Batches::Never)
        );
        let err = outbox_batches(&["--outbox-batches", "sometimes"]).unwrap_err();
        assert!(
            err.contains("--outbox-batches") && err.contains("auto, always or never"),
            "{err}"
        );
    }

    fn message_batches(role: &str, args: &[&str]) -> Result<Batches, String> {
        let cli = Cli::try_parse_from([&["stampede-service", role], args].concat())
            .map_err(|e| e.to_string())?;
        let relay = match cli.command {
            Command::Serve(a) => a.relay,
            Command::Relay(a) => a.relay,
            _ => unreachable!("parsed serve or relay"),
        };
        Ok(relay
            .config("test")
            .map_err(|e| e.to_string())?
            .message_batches)
    }

    #[test]
    fn message_batches_are_auto_unless_told_in_both_relaying_roles() {
        for role in ["serve", "relay"] {
            assert_eq!(message_batches(role, &[]), Ok(Batches::Auto));
            let never = message_batches(role, &["--relay-message-batches", "never"]);
            assert_eq!(never, Ok(Batches::Never));
            let err = message_batches(role, &["--relay-message-batches", "often"]).unwrap_err();
            assert!(
                err.contains("--relay-message-batches") && err.contains("auto, always or never"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_linger_kafka_would_refuse_is_refused_naming_the_flag() {
        for role in ["serve", "relay"] {
            assert!(message_batches(role, &["--relay-linger-ms", "900000"]).is_ok());
            let err = message_batches(role, &["--relay-linger-ms", "900001"]).unwrap_err();
            assert!(err.contains("--relay-linger-ms"), "{err}");
        }
    }
}
