//! The `serve` role: HTTP API plus the sold-out refresher, with graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthConfig;
use crate::epoch::AckedSeqs;
pub use crate::http::limits::{LimitConfig, Rate};
pub use crate::http::scope::CampaignScope;
use crate::http::{App, InFlight, Limits, ops_router, router};
use crate::metrics::Metrics;
use crate::relay::RelayConfig;
use crate::soldout::SoldOutCache;
use stampede_core::Error;
use stampede_core::batches::Batches;
use stampede_core::store::fence::{FenceConfig, ReplicaFence};
use stampede_core::store::{Store, StoreConfig};
use stampede_core::waiting_room::token::TokenKey;

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Redis.
    pub store: StoreConfig,
    /// Requests allowed in flight before 503 `overloaded`.
    pub max_in_flight: usize,
    /// How often a sold-out campaign's stock is re-read (restock detection).
    pub soldout_recheck: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive before 408 `request_timeout`.
    pub body_timeout: Duration,
    /// How long a request may take, headers to answer, before 503 `timeout`.
    pub request_timeout: Duration,
    /// After the shutdown signal, how long to go on serving while /readyz answers 503
    /// `draining`, so that load balancers stop routing here before the listener closes.
    pub drain_delay: Duration,
    /// Run the outbox relay in this process.
    pub relay: Option<RelayConfig>,
    /// When the coupons of an issue script call that issues several go out as one outbox entry.
    pub outbox_batches: Batches,
    /// Acknowledge new coupons only once Redis replicas hold them (`--durability replica`).
    pub durability: Option<FenceConfig>,
    /// How often to check whether Redis restarted or failed over (and may have lost
    /// acknowledged writes).
    pub epoch_check: Duration,
    /// Per-user and per-client budgets.
    pub limits: LimitConfig,
    /// Who is asking: bearer JWTs, or (`--auth none`, rehearsal only) the body's userId.
    pub auth: AuthConfig,
    /// The campaigns served (`--campaigns`) and the ids behind their names.
    pub campaigns: CampaignScope,
    /// Signs and verifies waiting-room tokens (`--waiting-room-key-file`); without it a
    /// campaign with a waiting room answers 503 `waiting_room_unavailable`.
    pub waiting_room_key: Option<TokenKey>,
}

/// `--soldout-recheck-ms` unless set.
pub const DEFAULT_SOLDOUT_RECHECK_MS: u64 = 250;
/// `--max-body-bytes` unless set.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4096;
/// `--body-timeout-ms` unless set.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 5_000;
/// `--request-timeout-ms` unless set.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// `--epoch-check-ms` unless set.
pub const DEFAULT_EPOCH_CHECK_MS: u64 = 1_000;
/// `--user-rate` / `--user-burst` unless set: far above what an honest client sends (one
/// issue, a retry or two, a lookup), far below a retry storm.
pub const DEFAULT_USER_RATE: u32 = 5;
/// See [`DEFAULT_USER_RATE`].
pub const DEFAULT_USER_BURST: u32 = 10;

impl ServeConfig {
    /// `serve`'s defaults on `store`, with the relay off and `local` durability: what an
    /// embedding caller (a test) starts from and changes field by field.
    pub fn new(store: StoreConfig) -> Self {
        Self {
            store,
            max_in_flight: default_max_in_flight(),
            soldout_recheck: Duration::from_millis(DEFAULT_SOLDOUT_RECHECK_MS),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            drain_delay: Duration::ZERO,
            relay: None,
            outbox_batches: Batches::Auto,
            durability: None,
            epoch_check: Duration::from_millis(DEFAULT_EPOCH_CHECK_MS),
            limits: LimitConfig {
                per_user: Rate::new(DEFAULT_USER_RATE, DEFAULT_USER_BURST),
                per_client: None,
                client_ip_header: None,
            },
            // serve's own default is jwt, which has no default keys: an embedder sets it.
            auth: AuthConfig::None,
            campaigns: CampaignScope::every(),
            waiting_room_key: None,
        }
    }
}

/// A sensible in-flight cap for this machine: 1 024 per core. Group commit decides up to
/// 256 waiting issuances in one script call, so a full queue is a few batches, tens of
/// milliseconds of work, and report 000's 1 000 users at once fit on two cores; at 256 per
/// core one spike round in eight shed 10–144 of them (docs/benchmarks.md). Small enough
/// still that nobody queues for seconds, as in that report.
pub fn default_max_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 1024
}

/// Where `serve` listens.
pub struct Listeners {
    /// The public API (`--listen`).
    pub api: TcpListener,
    /// /metrics, /healthz and /readyz (`--metrics-listen`), kept off the public port.
    pub ops: TcpListener,
}

/// Serves the API and the operations endpoints until `signal` fires, then for
/// `config.drain_delay` answers /readyz with 503 and goes on serving, then stops accepting
/// and finishes in-flight requests.
pub async fn serve(
    listeners: Listeners,
    config: ServeConfig,
    signal: CancellationToken,
) -> Result<(), Error> {
    let Listeners { api: listener, ops } = listeners;
    let shutdown = after_draining(signal.clone(), config.drain_delay);
    let metrics = Metrics::new();
    let auth = config
        .auth
        .start(metrics.http.jwks_refreshes.clone(), &shutdown)
        .await?;
    let store = Store::connect_lazy(&config.store, metrics.redis.clone())?
        .writing_outbox_batches(config.outbox_batches);
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "redis is not reachable yet; serving 503 until it is");
    }
    let soldout = SoldOutCache::new(metrics.issuance.clone());
    let acked = AckedSeqs::default();
    let tasks = Background::start(&config, &store, &soldout, &acked, &metrics, &shutdown);
    let fence = (config.durability)
        .map(|f| ReplicaFence::start(&config.store.url, f))
        .transpose()?;
    let state = std::sync::Arc::new(App {
        store,
        fence,
        acked,
        soldout,
        metrics,
        in_flight: InFlight::new(config.max_in_flight),
        limits: Limits::new(&config.limits),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
        request_timeout: config.request_timeout,
        auth,
        campaigns: config.campaigns.clone(),
        waiting_room_key: config.waiting_room_key.clone(),
        draining: signal,
    });
    tracing::info!(
        addr = %listener.local_addr()?, metrics = %ops.local_addr()?,
        max_in_flight = config.max_in_flight, "serving"
    );
    let ops = tokio::spawn(
        axum::serve(ops.tap_io(no_delay), ops_router(state.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let sweeper = tokio::spawn(sweep_limits(state.clone(), shutdown.clone()));
    let api = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener.tap_io(no_delay), api)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = ops.await;
    let _ = sweeper.await;
    let background = tasks.join().await;
    tracing::info!("stopped");
    background
}

/// A token cancelled `delay` after `signal` (at once if the delay is zero; earlier if a
/// failure cancels it first): a replica that is going keeps answering while the load
/// balancers in front learn from /readyz, and from the endpoints it left, to stop sending
/// (Kubernetes tells them in parallel with the SIGTERM, and they take a moment); closing at
/// once would refuse the connections still on their way.
fn after_draining(signal: CancellationToken, delay: Duration) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signal.cancelled() => {}
        }
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "draining: unready, still serving"
            );
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        stop.cancel();
    });
    shutdown
}

/// Answers leave at once (`TCP_NODELAY`), as Redis commands do: with Nagle an answer
/// written while the last one is unacknowledged (a pipelining client) waits for that
/// acknowledgement. A socket that refuses the option is served as it is.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Forgets idle budget keys every few seconds, so a flood of new users or addresses
/// cannot grow memory without bound.
async fn sweep_limits(state: std::sync::Arc<App>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                state.limits.sweep();
                let (users, clients) = state.limits.tracked();
                let keys = &state.metrics.http.rate_limit_keys;
                keys.with_label_values(&["user"]).set(users as i64);
                keys.with_label_values(&["client"]).set(clients as i64);
            }
        }
    }
}

/// What `serve` runs beside the API: the sold-out refresher, the epoch watch and, unless
/// off, the outbox relay (and, without a waiting-room key, one check for rooms that need it).
struct Background {
    refresher: JoinHandle<()>,
    epoch_watch: JoinHandle<()>,
    relay: Option<JoinHandle<Result<(), Error>>>,
}

/// Watches the in-process relay: when it fails (a producer Kafka refuses to build, an
/// unusable Redis URL), `serve` stops too, rather than go on acknowledging coupons that
/// nothing delivers to Kafka, silent until the next restart.
fn stop_serving_when_relay_fails(
    relay: JoinHandle<Result<(), Error>>,
    shutdown: CancellationToken,
) -> JoinHandle<Result<(), Error>> {
    tokio::spawn(async move {
        let outcome = match relay.await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::Kafka(format!("the relay task failed: {e}"))),
        };
        if let Err(e) = &outcome {
            tracing::error!(
                error = %e,
                "the outbox relay failed: serve stops, so that nothing is issued that no \
                 relay would deliver"
            );
            shutdown.cancel();
        }
        outcome
    })
}

impl Background {
    fn start(
        config: &ServeConfig,
        store: &Store,
        soldout: &SoldOutCache,
        acked: &AckedSeqs,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) -> Self {
        let refresher = tokio::spawn(soldout.clone().refresh(
            store.clone(),
            config.soldout_recheck,
            shutdown.clone(),
        ));
        let epoch_watch = tokio::spawn(crate::epoch::watch(
            store.clone(),
            acked.clone(),
            metrics.issuance.clone(),
            config.epoch_check,
            shutdown.clone(),
        ));
        if config.waiting_room_key.is_none() {
            let (store, scope) = (store.clone(), config.campaigns.clone());
            tokio::spawn(crate::http::warn_rooms_without_key(store, scope));
        }
        let relay = config.relay.clone().map(|r| {
            let relay =
                crate::relay::spawn_on_own_thread(r, metrics.pipeline.clone(), shutdown.clone());
            stop_serving_when_relay_fails(relay, shutdown.clone())
        });
        Self {
            refresher,
            epoch_watch,
            relay,
        }
    }

    /// Waits for every task after shutdown; the relay's failure, if it failed.
    async fn join(self) -> Result<(), Error> {
        let _ = self.refresher.await;
        let _ = self.epoch_watch.await;
        match self.relay {
            Some(relay) => relay
                .await
                .unwrap_or_else(|e| Err(Error::Kafka(format!("the relay task failed: {e}")))),
            None => Ok(()),
        }
    }
}

/// Serves only /metrics, /healthz and /readyz (for the relay and writer roles) until
/// `shutdown`; the role is ready once it is up.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    stampede_core::endpoint::serve_metrics_text(listener, move || metrics.render(), shutdown).await
}
