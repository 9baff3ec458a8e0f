//! Kafka from the test's side of the writer: issuances and poison produced straight into a
//! campaign's topic, and its dead-letter topic read back with the reason of each letter.

use std::collections::HashMap;
use std::time::Duration;

use super::stack::kafka_config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use stampede_core::issuance::{Issuance, dead_letter_topic, topic};

use super::kit::unique;

/// An idempotent producer on `brokers` that sends at once.
pub fn producer(brokers: &str) -> FutureProducer {
    let kafka = kafka_config(brokers);
    kafka.producer(0).create().unwrap()
}

/// Sends `payload` under `key` to the campaign's topic and waits for the acknowledgement.
pub async fn produce(producer: &FutureProducer, campaign: &str, key: &str, payload: &[u8]) {
    let topic = topic(campaign);
    let record = FutureRecord::to(&topic).key(key).payload(payload);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
}

/// The issuance of coupon `seq` to `user`.
pub fn issuance(campaign: &str, user: &str, seq: u64) -> Issuance {
    Issuance {
        campaign: campaign.to_owned(),
        user_id: user.to_owned(),
        seq,
        coupon_code: format!("C{seq:06}"),
        issued_at_ms: 1_700_000_000_000 + seq as i64,
    }
}

/// Sends `i` to its campaign's topic, keyed by user as the relay does.
pub async fn produce_issuance(producer: &FutureProducer, i: &Issuance) {
    produce(producer, &i.campaign, &i.user_id, &i.to_json()).await;
}

/// One dead-letter message: its key and `stampede-reason` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message key (the user id, or the poison's key).
    pub key: String,
    /// Why it was dead-lettered.
    pub reason: String,
}

/// A reader of the campaign's dead-letter topic from its start.
pub struct DeadLetters {
    consumer: StreamConsumer,
}

impl DeadLetters {
    /// Subscribes a fresh consumer group to the campaign's dead-letter topic.
    pub fn open(brokers: &str, campaign: &str) -> Self {
        let kafka = kafka_config(brokers);
        let consumer: StreamConsumer = kafka
            .client()
            .set("group.id", unique("dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[&dead_letter_topic(campaign)]).unwrap();
        Self { consumer }
    }

    /// The next letter, or `None` when none arrives within `wait`.
    pub async fn next(&self, wait: Duration) -> Option<DeadLetter> {
        let m = tokio::time::timeout(wait, self.consumer.recv())
            .await
            .ok()?;
        let m = m.unwrap();
        let reason = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "stampede-reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        Some(DeadLetter { key, reason })
    }

    /// Every letter that arrives until none has for `quiet`, by key (a replay may
    /// dead-letter a message twice; the key says which message it was).
    pub async fn drain(&self, quiet: Duration) -> HashMap<String, Vec<String>> {
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        while let Some(l) = self.next(quiet).await {
            by_key.entry(l.key).or_default().push(l.reason);
        }
        by_key
    }
}

/// Produces issuances of users `u-<i>` (seq i + 1) for i in 0..n in the background, in
/// chunks of `chunk` sent together with a pause between chunks (pacing, so that a fault
/// lands mid-stream), and, with `poison`, an undecodable message `poison-<k>` before chunk k.
pub fn stream_in_background(
    brokers: &str,
    campaign: &str,
    n: u64,
    chunk: u64,
    poison: bool,
) -> tokio::task::JoinHandle<()> {
    let (p, campaign) = (producer(brokers), campaign.to_owned());
    tokio::spawn(async move {
        for k in 0..n.div_ceil(chunk) {
            if poison {
                produce(&p, &campaign, &format!("poison-{k}"), b"not json").await;
            }
            let sends = (k * chunk..((k + 1) * chunk).min(n)).map(|i| {
                let i = issuance(&campaign, &format!("u-{i}"), i + 1);
                let p = p.clone();
                async move { produce_issuance(&p, &i).await }
            });
            futures::future::join_all(sends).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Starts a writer on `f`'s campaign, waits for `rows` rows, then reads every dead letter
/// until none has come for 5 s: the writer (to stop), the pool, the letters by key.
pub async fn write_and_dead_letter(
    f: &super::pipeline::Fixture,
    rows: i64,
) -> (
    super::pipeline::Task,
    sqlx::PgPool,
    HashMap<String, Vec<String>>,
) {
    let writer = f.spawn_writer();
    let pool = f.pool().await;
    let got = super::stack::wait_rows(&pool, &f.campaign, rows, Duration::from_secs(30)).await;
    assert_eq!(got, rows);
    let letters = DeadLetters::open(&f.brokers, &f.campaign)
        .drain(Duration::from_secs(5))
        .await;
    (writer, pool, letters)
}

/// A poison message in front of five issuances of `f`'s campaign (one partition), its
/// dead-letter topic gone: a writer takes all six and is stuck delivering the dead letter.
pub async fn poison_with_nowhere_to_go(f: &super::pipeline::Fixture) {
    f.delete_dead_letter_topic().await;
    let p = producer(&f.brokers);
    produce(&p, &f.campaign, "poison", b"not json").await;
    for n in 0..5 {
        produce_issuance(&p, &issuance(&f.campaign, &format!("u-{n}"), n + 1)).await;
    }
}

/// The lag sample a writer of `f`'s campaign reports once it has taken all six messages
/// of [`poison_with_nowhere_to_go`].
pub fn holding_all_six(f: &super::pipeline::Fixture) -> String {
    format!(
        "stampede_writer_consumer_lag{{partition=\"0\",topic=\"stampede.{}\"}} 0",
        f.campaign
    )
}

/// Brings the dead-letter topic of [`poison_with_nowhere_to_go`] back.
pub async fn dead_letter_topic_back(f: &super::pipeline::Fixture) {
    let kafka = kafka_config(&f.brokers);
    stampede_core::kafka::ensure_topics(&kafka, &f.campaign, 1, 1)
        .await
        .unwrap();
}

/// With a writer running again: the five rows land and the poison is dead-lettered.
pub async fn all_six_settle(f: &super::pipeline::Fixture) {
    let pool = f.pool().await;
    let rows = super::stack::wait_rows(&pool, &f.campaign, 5, Duration::from_secs(30)).await;
    assert_eq!(rows, 5);
    let letter = DeadLetters::open(&f.brokers, &f.campaign)
        .next(Duration::from_secs(30))
        .await;
    assert_eq!(letter.map(|l| l.key).as_deref(), Some("poison"));
}
