//! The relay's lanes follow the campaigns: deleting one campaign (its stream, group, registry
//! entry and topics) mid-stream leaves every other campaign draining, the deleted one's lane
//! and backlog series go, and a campaign re-created later joins again. On a broker that
//! auto-creates topics, the relay creates none. A sharded campaign's backlog is one series,
//! its buckets' together, under the campaign's id (the one the alert selects). Real Redis, a private Kafka broker (it
//! auto-creates topics, unlike the stack's), the relay in-process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pipeline::{Task, issue_range, provision, relay_config, spawn_relay, store};
use common::private::PrivateKafka;
use common::stack::kafka_config;
use common::{RedisServer, eventually, id, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use stampede_core::ids::UserId;
use stampede_core::issuance::topic;
use stampede_core::kafka::{KafkaConfig, delete_topics, partition_count};
use stampede_core::store::Store;
use stampede_service::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Counts the messages in campaigns' (single-partition) topics.
#[derive(Clone)]
struct Topics(Arc<BaseConsumer>);

impl Topics {
    fn new(kafka: &KafkaConfig) -> Self {
        Self(Arc::new(kafka.client().create().unwrap()))
    }

    /// Messages in `campaign`'s topic (its high watermark); 0 while it cannot be read.
    async fn messages(&self, campaign: &str) -> i64 {
        let (consumer, name) = (self.0.clone(), topic(campaign));
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&name, 0, Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .await
        .unwrap()
    }
}

/// Issues to users `u-<i>` for `i` in `users`, one every 5 ms; returns how many.
async fn issue_steadily(store: Store, campaign: String, users: std::ops::Range<usize>) -> i64 {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let n = users.len() as i64;
    for i in users {
        tick.tick().await;
        let u = UserId::parse(&format!("u-{i}")).unwrap();
        let d = store.issue(&id(&campaign), &u).await.unwrap();
        assert_eq!(d.label(), "issued", "user u-{i}");
    }
    n
}

/// A private broker that auto-creates topics, a private Redis, the relay in-process.
struct Rig {
    _broker: PrivateKafka,
    _redis: RedisServer,
    brokers: String,
    kafka: KafkaConfig,
    store: Store,
    topics: Topics,
    metrics: Metrics,
    shutdown: CancellationToken,
    relay: Task,
}

impl Rig {
    async fn start() -> Self {
        let broker = PrivateKafka::start_auto_creating();
        let redis = RedisServer::start().await;
        let (brokers, store) = (broker.brokers(), store(&redis.url()).await);
        let kafka = kafka_config(&brokers);
        let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
        let config = relay_config(&redis.url(), &brokers, "r");
        let relay = spawn_relay(config, &metrics, &shutdown);
        Self {
            _broker: broker,
            _redis: redis,
            topics: Topics::new(&kafka),
            brokers,
            kafka,
            store,
            metrics,
            shutdown,
            relay,
        }
    }

    /// Waits up to `limit` until `campaign`'s topic holds at least `n` messages.
    async fn wait_messages(&self, campaign: &str, n: i64, limit: Duration) {
        let what = format!("{n} messages of {campaign} in Kafka");
        eventually(&what, limit, || async {
            (self.topics.messages(campaign).await >= n).then_some(())
        })
        .await;
    }

    /// Whether the relay exports a backlog series for `campaign`.
    fn has_backlog_series(&self, campaign: &str) -> bool {
        let series = format!("stampede_relay_backlog{{campaign=\"{campaign}\"}}");
        self.metrics.render().contains(&series)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_campaign_stalls_no_other_and_creates_no_topic() {
    let rig = Rig::start().await;
    let (gone, stays, topicless) = (unique("gone"), unique("stays"), unique("topicless"));
    provision(&rig.store, &rig.brokers, &gone, 1_000, 1).await;
    provision(&rig.store, &rig.brokers, &stays, 10_000, 1).await;
    // In the registry without a topic: the relay probes for it and must not create it.
    let ensured = rig.store.ensure_campaign(&id(&topicless), 10, None).await;
    ensured.unwrap();

    // Both lanes live: `gone` drained, `stays` issuing steadily and draining.
    issue_range(&rig.store, &gone, 0..100).await;
    rig.wait_messages(&gone, 100, Duration::from_secs(20)).await;
    let issuing = tokio::spawn(issue_steadily(rig.store.clone(), stays.clone(), 0..600));
    rig.wait_messages(&stays, 50, Duration::from_secs(20)).await;

    // Delete `gone` as `deletionPolicy: Delete` does, while `stays` issues.
    let forgotten = rig.store.forget(&id(&gone)).await.unwrap();
    assert_eq!(forgotten, 3, "meta, holders and outbox deleted");
    delete_topics(&rig.kafka, &gone).await.unwrap();
    let issued = issuing.await.unwrap();
    rig.wait_messages(&stays, issued, Duration::from_secs(10))
        .await;
    eventually("stays' outbox emptied", Duration::from_secs(5), || async {
        let left = rig.store.snapshot(&id(&stays)).await.unwrap().unwrap();
        (left.outbox_len == 0).then_some(())
    })
    .await;
    eventually("gone's lane retired", Duration::from_secs(10), || async {
        (!rig.has_backlog_series(&gone)).then_some(())
    })
    .await;
    assert!(rig.has_backlog_series(&topicless), "topicless was probed");
    for (c, what) in [(&gone, "deleted"), (&topicless, "never provisioned")] {
        let partitions = partition_count(&rig.kafka, &topic(c)).await.unwrap();
        assert_eq!(
            partitions,
            0,
            "the relay created the {what} topic {}",
            topic(c)
        );
    }

    // Re-created, it joins again: a new stream, group and topic.
    provision(&rig.store, &rig.brokers, &gone, 1_000, 1).await;
    issue_range(&rig.store, &gone, 100..150).await;
    rig.wait_messages(&gone, 50, Duration::from_secs(15)).await;
    assert!(
        rig.has_backlog_series(&gone),
        "the re-created campaign has a lane"
    );
    rig.shutdown.cancel();
    rig.relay.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_campaigns_backlog_is_its_buckets_together_under_its_id() {
    let rig = Rig::start().await;
    let campaign = unique("sharded-backlog");
    // In Redis without a topic: its issuances wait in the buckets' outboxes.
    let c = id(&campaign);
    rig.store
        .ensure_sharded(&c, 100, None, false, 3)
        .await
        .unwrap();
    issue_range(&rig.store, &campaign, 0..30).await;
    let series = format!("stampede_relay_backlog{{campaign=\"{campaign}\"}}");
    eventually(
        "the campaign's backlog",
        Duration::from_secs(10),
        || async { (common::sample(&rig.metrics.render(), &series) == 30.0).then_some(()) },
    )
    .await;
    let text = rig.metrics.render();
    let bucket = format!("campaign=\"{campaign}~");
    assert!(!text.contains(&bucket), "a bucket's own series: {text}");
    rig.shutdown.cancel();
    rig.relay.await.unwrap().unwrap();
}
