//! Fault drills on real Redis, Kafka and PostgreSQL: a process killed with SIGKILL, a
//! broker restart and a database outage in the middle of a stream lose and duplicate
//! nothing. Slow; needs `scripts/stack up`.

mod common;

use std::time::Duration;

use common::RedisServer;
use common::pipeline::*;
use stampede_service::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const N: usize = 20_000;

/// Issues N coupons in the background, in slices, so faults land mid-stream.
fn issue_in_background(
    store: stampede_service::store::Store,
    campaign: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for slice in 0..20 {
            issue_range(&store, &campaign, slice * N / 20..(slice + 1) * N / 20).await;
        }
    })
}

/// Waits until at least `n` rows arrived (the fault must strike mid-stream).
async fn until_rows(pool: &sqlx::PgPool, campaign: &str, n: i64) {
    let got = wait_rows(pool, campaign, n, Duration::from_secs(120)).await;
    assert!(got >= n, "only {got} rows arrived before the fault");
}

/// Everything arrived exactly once and the audit is clean.
async fn assert_complete(
    store: &stampede_service::store::Store,
    pool: &sqlx::PgPool,
    db: &str,
    campaign: &str,
) {
    let rows = wait_rows(pool, campaign, N as i64, Duration::from_secs(180)).await;
    assert_eq!(
        rows, N as i64,
        "every issuance reaches PostgreSQL exactly once"
    );
    let report = audit(store, db, campaign).await;
    assert!(report.clean, "{report:?}");
    assert_eq!(
        (report.persisted, report.duplicated, report.mismatched),
        (N as u64, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_stream_loses_and_duplicates_nothing() {
    let redis = RedisServer::start().await;
    let brokers = stack_kafka();
    let db = fresh_database(&stack_database()).await;
    let campaign = unique("kill-writer");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, N as u64, 4).await;
    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let relay = spawn_relay(
        relay_config(&redis.url(), &brokers, "r"),
        &metrics,
        &shutdown,
    );
    let w = writer_config(&brokers, &db, &campaign);
    let args = [
        "writer",
        "--batch-rows",
        "500",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let envs = [
        ("STAMPEDE_KAFKA_BROKERS", brokers.clone()),
        ("STAMPEDE_DATABASE_URL", db.clone()),
        ("STAMPEDE_REDIS_URL", redis.url()),
        ("STAMPEDE_WRITER_GROUP", w.group.clone()),
        ("STAMPEDE_WRITER_TOPICS", w.topics.clone()),
    ];
    let mut writer = Role::start(&args, &envs);
    let issuing = issue_in_background(store.clone(), campaign.clone());
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    until_rows(&pool, &campaign, 2_000).await;
    writer.kill9();
    writer.restart();
    issuing.await.unwrap();
    assert_complete(&store, &pool, &db, &campaign).await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_stream_loses_and_duplicates_nothing() {
    let redis = RedisServer::start().await;
    let brokers = stack_kafka();
    let db = fresh_database(&stack_database()).await;
    let campaign = unique("kill-relay");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, N as u64, 4).await;
    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let envs = [
        ("STAMPEDE_KAFKA_BROKERS", brokers.clone()),
        ("STAMPEDE_REDIS_URL", redis.url()),
        ("STAMPEDE_RELAY_CLAIM_IDLE_MS", "1000".into()),
        ("STAMPEDE_RELAY_BATCH", "500".into()),
    ];
    let mut relay = Role::start(
        &[
            "relay",
            "--metrics-listen",
            "127.0.0.1:0",
            "--relay-consumer",
            "first",
        ],
        &envs,
    );
    let issuing = issue_in_background(store.clone(), campaign.clone());
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    until_rows(&pool, &campaign, 2_000).await;
    relay.kill9();
    // A relay with another name must claim what the dead one left pending.
    let mut second = Role::start(
        &[
            "relay",
            "--metrics-listen",
            "127.0.0.1:0",
            "--relay-consumer",
            "second",
        ],
        &envs,
    );
    issuing.await.unwrap();
    assert_complete(&store, &pool, &db, &campaign).await;
    second.kill9();
    let mut conn = redis.conn().await;
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(format!("{{stampede:{campaign}}}:outbox"))
        .arg("relay")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        pending.count(),
        0,
        "nothing left pending for the dead relay"
    );
    shutdown.cancel();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_restart_mid_stream_loses_and_duplicates_nothing() {
    let redis = RedisServer::start().await;
    let kafka = PrivateKafka::start();
    let brokers = kafka.brokers();
    let db = fresh_database(&stack_database()).await;
    let campaign = unique("kafka-restart");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, N as u64 + 1, 4).await;
    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let relay = spawn_relay(
        relay_config(&redis.url(), &brokers, "r"),
        &metrics,
        &shutdown,
    );
    let issuing = issue_in_background(store.clone(), campaign.clone());
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    until_rows(&pool, &campaign, 2_000).await;
    kafka.stop();
    // Issuance goes on while the broker is away: the outbox holds it.
    let before = count_rows(&pool, &campaign).await;
    issue_range(&store, &campaign, N..N + 1).await;
    kafka.up();
    issuing.await.unwrap();
    let rows = wait_rows(&pool, &campaign, N as i64 + 1, Duration::from_secs(180)).await;
    assert_eq!(
        rows,
        N as i64 + 1,
        "issued while Kafka was down, delivered after (had {before})"
    );
    let report = audit(&store, &db, &campaign).await;
    assert!(report.clean, "{report:?}");
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_of_ten_seconds_loses_and_duplicates_nothing() {
    let redis = RedisServer::start().await;
    let pg = PrivatePostgres::start();
    let brokers = stack_kafka();
    let db = fresh_database(&pg.url()).await;
    let campaign = unique("db-outage");
    let store = store(&redis.url()).await;
    provision(&store, &brokers, &campaign, N as u64, 4).await;
    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let writer = spawn_writer(writer_config(&brokers, &db, &campaign), &metrics, &shutdown);
    let relay = spawn_relay(
        relay_config(&redis.url(), &brokers, "r"),
        &metrics,
        &shutdown,
    );
    let issuing = issue_in_background(store.clone(), campaign.clone());
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    until_rows(&pool, &campaign, 2_000).await;
    pg.stop();
    // The outage lasts as long as the drill says, not a synchronisation sleep.
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.up();
    issuing.await.unwrap();
    let pool = stampede_service::db::connect(&db, 1).await.unwrap();
    assert_complete(&store, &pool, &db, &campaign).await;
    let errors = metrics.render();
    assert!(
        common::sample(&errors, "stampede_writer_db_errors_total") >= 1.0,
        "the writer saw the outage and retried"
    );
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
}
