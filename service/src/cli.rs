//! Command-line interface: `serve` and the `campaign` admin commands. Every flag also
//! reads a `STAMPEDE_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::campaign::{AdminAction, Window};
use crate::ids::CampaignId;
use crate::metrics::Metrics;
use crate::server::{ServeConfig, default_max_in_flight, serve};
use crate::store::{Store, StoreConfig};

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
    /// Serve the issuance HTTP API.
    Serve(ServeArgs),
    /// Create and administer campaigns in Redis.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL.
    #[arg(
        long,
        env = "STAMPEDE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Upper bound on any one Redis call, in milliseconds; past it the request gets 503.
    #[arg(long, env = "STAMPEDE_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Multiplexed Redis connections to spread calls over.
    #[arg(long, env = "STAMPEDE_REDIS_CONNECTIONS", default_value_t = 2)]
    pub redis_connections: usize,
}

impl RedisArgs {
    fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.redis_url.clone(),
            connections: self.redis_connections,
            timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
        }
    }
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STAMPEDE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Requests in flight before new ones get 503 `overloaded` (default: 256 per core).
    #[arg(long, env = "STAMPEDE_MAX_IN_FLIGHT", default_value_t = default_max_in_flight())]
    pub max_in_flight: usize,
    /// How often a sold-out campaign's stock is re-read, in milliseconds.
    #[arg(long, env = "STAMPEDE_SOLDOUT_RECHECK_MS", default_value_t = 250)]
    pub soldout_recheck_ms: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STAMPEDE_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    redis: RedisArgs,
}

/// `campaign` subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign, or bring an existing one to the given stock (never shrinks it,
    /// never resets holders).
    Create {
        #[command(flatten)]
        id: IdArg,
        /// Coupons to hand out (at least 1).
        #[arg(long)]
        stock: u64,
        /// When issuance opens (RFC 3339); default: now.
        #[arg(long)]
        opens_at: Option<String>,
        /// When issuance closes (RFC 3339); default: never.
        #[arg(long)]
        closes_at: Option<String>,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Print a campaign's state and stock as JSON.
    Show(Simple),
    /// Add stock atomically.
    Restock {
        #[command(flatten)]
        id: IdArg,
        /// Coupons to add (at least 1).
        #[arg(long)]
        add: u64,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Stop issuing until resumed.
    Pause(Simple),
    /// Undo a pause.
    Resume(Simple),
    /// Stop issuing (holders keep their coupons).
    Close(Simple),
    /// Undo a close.
    Reopen(Simple),
}

/// `--id`.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Campaign id, e.g. `spring-sale`.
    #[arg(long)]
    pub id: String,
}

/// A command that needs only the campaign id and Redis.
#[derive(Debug, Args)]
pub struct Simple {
    #[command(flatten)]
    id: IdArg,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Runs the parsed command until it finishes or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => {
            let listener = tokio::net::TcpListener::bind(a.listen).await?;
            let config = ServeConfig {
                store: a.redis.store_config(),
                max_in_flight: a.max_in_flight,
                soldout_recheck: Duration::from_millis(a.soldout_recheck_ms.max(10)),
                max_body_bytes: a.max_body_bytes,
            };
            serve(listener, config, shutdown).await
        }
        Command::Campaign(c) => campaign(c).await,
    }
}

async fn campaign(cmd: CampaignCommand) -> Result<(), Error> {
    let (id, redis) = match &cmd {
        CampaignCommand::Create { id, redis, .. } | CampaignCommand::Restock { id, redis, .. } => {
            (id, redis)
        }
        CampaignCommand::Show(s)
        | CampaignCommand::Pause(s)
        | CampaignCommand::Resume(s)
        | CampaignCommand::Close(s)
        | CampaignCommand::Reopen(s) => (&s.id, &s.redis),
    };
    let campaign =
        CampaignId::parse(&id.id).map_err(|e| Error::InvalidInput(format!("--id: {e}")))?;
    let store = Store::connect(&redis.store_config(), Metrics::new().redis).await?;
    let action = match cmd {
        CampaignCommand::Create {
            stock,
            opens_at,
            closes_at,
            ..
        } => {
            if stock == 0 {
                return Err(Error::InvalidInput("--stock must be at least 1".into()));
            }
            let window = (opens_at.is_some() || closes_at.is_some())
                .then(|| Window::from_rfc3339(opens_at.as_deref(), closes_at.as_deref()))
                .transpose()?;
            let outcome = store.ensure_campaign(&campaign, stock, window).await?;
            return print(json!({ "campaign": campaign.as_str(), "provision": outcome }));
        }
        CampaignCommand::Show(_) => {
            let snap = store
                .snapshot(&campaign)
                .await?
                .ok_or_else(|| Error::CampaignNotFound(campaign.to_string()))?;
            let mut view = snap.view(campaign.as_str());
            view["outboxPending"] = json!(snap.outbox_len);
            return print(view);
        }
        CampaignCommand::Restock { add: 0, .. } => {
            return Err(Error::InvalidInput("--add must be at least 1".into()));
        }
        CampaignCommand::Restock { add, .. } => AdminAction::Restock(add),
        CampaignCommand::Pause(_) => AdminAction::Pause,
        CampaignCommand::Resume(_) => AdminAction::Resume,
        CampaignCommand::Close(_) => AdminAction::Close,
        CampaignCommand::Reopen(_) => AdminAction::Reopen,
    };
    let total = store.admin(&campaign, action).await?;
    print(json!({ "campaign": campaign.as_str(), "action": format!("{action:?}"), "total": total }))
}

fn print(v: serde_json::Value) -> Result<(), Error> {
    println!("{v}");
    Ok(())
}
