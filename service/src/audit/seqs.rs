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
    /// A sharded campaign's issued seqs (its buckets' counters mapped through their
    /// extents), which stand in for 1..=issued.
    pub expected: Option<&'a [u64]>,
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
    let highest_found = users.keys().copied().max().unwrap_or(0);
    let highest = highest_found.max(s.acked_high).max(s.issued);
    // Counted in one pass, only the first LISTED kept: a counter far behind would
    // otherwise collect millions of seqs to print a hundred.
    let (lost_seqs, lost_count, counter_behind) = match s.expected {
        None => {
            let mut lost = (1..=highest).filter(|q| !users.contains_key(q));
            let listed: Vec<u64> = lost.by_ref().take(LISTED).collect();
            let behind = highest_found.max(s.acked_high).saturating_sub(s.issued);
            (
                listed.clone(),
                listed.len() as u64 + lost.count() as u64,
                behind,
            )
        }
        Some(expected) => {
            let mut lost = expected.iter().copied().filter(|q| !users.contains_key(q));
            let listed: Vec<u64> = lost.by_ref().take(LISTED).collect();
            // A seq found beyond its bucket's counter: the counter went back.
            let issued: HashSet<u64> = expected.iter().copied().collect();
            let behind = users.keys().filter(|q| !issued.contains(q)).count() as u64;
            (
                listed.clone(),
                listed.len() as u64 + lost.count() as u64,
                behind,
            )
        }
    };
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
}
