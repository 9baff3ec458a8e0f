//! The writer when PostgreSQL's node vanishes mid-write: the server neither answers nor
//! closes (TCP would report it only after about 15 minutes). The write is given up after
//! the writer's time limit and written again on a new connection, nothing lost and nothing
//! committed past; and shutdown gives up such a write after its grace instead of waiting
//! for TCP. On the stack's Kafka and a private PostgreSQL behind a proxy that goes silent.
//! And a write waiting on a lock is ended by the server at the writer's limit, so retries
//! do not pile up backends waiting on the same lock. Slow;
//! needs `scripts/stack up`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::letters::{issuance, produce_issuance, producer};
use common::pipeline::{Fixture, spawn_writer, writer_config};
use common::private::PrivatePostgres;
use common::stack::{count_rows, stack_kafka, wait_rows};
use common::stall::StallingProxy;
use sqlx::Connection;

/// What a COPY of the writer's starts with.
const COPY: &[u8] = b"COPY coupon_issuances";

/// `url` with its host and port replaced by `addr`, TLS off (the proxy reads the requests).
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    format!("{scheme_user}@{addr}/{path}?sslmode=disable")
}

/// The host and port of `url`.
fn server_of(url: &str) -> SocketAddr {
    let (_, rest) = url.split_once('@').unwrap();
    let (authority, _) = rest.split_once('/').unwrap();
    authority.parse().unwrap()
}

/// A fixture of `n` issuances produced to the campaign's topic, on a private PostgreSQL
/// without TLS (the stack's speaks only TLS, which the proxy cannot read), and a proxy in
/// front of it that silences the first COPY.
async fn stalling(prefix: &str, n: u64) -> (Fixture, StallingProxy, PrivatePostgres) {
    let pg = PrivatePostgres::start();
    let f = Fixture::on(prefix, n, 1, stack_kafka(), &pg.url()).await;
    let proxy = StallingProxy::start(server_of(&f.db), COPY).await;
    let p = producer(&f.brokers);
    for seq in 1..=n {
        produce_issuance(&p, &issuance(&f.campaign, &format!("u{seq}"), seq)).await;
    }
    (f, proxy, pg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_database_never_answers_is_given_up_and_written_again() {
    const N: u64 = 300;
    let (f, proxy, _pg) = stalling("stalled-write", N).await;
    let mut config = writer_config(&f.brokers, &through(&f.db, proxy.addr), &f.campaign);
    config.write_timeout = Duration::from_secs(2);
    let writer = spawn_writer(config, &f.metrics, &f.shutdown);
    assert!(
        proxy.until_stalled(Duration::from_secs(30)).await,
        "the writer's first COPY met the silent server"
    );
    let pool = f.pool().await;
    let rows = wait_rows(&pool, &f.campaign, N as i64, Duration::from_secs(60)).await;
    assert_eq!(rows, N as i64, "every row lands through a new connection");
    let errors = common::sample(&f.metrics.render(), "stampede_writer_db_errors_total");
    assert!(
        errors >= 1.0,
        "the write given up counts as a database error"
    );
    f.stop([writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_a_write_the_database_never_answers() {
    let (f, proxy, _pg) = stalling("stalled-stop", 50).await;
    let mut config = writer_config(&f.brokers, &through(&f.db, proxy.addr), &f.campaign);
    // Far beyond the test: only shutdown can end the write.
    config.write_timeout = Duration::from_secs(3_600);
    let writer = spawn_writer(config, &f.metrics, &f.shutdown);
    assert!(proxy.until_stalled(Duration::from_secs(30)).await);
    let start = Instant::now();
    f.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(20), writer).await;
    let took = start.elapsed();
    ended
        .expect("the writer stops within its shutdown grace")
        .unwrap()
        .unwrap();
    assert!(
        took >= Duration::from_secs(4),
        "the write had its grace: {took:?}"
    );
    let committed = f.committed().await;
    assert!(
        committed < 0,
        "nothing committed past the batch that was never written: {committed}"
    );
    assert_eq!(count_rows(&f.pool().await, &f.campaign).await, 0);
}

/// Backends of the test's database waiting on a lock, the asker's own excepted.
async fn waiting_on_locks(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_on_a_lock_keeps_one_backend_per_batch_in_flight() {
    const N: u64 = 200;
    let f = Fixture::new("locked-write", N, 1).await;
    let mut config = writer_config(&f.brokers, &f.db, &f.campaign);
    config.write_timeout = Duration::from_secs(2);
    let in_flight = config.batches_in_flight as i64;
    let writer = spawn_writer(config, &f.metrics, &f.shutdown);
    let p = producer(&f.brokers);
    produce_issuance(&p, &issuance(&f.campaign, "u1", 1)).await;
    let pool = f.pool().await;
    assert_eq!(
        wait_rows(&pool, &f.campaign, 1, Duration::from_secs(30)).await,
        1
    );
    // A migration's lock, held for 12 s: six of the writer's time limits.
    let mut lock = sqlx::PgConnection::connect(&f.db).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE coupon_issuances IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    for seq in 2..=N {
        produce_issuance(&p, &issuance(&f.campaign, &format!("u{seq}"), seq)).await;
    }
    let (start, mut most) = (Instant::now(), 0);
    while start.elapsed() < Duration::from_secs(12) {
        most = most.max(waiting_on_locks(&pool).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    let rows = wait_rows(&pool, &f.campaign, N as i64, Duration::from_secs(60)).await;
    assert_eq!(rows, N as i64, "every row lands once the lock is gone");
    assert!(most >= 1, "the writer waited on the lock");
    assert!(
        most <= in_flight,
        "{most} backends waited on the lock at once: writes the writer gave up kept waiting"
    );
    f.stop([writer]).await;
}
