//! `campaign create|show|restock|pause|resume|close|reopen|unsuspend|forget|waiting-room`.

use clap::{Args, Subcommand};
use serde_json::json;
use stampede_core::campaign::MAX_STOCK;

use super::waiting_room::{RoomArgs, WaitingRoomCommand};
use super::{KafkaArgs, RedisArgs, print};
use stampede_core::Error;
use stampede_core::campaign::{AdminAction, Window};
use stampede_core::ids::CampaignId;
use stampede_core::kafka::ensure_topics;
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::Store;
use stampede_core::waiting_room::WaitingRoomConfig;

/// `campaign` subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign and its Kafka topics, or bring an existing one to the given stock
    /// and partitions (never shrinks either, never resets holders).
    Create(CreateArgs),
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
    /// Lift a suspension (set when Redis restarted or failed over and may have lost
    /// acknowledged coupons) once `audit` has been run and its findings handled.
    Unsuspend(Simple),
    /// Give an existing campaign a waiting room, change its settings, or turn it off.
    WaitingRoom(WaitingRoomCommand),
    /// Remove a closed campaign's Redis data (stock, holders, outbox), as the operator's
    /// `deletionPolicy: Delete` does: what a cleanup left behind, or a rehearsal's
    /// leftovers. Kafka topics and rows in PostgreSQL stay. Never for a campaign that still
    /// has a CouponCampaign: the operator would provision it afresh, holders forgotten.
    Forget {
        #[command(flatten)]
        id: IdArg,
        /// Also when the campaign is open or its outbox still holds issuances not yet in
        /// Kafka (run `audit` first: it lists what PostgreSQL lacks).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

/// `campaign create`'s flags.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    id: IdArg,
    /// Coupons to hand out (at least 1).
    #[arg(long)]
    stock: u64,
    /// When issuance opens (RFC 3339); default: now. With either window flag the two are
    /// the whole window, on an existing campaign too; with neither it is left as it is.
    #[arg(long)]
    opens_at: Option<String>,
    /// When issuance closes (RFC 3339); default: never (see --opens-at).
    #[arg(long)]
    closes_at: Option<String>,
    /// Partitions of the campaign topic `stampede.<id>` (grows, never shrinks).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Replication factor of new topics.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Buckets to split the stock into (1..=64), each with its own hash tag: on a Redis
    /// Cluster on different primaries, so one hot campaign spreads across shards. Fixed
    /// once the campaign exists.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Give the campaign a waiting room: issuing then needs an admission from its line
    /// (docs/waiting-room.md). Needs --shards 1.
    #[arg(long)]
    waiting_room: bool,
    #[command(flatten)]
    room: RoomArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
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

/// Runs one campaign command.
pub async fn run(cmd: CampaignCommand) -> Result<(), Error> {
    let cmd = match cmd {
        CampaignCommand::WaitingRoom(w) => return super::waiting_room::run(w).await,
        cmd => cmd,
    };
    let (id, redis) = target(&cmd);
    let campaign =
        CampaignId::parse(&id.id).map_err(|e| Error::InvalidInput(format!("--id: {e}")))?;
    let action = admin_action(&cmd)?;
    let store = Store::connect(&redis.store_config(), RedisMetrics::detached()).await?;
    if let Some(action) = action {
        let total = store.admin(&campaign, action).await?;
        return print(
            json!({ "campaign": campaign.as_str(), "action": format!("{action:?}"), "total": total }),
        );
    }
    match cmd {
        CampaignCommand::Create(c) => create(&store, &campaign, c).await,
        CampaignCommand::Forget { force, .. } => forget(&store, &campaign, force).await,
        _ => show(&store, &campaign).await,
    }
}

/// `campaign create`: the topics, then the campaign (or brought up to the flags).
async fn create(store: &Store, campaign: &CampaignId, c: CreateArgs) -> Result<(), Error> {
    let CreateArgs {
        stock,
        opens_at,
        closes_at,
        partitions,
        replication_factor,
        shards,
        waiting_room,
        room,
        kafka,
        ..
    } = c;
    let window = (opens_at.is_some() || closes_at.is_some())
        .then(|| Window::from_rfc3339(opens_at.as_deref(), closes_at.as_deref()))
        .transpose()?;
    let room = waiting_room
        .then(|| room.config(WaitingRoomConfig::default()))
        .transpose()?;
    // What the store would refuse is refused before the topics: a failed create changes
    // nothing (a topic's partitions never shrink back).
    store.check_provision(campaign, stock, shards).await?;
    // Topics first: a campaign must not open without the topic its outbox drains to.
    let topics = ensure_topics(
        &kafka.config()?,
        campaign.as_str(),
        partitions,
        replication_factor,
    )
    .await?;
    let outcome = match &room {
        Some(room) => {
            store
                .ensure_campaign_with_room(campaign, stock, window, (false, shards), room)
                .await?
        }
        None => {
            store
                .ensure_sharded(campaign, stock, window, false, shards)
                .await?
        }
    };
    print(json!({ "campaign": campaign.as_str(), "provision": outcome, "kafka": topics }))
}

/// The campaign a command names and how to reach its Redis.
fn target(cmd: &CampaignCommand) -> (&IdArg, &RedisArgs) {
    match cmd {
        CampaignCommand::Create(CreateArgs { id, redis, .. })
        | CampaignCommand::Restock { id, redis, .. }
        | CampaignCommand::Forget { id, redis, .. } => (id, redis),
        CampaignCommand::Show(s)
        | CampaignCommand::Pause(s)
        | CampaignCommand::Resume(s)
        | CampaignCommand::Close(s)
        | CampaignCommand::Reopen(s)
        | CampaignCommand::Unsuspend(s) => (&s.id, &s.redis),
        CampaignCommand::WaitingRoom(_) => unreachable!("run dispatches it first"),
    }
}

impl CreateArgs {
    /// Checks the numbers and the waiting room's settings.
    fn check(&self) -> Result<(), Error> {
        let invalid = |m: &str| Err(Error::InvalidInput(m.into()));
        if self.stock == 0 {
            return invalid("--stock must be at least 1");
        }
        if self.stock > MAX_STOCK {
            return invalid(&format!("--stock must be at most {MAX_STOCK}"));
        }
        if self.partitions < 1 {
            return invalid("--partitions must be at least 1");
        }
        if self.replication_factor < 1 {
            return invalid("--replication-factor must be at least 1");
        }
        if !self.waiting_room {
            return match self.room.any() {
                true => invalid("waiting-room settings need --waiting-room"),
                false => Ok(()),
            };
        }
        if self.shards > 1 {
            return invalid(
                "--waiting-room needs --shards 1: a sharded campaign's buckets issue on \
                 slots of their own, where no one script could see the line",
            );
        }
        self.room.config(WaitingRoomConfig::default()).map(|_| ())
    }
}

/// The admin change a command asks for (`None` for create and show), after checking its
/// numbers, before anything touches Redis or Kafka.
fn admin_action(cmd: &CampaignCommand) -> Result<Option<AdminAction>, Error> {
    let invalid = |m: &str| Err(Error::InvalidInput(m.into()));
    Ok(match cmd {
        CampaignCommand::Create(c) => {
            c.check()?;
            None
        }
        CampaignCommand::Restock { add: 0, .. } => return invalid("--add must be at least 1"),
        CampaignCommand::Show(_) | CampaignCommand::Forget { .. } => None,
        CampaignCommand::Restock { add, .. } => Some(AdminAction::Restock(*add)),
        CampaignCommand::Pause(_) => Some(AdminAction::Pause),
        CampaignCommand::Resume(_) => Some(AdminAction::Resume),
        CampaignCommand::Close(_) => Some(AdminAction::Close),
        CampaignCommand::Reopen(_) => Some(AdminAction::Reopen),
        CampaignCommand::Unsuspend(_) => Some(AdminAction::Unsuspend),
        CampaignCommand::WaitingRoom(_) => None,
    })
}

/// Prints a campaign's state with its outbox backlog.
async fn show(store: &Store, campaign: &CampaignId) -> Result<(), Error> {
    let snap = store
        .snapshot(campaign)
        .await?
        .ok_or_else(|| Error::CampaignNotFound(campaign.to_string()))?;
    let mut view = snap.view(campaign.as_str());
    view["outboxPending"] = json!(snap.outbox_len);
    view["waitingRoom"] = json!(store.waiting_room(campaign).await?);
    if let Some(ledger) = store.shard_ledger(campaign).await? {
        // Each bucket's stock and seqs, transfers in transit, and whether the ledger
        // balances (a sharded campaign only).
        view["shards"] = json!(ledger);
    }
    print(view)
}

/// Removes `campaign`'s Redis keys (its buckets' too) once it is closed and its outbox
/// drained, or at once with `force`; a load test's shadow needs no close (it never sold).
/// What an interrupted cleanup left of it (a registry entry, a stream) goes too.
async fn forget(store: &Store, campaign: &CampaignId, force: bool) -> Result<(), Error> {
    let snap = store.snapshot(campaign).await?;
    match &snap {
        None if !store
            .registry()
            .await?
            .iter()
            .any(|c| c == campaign.as_str()) =>
        {
            return Err(Error::CampaignNotFound(campaign.to_string()));
        }
        Some(s) if !force && !s.closed && !campaign.is_load_test_shadow() => {
            return Err(Error::InvalidInput(format!(
                "--id: campaign {campaign} is open: `campaign close --id {campaign}` first (or --force)"
            )));
        }
        Some(s) if !force && s.outbox_len > 0 => {
            return Err(Error::InvalidInput(format!(
                "--id: {} issuances of {campaign} are still in its outbox, not yet in Kafka: \
                 let a relay drain them, or run `audit` and then --force",
                s.outbox_len
            )));
        }
        _ => {}
    }
    let removed = store.forget(campaign).await?;
    let issued = snap.map(|s| s.issued);
    print(
        json!({ "campaign": campaign.as_str(), "action": "Forget", "removedKeys": removed, "issued": issued }),
    )
}
