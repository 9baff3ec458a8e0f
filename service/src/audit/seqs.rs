//! The audit by seq: seqs run 1..=issued with no gaps or repeats, so after Redis lost
//! writes a seq found for two users was issued twice, a seq up to the highest one ever
//! acknowledged that no source holds is a coupon that exists nowhere, and a counter below
//! seqs already handed out would hand them out again.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use stampede_core::coupon::HolderRecord;

/// How many seqs a report lists by value (the counts are complete).
const LISTED: usize = 100;

/// What the seqs say, across Redis' holders, the outbox and PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeqReport {
    /// The highest seq an issuer reported acknowledging when Redis' epoch changed (0: none).
    pub acked_high: u64,
    /// How far Redis' issued counter is below the highest seq known anywhere: seqs it
    /// would hand out again.
    pub counter_behind: u64,
    /// Seqs held by more than one user.
    pub issued_twice: u64,
    /// Seqs up to the highest known that no source holds: coupons that exist nowhere.
    pub lost: u64,
    /// The first of the seqs issued twice, ascending.
    pub issued_twice_seqs: Vec<u64>,
    /// The first of the lost seqs, ascending.
    pub lost_seqs: Vec<u64>,
}

impl SeqReport {
    /// Nothing issued twice, lost, or about to be issued again.
    pub fn clean(&self) -> bool {
        self.counter_behind == 0 && self.issued_twice == 0 && self.lost == 0
    }
}

/// Where each seq was found.
pub struct SeqSources<'a> {
    /// Redis holders: user → record.
    pub holders: &'a HashMap<String, HolderRecord>,
    /// Outbox entries: user → seq.
    pub outbox: &'a HashMap<String, u64>,
    /// PostgreSQL rows: user → seq.
    pub persisted: &'a HashMap<String, u64>,
    /// Redis' issued counter.
    pub issued: u64,
    /// The highest seq an issuer reported acknowledging (0: none).
    pub acked_high: u64,
    /// A sharded campaign's seqs, `(issued, owed)`: its buckets' counters, and the highest
    /// counts issuers reported, mapped through their extents; they stand in for 1..=issued
    /// and 1..=max(issued, acked_high).
    pub expected: Option<(&'a [u64], &'a [u64])>,
}

/// Reconciles the sources by seq.
pub fn reconcile(s: SeqSources<'_>) -> SeqReport {
    let mut users: HashMap<u64, &str> = HashMap::new();
    let mut twice: HashSet<u64> = HashSet::new();
    let found = s
        .holders
        .iter()
        .map(|(u, r)| (u, r.seq))
        .chain(s.outbox.iter().map(|(u, q)| (u, *q)))
        .chain(s.persisted.iter().map(|(u, q)| (u, *q)))
        .filter(|(_, seq)| *seq > 0);
    for (user, seq) in found {
        match users.get(&seq) {
            None => {
                users.insert(seq, user);
            }
            Some(other) if *other != user.as_str() => {
                twice.insert(seq);
            }
            Some(_) => {}
        }
    }
    let (lost_seqs, lost_count, counter_behind) = lost_and_behind(&users, &s);
    let mut twice: Vec<u64> = twice.into_iter().collect();
    twice.sort_unstable();
    SeqReport {
        acked_high: s.acked_high,
        counter_behind,
        issued_twice: twice.len() as u64,
        lost: lost_count,
        issued_twice_seqs: twice.into_iter().take(LISTED).collect(),
        lost_seqs,
    }
}

/// The seqs no source holds (the first LISTED, and how many) and how far the counter is
/// behind, over 1..=highest, or a sharded campaign's owed seqs. Counted in one pass: a
/// counter far behind would otherwise collect millions of seqs to print a hundred.
fn lost_and_behind(users: &HashMap<u64, &str>, s: &SeqSources<'_>) -> (Vec<u64>, u64, u64) {
    let highest_found = users.keys().copied().max().unwrap_or(0);
    let (mut lost, behind): (Box<dyn Iterator<Item = u64>>, u64) = match s.expected {
        None => {
            let highest = highest_found.max(s.acked_high).max(s.issued);
            let behind = highest_found.max(s.acked_high).saturating_sub(s.issued);
            (Box::new(1..=highest), behind)
        }
        Some((issued, owed)) => {
            // A seq found or owed beyond its bucket's counter: the counter went back.
            let issued: HashSet<u64> = issued.iter().copied().collect();
            let known: HashSet<u64> = users.keys().chain(owed).copied().collect();
            let behind = known.iter().filter(|q| !issued.contains(q)).count() as u64;
            (Box::new(owed.iter().copied()), behind)
        }
    };
    let mut lost = lost.by_ref().filter(|q| !users.contains_key(q));
    let listed: Vec<u64> = lost.by_ref().take(LISTED).collect();
    let count = listed.len() as u64 + lost.count() as u64;
    (listed, count, behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holders(v: &[(&str, u64)]) -> HashMap<String, HolderRecord> {
        v.iter()
            .map(|(u, q)| {
                let rec = HolderRecord {
                    seq: *q,
                    issued_ms: 0,
                    code: "C".into(),
                };
                (u.to_string(), rec)
            })
            .collect()
    }

    fn rows(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(u, q)| (u.to_string(), *q)).collect()
    }

    #[test]
    fn clean_when_every_seq_has_one_user() {
        let h = holders(&[("a", 1), ("b", 2), ("c", 3)]);
        let r = reconcile(SeqSources {
            holders: &h,
            outbox: &rows(&[("c", 3)]),
            persisted: &rows(&[("a", 1), ("b", 2)]),
            issued: 3,
            acked_high: 3,
            expected: None,
        });
        assert!(r.clean(), "{r:?}");
    }

    #[test]
    fn names_what_a_counter_that_went_back_did() {
        // Acknowledged 1..=6; Redis came back at 3, then issued 4 to a new user `x`. `d`
        // (seq 4) reached PostgreSQL, 5 and 6 never left Redis.
        let h = holders(&[("a", 1), ("b", 2), ("c", 3), ("x", 4)]);
        let r = reconcile(SeqSources {
            holders: &h,
            outbox: &HashMap::new(),
            persisted: &rows(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]),
            issued: 4,
            acked_high: 6,
            expected: None,
        });
        assert_eq!(r.issued_twice_seqs, vec![4]);
        assert_eq!(r.lost_seqs, vec![5, 6]);
        assert_eq!(r.counter_behind, 2);
        assert!(!r.clean());
    }

    #[test]
    fn a_row_beyond_the_counter_is_behind_without_a_report() {
        let h = holders(&[("a", 1)]);
        let r = reconcile(SeqSources {
            holders: &h,
            outbox: &HashMap::new(),
            persisted: &rows(&[("a", 1), ("b", 2)]),
            issued: 1,
            acked_high: 0,
            expected: None,
        });
        assert_eq!((r.counter_behind, r.lost, r.issued_twice), (1, 0, 0));
    }

    #[test]
    fn a_sharded_campaign_is_reconciled_by_the_seqs_its_buckets_issued_and_owe() {
        // Buckets issued 1, 2 and 5, 6; one issuer had handed out 3 before its bucket's
        // Redis lost it: owed, found nowhere.
        let h = holders(&[("a", 1), ("b", 2), ("e", 5), ("f", 6)]);
        let (issued, owed) = ([1, 2, 5, 6], [1, 2, 3, 5, 6]);
        let r = reconcile(SeqSources {
            holders: &h,
            outbox: &HashMap::new(),
            persisted: &rows(&[("a", 1)]),
            issued: 4,
            acked_high: 0,
            expected: Some((&issued, &owed)),
        });
        assert_eq!((r.lost_seqs.clone(), r.counter_behind), (vec![3], 1));
        assert!(!r.clean());
    }
}
