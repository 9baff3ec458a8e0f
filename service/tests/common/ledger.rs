//! What the pipeline carried, read back end to end: a topic from the start of every
//! partition to its end, and the check that Redis' issuances, the campaign's Kafka topic,
//! its dead-letter topic and PostgreSQL agree, seq by seq. Kafka delivery is at least once,
//! so a seq may appear there more than once; PostgreSQL must hold each exactly once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::stack::kafka_config;
use redis::AsyncCommands;
use sqlx::PgPool;
use stampede_core::issuance::{dead_letter_topic, topic};

use super::kit::unique;
use super::{RedisServer, key};

/// Bound on reading one topic to its end.
const READ_LIMIT: Duration = Duration::from_secs(60);

/// Every message value of `topic`, from the start of each partition up to the end it had
/// when called. Panics when the topic does not exist.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .unwrap()
}

fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let t = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka_config(brokers)
        .client()
        .set("group.id", unique("ledger-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), t).unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "topic {topic} exists");
    let (mut list, mut ends) = (TopicPartitionList::new(), HashMap::new());
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, t).unwrap();
        if high > low {
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
            ends.insert(p, high);
        }
    }
    consumer.assign(&list).unwrap();
    let (start, mut values) = (Instant::now(), Vec::new());
    while !ends.is_empty() {
        assert!(start.elapsed() < READ_LIMIT, "{topic}: unread {ends:?}");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        values.push(m.payload().unwrap_or_default().to_vec());
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
    }
    values
}

/// What Redis issued for `campaign`: seq → (user, coupon code), from its holders hash.
pub async fn issued(redis: &RedisServer, campaign: &str) -> BTreeMap<u64, (String, String)> {
    let mut conn = redis.conn().await;
    let holders: HashMap<String, String> = conn.hgetall(key(campaign, "holders")).await.unwrap();
    holders
        .into_iter()
        .map(|(user, rec)| {
            // "seq:issuedMs:code", as issue.lua records it.
            let mut parts = rec.splitn(3, ':');
            let seq = parts.next().unwrap().parse().unwrap();
            let code = parts.nth(1).unwrap().to_owned();
            (seq, (user, code))
        })
        .collect()
}

/// Redis issued seqs 1..=n; every one of them reached the campaign's topic (each message
/// there is one of them: duplicates allowed, nothing else); the dead-letter topic is
/// empty; PostgreSQL holds exactly seqs 1..=n, each once, with the user and code Redis
/// gave it, and no other row. Returns how many messages Kafka carried in duplicate.
pub async fn assert_exactly_once(
    redis: &RedisServer,
    brokers: &str,
    pool: &PgPool,
    campaign: &str,
    n: u64,
) -> usize {
    let truth = issued(redis, campaign).await;
    let seqs: Vec<u64> = truth.keys().copied().collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "Redis issued 1..={n}");
    let mut carried = BTreeMap::new();
    let messages = read_topic(brokers, &topic(campaign)).await;
    for i in messages.iter().flat_map(|value| {
        stampede_core::message::decode(value).expect("the topic carries issuances only")
    }) {
        let expected = truth.get(&i.seq).map(|(u, c)| (u.as_str(), c.as_str()));
        assert_eq!(i.campaign, campaign, "{i:?}");
        assert_eq!(
            expected,
            Some((i.user_id.as_str(), i.coupon_code.as_str())),
            "Kafka carried {i:?}, which Redis did not issue"
        );
        *carried.entry(i.seq).or_insert(0usize) += 1;
    }
    let missing: Vec<u64> = (1..=n).filter(|s| !carried.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "seqs never produced to Kafka: {missing:?}"
    );
    let dead = read_topic(brokers, &dead_letter_topic(campaign)).await;
    assert!(dead.is_empty(), "{} dead letters", dead.len());
    assert_rows(pool, campaign, &truth).await;
    carried.values().map(|c| c - 1).sum()
}

/// PostgreSQL holds exactly `truth` for `campaign`, and nothing for any other campaign.
async fn assert_rows(pool: &PgPool, campaign: &str, truth: &BTreeMap<u64, (String, String)>) {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, user_id, coupon_code FROM coupon_issuances WHERE campaign = $1 ORDER BY seq",
    )
    .bind(campaign)
    .fetch_all(pool)
    .await
    .unwrap();
    let expected: Vec<(i64, String, String)> = truth
        .iter()
        .map(|(s, (u, c))| (*s as i64, u.clone(), c.clone()))
        .collect();
    assert_eq!(rows.len(), expected.len(), "rows in PostgreSQL");
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row, want, "row for seq {}", want.0);
    }
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM coupon_issuances WHERE campaign <> $1")
            .bind(campaign)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(others, 0, "rows of other campaigns");
}
