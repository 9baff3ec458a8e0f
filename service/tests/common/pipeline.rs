//! Harness for the durable half: one campaign on its own Redis with topics on Kafka and a
//! fresh PostgreSQL database (the `Fixture`), issuances driven through the real issue
//! script, and the relay and writer run in-process.

use std::time::Duration;

use futures::StreamExt;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;
use stampede_core::ids::UserId;
use stampede_core::kafka::ensure_topics;
use stampede_core::store::{Store, StoreConfig};
use stampede_service::audit::AuditReport;
use stampede_service::metrics::Metrics;
use stampede_service::relay::RelayConfig;
use stampede_service::writer::WriterConfig;
use tokio_util::sync::CancellationToken;

use super::kit::unique;
use super::stack::{drop_topics, fresh_database, kafka_config, stack_database, stack_kafka};
use super::{RedisServer, connect_store, id};

/// A relay or writer running in-process.
pub type Task = tokio::task::JoinHandle<Result<(), stampede_core::Error>>;

/// A store on `redis_url` for driving issuances directly (a longer Redis timeout than the
/// HTTP tests': bulk issuance runs 64 calls at a time).
pub async fn store(redis_url: &str) -> Store {
    let config = StoreConfig {
        url: redis_url.to_owned(),
        connections: 2,
        timeout: Duration::from_secs(2),
    };
    connect_store(&config).await
}

/// Provisions a campaign with its topics, as `campaign create` does.
pub async fn provision(store: &Store, brokers: &str, campaign: &str, stock: u64, partitions: i32) {
    provision_sharded(store, brokers, campaign, stock, partitions, 1).await;
}

/// [`provision`] with the stock split into `shards` buckets.
pub async fn provision_sharded(
    store: &Store,
    brokers: &str,
    campaign: &str,
    stock: u64,
    partitions: i32,
    shards: u32,
) {
    let kafka = kafka_config(brokers);
    ensure_topics(&kafka, campaign, partitions, 1)
        .await
        .unwrap();
    store
        .ensure_sharded(&id(campaign), stock, None, false, shards)
        .await
        .unwrap();
}

/// Issues coupons to users `u-<i>` for every `i` in `users`, through the real issue
/// script, 64 at a time; panics on anything but a new coupon.
pub async fn issue_range(store: &Store, campaign: &str, users: std::ops::Range<usize>) {
    let c = id(campaign);
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
        kafka: kafka_config(brokers),
        consumer: consumer.to_owned(),
        batch: 2_000,
        gather: std::time::Duration::from_millis(10),
        linger_ms: 5,
        claim_idle: Duration::from_secs(1),
        campaigns: None,
        message_batches: Default::default(),
    }
}

/// Writer settings for tests: only this campaign's topic, its own group.
pub fn writer_config(brokers: &str, database_url: &str, campaign: &str) -> WriterConfig {
    WriterConfig {
        kafka: kafka_config(brokers),
        group: format!("writer-{campaign}"),
        topics: stampede_core::issuance::topic(campaign),
        database_url: database_url.to_owned(),
        batch_rows: 5_000,
        batch_linger: Duration::from_millis(20),
        batches_in_flight: 2,
        stall: Duration::from_secs(20),
        write_timeout: Duration::from_secs(30),
    }
}

/// Runs the relay in-process until `shutdown`.
pub fn spawn_relay(config: RelayConfig, metrics: &Metrics, shutdown: &CancellationToken) -> Task {
    let pipeline = metrics.pipeline.clone();
    tokio::spawn(stampede_service::relay::run(
        config,
        pipeline,
        shutdown.clone(),
    ))
}

/// Runs the writer in-process until `shutdown`.
pub fn spawn_writer(config: WriterConfig, metrics: &Metrics, shutdown: &CancellationToken) -> Task {
    let pipeline = metrics.pipeline.clone();
    tokio::spawn(stampede_service::writer::run(
        config,
        pipeline,
        shutdown.clone(),
    ))
}

/// Audits `campaign` with no grace: everything must have arrived.
pub async fn audit(store: &Store, database_url: &str, campaign: &str) -> AuditReport {
    let pool = stampede_core::db::connect(database_url, 1).await.unwrap();
    stampede_service::audit::audit(store, &pool, &id(campaign), Duration::ZERO, false)
        .await
        .unwrap()
}

/// One campaign on its own Redis, provisioned with topics, and a fresh database: what every
/// end-to-end test starts from.
pub struct Fixture {
    /// The campaign's Redis.
    pub redis: RedisServer,
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

    /// A campaign of `stock` in `shards` buckets on the stack's Kafka and PostgreSQL.
    pub async fn sharded(prefix: &str, stock: u64, partitions: i32, shards: u32) -> Self {
        let (brokers, admin_db) = (stack_kafka(), stack_database());
        Self::on_sharded(prefix, stock, (partitions, shards), brokers, &admin_db).await
    }

    /// A campaign of `stock` on the given Kafka and PostgreSQL server.
    pub async fn on(
        prefix: &str,
        stock: u64,
        partitions: i32,
        brokers: String,
        admin_db: &str,
    ) -> Self {
        Self::on_sharded(prefix, stock, (partitions, 1), brokers, admin_db).await
    }

    /// [`Fixture::on`] with `(partitions, shards)`.
    async fn on_sharded(
        prefix: &str,
        stock: u64,
        (partitions, shards): (i32, u32),
        brokers: String,
        admin_db: &str,
    ) -> Self {
        let redis = RedisServer::start().await;
        let db = fresh_database(admin_db).await;
        let campaign = unique(prefix);
        let store = store(&redis.url()).await;
        provision_sharded(&store, &brokers, &campaign, stock, partitions, shards).await;
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
    pub fn spawn_writer(&self) -> Task {
        let config = writer_config(&self.brokers, &self.db, &self.campaign);
        spawn_writer(config, &self.metrics, &self.shutdown)
    }

    /// The relay, in-process.
    pub fn spawn_relay(&self) -> Task {
        let config = relay_config(&self.redis.url(), &self.brokers, "r");
        spawn_relay(config, &self.metrics, &self.shutdown)
    }

    /// The environment of a `stampede-service writer` process on this campaign.
    pub fn writer_env(&self) -> Vec<(&'static str, String)> {
        let w = writer_config(&self.brokers, &self.db, &self.campaign);
        vec![
            ("STAMPEDE_KAFKA_BROKERS", self.brokers.clone()),
            ("STAMPEDE_DATABASE_URL", self.db.clone()),
            ("STAMPEDE_REDIS_URL", self.redis.url()),
            ("STAMPEDE_WRITER_GROUP", w.group),
            ("STAMPEDE_WRITER_TOPICS", w.topics),
        ]
    }

    /// A client in the in-process writer's group (it never subscribes: it only reads the
    /// group's committed offsets and the topic's watermarks).
    pub fn writer_group_client(&self) -> BaseConsumer {
        let group = writer_config(&self.brokers, &self.db, &self.campaign).group;
        let kafka = kafka_config(&self.brokers);
        kafka.client().set("group.id", group).create().unwrap()
    }

    /// The group's committed offset of partition 0 of the campaign's topic (-1 when none).
    pub async fn committed(&self) -> i64 {
        let c = self.writer_group_client();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&stampede_core::issuance::topic(&self.campaign), 0);
        let got =
            tokio::task::spawn_blocking(move || c.committed_offsets(tpl, Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
        got.elements()[0].offset().to_raw().unwrap_or(-1)
    }

    /// Deletes the campaign's dead-letter topic: a dead letter can then not be delivered.
    pub async fn delete_dead_letter_topic(&self) {
        let kafka = kafka_config(&self.brokers);
        let admin: AdminClient<DefaultClientContext> = kafka.client().create().unwrap();
        let dlq = stampede_core::issuance::dead_letter_topic(&self.campaign);
        admin
            .delete_topics(&[&dlq], &AdminOptions::new())
            .await
            .unwrap();
    }

    /// A pool on the test's database.
    pub async fn pool(&self) -> PgPool {
        stampede_core::db::connect(&self.db, 1).await.unwrap()
    }

    /// Audits the campaign with no grace.
    pub async fn audit(&self) -> AuditReport {
        audit(&self.store, &self.db, &self.campaign).await
    }

    /// Shuts the in-process roles down and checks that each of `tasks` ended cleanly.
    pub async fn stop(&self, tasks: impl IntoIterator<Item = Task>) {
        self.shutdown.cancel();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
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
