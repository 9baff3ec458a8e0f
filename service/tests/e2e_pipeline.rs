//! End to end on real Redis, Kafka and PostgreSQL: every issuance lands exactly once, and
//! a poison message is dead-lettered without stopping its partition. Slow; needs
//! `scripts/stack up` (Kafka and PostgreSQL).

mod common;

use std::time::Duration;

use common::pipeline::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use stampede_core::issuance::{Issuance, dead_letter_topic, topic};
use stampede_core::kafka::KafkaConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_issuances_land_exactly_once() {
    const N: usize = 50_000;
    let f = Fixture::new("bulk", N as u64, 6).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    issue_range(&f.store, &f.campaign, 0..N).await;

    let (pool, campaign, metrics) = (f.pool().await, &f.campaign, &f.metrics);
    let rows = wait_rows(&pool, campaign, N as i64, Duration::from_secs(180)).await;
    assert_eq!(rows, N as i64, "every issuance reaches PostgreSQL");
    let report = f.audit().await;
    assert!(report.clean, "{report:?}");
    assert_eq!(
        (report.persisted, report.missing, report.outbox_pending),
        (N as u64, 0, 0)
    );

    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq")
            .bind(campaign)
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
    // The writer reports how far behind it is, per partition: nothing, by now.
    let lag_line =
        format!("stampede_writer_consumer_lag{{partition=\"0\",topic=\"stampede.{campaign}\"}} 0");
    common::eventually("consumer lag reported", Duration::from_secs(15), || async {
        metrics.render().contains(&lag_line).then_some(())
    })
    .await;
    f.shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_the_partition_moves_on() {
    let f = Fixture::new("poison", 100, 1).await;
    let (brokers, campaign) = (f.brokers.clone(), f.campaign.clone());

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
    // Decodes fine, but PostgreSQL refuses its timestamp: the batch it shares with the good
    // row is refused whole, so the writer must fall back to row by row.
    let unstorable = Issuance {
        user_id: "bad-3".into(),
        seq: 2,
        issued_at_ms: i64::MAX,
        ..good.clone()
    };
    for i in [&unstorable, &good] {
        producer
            .send(
                FutureRecord::to(&topic(&campaign))
                    .key(&i.user_id)
                    .payload(&i.to_json()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let writer = f.spawn_writer();
    let pool = f.pool().await;
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
    for _ in 0..3 {
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
    assert_eq!(reasons[2].0, "bad-3");
    assert!(reasons[2].1.contains("out of range"), "{reasons:?}");
    let text = f.metrics.render();
    assert!(
        text.contains(&format!(
            "stampede_dead_lettered_total{{topic=\"{}\"}} 3",
            topic(&campaign)
        )),
        "{text}"
    );
    f.shutdown.cancel();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_without_a_topic_does_not_hold_up_the_others() {
    let f = Fixture::new("healthy", 1_000, 2).await;
    // Registered in the same Redis, but its topic was never created.
    let orphan = unique("no-topic");
    f.store
        .ensure_campaign(
            &stampede_core::ids::CampaignId::parse(&orphan).unwrap(),
            100,
            None,
        )
        .await
        .unwrap();
    issue_range(&f.store, &orphan, 0..100).await;
    issue_range(&f.store, &f.campaign, 0..1_000).await;

    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    let pool = f.pool().await;
    assert_eq!(
        wait_rows(&pool, &f.campaign, 1_000, Duration::from_secs(60)).await,
        1_000
    );
    // The orphan's issuances wait, safe, in its outbox.
    let mut conn = f.redis.conn().await;
    let waiting: u64 = redis::cmd("XLEN")
        .arg(format!("{{stampede:{orphan}}}:outbox"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting, 100);
    assert!(f.metrics.render().contains(&format!(
        "stampede_relay_backlog{{campaign=\"{orphan}\"}} 100"
    )));
    f.shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_lost_rows_and_repair_brings_them_back() {
    let f = Fixture::new("repair", 200, 2).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    issue_range(&f.store, &f.campaign, 0..200).await;
    let pool = f.pool().await;
    assert_eq!(
        wait_rows(&pool, &f.campaign, 200, Duration::from_secs(60)).await,
        200
    );
    let audit_cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stampede-service"))
            .args([
                "audit",
                "--campaign",
                &f.campaign,
                "--json",
                "--grace-secs",
                "0",
            ])
            .args(extra)
            .env("STAMPEDE_REDIS_URL", f.redis.url())
            .env("STAMPEDE_DATABASE_URL", &f.db)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    assert_eq!(audit_cli(&[]).0, Some(0), "clean before the loss");
    tokio::spawn(stampede_service::audit::report_unpersisted(
        f.store.clone(),
        pool.clone(),
        f.metrics.pipeline.clone(),
        Duration::from_millis(100),
        f.shutdown.clone(),
    ));
    let gauge = format!(
        "stampede_unpersisted_issuances{{campaign=\"{}\"}}",
        f.campaign
    );
    let unpersisted = |want: f64| {
        let gauge = gauge.clone();
        let metrics = f.metrics.clone();
        async move {
            common::eventually("unpersisted gauge", Duration::from_secs(10), || {
                let v = common::sample(&metrics.render(), &gauge);
                async move { (v == want).then_some(()) }
            })
            .await
        }
    };
    unpersisted(0.0).await;

    // Lose 15 rows behind the pipeline's back.
    sqlx::query(
        "DELETE FROM coupon_issuances WHERE campaign = $1 AND seq IN
           (SELECT seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq LIMIT 15)",
    )
    .bind(&f.campaign)
    .execute(&pool)
    .await
    .unwrap();
    let (code, report) = audit_cli(&[]);
    assert_eq!(code, Some(1), "missing rows make the audit fail: {report}");
    assert_eq!(
        (report["missing"].as_u64(), report["clean"].as_bool()),
        (Some(15), Some(false))
    );

    let (_, repaired) = audit_cli(&["--repair"]);
    assert_eq!(repaired["repaired"], 15);
    assert_eq!(
        wait_rows(&pool, &f.campaign, 200, Duration::from_secs(60)).await,
        200
    );
    let (code, report) = audit_cli(&[]);
    assert_eq!(code, Some(0), "clean after the repair: {report}");
    unpersisted(0.0).await;
    f.shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}
