//! Replica acknowledgement for issuances (`--durability replica`): an issuance is answered
//! only once a Redis replica holds it, so a failover to that replica loses nothing that was
//! acknowledged.
//!
//! WAIT blocks the connection it runs on and covers only that connection's writes, so the
//! fence has a connection of its own: one fence write (INCR) followed by one WAIT covers
//! every write the primary made before it, whichever connection made it (the replication
//! stream is ordered). Waiters queue up while a WAIT is under way and the next round
//! covers them all, so the hot path's multiplexed connections never block.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// The key every fence round increments.
const FENCE_KEY: &str = "stampede:fence";

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
    waiters: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
}

impl ReplicaFence {
    /// Starts the fence task on its own connection to `url` (connected lazily).
    pub fn start(url: &str, config: FenceConfig) -> Result<Self, Error> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(client, config, rx));
        Ok(Self { waiters: tx })
    }

    /// Returns once the configured replicas hold every write made before this call.
    pub async fn wait(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::NotReplicated("the replica fence stopped".into());
        self.waiters.send(tx).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(Error::NotReplicated)
    }
}

/// Serves rounds until every handle is dropped.
async fn run(
    client: redis::Client,
    config: FenceConfig,
    mut rx: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
) {
    let mut conn: Option<ConnectionManager> = None;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let result = round(&client, &mut conn, config).await;
        for waiter in batch.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// One fence write and one WAIT.
async fn round(
    client: &redis::Client,
    conn: &mut Option<ConnectionManager>,
    config: FenceConfig,
) -> Result<(), String> {
    let c = match conn {
        Some(c) => c,
        None => {
            // WAIT answers after up to `timeout`: the reply may take that long.
            let patience = config.timeout + Duration::from_secs(1);
            let mgr = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(patience))
                .set_response_timeout(Some(patience));
            let c = ConnectionManager::new_with_config(client.clone(), mgr)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            conn.insert(c)
        }
    };
    let timeout_ms = config.timeout.as_millis() as u64;
    let acked: redis::RedisResult<(i64, u32)> = redis::pipe()
        .cmd("INCR")
        .arg(FENCE_KEY)
        .cmd("WAIT")
        .arg(config.replicas)
        .arg(timeout_ms)
        .query_async(c)
        .await;
    match acked {
        Ok((_, n)) if n >= config.replicas => Ok(()),
        Ok((_, n)) => Err(format!(
            "{n} of {} replicas acknowledged within {timeout_ms} ms",
            config.replicas
        )),
        Err(e) => Err(format!("redis: {e}")),
    }
}
