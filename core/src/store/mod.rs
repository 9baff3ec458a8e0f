//! Redis access: a small fixed set of multiplexed connections and the campaign scripts
//! (`lua/`), split by concern: the issue hot path ([`issue`], its group commit `batch`),
//! provisioning and admin ([`admin`]), whole-campaign scans for the audit ([`scan`]), and
//! the relay's reads of the outbox streams ([`outbox`], on connections of its own), the
//! replica fence that `--durability replica` waits on ([`fence`]), and the epoch check that
//! notices a Redis restart or failover ([`epoch`]), and the waiting room's line
//! (`waiting_room`).

mod admin;
mod batch;
pub mod conn;
pub mod epoch;
pub mod fence;
mod issue;
pub mod outbox;
pub mod outbox_format;
mod read_reply;
mod repair;
mod scan;
pub mod shard_admin;
pub mod shard_audit;
pub mod shards;
mod waiting_room;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::Error;
use crate::metrics::RedisMetrics;
use conn::{Patience, RedisConn, RedisTarget};

use crate::batches::Batches;
pub use issue::HandedOut;
pub use waiting_room::{QueueAnswer, QueueStatus};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `redis://[user:password@]host:port[/db]`, or a cluster's seed nodes:
    /// `redis+cluster://[user:password@]host:port[,host:port…]` ([`conn`]).
    pub url: String,
    /// Multiplexed connections to spread calls over.
    pub connections: usize,
    /// Upper bound on any one call, connection set-up included.
    pub timeout: Duration,
}

/// How long a call past its bound is given still, for a reply its connection already holds.
/// A process that did not run for a while (a starved or CPU-throttled pod) wakes with its
/// timer and the reply's socket ready at once, and the timer must not win that race: with
/// the service stopped 400 ms while Redis answered a 250 ms call, it won 27 times in 30.
const LATE_REPLY_GRACE: Duration = Duration::from_millis(5);

/// `fut` bounded by `limit`, then by [`LATE_REPLY_GRACE`] more: a genuinely late reply
/// still fails, at `limit` + 5 ms.
async fn within<F: Future>(
    limit: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    match tokio::time::timeout(limit, fut.as_mut()).await {
        Ok(v) => Ok(v),
        Err(_) => tokio::time::timeout(LATE_REPLY_GRACE, fut).await,
    }
}

/// The store's connections: set-up within the call's bound; replies bounded a second past
/// it, a backstop only: [`within`] decides when a call is late. The client's own response
/// timer races a reply that arrived while the process was frozen just as a bare timer does
/// (at twice the bound, 10 of 30 calls frozen 450 ms still answered 503).
fn connection_patience(timeout: Duration) -> Patience {
    Patience {
        connect: timeout,
        response: timeout + Duration::from_secs(1),
    }
}

/// The campaign scripts, loaded once and invoked by SHA (EVALSHA, EVAL on NOSCRIPT).
struct Scripts {
    issue: Script,
    ensure: Script,
    admin: Script,
    snapshot: Script,
    lookup: Script,
    suspend: Script,
    bucket_take: Script,
    bucket_give: Script,
    queue: Script,
    queue_config: Script,
}

/// A handle to Redis; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conns: Arc<[RedisConn]>,
    cluster: bool,
    next: Arc<AtomicUsize>,
    scripts: Arc<Scripts>,
    timeout: Duration,
    metrics: RedisMetrics,
    routes: Arc<shards::Routes>,
    lanes: Arc<batch::Lanes>,
    /// When an issue script call that issues several coupons writes them as one outbox
    /// entry ([`Store::writing_outbox_batches`]).
    outbox_batches: Batches,
}

impl Store {
    /// Prepares connections without waiting for Redis: a service starts (and reports
    /// not-ready) while Redis is still away.
    pub fn connect_lazy(config: &StoreConfig, metrics: RedisMetrics) -> Result<Self, Error> {
        let target = RedisTarget::parse(&config.url)?;
        let conns = (0..config.connections.max(1))
            .map(|_| target.lazy(connection_patience(config.timeout)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conns: conns.into(),
            cluster: target.is_cluster(),
            next: Arc::new(AtomicUsize::new(0)),
            scripts: Arc::new(Scripts {
                issue: Script::new(include_str!("lua/issue.lua")),
                ensure: Script::new(include_str!("lua/ensure.lua")),
                admin: Script::new(include_str!("lua/admin.lua")),
                snapshot: Script::new(include_str!("lua/snapshot.lua")),
                lookup: Script::new(include_str!("lua/lookup.lua")),
                suspend: Script::new(include_str!("lua/suspend.lua")),
                bucket_take: Script::new(include_str!("lua/bucket_take.lua")),
                bucket_give: Script::new(include_str!("lua/bucket_give.lua")),
                queue: Script::new(include_str!("lua/queue.lua")),
                queue_config: Script::new(include_str!("lua/queue_config.lua")),
            }),
            routes: Arc::default(),
            lanes: Arc::default(),
            timeout: config.timeout,
            metrics,
            outbox_batches: Batches::Auto,
        })
    }

    /// When an issue script call that issues several coupons writes them as one batch outbox
    /// entry (`serve --outbox-batches`): one XADD, and one entry for a relay to read,
    /// acknowledge and delete, per call. `Auto` (the default) once every live relay of the
    /// campaign reads them ([`outbox_format`]).
    pub fn writing_outbox_batches(mut self, mode: Batches) -> Self {
        self.outbox_batches = mode;
        self
    }

    /// Connects and checks Redis answers, for one-shot commands that need it now.
    pub async fn connect(config: &StoreConfig, metrics: RedisMetrics) -> Result<Self, Error> {
        let store = Self::connect_lazy(config, metrics)?;
        store.ping().await?;
        Ok(store)
    }

    /// Whether this is a Redis Cluster (commands may not span campaigns' slots).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn conn(&self) -> RedisConn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// Runs one Redis call under the timeout, recording its latency and failures.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Error>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match within(self.timeout, f(self.conn())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(Error::RedisTimeout(self.timeout)),
            Ok(Err(e)) => Err(Error::Redis(e)),
            Err(_) => Err(Error::RedisTimeout(self.timeout)),
        };
        self.metrics
            .observe(op, started.elapsed(), result.as_ref().err());
        result
    }

    async fn invoke<T: FromRedisValue + Send>(
        &self,
        op: &'static str,
        inv: ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        self.call(op, |mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.call("ping", |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
    }
}
