//! The audit: Redis (what was promised) against PostgreSQL (what was persisted).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use stampede_core::Error;
use stampede_core::coupon::HolderRecord;
use stampede_core::db;
use stampede_core::ids::CampaignId;
use stampede_core::issuance::Issuance;
use stampede_core::store::Store;
use stampede_core::store::shard_audit::ShardLedger;

mod drift;
mod seqs;

pub use drift::{DriftConfig, report_unpersisted};
pub use seqs::SeqReport;

/// What the audit found for one campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Campaign id.
    pub campaign: String,
    /// Stock total in Redis.
    pub stock: u64,
    /// Coupons issued according to Redis (the last seq).
    pub issued: u64,
    /// Holders recorded in Redis.
    pub holders: u64,
    /// Rows in PostgreSQL.
    pub persisted: u64,
    /// Entries still in the outbox stream.
    pub outbox_pending: u64,
    /// Holders not yet in PostgreSQL but still on their way (in the outbox, or issued
    /// within the grace period).
    pub in_flight: u64,
    /// Holders not in PostgreSQL and no longer on their way.
    pub missing: u64,
    /// Coupons beyond the stock.
    pub oversold: u64,
    /// Seqs given to more than one user.
    pub duplicated: u64,
    /// Users whose seq differs between Redis and PostgreSQL.
    pub mismatched: u64,
    /// Rows in PostgreSQL for users Redis does not know (Redis lost data).
    pub unknown_in_redis: u64,
    /// Missing issuances put back into the outbox by `--repair`.
    pub repaired: u64,
    /// Holders Redis had lost, given back from PostgreSQL by `--repair` (so that asking
    /// again answers their coupon, not a second one).
    pub restored: u64,
    /// How far `--repair` moved the issued counter (a sharded campaign's buckets' in all)
    /// past seqs PostgreSQL holds, so that none is handed out again.
    pub counter_raised: u64,
    /// The reconciliation by seq (what a Redis that lost writes did).
    pub seqs: SeqReport,
    /// Set while the campaign is suspended because Redis may have lost writes.
    pub suspended: bool,
    /// A sharded campaign's buckets, transfers in transit and ledger problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardLedger>,
    /// Nothing oversold, duplicated, mismatched, missing, issued twice or lost.
    pub clean: bool,
}

/// What the audit compares, gathered from Redis and PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct AuditInput<'a> {
    /// Campaign id.
    pub campaign: &'a str,
    /// Stock total in Redis.
    pub stock: u64,
    /// Issued counter in Redis.
    pub issued: u64,
    /// The highest seq an issuer reported acknowledging when Redis' epoch changed.
    pub acked_high: u64,
    /// Redis holders: user → record.
    pub holders: &'a HashMap<String, HolderRecord>,
    /// Entries still in the outbox stream: user → seq.
    pub outbox: &'a HashMap<String, u64>,
    /// PostgreSQL rows: user → seq.
    pub persisted: &'a HashMap<String, u64>,
    /// Redis time of the snapshot.
    pub now_ms: i64,
    /// Younger issuances are in flight, not missing.
    pub grace: Duration,
    /// A sharded campaign's issued and owed seqs (see `seqs::SeqSources::expected`).
    pub expected: Option<(&'a [u64], &'a [u64])>,
}

/// The users `--repair` acts on, sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Held in Redis, not in PostgreSQL and no longer on their way.
    pub missing: Vec<String>,
    /// In PostgreSQL, not held in Redis.
    pub unknown: Vec<String>,
    /// In PostgreSQL with a seq the counter (a bucket's) has not counted: it would be
    /// handed out again.
    pub uncounted: Vec<String>,
}

/// The comparison itself, free of I/O: the report, and the users a repair acts on.
pub fn compare(input: AuditInput<'_>) -> (AuditReport, Repairs) {
    #[rustfmt::skip]
    let AuditInput { campaign, stock, issued, acked_high, holders, outbox, persisted, now_ms, grace, expected } = input;
    let grace_ms = grace.as_millis() as i64;
    let mut r = AuditReport {
        campaign: campaign.to_owned(),
        stock,
        issued,
        holders: holders.len() as u64,
        persisted: persisted.len() as u64,
        outbox_pending: outbox.len() as u64,
        ..Default::default()
    };
    let mut missing = Vec::new();
    for (user, rec) in holders {
        match persisted.get(user) {
            Some(seq) if *seq != rec.seq => r.mismatched += 1,
            Some(_) => {}
            None if outbox.contains_key(user) || now_ms - rec.issued_ms < grace_ms => {
                r.in_flight += 1
            }
            None => {
                r.missing += 1;
                missing.push(user.clone());
            }
        }
    }
    let mut unknown: Vec<String> = (persisted.keys())
        .filter(|u| !holders.contains_key(*u))
        .cloned()
        .collect();
    r.unknown_in_redis = unknown.len() as u64;
    r.oversold = persisted.values().filter(|s| **s > stock).count() as u64
        + (holders.len() as u64).saturating_sub(stock)
        + issued.saturating_sub(stock);
    r.duplicated =
        duplicates(persisted.values().copied()) + duplicates(holders.values().map(|h| h.seq));
    r.seqs = seqs::reconcile(seqs::SeqSources {
        holders,
        outbox,
        persisted,
        issued,
        acked_high,
        expected,
    });
    r.clean = r.missing == 0
        && r.oversold == 0
        && r.duplicated == 0
        && r.mismatched == 0
        && r.seqs.clean();
    missing.sort();
    unknown.sort();
    let uncounted = uncounted(persisted, issued, expected);
    #[rustfmt::skip]
    return (r, Repairs { missing, unknown, uncounted });
}

/// The users of `persisted` whose seq the counter has not counted (a sharded campaign's:
/// that are not among its buckets' issued seqs), sorted.
fn uncounted(
    persisted: &HashMap<String, u64>,
    issued: u64,
    expected: Option<(&[u64], &[u64])>,
) -> Vec<String> {
    let counted: HashSet<u64> = expected
        .iter()
        .flat_map(|(i, _)| i.iter().copied())
        .collect();
    let mut users: Vec<String> = (persisted.iter())
        .filter(|(_, q)| match expected {
            Some(_) => !counted.contains(q),
            None => **q > issued,
        })
        .map(|(u, _)| u.clone())
        .collect();
    users.sort();
    users
}

fn duplicates(seqs: impl Iterator<Item = u64>) -> u64 {
    let mut seen = HashSet::new();
    seqs.filter(|s| !seen.insert(*s)).count() as u64
}

/// Audits one campaign; with `repair`, re-enqueues missing issuances to the outbox, gives
/// Redis back the holders it lost and brings its counters past the seqs PostgreSQL holds.
pub async fn audit(
    store: &Store,
    pool: &PgPool,
    campaign: &CampaignId,
    grace: Duration,
    repair: bool,
) -> Result<AuditReport, Error> {
    let snap = store
        .snapshot(campaign)
        .await?
        .ok_or_else(|| Error::CampaignNotFound(campaign.to_string()))?;
    let holders = store.holders(campaign).await?;
    let outbox = store.outbox_seqs(campaign).await?;
    let persisted = db::persisted_seqs(pool, campaign.as_str()).await?;
    let ledger = store.shard_ledger(campaign).await?;
    let (mut report, todo) = compare(AuditInput {
        campaign: campaign.as_str(),
        stock: snap.total,
        issued: snap.issued,
        acked_high: snap.acked_high,
        holders: &holders,
        outbox: &outbox,
        persisted: &persisted,
        now_ms: snap.now_ms,
        grace,
        expected: ledger
            .as_ref()
            .map(|l| (l.issued_seqs.as_slice(), l.owed_seqs.as_slice())),
    });
    report.suspended = snap.suspension.is_some();
    if let Some(l) = ledger {
        report.clean &= l.problems.is_empty();
        report.shards = Some(l);
    }
    if repair {
        self::repair(store, pool, campaign, &holders, todo, &mut report).await?;
    }
    Ok(report)
}

/// Re-enqueues the missing issuances to the outbox, gives Redis back the holders it lost
/// and brings its counters past the seqs PostgreSQL holds; counts each in `report`.
async fn repair(
    store: &Store,
    pool: &PgPool,
    campaign: &CampaignId,
    holders: &HashMap<String, HolderRecord>,
    todo: Repairs,
    report: &mut AuditReport,
) -> Result<(), Error> {
    if !todo.missing.is_empty() {
        let again: Vec<Issuance> = (todo.missing.iter())
            .map(|u| {
                let h = &holders[u];
                Issuance {
                    campaign: campaign.to_string(),
                    user_id: u.clone(),
                    seq: h.seq,
                    coupon_code: h.code.clone(),
                    issued_at_ms: h.issued_ms,
                }
            })
            .collect();
        store.requeue(campaign, &again).await?;
        report.repaired = again.len() as u64;
    }
    // After a Redis loss the users it forgot and those beyond its counter are mostly the
    // same: their rows are read once, and both repairs take them all (restoring keeps the
    // holders Redis has, raising only moves a counter forward).
    let mut from_db: Vec<String> = todo.unknown.into_iter().chain(todo.uncounted).collect();
    from_db.sort_unstable();
    from_db.dedup();
    if !from_db.is_empty() {
        let rows = db::rows_of_users(pool, campaign.as_str(), &from_db).await?;
        report.restored = store.restore_holders(campaign, &rows).await?;
        report.counter_raised = store.raise_counters(campaign, &rows).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        stock: u64,
        holders: &'a HashMap<String, HolderRecord>,
        outbox: &'a HashMap<String, u64>,
        persisted: &'a HashMap<String, u64>,
        now_ms: i64,
        grace_secs: u64,
    ) -> AuditInput<'a> {
        AuditInput {
            campaign: "c",
            stock,
            issued: holders.len() as u64,
            acked_high: 0,
            holders,
            outbox,
            persisted,
            now_ms,
            grace: Duration::from_secs(grace_secs),
            expected: None,
        }
    }

    fn rec(seq: u64, ms: i64) -> HolderRecord {
        HolderRecord {
            seq,
            issued_ms: ms,
            code: "C".into(),
        }
    }

    #[test]
    fn clean_when_everything_matches() {
        let holders = HashMap::from([("a".into(), rec(1, 0)), ("b".into(), rec(2, 0))]);
        let persisted = HashMap::from([("a".into(), 1), ("b".into(), 2)]);
        let none = HashMap::new();
        let (r, Repairs { missing, .. }) =
            compare(input(2, &holders, &none, &persisted, 100_000, 30));
        assert!(r.clean, "{r:?}");
        assert!(missing.is_empty());
    }

    #[test]
    fn tells_in_flight_from_missing() {
        let holders = HashMap::from([
            ("old".into(), rec(1, 0)),
            ("queued".into(), rec(2, 0)),
            ("fresh".into(), rec(3, 95_000)),
        ]);
        let outbox = HashMap::from([("queued".to_owned(), 2)]);
        let (r, Repairs { missing, .. }) =
            compare(input(3, &holders, &outbox, &HashMap::new(), 100_000, 30));
        assert_eq!((r.in_flight, r.missing), (2, 1));
        assert_eq!(missing, vec!["old".to_owned()]);
        assert!(!r.clean);
    }

    #[test]
    fn finds_oversold_duplicated_and_mismatched() {
        let holders = HashMap::from([("a".into(), rec(1, 0)), ("b".into(), rec(2, 0))]);
        let persisted = HashMap::from([("a".into(), 2), ("b".into(), 2), ("z".into(), 3)]);
        let none = HashMap::new();
        let (r, Repairs { unknown, .. }) = compare(input(2, &holders, &none, &persisted, 0, 0));
        assert_eq!(r.mismatched, 1);
        assert_eq!(r.duplicated, 1);
        assert_eq!(r.oversold, 1);
        assert_eq!((r.unknown_in_redis, unknown), (1, vec!["z".to_owned()]));
        assert!(!r.clean);
    }

    #[test]
    fn rows_beyond_the_counter_are_uncounted() {
        let holders = HashMap::from([("a".into(), rec(1, 0))]);
        let persisted = HashMap::from([("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
        let none = HashMap::new();
        let (r, todo) = compare(input(5, &holders, &none, &persisted, 0, 0));
        assert_eq!(todo.uncounted, ["b", "c"]);
        assert_eq!(r.seqs.counter_behind, 2);
        // A sharded campaign's counted seqs are its buckets' issued positions.
        let sharded = AuditInput {
            expected: Some((&[1, 3], &[1, 3])),
            ..input(5, &holders, &none, &persisted, 0, 0)
        };
        assert_eq!(compare(sharded).1.uncounted, ["b"]);
    }
}
