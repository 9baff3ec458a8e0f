//! End to end on real Redis, Kafka and PostgreSQL: every issuance lands exactly once, and
//! a poison message is dead-lettered without stopping its partition. Slow; needs
//! `scripts/stack up` (Kafka and PostgreSQL).

mod common;

use std::time::Duration;

use common::RedisServer;
use common::pipeline::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use stampede_service::issuance::{Issuance, dead_letter_topic, topic};
use stampede_service::kafka::KafkaConfig;
use stampede_service::metrics::Metrics;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_issuances_land_exactly_once() {
    const N: usize = 50_000;
    let redis = RedisServer::start().await;
    let brokers = stack_kafka();
    let db = fresh_database(&stack_database()).await;
    let campaign = unique("bulk");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, N as u64, 6).await;

    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let relay = spawn_relay(
        relay_config(&redis.url(), &brokers, "r1"),
        &metrics,
        &shutdown,
    );
    issue_range(&store, &campaign, 0..N).await;

    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    let rows = wait_rows(&pool, &campaign, N as i64, Duration::from_secs(180)).await;
    assert_eq!(rows, N as i64, "every issuance reaches PostgreSQL");
    let report = audit(&store, &db, &campaign).await;
    assert!(report.clean, "{report:?}");
    assert_eq!(
        (report.persisted, report.missing, report.outbox_pending),
        (N as u64, 0, 0)
    );

    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq")
            .bind(&campaign)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        seqs,
        (1..=N as i64).collect::<Vec<_>>(),
        "seqs 1..=N, each once"
    );
    let text = metrics.render();
    assert!(text.contains(&format!(
        "stampede_relay_produced_total{{campaign=\"{campaign}\"}}"
    )));
    assert!(text.contains("stampede_issue_to_db_seconds_count"));
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_the_partition_moves_on() {
    let redis = RedisServer::start().await;
    let brokers = stack_kafka();
    let db = fresh_database(&stack_database()).await;
    let campaign = unique("poison");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, 100, 1).await;

    // One partition: the poison sits in front of the good messages.
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
    };
    let producer: FutureProducer = kafka.producer(0).create().unwrap();
    for (key, payload) in [
        ("bad-1", &b"not json at all"[..]),
        ("bad-2", b"{\"seq\":0}"),
    ] {
        producer
            .send(
                FutureRecord::to(&topic(&campaign))
                    .key(key)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let good = Issuance {
        campaign: campaign.clone(),
        user_id: "after-poison".into(),
        seq: 1,
        coupon_code: "C0DE".into(),
        issued_at_ms: 1_700_000_000_000,
    };
    producer
        .send(
            FutureRecord::to(&topic(&campaign))
                .key("after-poison")
                .payload(&good.to_json()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    assert_eq!(
        wait_rows(&pool, &campaign, 1, Duration::from_secs(60)).await,
        1
    );

    let dlq: StreamConsumer = kafka
        .client()
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[&dead_letter_topic(&campaign)]).unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("dead-letter message")
            .unwrap();
        let headers = m.headers().expect("dead letters carry headers");
        let reason = headers
            .iter()
            .find(|h| h.key == "stampede-reason")
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap();
        reasons.push((
            String::from_utf8_lossy(m.key().unwrap()).into_owned(),
            reason,
        ));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, "bad-1");
    assert!(reasons[0].1.contains("undecodable"), "{reasons:?}");
    assert_eq!(reasons[1].0, "bad-2");
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "stampede_dead_lettered_total{{topic=\"{}\"}} 2",
            topic(&campaign)
        )),
        "{text}"
    );
    shutdown.cancel();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_without_a_topic_does_not_hold_up_the_others() {
    let redis = RedisServer::start().await;
    let brokers = stack_kafka();
    let db = fresh_database(&stack_database()).await;
    let store = store(&redis.url()).await;
    // Registered in Redis, but its topic was never created.
    let orphan = unique("no-topic");
    store
        .ensure_campaign(
            &stampede_service::ids::CampaignId::parse(&orphan).unwrap(),
            100,
            None,
        )
        .await
        .unwrap();
    issue_range(&store, &orphan, 0..100).await;
    let campaign = unique("healthy");
    provision(&store, &brokers, &campaign, 1_000, 2).await;
    issue_range(&store, &campaign, 0..1_000).await;

    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let relay = spawn_relay(
        relay_config(&redis.url(), &brokers, "r"),
        &metrics,
        &shutdown,
    );
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    assert_eq!(
        wait_rows(&pool, &campaign, 1_000, Duration::from_secs(60)).await,
        1_000
    );
    // The orphan's issuances wait, safe, in its outbox.
    let mut conn = redis.conn().await;
    let waiting: u64 = redis::cmd("XLEN")
        .arg(format!("{{stampede:{orphan}}}:outbox"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting, 100);
    assert!(metrics.render().contains(&format!(
        "stampede_relay_backlog{{campaign=\"{orphan}\"}} 100"
    )));
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}
