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
//! On a Redis Cluster each campaign's writes land on the primary owning its slot: a round
//! writes one fence key per campaign waiting (in the campaign's slot) and runs its WAIT on
//! that primary, the campaigns' rounds side by side.

use std::time::Duration;

use std::collections::HashMap;

use futures::future::join_all;
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Patience, RedisConn, RedisTarget};
use crate::Error;
use crate::ids::CampaignId;
use crate::keys::CampaignKeys;

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

/// Serves rounds until every handle is dropped.
async fn run(target: RedisTarget, config: FenceConfig, mut rx: mpsc::Receiver<Waiter>) {
    let mut conn: Option<RedisConn> = None;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let c = match connected(&target, &mut conn, config).await {
            Ok(c) => c,
            Err(e) => {
                for (_, waiter) in batch.drain(..) {
                    let _ = waiter.send(Err(e.clone()));
                }
                continue;
            }
        };
        if !target.is_cluster() {
            let result = round(c.clone(), FENCE_KEY.to_owned(), config).await;
            for (_, waiter) in batch.drain(..) {
                let _ = waiter.send(result.clone());
            }
            continue;
        }
        let mut by_campaign: HashMap<CampaignId, Vec<_>> = HashMap::new();
        for (campaign, waiter) in batch.drain(..) {
            by_campaign.entry(campaign).or_default().push(waiter);
        }
        let rounds = by_campaign.into_iter().map(|(campaign, waiters)| {
            let key = CampaignKeys::new(&campaign).fence;
            let c = c.clone();
            async move { (round(c, key, config).await, waiters) }
        });
        for (result, waiters) in join_all(rounds).await {
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
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
            .connect(patience)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        *conn = Some(c);
    }
    Ok(conn.as_ref().expect("connected just now"))
}

/// One fence write to `key` and one WAIT, on the primary holding `key`.
async fn round(mut c: RedisConn, key: String, config: FenceConfig) -> Result<(), String> {
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
            "{n} of {} replicas acknowledged within {timeout_ms} ms",
            config.replicas
        ))
    }
}
