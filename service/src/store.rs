//! Redis access: a small fixed set of multiplexed connections and the campaign scripts.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::Error;
use crate::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome, Window};
use crate::coupon::{Decision, HolderRecord};
use crate::ids::{CampaignId, UserId};
use crate::issuance::Issuance;
use crate::keys::{CampaignKeys, REGISTRY};
use crate::metrics::RedisMetrics;

/// A fresh unguessable coupon code: 64 bits from SipHash under this thread's random
/// keys (`RandomState::new` varies them per call), as 16 hex digits.
fn coupon_code() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016X}", RandomState::new().hash_one(n))
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Multiplexed connections to spread calls over.
    pub connections: usize,
    /// Upper bound on any one call, connection set-up included.
    pub timeout: Duration,
}

/// The campaign scripts, loaded once and invoked by SHA (EVALSHA, EVAL on NOSCRIPT).
struct Scripts {
    issue: Script,
    ensure: Script,
    admin: Script,
    snapshot: Script,
    lookup: Script,
}

/// A handle to Redis; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
    scripts: Arc<Scripts>,
    timeout: Duration,
    metrics: RedisMetrics,
}

impl Store {
    /// Prepares connections without waiting for Redis: a service starts (and reports
    /// not-ready) while Redis is still away.
    pub fn connect_lazy(config: &StoreConfig, metrics: RedisMetrics) -> Result<Self, Error> {
        let client = redis::Client::open(config.url.as_str())?;
        let mgr_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conns = (0..config.connections.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), mgr_config.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conns: conns.into(),
            next: Arc::new(AtomicUsize::new(0)),
            scripts: Arc::new(Scripts {
                issue: Script::new(include_str!("lua/issue.lua")),
                ensure: Script::new(include_str!("lua/ensure.lua")),
                admin: Script::new(include_str!("lua/admin.lua")),
                snapshot: Script::new(include_str!("lua/snapshot.lua")),
                lookup: Script::new(include_str!("lua/lookup.lua")),
            }),
            timeout: config.timeout,
            metrics,
        })
    }

    /// Connects and checks Redis answers, for one-shot commands that need it now.
    pub async fn connect(config: &StoreConfig, metrics: RedisMetrics) -> Result<Self, Error> {
        let store = Self::connect_lazy(config, metrics)?;
        store.ping().await?;
        Ok(store)
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// Runs one Redis call under the timeout, recording its latency and failures.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, f(self.conn())).await {
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

    /// Decides one issuance (the hot path).
    pub async fn issue(&self, campaign: &CampaignId, user: &UserId) -> Result<Decision, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.issue.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.holders)
            .key(&k.outbox)
            .arg(user.as_str())
            .arg(campaign.as_str())
            .arg(coupon_code());
        let reply: Vec<String> = self.invoke("issue", inv).await?;
        Decision::from_reply(&reply)
    }

    /// Finds the coupon `user` holds; `Ok(None)` when the user has none.
    pub async fn lookup(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<Option<HolderRecord>, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.lookup.prepare_invoke();
        inv.key(&k.meta).key(&k.holders).arg(user.as_str());
        let reply: Vec<String> = self.invoke("lookup", inv).await?;
        match reply.first().map(String::as_str) {
            Some("UNKNOWN") => Err(Error::CampaignNotFound(campaign.to_string())),
            Some("NONE") => Ok(None),
            Some("HELD") => HolderRecord::parse(reply.get(1).map_or("", String::as_str)).map(Some),
            _ => Err(Error::Protocol(format!("{reply:?}"))),
        }
    }

    /// Reads a consistent view of a campaign; `Ok(None)` when it does not exist.
    pub async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<CampaignSnapshot>, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.snapshot.prepare_invoke();
        inv.key(&k.meta).key(&k.outbox);
        let r: Vec<i64> = self.invoke("snapshot", inv).await?;
        if r.is_empty() {
            return Ok(None);
        }
        let [total, issued, opens, closes, paused, closed, now, outbox] = r[..] else {
            return Err(Error::Protocol(format!("snapshot {r:?}")));
        };
        Ok(Some(CampaignSnapshot {
            total: total.max(0) as u64,
            issued: issued.max(0) as u64,
            window: Window::from_stored(opens, closes),
            paused: paused == 1,
            closed: closed == 1,
            now_ms: now,
            outbox_len: outbox.max(0) as u64,
        }))
    }

    /// Creates a campaign, or brings an existing one up to `stock` (restocking by the
    /// difference) and to `window` when given. Never resets holders or the issued count.
    pub async fn ensure_campaign(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
    ) -> Result<ProvisionOutcome, Error> {
        if stock == 0 {
            return Err(Error::InvalidInput("stock must be at least 1".into()));
        }
        if let Some(w) = &window {
            w.validate()?;
        }
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.ensure.prepare_invoke();
        inv.key(&k.meta)
            .arg(stock)
            .arg(if window.is_some() { "1" } else { "0" })
            .arg(window.and_then(|w| w.opens_ms).unwrap_or(0))
            .arg(window.and_then(|w| w.closes_ms).unwrap_or(0));
        let (outcome, before, after, window_changed): (String, u64, u64, u8) =
            self.invoke("ensure", inv).await?;
        // The registry lives outside the campaign's hash slot, so it cannot join the script.
        self.call("register", |mut c| async move {
            redis::cmd("SADD")
                .arg(REGISTRY)
                .arg(campaign.as_str())
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        Ok(match outcome.as_str() {
            "CREATED" => ProvisionOutcome::Created { total: after },
            "RESTOCKED" => ProvisionOutcome::Restocked {
                before,
                after,
                window_changed: window_changed == 1,
            },
            "UPDATED" => ProvisionOutcome::WindowUpdated { total: after },
            "UNCHANGED" => ProvisionOutcome::Unchanged { total: after },
            "STOCK_DECREASE" => {
                return Err(Error::StockDecrease {
                    campaign: campaign.to_string(),
                    current: before,
                    requested: stock,
                });
            }
            other => return Err(Error::Protocol(format!("ensure {other}"))),
        })
    }

    /// Applies one admin change; returns the stock total afterwards.
    pub async fn admin(&self, campaign: &CampaignId, action: AdminAction) -> Result<u64, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.admin.prepare_invoke();
        inv.key(&k.meta);
        match action {
            AdminAction::Restock(0) => {
                return Err(Error::InvalidInput("--add must be at least 1".into()));
            }
            AdminAction::Restock(n) => inv.arg("restock").arg(n),
            AdminAction::Pause => inv.arg("pause"),
            AdminAction::Resume => inv.arg("resume"),
            AdminAction::Close => inv.arg("close"),
            AdminAction::Reopen => inv.arg("reopen"),
        };
        let reply: Vec<String> = self.invoke("admin", inv).await?;
        match reply.as_slice() {
            [s, total] if s == "OK" => total
                .parse()
                .map_err(|_| Error::Protocol(format!("admin {reply:?}"))),
            [s] if s == "UNKNOWN" => Err(Error::CampaignNotFound(campaign.to_string())),
            _ => Err(Error::Protocol(format!("admin {reply:?}"))),
        }
    }

    /// Visits every holder (user id, raw record), read in slices so Redis is never
    /// blocked long.
    async fn scan_holders(
        &self,
        campaign: &CampaignId,
        mut visit: impl FnMut(String, String),
    ) -> Result<(), Error> {
        let holders = CampaignKeys::new(campaign).holders;
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = self
                .call("hscan", |mut c| {
                    let mut cmd = redis::cmd("HSCAN");
                    cmd.arg(&holders).arg(cursor).arg("COUNT").arg(5_000);
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
            for (user, rec) in page {
                visit(user, rec);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Hashes of every holder's user id (the sold-out short-circuit's membership test).
    pub async fn holder_hashes(
        &self,
        campaign: &CampaignId,
        hasher: &RandomState,
    ) -> Result<HashSet<u64>, Error> {
        let mut set = HashSet::new();
        self.scan_holders(campaign, |user, _| {
            set.insert(hasher.hash_one(user.as_str()));
        })
        .await?;
        Ok(set)
    }

    /// Every holder with its record (for the audit).
    pub async fn holders(
        &self,
        campaign: &CampaignId,
    ) -> Result<HashMap<String, HolderRecord>, Error> {
        let mut map = HashMap::new();
        let mut bad = None;
        self.scan_holders(campaign, |user, rec| match HolderRecord::parse(&rec) {
            Ok(r) => {
                map.insert(user, r);
            }
            Err(e) => bad = Some(e),
        })
        .await?;
        bad.map_or(Ok(map), Err)
    }

    /// The users of every entry still in the outbox stream.
    pub async fn outbox_users(&self, campaign: &CampaignId) -> Result<HashSet<String>, Error> {
        let key = CampaignKeys::new(campaign).outbox;
        let mut users = HashSet::new();
        let mut start = "-".to_owned();
        loop {
            let page: StreamRangeReply = self
                .call("xrange", |mut c| {
                    let mut cmd = redis::cmd("XRANGE");
                    cmd.arg(&key).arg(&start).arg("+").arg("COUNT").arg(10_000);
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
            let Some(last) = page.ids.last().map(|e| e.id.clone()) else {
                return Ok(users);
            };
            for e in &page.ids {
                if let Some(u) = e.get::<String>("user") {
                    users.insert(u);
                }
            }
            start = format!("({last}");
        }
    }

    /// Appends issuances to the outbox again (audit repair); the sink skips duplicates.
    pub async fn requeue(&self, campaign: &CampaignId, items: &[Issuance]) -> Result<(), Error> {
        let key = CampaignKeys::new(campaign).outbox;
        for chunk in items.chunks(1_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("XADD").arg(&key).arg("*");
                for (k, v) in i.stream_fields() {
                    pipe.arg(k).arg(v);
                }
                pipe.ignore();
            }
            self.call("requeue", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }

    /// Removes every key of `campaign` and its registry entry (`deletionPolicy: Delete`).
    /// Returns how many keys existed.
    pub async fn forget(&self, campaign: &CampaignId) -> Result<u64, Error> {
        let k = CampaignKeys::new(campaign);
        let removed: (u64, u64) = self
            .call("forget", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(&k.meta)
                    .arg(&k.holders)
                    .arg(&k.outbox)
                    .cmd("SREM")
                    .arg(REGISTRY)
                    .arg(campaign.as_str())
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(removed.0)
    }

    /// Every campaign id ever provisioned.
    pub async fn registry(&self) -> Result<Vec<String>, Error> {
        self.call("registry", |mut c| async move {
            redis::cmd("SMEMBERS")
                .arg(REGISTRY)
                .query_async(&mut c)
                .await
        })
        .await
    }
}
