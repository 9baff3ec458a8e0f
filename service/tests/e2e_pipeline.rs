//! End to end on real Redis, Kafka and PostgreSQL: every issuance lands exactly once, a
//! poison message is dead-lettered without stopping its partition, a campaign without a
//! topic holds up no other, outbox entries of every shape land, and the audit finds lost rows
//! and repairs them. Slow; needs
//! `scripts/stack up` (Kafka and PostgreSQL).

mod common;

use std::time::Duration;

use common::letters::{DeadLetters, produce};
use common::pipeline::{Fixture, issue_range};
use common::role::service_command;
use common::stack::{kafka_config, row_seqs, wait_rows};
use common::unique;
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use stampede_core::batches::Batches;
use stampede_core::issuance::{Issuance, topic};
use stampede_core::kafka::KafkaConfig;
use stampede_core::store::outbox_format;
use stampede_service::audit::DriftConfig;

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

    let seqs = row_seqs(&pool, campaign).await;
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
    // The relay, the only one reading this outbox, recorded that it reads batch entries:
    // from then on the store (mode auto, as `serve` runs) wrote them.
    let format: Option<String> = redis::cmd("HGET")
        .arg(common::key(campaign, "meta"))
        .arg(outbox_format::FIELD)
        .query_async(&mut f.redis.conn().await)
        .await
        .unwrap();
    assert_eq!(format, Some(outbox_format::FORMAT.to_string()));
    // The writer reports how far behind it is, per partition: nothing, by now.
    let lag_line =
        format!("stampede_writer_consumer_lag{{partition=\"0\",topic=\"stampede.{campaign}\"}} 0");
    common::eventually("consumer lag reported", Duration::from_secs(15), || async {
        metrics.render().contains(&lag_line).then_some(())
    })
    .await;
    f.stop([relay, writer]).await;
}

/// Rewrites every entry of `campaign`'s outbox with even seq in the two-field shape (the
/// Kafka message itself), as a later release's issue script is to write it beside entries
/// of the five-field shape that this one writes.
async fn rewrite_even_entries_as_messages(f: &Fixture) {
    let key = common::key(&f.campaign, "outbox");
    let mut conn = f.redis.conn().await;
    let issuances = common::outbox_issuances(&f.redis, &f.campaign).await;
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    for i in issuances {
        let mut add = redis::cmd("XADD");
        add.arg(&key).arg("*");
        if i.seq % 2 == 0 {
            for (k, v) in i.message_fields() {
                add.arg(k).arg(v);
            }
        } else {
            for (k, v) in i.stream_fields() {
                add.arg(k).arg(v);
            }
        }
        let _: String = add.query_async(&mut conn).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_every_outbox_shape_land() {
    const N: usize = 200;
    let f = Fixture::new("shapes", N as u64, 2).await;
    issue_range(&f.store, &f.campaign, 0..N / 2).await;
    rewrite_even_entries_as_messages(&f).await;
    // The other half from the real script writing batch entries (`serve --outbox-batches`).
    let batching = f.store.clone().writing_outbox_batches(Batches::Always);
    issue_range(&batching, &f.campaign, N / 2..N).await;
    let entries = common::outbox_entries(&f.redis, &f.campaign).await;
    assert!(
        entries.iter().any(|e| e.len() > 1),
        "the batching store wrote batch entries"
    );
    let pool = f.pool().await;
    stampede_core::db::migrate(&pool).await.unwrap();
    let report = f.audit().await;
    assert_eq!(
        (report.outbox_pending, report.missing),
        (N as u64, 0),
        "the audit reads every shape: {report:?}"
    );

    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    let rows = wait_rows(&pool, &f.campaign, N as i64, Duration::from_secs(60)).await;
    assert_eq!(rows, N as i64, "every shape reaches PostgreSQL");
    let report = f.audit().await;
    assert!(report.clean, "codes, seqs and times as issued: {report:?}");
    assert_eq!(
        row_seqs(&pool, &f.campaign).await,
        (1..=N as i64).collect::<Vec<_>>()
    );
    // Counted per coupon, not per entry (an entry whose delivery outlasts the relay's claim
    // time is sent, and counted, again).
    let produced = common::sample(
        &f.metrics.render(),
        &format!(
            "stampede_relay_produced_total{{campaign=\"{}\"}}",
            f.campaign
        ),
    );
    assert!(
        produced >= N as f64,
        "the relay counts the coupons it produced: {produced}"
    );
    f.stop([relay, writer]).await;
}

/// Produces, in this order: two undecodable messages (`bad-1`, `bad-2`), one that decodes
/// but cannot be stored (`bad-3`), and one good issuance (`after-poison`, seq 1).
async fn produce_poison_then_good(kafka: &KafkaConfig, campaign: &str) {
    let producer: FutureProducer = kafka.producer(0).create().unwrap();
    produce(&producer, campaign, "bad-1", b"not json at all").await;
    produce(&producer, campaign, "bad-2", b"{\"seq\":0}").await;
    let good = Issuance {
        campaign: campaign.to_owned(),
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
        produce(&producer, campaign, &i.user_id, &i.to_json()).await;
    }
}

/// Reads `n` messages of the campaign's dead-letter topic from the start, waiting up to
/// 30 s for each: (key, `stampede-reason` header), sorted by key.
async fn read_dead_letters(kafka: &KafkaConfig, campaign: &str, n: usize) -> Vec<(String, String)> {
    let dlq = DeadLetters::open(&kafka.brokers, campaign);
    let mut letters = Vec::new();
    for _ in 0..n {
        let l = dlq
            .next(Duration::from_secs(30))
            .await
            .expect("dead-letter message");
        letters.push((l.key, l.reason));
    }
    letters.sort();
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_the_partition_moves_on() {
    let f = Fixture::new("poison", 100, 1).await;
    let kafka = kafka_config(&f.brokers);
    // One partition: the poison sits in front of the good messages.
    produce_poison_then_good(&kafka, &f.campaign).await;

    let writer = f.spawn_writer();
    let pool = f.pool().await;
    assert_eq!(
        wait_rows(&pool, &f.campaign, 1, Duration::from_secs(60)).await,
        1,
        "the good issuance behind the poison is stored"
    );
    let reasons = read_dead_letters(&kafka, &f.campaign, 3).await;
    assert_eq!(reasons[0].0, "bad-1");
    assert!(reasons[0].1.contains("undecodable"), "{reasons:?}");
    assert_eq!(reasons[1].0, "bad-2");
    assert_eq!(reasons[2].0, "bad-3");
    assert!(reasons[2].1.contains("out of range"), "{reasons:?}");
    let text = f.metrics.render();
    let dead_lettered = format!(
        "stampede_dead_lettered_total{{topic=\"{}\"}} 3",
        topic(&f.campaign)
    );
    assert!(text.contains(&dead_lettered), "{text}");
    f.stop([writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_without_a_topic_does_not_hold_up_the_others() {
    let f = Fixture::new("healthy", 1_000, 2).await;
    // Registered in the same Redis, but its topic was never created.
    let orphan = unique("no-topic");
    f.store
        .ensure_campaign(&common::id(&orphan), 100, None)
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
    assert_eq!(common::outbox_len(&f.redis, &orphan).await, 100);
    assert!(f.metrics.render().contains(&format!(
        "stampede_relay_backlog{{campaign=\"{orphan}\"}} 100"
    )));
    f.stop([relay, writer]).await;
}

/// Runs `stampede-service audit --json --grace-secs 0` (and `extra`) on the fixture's
/// campaign: its exit code and JSON report.
fn audit_cli(f: &Fixture, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = service_command()
        .args(["audit", "--campaign", &f.campaign, "--json"])
        .args(["--grace-secs", "0"])
        .args(extra)
        .env("STAMPEDE_REDIS_URL", f.redis.url())
        .env("STAMPEDE_DATABASE_URL", &f.db)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report)
}

/// Runs the background check that exports the drift gauges every 100 ms, counting an
/// issuance older than `grace` as missing when it is not in PostgreSQL.
fn spawn_unpersisted_reporter(f: &Fixture, pool: &PgPool, grace: Duration) {
    let config = DriftConfig {
        every: Duration::from_millis(100),
        grace,
        campaigns: Some([f.campaign.clone()].into()),
    };
    tokio::spawn(stampede_service::audit::report_unpersisted(
        f.store.clone(),
        pool.clone(),
        f.metrics.pipeline.clone(),
        config,
        f.shutdown.clone(),
    ));
}

/// The campaign's unpersisted-issuances gauge, `None` until it is exported.
fn unpersisted(f: &Fixture) -> Option<f64> {
    let gauge = format!(
        "stampede_unpersisted_issuances{{campaign=\"{}\"}}",
        f.campaign
    );
    let text = f.metrics.render();
    text.contains(&gauge).then(|| common::sample(&text, &gauge))
}

/// Waits up to 10 s until the campaign's unpersisted-issuances gauge reads `want`.
async fn wait_unpersisted(f: &Fixture, want: f64) {
    let gauge = format!(
        "stampede_unpersisted_issuances{{campaign=\"{}\"}}",
        f.campaign
    );
    let what = format!("unpersisted gauge at {want}");
    common::eventually(&what, Duration::from_secs(10), || {
        let v = common::sample(&f.metrics.render(), &gauge);
        async move { (v == want).then_some(()) }
    })
    .await
}

/// Deletes the campaign's `n` lowest seqs behind the pipeline's back.
async fn lose_rows(pool: &PgPool, campaign: &str, n: i64) {
    sqlx::query(
        "DELETE FROM coupon_issuances WHERE campaign = $1 AND seq IN
           (SELECT seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq LIMIT $2)",
    )
    .bind(campaign)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
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
    assert_eq!(audit_cli(&f, &[]).0, Some(0), "clean before the loss");
    spawn_unpersisted_reporter(&f, &pool, Duration::from_millis(200));
    wait_unpersisted(&f, 0.0).await;

    lose_rows(&pool, &f.campaign, 15).await;
    wait_unpersisted(&f, 15.0).await;
    let (code, report) = audit_cli(&f, &[]);
    assert_eq!(code, Some(1), "missing rows make the audit fail: {report}");
    assert_eq!(
        (report["missing"].as_u64(), report["clean"].as_bool()),
        (Some(15), Some(false))
    );

    let (_, repaired) = audit_cli(&f, &["--repair"]);
    assert_eq!(repaired["repaired"], 15);
    assert_eq!(
        wait_rows(&pool, &f.campaign, 200, Duration::from_secs(60)).await,
        200
    );
    let (code, report) = audit_cli(&f, &[]);
    assert_eq!(code, Some(0), "clean after the repair: {report}");
    wait_unpersisted(&f, 0.0).await;
    f.stop([relay, writer]).await;
}

/// How long the steady-traffic check issues: `STAMPEDE_STEADY_SECS` (default 40; the
/// recorded live check ran 300, longer than twice the alert's default `for`).
fn steady_secs() -> u64 {
    std::env::var("STAMPEDE_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_issuing_keeps_the_unpersisted_gauge_at_zero() {
    let f = Fixture::new("steady", 10_000_000, 2).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    let pool = f.pool().await;
    // A short grace, so that a stuck pipeline would show within the run.
    spawn_unpersisted_reporter(&f, &pool, Duration::from_secs(2));
    let until = std::time::Instant::now() + Duration::from_secs(steady_secs());
    let (mut issued, mut samples, mut worst) = (0, 0, 0.0_f64);
    // About 200 issuances a second, the gauge read after every step of 20.
    while std::time::Instant::now() < until {
        issue_range(&f.store, &f.campaign, issued..issued + 20).await;
        issued += 20;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(v) = unpersisted(&f) {
            samples += 1;
            worst = worst.max(v);
        }
    }
    assert!(
        samples > 50,
        "the gauge was exported and read ({samples} samples)"
    );
    assert_eq!(
        worst, 0.0,
        "in-flight issuances never count as unpersisted ({issued} issued)"
    );
    let rows = wait_rows(&pool, &f.campaign, issued as i64, Duration::from_secs(60)).await;
    assert_eq!(rows, issued as i64, "and every one of them arrived");
    f.stop([relay, writer]).await;
}
