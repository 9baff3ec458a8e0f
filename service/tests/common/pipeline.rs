//! Harness for the durable half: the stack's Kafka and PostgreSQL (fresh topics and a fresh
//! database per test), private brokers and databases for fault tests, and the service
//! binary as a child process that can be killed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;

pub use super::kit::{free_port, repo, unique};

/// The stack's Kafka (`scripts/stack up`).
pub fn stack_kafka() -> String {
    std::env::var("STAMPEDE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The stack's PostgreSQL admin URL.
pub fn stack_database() -> String {
    std::env::var("STAMPEDE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stampede:stampede@127.0.0.1:5432/stampede".into())
}

/// Replaces the database name at the end of `url`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

/// Creates a fresh database on the server behind `admin_url` and returns its URL.
pub async fn fresh_database(admin_url: &str) -> String {
    let name = unique("t").replace('-', "_");
    let admin = PgPool::connect(admin_url)
        .await
        .expect("postgres (scripts/stack up)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    with_database(admin_url, &name)
}

/// Rows of `campaign` in the database at `url`.
pub async fn count_rows(pool: &PgPool, campaign: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM coupon_issuances WHERE campaign = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!("stampede-{what}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(args: &[&str], envs: &[(&str, String)]) {
    let out = Command::new("bash")
        .args(args)
        .current_dir(repo())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private Kafka broker (scripts/kafka-broker) that a test may stop and start.
pub struct PrivateKafka {
    dir: PathBuf,
    /// Its port.
    pub port: u16,
}

impl PrivateKafka {
    /// Starts one on free ports and waits until it serves.
    pub fn start() -> Self {
        let k = Self {
            dir: temp_dir("kafka"),
            port: free_port(),
        };
        k.up();
        k
    }

    /// `host:port`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again (after `stop`), keeping its data.
    pub fn up(&self) {
        let (port, cport) = (self.port.to_string(), free_port().to_string());
        let dir = self.dir.to_str().unwrap().to_owned();
        let args = [
            "scripts/kafka-broker",
            "start",
            "--dir",
            &dir,
            "--port",
            &port,
            "--controller-port",
            &cport,
        ];
        script(&args, &[]);
    }

    /// Stops it gracefully and waits until it is gone.
    pub fn stop(&self) {
        script(
            &[
                "scripts/kafka-broker",
                "stop",
                "--dir",
                self.dir.to_str().unwrap(),
            ],
            &[],
        );
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([
                "scripts/kafka-broker",
                "stop",
                "--dir",
                self.dir.to_str().unwrap(),
                "--kill",
            ])
            .current_dir(repo())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PostgreSQL (scripts/stack's postgres component under its own home and port).
pub struct PrivatePostgres {
    home: PathBuf,
    /// Its port.
    pub port: u16,
}

impl PrivatePostgres {
    /// Initialises and starts one.
    pub fn start() -> Self {
        let p = Self {
            home: temp_dir("pg"),
            port: free_port(),
        };
        p.up();
        p
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STAMPEDE_HOME", self.home.to_str().unwrap().to_owned()),
            ("STAMPEDE_PG_PORT", self.port.to_string()),
            ("STAMPEDE_SKIP_DEPS", "1".into()),
        ]
    }

    /// Its admin URL.
    pub fn url(&self) -> String {
        format!(
            "postgres://stampede:stampede@127.0.0.1:{}/stampede",
            self.port
        )
    }

    /// Starts it (again).
    pub fn up(&self) {
        script(&["scripts/stack", "up", "postgres"], &self.env());
    }

    /// Stops it (fast shutdown) and waits until it is down.
    pub fn stop(&self) {
        script(&["scripts/stack", "down", "postgres"], &self.env());
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["scripts/stack", "down", "postgres"])
            .current_dir(repo())
            .envs(self.env())
            .output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The service binary running one role as a child process.
pub struct Role {
    child: Option<Child>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Role {
    /// Starts `stampede-service ARGS` with `envs`.
    pub fn start(args: &[&str], envs: &[(&str, String)]) -> Self {
        let mut r = Self {
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        r.restart();
        r
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(env!("CARGO_BIN_EXE_stampede-service"))
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("STAMPEDE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no cleanup, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits up to `limit` for `count` rows of `campaign`, returning the last count seen.
pub async fn wait_rows(pool: &PgPool, campaign: &str, count: i64, limit: Duration) -> i64 {
    let start = std::time::Instant::now();
    loop {
        let n = count_rows(pool, campaign).await;
        if n >= count || start.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

use futures::StreamExt;
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::kafka::{KafkaConfig, ensure_topics};
use stampede_core::store::{Store, StoreConfig};
use stampede_service::metrics::Metrics;
use stampede_service::relay::RelayConfig;
use stampede_service::writer::WriterConfig;
use tokio_util::sync::CancellationToken;

/// A store on `redis_url` for driving issuances directly.
pub async fn store(redis_url: &str) -> Store {
    let cfg = StoreConfig {
        url: redis_url.to_owned(),
        connections: 2,
        timeout: Duration::from_secs(2),
    };
    Store::connect(&cfg, Metrics::new().redis).await.unwrap()
}

/// Provisions a campaign with its topics, as `campaign create` does.
pub async fn provision(store: &Store, brokers: &str, campaign: &str, stock: u64, partitions: i32) {
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
    };
    ensure_topics(&kafka, campaign, partitions, 1)
        .await
        .unwrap();
    store
        .ensure_campaign(&CampaignId::parse(campaign).unwrap(), stock, None)
        .await
        .unwrap();
}

/// Issues coupons to users `u-<i>` for every `i` in `users`, through the real issue
/// script, 64 at a time; panics on anything but a new coupon.
pub async fn issue_range(store: &Store, campaign: &str, users: std::ops::Range<usize>) {
    let c = CampaignId::parse(campaign).unwrap();
    futures::stream::iter(users)
        .map(|i| {
            let (store, c) = (store.clone(), c.clone());
            async move {
                let u = UserId::parse(&format!("u-{i}")).unwrap();
                let d = store.issue(&c, &u).await.unwrap();
                assert_eq!(d.label(), "issued", "user u-{i}");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// Relay settings for tests: the campaign's Redis, claim orphans after a second.
pub fn relay_config(redis_url: &str, brokers: &str, consumer: &str) -> RelayConfig {
    RelayConfig {
        redis_url: redis_url.to_owned(),
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
        },
        consumer: consumer.to_owned(),
        batch: 2_000,
        linger_ms: 5,
        claim_idle: Duration::from_secs(1),
    }
}

/// Writer settings for tests: only this campaign's topic, its own group.
pub fn writer_config(brokers: &str, database_url: &str, campaign: &str) -> WriterConfig {
    WriterConfig {
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
        },
        group: format!("writer-{campaign}"),
        topics: stampede_core::issuance::topic(campaign),
        database_url: database_url.to_owned(),
        batch_rows: 5_000,
        batch_linger: Duration::from_millis(20),
    }
}

/// Runs the relay in-process until `shutdown`.
pub fn spawn_relay(
    config: RelayConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), stampede_core::Error>> {
    tokio::spawn(stampede_service::relay::run(
        config,
        metrics.pipeline.clone(),
        shutdown.clone(),
    ))
}

/// Runs the writer in-process until `shutdown`.
pub fn spawn_writer(
    config: WriterConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), stampede_core::Error>> {
    tokio::spawn(stampede_service::writer::run(
        config,
        metrics.pipeline.clone(),
        shutdown.clone(),
    ))
}

/// Audits `campaign` with no grace: everything must have arrived.
pub async fn audit(
    store: &Store,
    database_url: &str,
    campaign: &str,
) -> stampede_service::audit::AuditReport {
    let pool = stampede_core::db::connect(database_url, 1).await.unwrap();
    stampede_service::audit::audit(
        store,
        &pool,
        &CampaignId::parse(campaign).unwrap(),
        Duration::ZERO,
        false,
    )
    .await
    .unwrap()
}

/// One campaign on its own Redis, provisioned with topics, and a fresh database: what every
/// end-to-end test starts from.
pub struct Fixture {
    /// The campaign's Redis.
    pub redis: super::RedisServer,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// URL of the test's own database.
    pub db: String,
    /// Campaign id.
    pub campaign: String,
    /// A store on the campaign's Redis.
    pub store: Store,
    /// Metrics of the in-process relay and writer.
    pub metrics: Metrics,
    /// Stops the in-process relay and writer.
    pub shutdown: CancellationToken,
}

impl Fixture {
    /// A campaign of `stock` on the stack's Kafka and PostgreSQL.
    pub async fn new(prefix: &str, stock: u64, partitions: i32) -> Self {
        Self::on(prefix, stock, partitions, stack_kafka(), &stack_database()).await
    }

    /// A campaign of `stock` on the given Kafka and PostgreSQL server.
    pub async fn on(
        prefix: &str,
        stock: u64,
        partitions: i32,
        brokers: String,
        admin_db: &str,
    ) -> Self {
        let redis = super::RedisServer::start().await;
        let db = fresh_database(admin_db).await;
        let campaign = unique(prefix);
        let store = store(&redis.url()).await;
        provision(&store, &brokers, &campaign, stock, partitions).await;
        Self {
            redis,
            brokers,
            db,
            campaign,
            store,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The writer, in-process, on this campaign's topic only.
    pub fn spawn_writer(&self) -> tokio::task::JoinHandle<Result<(), stampede_core::Error>> {
        spawn_writer(
            writer_config(&self.brokers, &self.db, &self.campaign),
            &self.metrics,
            &self.shutdown,
        )
    }

    /// The relay, in-process.
    pub fn spawn_relay(&self) -> tokio::task::JoinHandle<Result<(), stampede_core::Error>> {
        spawn_relay(
            relay_config(&self.redis.url(), &self.brokers, "r"),
            &self.metrics,
            &self.shutdown,
        )
    }

    /// A pool on the test's database.
    pub async fn pool(&self) -> PgPool {
        stampede_core::db::connect(&self.db, 1).await.unwrap()
    }

    /// Audits the campaign with no grace.
    pub async fn audit(&self) -> stampede_service::audit::AuditReport {
        audit(&self.store, &self.db, &self.campaign).await
    }
}

impl Drop for Fixture {
    /// Deletes the campaign's topics, so the shared broker does not collect every test's
    /// messages (a writer consuming all campaigns would replay them).
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop_topics(&self.brokers, &self.campaign);
    }
}

/// Deletes a campaign's topics from a synchronous context (a `Drop`).
pub fn drop_topics(brokers: &str, campaign: &str) {
    let (brokers, campaign) = (brokers.to_owned(), campaign.to_owned());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kafka = KafkaConfig { brokers };
        let _ = rt.block_on(stampede_core::kafka::delete_topics(&kafka, &campaign));
    })
    .join();
}
