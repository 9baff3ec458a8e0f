//! The relay: drains every campaign's outbox stream into its Kafka topic.
//!
//! Entries are read through a Redis consumer group (`stampede_core::store::outbox`),
//! produced keyed by user id with an idempotent producer (a batch entry as one message
//! where every consumer of the topic reads batch messages: `formats`), and removed (XACK +
//! trim) only after Kafka acknowledged them. Entries a dead relay left pending are claimed after
//! `claim_idle`. The request path never waits on any of this: it only appends to the stream.
//! Lanes follow the registry: a deleted campaign (stream, group and registry entry gone)
//! leaves, and one whose stream or group vanished under a read is retired alone.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use stampede_core::Error;
use stampede_core::batches::Batches;
use stampede_core::ids::CampaignId;
use stampede_core::issuance::topic;
use stampede_core::kafka::KafkaConfig;
use stampede_core::store::outbox::{Outbox, OutboxBatch, ReadFrom, is_missing_group};
use stampede_core::store::outbox_format;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::PipelineMetrics;

mod deliver;
mod formats;
mod lanes;
mod thread;

use deliver::{new_producer, topic_exists};
use formats::MessageFormats;
pub use thread::spawn_on_own_thread;

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Redis URL (the relay holds its own connections: it blocks on XREADGROUP).
    pub redis_url: String,
    /// Kafka.
    pub kafka: KafkaConfig,
    /// This relay's consumer name; a restarted relay with the same name resumes its own
    /// pending entries at once.
    pub consumer: String,
    /// Entries read per call while the relay keeps up; a read that comes back full doubles
    /// the next one, up to `MAX_BATCH_GROWTH` times this, to work a backlog off.
    pub batch: usize,
    /// After a read that came back short, wait this long before the next: entries gather
    /// into batches instead of each paying its own read, acknowledgement and deletion in
    /// Redis (whose core the issue script needs). Bounds the latency it adds.
    pub gather: Duration,
    /// Producer linger.
    pub linger_ms: u32,
    /// Pending entries idle this long belong to a dead relay and are claimed.
    pub claim_idle: Duration,
    /// The campaigns this relay serves (an issuer relays only its own campaign, to its
    /// own Kafka); `None`: every campaign in the registry but load tests' shadows (a
    /// shared relay).
    pub campaigns: Option<HashSet<String>>,
    /// When a batch outbox entry goes to Kafka as one message.
    pub message_batches: Batches,
}

/// Runs until `shutdown`; what it read but has not acknowledged stays pending in Redis.
pub async fn run(
    mut config: RelayConfig,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Some(outbox) = connect(&config.redis_url, &shutdown).await? else {
        return Ok(());
    };
    let producer = new_producer(&config)?;
    // The name says which outbox format this relay reads (issuers write batch entries only
    // once every live relay of a campaign reads them).
    config.consumer = outbox_format::consumer_name(&config.consumer);
    let (read_count, config_batches) = (config.batch, config.message_batches);
    let mut relay = Relay {
        config,
        metrics,
        producer,
        producer_built: Instant::now(),
        lanes: HashMap::new(),
        unready: HashMap::new(),
        registered: HashSet::new(),
        last_claim: Instant::now(),
        last_refresh: None,
        outbox,
        in_flight: VecDeque::new(),
        read_count,
        formats: MessageFormats::new(config_batches),
    };
    tracing::info!(consumer = %relay.config.consumer, "relay running");
    while !shutdown.is_cancelled() {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = relay.step() => r,
        };
        if let Err(e) = step {
            tracing::warn!(error = %e, "relay step failed; retrying");
            for lane in relay.lanes.values_mut() {
                lane.reread = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    // What was produced gets acknowledged before we go; what was not stays pending.
    if let Err(e) = relay.reap(true).await {
        tracing::warn!(error = %e, "finishing deliveries at shutdown");
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Connects to the outbox, retrying every second while Redis is away; `None` on shutdown.
async fn connect(url: &str, shutdown: &CancellationToken) -> Result<Option<Outbox>, Error> {
    // A malformed URL is an error at once, not a retry loop.
    stampede_core::store::conn::RedisTarget::parse(url)?;
    loop {
        match Outbox::connect(url).await {
            Ok(outbox) => return Ok(Some(outbox)),
            Err(e) => {
                tracing::warn!(error = %e, "relay: redis unreachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Where one campaign stands with this relay.
#[derive(Debug)]
struct Lane {
    /// Re-read our own pending entries before new ones (after a start or a failure).
    reread: bool,
    /// Failed deliveries in a row, for backoff.
    failures: u32,
    /// Not read again before this instant (backoff after a failure).
    resume_at: Instant,
}

struct Relay {
    config: RelayConfig,
    metrics: PipelineMetrics,
    producer: FutureProducer,
    /// When `producer` was built.
    producer_built: Instant,
    /// Campaigns whose topic exists and whose outbox has our group.
    lanes: HashMap<CampaignId, Lane>,
    /// Campaigns without a topic yet, and when to look again.
    unready: HashMap<CampaignId, Instant>,
    /// The registry as last seen: the campaigns with a backlog series.
    registered: HashSet<CampaignId>,
    last_claim: Instant,
    last_refresh: Option<Instant>,
    /// The outbox streams (its reads block; delivery tasks acknowledge on a clone).
    outbox: Outbox,
    /// Deliveries under way, oldest first.
    in_flight: VecDeque<JoinHandle<Result<Vec<Unacked>, Error>>>,
    /// Entries per stream the next read asks for (grows under a backlog).
    read_count: usize,
    /// Which topics take a batch entry as one message.
    formats: MessageFormats,
}

/// What one delivery came to for one campaign.
#[derive(Debug, Default)]
struct Unacked {
    /// The campaign's stored id.
    campaign: String,
    /// Its issuances Kafka did not acknowledge.
    failed: u64,
    /// Whether any of those timed out in the producer (undelivered for the message timeout).
    timed_out: bool,
}

/// Deliveries allowed under way at once.
const MAX_IN_FLIGHT: usize = 3;

/// How far a read grows past the configured batch while a backlog lasts.
const MAX_BATCH_GROWTH: usize = 8;

impl Relay {
    /// One pass: discover campaigns, claim orphans, read and deliver one batch.
    async fn step(&mut self) -> Result<(), Error> {
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.refresh().await?;
        }
        self.reap(false).await?;
        // Re-reading history would return entries still being delivered: finish those first.
        if self.lanes.values().any(|l| l.reread) {
            self.reap(true).await?;
        }
        let mut ready = self.ready();
        if ready.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        if self.last_claim.elapsed() >= self.config.claim_idle / 2 {
            let claimed = self.claim_orphans(&ready).await?;
            self.deliver(claimed).await?;
            self.last_claim = Instant::now();
            // Claiming retires lanes whose stream is gone.
            ready.retain(|(c, _)| self.lanes.contains_key(c));
            if ready.is_empty() {
                return Ok(());
            }
        }
        // Reading our own history never waits; waiting for new entries does, briefly.
        let rereading = ready.iter().any(|(_, from)| *from == ReadFrom::OwnPending);
        let block = (!rereading).then_some(Duration::from_millis(100));
        let (consumer, count) = (&self.config.consumer, self.read_count);
        let batches = match self.outbox.read(consumer, &ready, count, block).await {
            Ok(batches) => batches,
            Err(e) if is_missing_group(&e) => return self.retire_gone(&ready, e).await,
            Err(e) => return Err(e),
        };
        // A lane that re-read its history and found none goes back to new entries.
        for (campaign, from) in &ready {
            let empty = batches
                .iter()
                .all(|b| b.campaign != campaign.as_str() || b.entries.is_empty());
            if *from == ReadFrom::OwnPending
                && empty
                && let Some(l) = self.lanes.get_mut(campaign)
            {
                l.reread = false;
            }
        }
        let full = batches.iter().any(|b| b.entries.len() >= count);
        self.deliver(batches).await?;
        if !rereading {
            self.pace(full).await;
        }
        Ok(())
    }

    /// After a read of new entries: a full one grows the next (a backlog), a short one
    /// resets it and waits `gather` for entries to accumulate.
    async fn pace(&mut self, full: bool) {
        self.read_count = if full {
            (self.read_count * 2).min(self.config.batch * MAX_BATCH_GROWTH)
        } else {
            self.config.batch
        };
        if !full && !self.config.gather.is_zero() {
            tokio::time::sleep(self.config.gather).await;
        }
    }

    /// Whether `campaign` is this relay's to serve.
    fn serves(&self, campaign: &CampaignId) -> bool {
        in_scope(self.config.campaigns.as_ref(), campaign)
    }

    /// Finds new campaigns; a campaign joins once its topic exists (provisioned by
    /// `campaign create` or the operator) and its outbox has our group.
    async fn refresh(&mut self) -> Result<(), Error> {
        // Ids in the registry were validated when they were provisioned; skip any other.
        let all: Vec<CampaignId> = self
            .outbox
            .campaigns()
            .await?
            .iter()
            .filter_map(|c| CampaignId::parse_stored(c).ok())
            .filter(|c| self.serves(c))
            .collect();
        let registered: HashSet<CampaignId> = all.iter().cloned().collect();
        self.leave_unregistered(&registered);
        let now = Instant::now();
        for c in &all {
            if self.lanes.contains_key(c) || self.unready.get(c).is_some_and(|at| *at > now) {
                continue;
            }
            // A sharded campaign's buckets deliver to the campaign's topic.
            if !topic_exists(&self.producer, &topic(c.campaign())).await {
                if !self.unready.contains_key(c) {
                    tracing::error!(campaign = %c, topic = %topic(c.campaign()),
                        "campaign has no Kafka topic; its issuances wait in the outbox (run `campaign create`)");
                }
                self.unready
                    .insert(c.clone(), now + Duration::from_secs(10));
                continue;
            }
            self.outbox.join(c).await?;
            self.unready.remove(c);
            let lane = Lane {
                reread: true,
                failures: 0,
                resume_at: now,
            };
            self.lanes.insert(c.clone(), lane);
        }
        // A sharded campaign's backlog is its buckets' together: the alert's rule selects the
        // campaign's id, and a series per bucket would never match it.
        let mut backlog: BTreeMap<&str, i64> = BTreeMap::new();
        for c in &all {
            *backlog.entry(c.campaign()).or_default() += self.outbox.backlog(c).await? as i64;
        }
        for (c, len) in backlog {
            self.metrics.relay_backlog.with_label_values(&[c]).set(len);
        }
        self.settle_formats().await;
        if self.formats.due() {
            let topics = self.lanes.keys().map(|c| topic(c.campaign())).collect();
            self.formats.look(&self.producer, topics).await;
        }
        self.registered = registered;
        self.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Takes over entries another (dead) relay read but never acknowledged.
    async fn claim_orphans(
        &mut self,
        ready: &[(CampaignId, ReadFrom)],
    ) -> Result<Vec<OutboxBatch>, Error> {
        let mut out = Vec::new();
        for (campaign, _) in ready {
            let (consumer, idle) = (&self.config.consumer, self.config.claim_idle);
            let entries = match self
                .outbox
                .claim(campaign, consumer, idle, self.config.batch)
                .await
            {
                Ok(entries) => entries,
                Err(e) if is_missing_group(&e) => {
                    self.retire(campaign, "its outbox stream or group is gone");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !entries.is_empty() {
                tracing::info!(campaign = %campaign, n = entries.len(), "claimed orphaned entries");
                self.metrics.relay_claimed.inc_by(entries.len() as u64);
                out.push(OutboxBatch {
                    campaign: campaign.to_string(),
                    entries,
                });
            }
        }
        Ok(out)
    }
}

/// Whether a relay of `scope` serves `campaign`: the campaigns named (and their buckets),
/// or with no scope every campaign but load tests' shadows: their coupons are not real,
/// they have no topic, and their run forgets their outbox when it ends.
fn in_scope(scope: Option<&HashSet<String>>, campaign: &CampaignId) -> bool {
    match scope {
        Some(owned) => owned.contains(campaign.campaign()),
        None => !campaign.is_load_test_shadow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CampaignId {
        CampaignId::parse_stored(s).unwrap()
    }

    #[test]
    fn a_shared_relay_serves_every_campaign_but_load_test_shadows() {
        let bucket = id("team.sale").bucket(1);
        for (c, served) in [
            (id("team.sale"), true),
            (bucket, true),
            (id("team.sale.lt-preflight"), false),
            (id("team.sale.lt-peak").bucket(0), false),
        ] {
            assert_eq!(in_scope(None, &c), served, "{c}");
        }
    }

    #[test]
    fn a_scoped_relay_serves_the_campaigns_named_and_their_buckets() {
        let owned: HashSet<String> =
            ["team.sale".to_owned(), "team.sale.lt-smoke".to_owned()].into();
        for (c, served) in [
            (id("team.sale"), true),
            (id("team.sale").bucket(2), true),
            (id("team.sale.lt-smoke"), true),
            (id("team.other"), false),
            (id("team.sale.lt-peak"), false),
        ] {
            assert_eq!(in_scope(Some(&owned), &c), served, "{c}");
        }
    }
}
