//! A sharded campaign end to end on real Redis (a cluster with
//! `STAMPEDE_TEST_REDIS_CLUSTER=1`), Kafka and PostgreSQL: the outbox of every bucket drains
//! to the campaign's one topic, every issuance lands once, the rows' seqs are exactly
//! 1..=stock after a sell-out, the audit (holders of every bucket, the ledger, the seqs
//! the buckets issued) is clean, and so are the drift gauges halfway.

mod common;

use std::time::Duration;

use common::pipeline::{Fixture, issue_range};
use common::stack::{row_seqs, wait_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_buckets_issuances_land_once_and_the_audit_is_clean() {
    const STOCK: usize = 3_000;
    let f = Fixture::sharded("shards", STOCK as u64, 3, 4).await;
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    // Half the stock, each bucket holding a block of seqs of its own: the drift gauges,
    // which read a plain campaign's rows by seq, must not count seqs no bucket reached.
    issue_range(&f.store, &f.campaign, 0..STOCK / 2).await;
    let pool = f.pool().await;
    assert_eq!(
        wait_rows(
            &pool,
            &f.campaign,
            STOCK as i64 / 2,
            Duration::from_secs(120)
        )
        .await,
        STOCK as i64 / 2
    );
    let gauges = drift_gauges(&f, &pool).await;
    assert_eq!(
        gauges,
        (0.0, 0.0),
        "unpersisted and excess rows, all persisted"
    );
    issue_range(&f.store, &f.campaign, STOCK / 2..STOCK).await;

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

/// The drift gauges of `f`'s campaign once its reporter has read them (no grace: every
/// issuance counts).
async fn drift_gauges(f: &Fixture, pool: &sqlx::PgPool) -> (f64, f64) {
    let config = stampede_service::audit::DriftConfig {
        every: Duration::from_millis(100),
        grace: Duration::ZERO,
        campaigns: Some([f.campaign.clone()].into()),
    };
    let reporter = tokio::spawn(stampede_service::audit::report_unpersisted(
        f.store.clone(),
        pool.clone(),
        f.metrics.pipeline.clone(),
        config,
        f.shutdown.clone(),
    ));
    let gauge = |name: &str| format!("{name}{{campaign=\"{}\"}}", f.campaign);
    let (unpersisted, excess) = (
        gauge("stampede_unpersisted_issuances"),
        gauge("stampede_audit_excess_rows"),
    );
    let read = common::eventually("the drift gauges", Duration::from_secs(10), || {
        let text = f.metrics.render();
        let both = text.contains(&unpersisted) && text.contains(&excess);
        let values = (
            common::sample(&text, &unpersisted),
            common::sample(&text, &excess),
        );
        async move { both.then_some(values) }
    })
    .await;
    reporter.abort();
    read
}
