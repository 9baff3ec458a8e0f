//! The writer as a process among others, on real Kafka and PostgreSQL: SIGTERM in the
//! middle of a stream (after it dead-lettered something), or while a dead letter cannot be
//! delivered, ends it within seconds and loses nothing, and a rebalance takes the lag
//! gauges of the partitions it moved away. Slow; needs `scripts/stack up`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::letters::{
    DeadLetters, all_six_settle, dead_letter_topic_back, holding_all_six,
    poison_with_nowhere_to_go, stream_in_background,
};
use common::pipeline::{Fixture, spawn_writer, writer_config};
use common::role::Role;
use common::stack::wait_rows;
use common::{eventually, free_port};
use stampede_service::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Good issuances the stream carries.
const N: u64 = 3_000;
/// One poison message in front of every this many issuances.
const POISON_EVERY: u64 = 100;

/// `stampede-service writer` on the fixture's campaign, small batches.
fn writer_process(f: &Fixture) -> Role {
    let envs = f.writer_env();
    let args = [
        "writer",
        "--batch-rows",
        "100",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    Role::start(&args, &envs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_after_dead_letters_exits_and_loses_nothing() {
    let f = Fixture::new("sigterm", N, 2).await;
    let mut writer = writer_process(&f);
    let producing = stream_in_background(&f.brokers, &f.campaign, N, POISON_EVERY, true);
    let pool = f.pool().await;
    let letters = DeadLetters::open(&f.brokers, &f.campaign);
    let first = letters.next(Duration::from_secs(30)).await;
    assert!(first.is_some(), "the writer dead-letters the first poison");
    let got = wait_rows(&pool, &f.campaign, 500, Duration::from_secs(30)).await;
    assert!(got >= 500, "only {got} rows before SIGTERM");
    assert!(!producing.is_finished(), "SIGTERM must land mid-stream");

    let status = writer.terminate(Duration::from_secs(5));
    let status = status.expect("the writer exits within 5 s of SIGTERM");
    assert!(status.success(), "clean exit: {status}");

    // A writer of the same group takes over from the committed offsets: whatever the first
    // one had in flight arrives, nothing is skipped.
    producing.await.unwrap();
    let successor = f.spawn_writer();
    let rows = wait_rows(&pool, &f.campaign, N as i64, Duration::from_secs(60)).await;
    assert_eq!(rows, N as i64, "every issuance reaches PostgreSQL");
    let mut keys: HashSet<String> = first.into_iter().map(|l| l.key).collect();
    keys.extend(letters.drain(Duration::from_secs(3)).await.into_keys());
    let poison: HashSet<String> = (0..N / POISON_EVERY)
        .map(|c| format!("poison-{c}"))
        .collect();
    assert_eq!(
        keys, poison,
        "every poison message, and only those, dead-lettered"
    );
    f.stop([successor]).await;
}

/// SIGTERM while the writer is stuck on a dead letter Kafka cannot take (its topic is gone):
/// the process exits within seconds (the code before the writer's rework waited out the
/// producer's 30 s message timeout, and then committed past the letter), commits nothing
/// past it, and a successor delivers it once the topic is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_dead_letter_cannot_be_delivered_exits_within_seconds() {
    let f = Fixture::new("sigterm-dlq", 100, 1).await;
    poison_with_nowhere_to_go(&f).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["writer", "--batch-rows", "100", "--metrics-listen", &listen];
    let mut writer = Role::start(&args, &f.writer_env());
    let lag = holding_all_six(&f);
    let url = format!("http://{listen}/metrics");
    eventually(
        "the writer holds the batch",
        Duration::from_secs(30),
        || {
            let (url, lag) = (url.clone(), lag.clone());
            async move {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                text.contains(&lag).then_some(())
            }
        },
    )
    .await;

    let status = writer.terminate(Duration::from_secs(5));
    let status = status.expect("the writer exits within 5 s of SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    assert!(
        f.committed().await <= 0,
        "nothing committed past the letter"
    );

    dead_letter_topic_back(&f).await;
    let successor = f.spawn_writer();
    all_six_settle(&f).await;
    f.stop([successor]).await;
}

/// The partitions `metrics` reports a consumer lag for.
fn lag_partitions(metrics: &Metrics) -> Vec<String> {
    let text = metrics.render();
    let mut parts: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("stampede_writer_consumer_lag{partition=\""))
        .filter_map(|l| l.split('"').next().map(str::to_owned))
        .collect();
    parts.sort();
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_takes_the_lag_series_of_the_partitions_it_moved() {
    let f = Fixture::new("rebalance", 200, 2).await;
    stream_in_background(&f.brokers, &f.campaign, 200, 100, false)
        .await
        .unwrap();
    let config = writer_config(&f.brokers, &f.db, &f.campaign);
    let (first, second) = (Metrics::new(), Metrics::new());
    let stop = CancellationToken::new();
    let a = spawn_writer(config.clone(), &first, &stop);
    let both = vec!["0".to_owned(), "1".to_owned()];
    eventually(
        "the first writer reports both partitions",
        Duration::from_secs(30),
        || {
            let ok = lag_partitions(&first) == both;
            async move { ok.then_some(()) }
        },
    )
    .await;

    // A second writer joins the group: each gets one partition, and the first writer
    // stops reporting the one it gave away.
    let b = spawn_writer(config, &second, &stop);
    let split = eventually("one partition each", Duration::from_secs(40), || {
        let (x, y) = (lag_partitions(&first), lag_partitions(&second));
        async move { (x.len() == 1 && y.len() == 1).then_some((x, y)) }
    })
    .await;
    assert_ne!(split.0, split.1, "no partition reported by both writers");
    stop.cancel();
    for w in [a, b] {
        w.await.unwrap().unwrap();
    }
}
