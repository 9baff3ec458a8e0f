//! The relay: drains every campaign's outbox stream into its Kafka topic.
//!
//! Entries are read through a Redis consumer group, produced keyed by user id with an
//! idempotent producer, and removed (XACK + XDEL) only after Kafka acknowledged them.
//! Entries a dead relay left pending are claimed after `claim_idle`. The request path
//! never waits on any of this: it only appends to the stream.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::ids::CampaignId;
use crate::issuance::{Issuance, topic};
use crate::kafka::{KafkaConfig, kafka};
use crate::keys::{CampaignKeys, REGISTRY};
use crate::metrics::PipelineMetrics;

/// The consumer group every relay joins.
pub const GROUP: &str = "relay";

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Redis URL (the relay holds its own connection: it blocks on XREADGROUP).
    pub redis_url: String,
    /// Kafka.
    pub kafka: KafkaConfig,
    /// This relay's consumer name; a restarted relay with the same name resumes its own
    /// pending entries at once.
    pub consumer: String,
    /// Entries read per call.
    pub batch: usize,
    /// Producer linger.
    pub linger_ms: u32,
    /// Pending entries idle this long belong to a dead relay and are claimed.
    pub claim_idle: Duration,
}

/// Runs until `shutdown`; what it read but has not acknowledged stays pending in Redis.
pub async fn run(
    config: RelayConfig,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = redis::Client::open(config.redis_url.as_str())?;
    let (mut conn, ack_conn) = loop {
        let both = async {
            Ok::<_, redis::RedisError>((
                ConnectionManager::new(client.clone()).await?,
                ConnectionManager::new(client.clone()).await?,
            ))
        };
        match both.await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "relay: redis unreachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let producer: FutureProducer = config
        .kafka
        .producer(config.linger_ms)
        .create()
        .map_err(kafka)?;
    let mut relay = Relay {
        config,
        metrics,
        producer,
        lanes: HashMap::new(),
        unready: HashMap::new(),
        last_claim: Instant::now(),
        last_refresh: None,
        ack_conn,
        in_flight: VecDeque::new(),
    };
    tracing::info!(consumer = %relay.config.consumer, "relay running");
    while !shutdown.is_cancelled() {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = relay.step(&mut conn) => r,
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
    /// Campaigns whose topic exists and whose outbox has our group.
    lanes: HashMap<String, Lane>,
    /// Campaigns without a topic yet, and when to look again.
    unready: HashMap<String, Instant>,
    last_claim: Instant,
    last_refresh: Option<Instant>,
    /// A second connection for acknowledgements: the reading one blocks on XREADGROUP.
    ack_conn: ConnectionManager,
    /// Deliveries under way, oldest first.
    in_flight: VecDeque<JoinHandle<Result<Vec<Unacked>, Error>>>,
}

/// A campaign and how many of its entries Kafka did not acknowledge in one delivery.
type Unacked = (String, u64);

/// Deliveries allowed under way at once.
const MAX_IN_FLIGHT: usize = 3;

/// One stream's share of a read: its key and entries.
type StreamBatch = (String, Vec<StreamId>);

impl Relay {
    /// One pass: discover campaigns, claim orphans, read and deliver one batch.
    async fn step(&mut self, conn: &mut ConnectionManager) -> Result<(), Error> {
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.refresh(conn).await?;
        }
        self.reap(false).await?;
        // Re-reading history would return entries still being delivered: finish those first.
        if self.lanes.values().any(|l| l.reread) {
            self.reap(true).await?;
        }
        let now = Instant::now();
        let ready: Vec<(String, bool)> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.resume_at <= now)
            .map(|(c, l)| (c.clone(), l.reread))
            .collect();
        if ready.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        if self.last_claim.elapsed() >= self.config.claim_idle / 2 {
            let claimed = self.claim_orphans(conn, &ready).await?;
            self.deliver(claimed).await?;
            self.last_claim = Instant::now();
        }
        let keys: Vec<String> = ready.iter().map(|(c, _)| outbox_key(c)).collect();
        let ids: Vec<&str> = ready
            .iter()
            .map(|(_, r)| if *r { "0" } else { ">" })
            .collect();
        let rereading = ready.iter().any(|(_, r)| *r);
        let mut opts = StreamReadOptions::default()
            .group(GROUP, &self.config.consumer)
            .count(self.config.batch);
        if !rereading {
            // Reading our own history never waits; waiting for new entries does, briefly.
            opts = opts.block(100);
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg(&opts)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids)
            .query_async(conn)
            .await?;
        let batches: Vec<StreamBatch> = reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .map(|k| (k.key, k.ids))
            .collect();
        // A lane that re-read its history and found none goes back to new entries.
        for (campaign, reread) in &ready {
            let key = outbox_key(campaign);
            let empty = batches.iter().all(|(k, ids)| *k != key || ids.is_empty());
            if *reread
                && empty
                && let Some(l) = self.lanes.get_mut(campaign)
            {
                l.reread = false;
            }
        }
        self.deliver(batches).await
    }

    /// Finds new campaigns; a campaign joins once its topic exists (provisioned by
    /// `campaign create` or the operator) and its outbox has our group.
    async fn refresh(&mut self, conn: &mut ConnectionManager) -> Result<(), Error> {
        let all: Vec<String> = redis::cmd("SMEMBERS")
            .arg(REGISTRY)
            .query_async(conn)
            .await?;
        let now = Instant::now();
        for c in &all {
            if self.lanes.contains_key(c) || CampaignId::parse(c).is_err() {
                continue;
            }
            if self.unready.get(c).is_some_and(|at| *at > now) {
                continue;
            }
            if !topic_exists(&self.producer, &topic(c)).await {
                if !self.unready.contains_key(c) {
                    tracing::error!(campaign = %c, topic = %topic(c),
                        "campaign has no Kafka topic; its issuances wait in the outbox (run `campaign create`)");
                }
                self.unready
                    .insert(c.clone(), now + Duration::from_secs(10));
                continue;
            }
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(outbox_key(c))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
            self.unready.remove(c);
            self.lanes.insert(
                c.clone(),
                Lane {
                    reread: true,
                    failures: 0,
                    resume_at: now,
                },
            );
        }
        for c in &all {
            if CampaignId::parse(c).is_ok() {
                let len: u64 = redis::cmd("XLEN")
                    .arg(outbox_key(c))
                    .query_async(conn)
                    .await?;
                self.metrics
                    .relay_backlog
                    .with_label_values(&[c])
                    .set(len as i64);
            }
        }
        self.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Takes over entries another (dead) relay read but never acknowledged.
    async fn claim_orphans(
        &mut self,
        conn: &mut ConnectionManager,
        ready: &[(String, bool)],
    ) -> Result<Vec<StreamBatch>, Error> {
        let mut out = Vec::new();
        for (campaign, _) in ready {
            let key = outbox_key(campaign);
            let mut cursor = "0-0".to_owned();
            loop {
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&self.config.consumer)
                    .arg(self.config.claim_idle.as_millis() as u64)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(self.config.batch)
                    .query_async(conn)
                    .await?;
                if !reply.claimed.is_empty() {
                    tracing::info!(stream = %key, n = reply.claimed.len(), "claimed orphaned entries");
                    self.metrics
                        .relay_claimed
                        .inc_by(reply.claimed.len() as u64);
                    out.push((key.clone(), reply.claimed));
                }
                if reply.next_stream_id == "0-0" {
                    break;
                }
                cursor = reply.next_stream_id;
            }
        }
        Ok(out)
    }

    /// Starts delivering `batches` in the background, keeping at most `MAX_IN_FLIGHT`
    /// deliveries under way: reading the next batch overlaps waiting for Kafka's acks.
    async fn deliver(&mut self, batches: Vec<StreamBatch>) -> Result<(), Error> {
        if batches.iter().all(|(_, ids)| ids.is_empty()) {
            return Ok(());
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.reap_oldest().await?;
        }
        let task = tokio::spawn(deliver(
            self.producer.clone(),
            self.ack_conn.clone(),
            self.metrics.clone(),
            batches,
        ));
        self.in_flight.push_back(task);
        Ok(())
    }

    /// Waits for the oldest delivery and books its outcome.
    async fn reap_oldest(&mut self) -> Result<(), Error> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcomes = task
            .await
            .map_err(|e| Error::Kafka(format!("delivery task: {e}")))??;
        for (campaign, failed) in outcomes {
            let Some(lane) = self.lanes.get_mut(&campaign) else {
                continue;
            };
            if failed > 0 {
                lane.failures += 1;
                lane.reread = true;
                lane.resume_at =
                    Instant::now() + Duration::from_millis(250 << lane.failures.min(7));
            } else {
                lane.failures = 0;
            }
        }
        Ok(())
    }

    /// Books every finished delivery; with `all`, waits for the unfinished ones too.
    async fn reap(&mut self, all: bool) -> Result<(), Error> {
        while self
            .in_flight
            .front()
            .is_some_and(|t| all || t.is_finished())
        {
            self.reap_oldest().await?;
        }
        Ok(())
    }
}

/// Produces every entry of every stream at once, then removes from each stream what Kafka
/// acknowledged. Returns, per campaign, how many entries Kafka did not acknowledge.
async fn deliver(
    producer: FutureProducer,
    mut conn: ConnectionManager,
    metrics: PipelineMetrics,
    batches: Vec<StreamBatch>,
) -> Result<Vec<Unacked>, Error> {
    let mut sends: Vec<(usize, String, Issuance)> = Vec::new();
    let mut done: Vec<Vec<String>> = vec![Vec::new(); batches.len()];
    for (i, (key, entries)) in batches.iter().enumerate() {
        for e in entries {
            let fields = e.map.iter().filter_map(|(k, v)| match v {
                redis::Value::BulkString(b) => std::str::from_utf8(b).ok().map(|s| (k.as_str(), s)),
                _ => None,
            });
            match Issuance::from_stream_fields(fields) {
                Ok(issuance) => sends.push((i, e.id.clone(), issuance)),
                Err(err) => {
                    // Only something other than the issue script could write this; keep it
                    // out of Kafka and out of the way.
                    tracing::error!(stream = %key, id = %e.id, error = %err, "dropping malformed outbox entry");
                    done[i].push(e.id.clone());
                }
            }
        }
    }
    let results = join_all(sends.iter().map(|(_, _, issuance)| {
        let payload = issuance.to_json();
        let topic = topic(&issuance.campaign);
        let producer = &producer;
        async move {
            let record = FutureRecord::to(&topic)
                .key(&issuance.user_id)
                .payload(&payload);
            producer.send(record, Duration::from_secs(30)).await
        }
    }))
    .await;
    let mut failed = vec![0u64; batches.len()];
    for ((i, id, _), r) in sends.into_iter().zip(results) {
        match r {
            Ok(_) => done[i].push(id),
            Err((e, _)) => {
                if failed[i] == 0 {
                    tracing::warn!(error = %e, stream = %batches[i].0, "produce failed; entries stay pending");
                }
                failed[i] += 1;
            }
        }
    }
    let mut outcomes = Vec::with_capacity(batches.len());
    for (i, (key, _)) in batches.iter().enumerate() {
        let campaign = campaign_of_outbox_key(key);
        if !done[i].is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("XACK").arg(key).arg(GROUP).arg(&done[i]).ignore();
            pipe.cmd("XDEL").arg(key).arg(&done[i]).ignore();
            pipe.query_async::<()>(&mut conn).await?;
        }
        metrics
            .relay_produced
            .with_label_values(&[campaign])
            .inc_by(done[i].len() as u64);
        metrics.relay_produce_errors.inc_by(failed[i]);
        outcomes.push((campaign.to_owned(), failed[i]));
    }
    Ok(outcomes)
}

/// Whether Kafka knows `name` (metadata calls block, so they run on the blocking pool).
async fn topic_exists(producer: &FutureProducer, name: &str) -> bool {
    let (producer, name) = (producer.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&name), Duration::from_secs(5))
            .is_ok_and(|md| {
                md.topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .unwrap_or(false)
}

fn outbox_key(campaign: &str) -> String {
    // Campaign ids in the registry were validated when they were provisioned.
    CampaignKeys::new(&CampaignId::parse(campaign).expect("registered ids are valid")).outbox
}

fn campaign_of_outbox_key(key: &str) -> &str {
    key.strip_prefix("{stampede:")
        .and_then(|k| k.strip_suffix("}:outbox"))
        .unwrap_or("")
}
