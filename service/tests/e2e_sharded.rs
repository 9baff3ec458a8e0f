//! A sharded campaign end to end on real Redis (a cluster with
//! `STAMPEDE_TEST_REDIS_CLUSTER=1`), Kafka and PostgreSQL: the outbox of every bucket drains
//! to the campaign's one topic, every issuance lands once, the rows' seqs are exactly
//! 1..=stock after a sell-out, and the audit (holders of every bucket, the ledger, the seqs
//! the buckets issued) is clean.

mod common;

use std::time::Duration;

use common::pipeline::{Fixture, issue_range};
use common::stack::{row_seqs, wait_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_buckets_issuances_land_once_and_the_audit_is_clean() {
    const STOCK: usize = 3_000;
    let f = Fixture::sharded("shards", STOCK as u64, 3, 4).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    issue_range(&f.store, &f.campaign, 0..STOCK).await;

    let pool = f.pool().await;
    let rows = wait_rows(&pool, &f.campaign, STOCK as i64, Duration::from_secs(120)).await;
    assert_eq!(rows, STOCK as i64, "every issuance reaches PostgreSQL");
    let seqs = row_seqs(&pool, &f.campaign).await;
    assert_eq!(
        seqs,
        (1..=STOCK as i64).collect::<Vec<_>>(),
        "seqs 1..=stock, once each"
    );
    let report = f.audit().await;
    assert!(report.clean, "{report:?}");
    let ledger = report.shards.as_ref().expect("a sharded campaign's ledger");
    assert_eq!(ledger.buckets.len(), 4);
    assert_eq!(
        (
            report.persisted,
            report.holders,
            report.missing,
            report.seqs.lost
        ),
        (STOCK as u64, STOCK as u64, 0, 0)
    );
    f.stop([writer, relay]).await;
}
