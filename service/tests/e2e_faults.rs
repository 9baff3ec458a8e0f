//! Fault drills on real Redis, Kafka and PostgreSQL: a process killed with SIGKILL, a
//! broker restart and a database outage in the middle of a stream lose and duplicate
//! nothing: checked in PostgreSQL, and read back from Kafka and its dead-letter topic.
//! Slow; needs `scripts/stack up`.

mod common;

use std::time::Duration;

use common::ledger::assert_exactly_once;
use common::pipeline::{Fixture, issue_range, spawn_writer, writer_config};
use common::private::{PrivateKafka, PrivatePostgres};
use common::role::Role;
use common::stack::{stack_database, stack_kafka, wait_rows};

const N: usize = 20_000;

/// Issues `slices` of the N coupons (twentieths) in the background, so faults land mid-stream.
fn issue_in_background(f: &Fixture, slices: std::ops::Range<usize>) -> tokio::task::JoinHandle<()> {
    let (store, campaign) = (f.store.clone(), f.campaign.clone());
    tokio::spawn(async move {
        for slice in slices {
            issue_range(&store, &campaign, slice * N / 20..(slice + 1) * N / 20).await;
        }
    })
}

/// Waits until at least 2 000 rows arrived: the fault must strike mid-stream.
async fn mid_stream(f: &Fixture, pool: &sqlx::PgPool) {
    let got = wait_rows(pool, &f.campaign, 2_000, Duration::from_secs(120)).await;
    assert!(got >= 2_000, "only {got} rows arrived before the fault");
}

/// Every one of `n` issuances arrived exactly once and the audit is clean; read back from
/// Kafka, every seq was carried (duplicates there are allowed: delivery is at least once),
/// nothing was dead-lettered, and PostgreSQL holds seqs 1..=n once each with the user and
/// code Redis gave them, and nothing else.
async fn assert_complete(f: &Fixture, pool: &sqlx::PgPool, n: usize) {
    let rows = wait_rows(pool, &f.campaign, n as i64, Duration::from_secs(180)).await;
    if rows != n as i64 {
        panic!(
            "every issuance reaches PostgreSQL exactly once: {rows} rows of {n}\n{}",
            f.whereabouts(rows).await
        );
    }
    let report = f.audit().await;
    assert!(report.clean, "{report:?}");
    assert_eq!(
        (report.persisted, report.duplicated, report.mismatched),
        (n as u64, 0, 0)
    );
    let dup = assert_exactly_once(&f.redis, &f.brokers, pool, &f.campaign, n as u64).await;
    eprintln!("{}: Kafka carried {dup} duplicate messages", f.campaign);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_stream_loses_and_duplicates_nothing() {
    let f = Fixture::new("kill-writer", N as u64, 4).await;
    let relay = f.spawn_relay();
    let envs = f.writer_env();
    let args = [
        "writer",
        "--batch-rows",
        "500",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let mut writer = Role::start(&args, &envs);
    let issuing = issue_in_background(&f, 0..20);
    let pool = f.pool().await;
    mid_stream(&f, &pool).await;
    writer.kill9();
    writer.restart();
    issuing.await.unwrap();
    assert_complete(&f, &pool, N).await;
    f.stop([relay]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_stream_loses_and_duplicates_nothing() {
    let f = Fixture::new("kill-relay", N as u64, 4).await;
    let writer = f.spawn_writer();
    let envs = [
        ("STAMPEDE_KAFKA_BROKERS", f.brokers.clone()),
        ("STAMPEDE_REDIS_URL", f.redis.url()),
        ("STAMPEDE_RELAY_CLAIM_IDLE_MS", "1000".into()),
        ("STAMPEDE_RELAY_BATCH", "500".into()),
    ];
    let relay_as = |name: &str| {
        let args = [
            "relay",
            "--metrics-listen",
            "127.0.0.1:0",
            "--relay-consumer",
            name,
        ];
        Role::start(&args, &envs)
    };
    let mut first = relay_as("first");
    let issuing = issue_in_background(&f, 0..20);
    let pool = f.pool().await;
    mid_stream(&f, &pool).await;
    first.kill9();
    // A relay with another name must claim what the dead one left pending.
    let mut second = relay_as("second");
    issuing.await.unwrap();
    assert_complete(&f, &pool, N).await;
    // The rows can reach PostgreSQL before the relay has read Kafka's acknowledgements and
    // removed their entries: wait for that, bounded, before stopping it.
    let outbox = common::key(&f.campaign, "outbox");
    let pending = || async {
        let mut conn = f.redis.conn().await;
        let reply: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(&outbox)
            .arg("relay")
            .query_async(&mut conn)
            .await
            .unwrap();
        reply.count()
    };
    common::eventually(
        "nothing left pending for the dead relay",
        Duration::from_secs(30),
        || async { (pending().await == 0).then_some(()) },
    )
    .await;
    second.kill9();
    assert_eq!(
        pending().await,
        0,
        "nothing left pending for the dead relay"
    );
    f.stop([writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_restart_mid_stream_loses_and_duplicates_nothing() {
    let kafka = PrivateKafka::start();
    let f = Fixture::on(
        "kafka-restart",
        N as u64 + 1,
        4,
        kafka.brokers(),
        &stack_database(),
    )
    .await;
    // Small batches: the broker stops while the writer holds many asynchronous offset
    // commits for the group coordinator, the case that left librdkafka's consumer waiting
    // for a coordinator for good (the writer replaces a consumer whose membership stalls).
    let mut config = writer_config(&f.brokers, &f.db, &f.campaign);
    config.batch_rows = 50;
    let writer = spawn_writer(config, &f.metrics, &f.shutdown);
    let relay = f.spawn_relay();
    let issuing = issue_in_background(&f, 0..20);
    let pool = f.pool().await;
    mid_stream(&f, &pool).await;
    kafka.stop();
    // Issuance goes on while the broker is away: the outbox holds it.
    issue_range(&f.store, &f.campaign, N..N + 1).await;
    // Away past the writer's session (10 s) and its stall limit (20 s in tests): the drill's
    // length, not a wait for a condition. The broker comes back to a group whose session
    // has expired, with the commits still waiting.
    tokio::time::sleep(Duration::from_secs(25)).await;
    kafka.up();
    issuing.await.unwrap();
    assert_complete(&f, &pool, N + 1).await;
    let text = f.metrics.render();
    let rebuilds = common::sample(&text, "stampede_writer_consumer_rebuilds_total");
    eprintln!(
        "writer consumer rebuilds: {rebuilds}; relay producer renewals: {}",
        common::sample(&text, "stampede_relay_producer_renewals_total"),
    );
    assert!(
        rebuilds >= 1.0,
        "the writer replaced its consumer, out of its group longer than the stall limit"
    );
    f.stop([relay, writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_of_ten_seconds_loses_and_duplicates_nothing() {
    let pg = PrivatePostgres::start();
    let f = Fixture::on("db-outage", N as u64, 4, stack_kafka(), &pg.url()).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    let first_half = issue_in_background(&f, 0..10);
    let pool = f.pool().await;
    mid_stream(&f, &pool).await;
    pg.stop();
    // The second half is issued during the outage, so the writer has rows to write into it
    // however fast the first half went (on a faster VM every row was in before the fault).
    let second_half = issue_in_background(&f, 10..20);
    // The outage lasts as long as the drill says, not a synchronisation sleep.
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.up();
    first_half.await.unwrap();
    second_half.await.unwrap();
    assert_complete(&f, &f.pool().await, N).await;
    let text = f.metrics.render();
    assert!(
        common::sample(&text, "stampede_writer_db_errors_total") >= 1.0,
        "the writer saw the outage and retried"
    );
    f.stop([relay, writer]).await;
}
