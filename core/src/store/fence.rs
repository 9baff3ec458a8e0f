//! Replica acknowledgement for issuances (`--durability replica`): an issuance is answered
//! only once a Redis replica holds it, so a failover to that replica loses nothing that was
//! acknowledged.
//!
//! WAIT blocks the connection it runs on and covers only that connection's writes, so the
//! fence has a connection of its own: one fence write (INCR) followed by one WAIT covers
//! every write the primary made before it, whichever connection made it (the replication
//! stream is ordered). Waiters queue up while a WAIT is under way and the next round
//! covers them all, so the hot path's multiplexed connections never block.
//!
//! On a Redis Cluster each campaign's writes land on the primary owning its slot: each
//! campaign gets a lane of its own (a task and a connection that never retries a round on
//! another node), which writes a fence key in the campaign's slot and runs its WAIT on that
//! primary; a slow or failing shard holds up no other campaign's answers.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Patience, RedisConn, RedisTarget};
use crate::Error;
use crate::ids::CampaignId;
use crate::keys::CampaignKeys;

/// What a round that Redis answered, with too few replicas, says.
const TOO_FEW: &str = "replicas acknowledged within";

/// The key every fence round increments on a single Redis.
const FENCE_KEY: &str = "stampede:fence";

/// A waiter: the campaign whose issuance it acknowledges, and where to send the verdict.
type Waiter = (CampaignId, oneshot::Sender<Result<(), String>>);

/// What the acknowledgement of an issuance waits for.
#[derive(Debug, Clone, Copy)]
pub struct FenceConfig {
    /// Replicas that must hold the write.
    pub replicas: u32,
    /// How long to wait for them before the request fails with 503 `unavailable`.
    pub timeout: Duration,
}

/// A handle to the fence task; cheap to clone.
#[derive(Clone)]
pub struct ReplicaFence {
    waiters: mpsc::Sender<Waiter>,
}

impl ReplicaFence {
    /// Starts the fence task on its own connection to `url` (connected lazily).
    pub fn start(url: &str, config: FenceConfig) -> Result<Self, Error> {
        let target = RedisTarget::parse(url)?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(target, config, rx));
        Ok(Self { waiters: tx })
    }

    /// Returns once the configured replicas hold every write made to `campaign` before
    /// this call.
    pub async fn wait(&self, campaign: &CampaignId) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::NotReplicated("the replica fence stopped".into());
        self.waiters
            .send((campaign.clone(), tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(Error::NotReplicated)
    }
}

/// Where a waiter goes.
type Verdict = oneshot::Sender<Result<(), String>>;

/// Hands waiters to their lane until every handle is dropped: one lane (the fence key) on
/// a single Redis, one per campaign (its fence key) on a cluster.
async fn run(target: RedisTarget, config: FenceConfig, mut rx: mpsc::Receiver<Waiter>) {
    let mut lanes: HashMap<String, mpsc::Sender<Verdict>> = HashMap::new();
    while let Some((campaign, waiter)) = rx.recv().await {
        let key = if target.is_cluster() {
            CampaignKeys::new(&campaign).fence
        } else {
            FENCE_KEY.to_owned()
        };
        let lane = lanes.entry(key.clone()).or_insert_with(|| {
            let (tx, lane_rx) = mpsc::channel(4096);
            tokio::spawn(lane(target.clone(), config, key, lane_rx));
            tx
        });
        // A lane only ends with its sender; this one is alive.
        let _ = lane.send(waiter).await;
    }
}

/// Serves one fence key's rounds: waiters queue while a round is under way and the next
/// round covers them all.
async fn lane(
    target: RedisTarget,
    config: FenceConfig,
    key: String,
    mut rx: mpsc::Receiver<Verdict>,
) {
    let mut conn: Option<RedisConn> = None;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let result = match connected(&target, &mut conn, config).await {
            Ok(c) => round(c.clone(), key.clone(), config).await,
            Err(e) => Err(e),
        };
        if result.as_ref().is_err_and(|e| !e.contains(TOO_FEW)) {
            // The connection failed (and a cluster's pinned one does not follow a
            // failover): the next round connects afresh and learns the slot map as it is.
            conn = None;
        }
        for waiter in batch.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// The fence's own connection, made on first use.
async fn connected<'a>(
    target: &RedisTarget,
    conn: &'a mut Option<RedisConn>,
    config: FenceConfig,
) -> Result<&'a RedisConn, String> {
    if conn.is_none() {
        // WAIT answers after up to `timeout`: the reply may take that long.
        let patience = Patience::both(config.timeout + Duration::from_secs(1));
        let c = target
            .connect_pinned(patience)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        *conn = Some(c);
    }
    Ok(conn.as_ref().expect("connected just now"))
}

/// One fence write to `key` and one WAIT, on the primary holding `key`, bounded by the
/// fence's timeout (and a second for the round trip): a primary that dies mid-round fails
/// the round, whose waiters answer 503.
async fn round(c: RedisConn, key: String, config: FenceConfig) -> Result<(), String> {
    let limit = config.timeout + Duration::from_secs(1);
    tokio::time::timeout(limit, round_unbounded(c, key, config))
        .await
        .unwrap_or_else(|_| Err(format!("no WAIT answer within {limit:?}")))
}

async fn round_unbounded(mut c: RedisConn, key: String, config: FenceConfig) -> Result<(), String> {
    let timeout_ms = config.timeout.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("INCR")
        .arg(&key)
        .cmd("WAIT")
        .arg(config.replicas)
        .arg(timeout_ms);
    let replies = c
        .pipeline_on_primary_of(&key, &pipe)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let n = match replies.last() {
        Some(Value::Int(n)) => *n,
        other => return Err(format!("redis: WAIT answered {other:?}")),
    };
    if n >= i64::from(config.replicas) {
        Ok(())
    } else {
        Err(format!(
            "{n} of {} {TOO_FEW} {timeout_ms} ms",
            config.replicas
        ))
    }
}
