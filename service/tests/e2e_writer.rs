//! The writer on real Kafka and PostgreSQL, where its inputs or its database go wrong: a
//! seq that another user already holds is dead-lettered loudly (a replay of the same
//! issuance is not), and a database that turns read-only for a while holds the stream up
//! without dead-lettering anything, a dead letter Kafka never acknowledged is not
//! committed past, and a batch the database holds holds the commits of the batches after
//! it but not their writes. Beneath it, one insert: a batch holding a replay still lands
//! its other rows, and a seq another user holds is refused; and the keys compare as bytes
//! in a database whose default collation is a language's, after an upgrade too. Slow;
//! needs `scripts/stack up`.

mod common;

use std::time::Duration;

use common::letters::{
    DeadLetters, all_six_settle, dead_letter_topic_back, holding_all_six, issuance,
    poison_with_nowhere_to_go, produce_issuance, producer, stream_in_background,
    write_and_dead_letter,
};
use common::pipeline::{Fixture, spawn_writer, writer_config};
use common::private::PrivatePostgres;
use common::stack::{count_rows, stack_kafka, wait_rows};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_held_by_another_user_is_dead_lettered_loudly_and_a_replay_is_not() {
    let f = Fixture::new("seq-conflict", 100, 1).await;
    let c = &f.campaign;
    let holder = issuance(c, "holder", 1);
    // Redis lost the write that gave seq 1 to `holder` and gave it again to `second`.
    let second = issuance(c, "second", 1);
    let other = issuance(c, "other", 2);
    let p = producer(&f.brokers);
    // One partition, produced before the writer starts: one batch holds them all, the
    // replay of `holder` after the conflict included.
    for i in [&holder, &second, &holder, &other] {
        produce_issuance(&p, i).await;
    }
    let (writer, pool, letters) = write_and_dead_letter(&f, 2).await;
    let want = [("second".to_owned(), vec!["seq_conflict".to_owned()])];
    assert_eq!(
        letters,
        want.into_iter().collect(),
        "only the conflicting row, not the replay"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq",
    )
    .bind(c)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows, [("holder".to_owned(), 1), ("other".to_owned(), 2)]);
    let text = f.metrics.render();
    let counter = format!("stampede_writer_seq_conflicts_total{{campaign=\"{c}\"}}");
    assert_eq!(common::sample(&text, &counter), 1.0, "{text}");
    f.stop([writer]).await;
}

/// Runs `sql` (one statement) as the private server's superuser, in a session that is never
/// read-only itself.
async fn admin(pg: &PrivatePostgres, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    for stmt in ["SET default_transaction_read_only = off", sql] {
        sqlx::query(stmt).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

/// Turns the whole server read-only, as a failover to a standby does, and ends every
/// session of `database` so that the writer's next attempt meets the read-only server.
async fn go_read_only(pg: &PrivatePostgres, database: &str) {
    admin(pg, "ALTER SYSTEM SET default_transaction_read_only = on").await;
    admin(pg, "SELECT pg_reload_conf()").await;
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    );
    admin(pg, &kill).await;
}

async fn go_writable(pg: &PrivatePostgres) {
    admin(pg, "ALTER SYSTEM RESET default_transaction_read_only").await;
    admin(pg, "SELECT pg_reload_conf()").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_read_only_for_ten_seconds_dead_letters_nothing() {
    const N: u64 = 3_000;
    let pg = PrivatePostgres::start();
    let f = Fixture::on("read-only", N, 2, stack_kafka(), &pg.url()).await;
    let writer = f.spawn_writer();
    let streaming = stream_in_background(&f.brokers, &f.campaign, N, 100, false);
    let pool = f.pool().await;
    let got = wait_rows(&pool, &f.campaign, 500, Duration::from_secs(30)).await;
    assert!(got >= 500, "only {got} rows before the failover");
    let database = f.db.rsplit_once('/').unwrap().1.to_owned();
    go_read_only(&pg, &database).await;
    // The outage lasts as long as the drill says, not a synchronisation sleep.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = common::sample(&f.metrics.render(), "stampede_writer_db_errors_total");
    go_writable(&pg).await;
    streaming.await.unwrap();

    let pool = f.pool().await;
    let rows = wait_rows(&pool, &f.campaign, N as i64, Duration::from_secs(60)).await;
    assert_eq!(
        rows, N as i64,
        "every issuance arrives once the database is writable"
    );
    let letters = DeadLetters::open(&f.brokers, &f.campaign)
        .drain(Duration::from_secs(3))
        .await;
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}");
    assert!(
        during >= 1.0,
        "the writer met the read-only database and retried"
    );
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT seq) FROM coupon_issuances WHERE campaign = $1")
            .bind(&f.campaign)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(distinct, N as i64, "each seq once");
    f.stop([writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_abandoned_at_shutdown_is_not_committed_past() {
    let f = Fixture::new("dlq-away", 100, 1).await;
    poison_with_nowhere_to_go(&f).await;
    let writer = f.spawn_writer();
    let lag = holding_all_six(&f);
    common::eventually(
        "the writer holds the batch",
        Duration::from_secs(30),
        || async { f.metrics.render().contains(&lag).then_some(()) },
    )
    .await;
    f.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), writer).await;
    ended
        .expect("the writer stops within seconds")
        .unwrap()
        .unwrap();
    assert!(
        f.committed().await <= 0,
        "nothing committed past the poison"
    );

    // With its dead-letter topic back, a new writer settles everything.
    dead_letter_topic_back(&f).await;
    let shutdown = CancellationToken::new();
    let config = writer_config(&f.brokers, &f.db, &f.campaign);
    let again = spawn_writer(config, &f.metrics, &shutdown);
    all_six_settle(&f).await;
    shutdown.cancel();
    again.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_database_holds_holds_the_commits_after_it_but_not_their_writes() {
    let f = Fixture::new("in-flight", 100, 1).await;
    let c = &f.campaign;
    let pool = f.pool().await;
    stampede_core::db::migrate(&pool).await.unwrap();
    // Another session inserts u0's row and keeps its transaction open: the writer's insert
    // of the first batch (u0..u9) waits on it, as on any lock the database holds.
    let mut other = sqlx::PgConnection::connect(&f.db).await.unwrap();
    let mut held = other.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO coupon_issuances (campaign, user_id, seq, coupon_code, issued_at)
         VALUES ($1, 'u0', 1, 'C000001', now())",
    )
    .bind(c)
    .execute(&mut *held)
    .await
    .unwrap();
    let p = producer(&f.brokers);
    for n in 0..30 {
        produce_issuance(&p, &issuance(c, &format!("u{n}"), n + 1)).await;
    }
    let mut config = writer_config(&f.brokers, &f.db, c);
    config.batch_rows = 10;
    // Every message is in Kafka already: a long linger makes each batch exactly ten,
    // however the consumer's fetches split them.
    config.batch_linger = Duration::from_secs(10);
    config.batches_in_flight = 2;
    let writer = spawn_writer(config, &f.metrics, &f.shutdown);

    // The second batch is written beside the held first one…
    let second = wait_rows(&pool, c, 10, Duration::from_secs(30)).await;
    assert_eq!(
        second, 10,
        "the batch after the held one is written meanwhile"
    );
    // …but not committed past it: a crash now must replay u0..u9.
    for _ in 0..20 {
        let committed = f.committed().await;
        assert!(committed <= 0, "committed {committed} past the held batch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count_rows(&pool, c).await,
        10,
        "no third batch while two are in flight"
    );

    held.rollback().await.unwrap();
    assert_eq!(wait_rows(&pool, c, 30, Duration::from_secs(30)).await, 30);
    common::eventually(
        "every offset committed",
        Duration::from_secs(30),
        || async { (f.committed().await == 30).then_some(()) },
    )
    .await;
    f.stop([writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_skips_replays_and_refuses_a_seq_another_user_holds() {
    use stampede_core::db;
    let pool = migrated_fresh_database().await;
    let c = "plain-or-replay";
    let (a, b, c2) = (
        issuance(c, "a", 1),
        issuance(c, "b", 2),
        issuance(c, "c", 3),
    );
    let new = |n: u64| [(c.to_owned(), n)].into_iter().collect();
    assert_eq!(
        db::insert_batch(&pool, &[a.clone(), b.clone()])
            .await
            .unwrap(),
        new(2)
    );
    // A batch holding a replay: the plain insert is refused, the rest still lands.
    assert_eq!(
        db::insert_batch(&pool, &[a.clone(), c2.clone()])
            .await
            .unwrap(),
        new(1)
    );
    assert_eq!(
        db::insert_batch(&pool, std::slice::from_ref(&b))
            .await
            .unwrap(),
        new(0)
    );
    // A seq another user holds is refused, with a replay in the batch or without.
    let taker = issuance(c, "d", 1);
    for batch in [vec![taker.clone()], vec![a.clone(), taker.clone()]] {
        let e = db::insert_batch(&pool, &batch).await.unwrap_err();
        assert!(db::is_seq_conflict(&e), "{e}");
    }
    assert_eq!(common::stack::row_seqs(&pool, c).await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_keeps_its_issue_time_and_one_beyond_timestamps_is_a_data_error() {
    use stampede_core::db;
    let pool = migrated_fresh_database().await;
    let c = "issue-times";
    let mut before_2000 = issuance(c, "old", 1);
    before_2000.issued_at_ms = 946_684_799_999; // 1999-12-31T23:59:59.999Z
    let rows = [before_2000, issuance(c, "new", 2)];
    db::insert_batch(&pool, &rows).await.unwrap();
    for r in &rows {
        let (ms,): (i64,) = sqlx::query_as(
            "SELECT (extract(epoch FROM issued_at) * 1000)::int8 FROM coupon_issuances
             WHERE campaign = $1 AND user_id = $2",
        )
        .bind(c)
        .bind(&r.user_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(ms, r.issued_at_ms, "{}", r.user_id);
    }
    // Past what a timestamp holds: refused as data (dead-lettered), nothing stored. The
    // first two fit the binary COPY's field and PostgreSQL refuses them; the last does not.
    for ms in [9_224_318_184_800_000, -300_000_000_000_000, i64::MAX] {
        let mut far = issuance(c, "far", 3);
        far.issued_at_ms = ms;
        let e = db::insert_batch(&pool, &[far]).await.unwrap_err();
        assert!(db::is_data_error(&e), "{ms}: {e}");
    }
    assert_eq!(common::stack::row_seqs(&pool, c).await, [1, 2]);
    // A key too large for its index (a message produced to the topic by something else,
    // past the decoder's bound): a data error too, not the database's trouble.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: String = (0..8_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 94) as u8)
        })
        .collect();
    let e = db::insert_batch(&pool, &[issuance(c, &noise, 4)])
        .await
        .unwrap_err();
    assert!(db::is_data_error(&e), "{e}");
}

/// A pool of one connection on a fresh database with the schema applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_compare_as_bytes_in_a_database_whose_default_order_is_a_language() {
    use stampede_core::db;
    let icu = "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8' TEMPLATE template0";
    let url = common::stack::fresh_database_with(&common::stack::stack_database(), icu).await;
    let pool = db::connect(&url, 1).await.unwrap();
    let language_order: bool = sqlx::query_scalar("SELECT 'a' < 'B'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(language_order, "the database orders text as en-US does");
    // A database the first release migrated, holding rows: the upgrade rebuilds its keys.
    assert_eq!(db::migrate_through(&pool, 1).await.unwrap(), [1]);
    let c = "byte-order";
    let new = |n: u64| [(c.to_owned(), n)].into_iter().collect();
    let (a, b) = (issuance(c, "a", 1), issuance(c, "B", 2));
    assert_eq!(
        db::insert_batch(&pool, std::slice::from_ref(&a))
            .await
            .unwrap(),
        new(1)
    );
    assert_eq!(db::migrate(&pool).await.unwrap(), [2]);
    assert_eq!(db::insert_batch(&pool, &[a, b]).await.unwrap(), new(1));
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM coupon_issuances WHERE campaign = $1 ORDER BY campaign, user_id",
    )
    .bind(c)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        users,
        ["B", "a"],
        "byte order, and the replay of a was skipped"
    );
}

async fn migrated_fresh_database() -> sqlx::PgPool {
    let url = common::stack::fresh_database(&common::stack::stack_database()).await;
    let pool = stampede_core::db::connect(&url, 1).await.unwrap();
    stampede_core::db::migrate(&pool).await.unwrap();
    pool
}
