//! A sharded campaign's stock, checked: every seq of 1..=stock is in exactly one place — a
//! bucket's extents, a transfer taken and not yet given, or a restock not yet shared out —
//! each bucket issued no more than it holds, and every transfer given was taken first (no
//! stock made from nothing). Also the seqs the buckets issued, for the audit by seq.

use serde::Serialize;

use super::Store;
use super::shard_admin::share;
use super::shards::parse_ranges;
use crate::Error;
use crate::ids::CampaignId;
use crate::keys::CampaignKeys;

/// One bucket as its meta says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketState {
    /// Bucket id.
    pub bucket: String,
    /// Seqs it holds (issued or not).
    pub total: u64,
    /// Seqs it issued.
    pub issued: u64,
    /// The highest count an issuer reported handing out when the bucket's Redis changed
    /// (0: none).
    pub acked_high: u64,
    /// Which seqs: `first:count,…`.
    pub extents: String,
}

/// Stock taken from one bucket and not (yet) given to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InTransit {
    /// Transfer id.
    pub transfer: String,
    /// From which bucket.
    pub from: String,
    /// To which bucket.
    pub to: String,
    /// The seqs: `first:count,…`.
    pub ranges: String,
}

/// A sharded campaign's ledger and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardLedger {
    /// The campaign's stock.
    pub stock: u64,
    /// Its buckets.
    pub buckets: Vec<BucketState>,
    /// Transfers taken and not given.
    pub in_transit: Vec<InTransit>,
    /// Seqs of restocks recorded and not yet shared out.
    pub restocking: u64,
    /// Every broken rule, in words (empty: the ledger balances).
    pub problems: Vec<String>,
    /// The seqs the buckets issued (their first `issued` positions), ascending.
    #[serde(skip)]
    pub issued_seqs: Vec<u64>,
    /// The seqs the buckets owe: issued, or handed out by an issuer before the bucket's
    /// Redis lost them (the first `max(issued, acked_high)` positions), ascending.
    #[serde(skip)]
    pub owed_seqs: Vec<u64>,
}

/// A bucket's ledger entry: `out|in`, the peer, the ranges.
fn entry(value: &str) -> Option<(&str, &str, &str)> {
    let (dir, rest) = value.split_once(':')?;
    let (peer, ranges) = rest.split_once(':')?;
    Some((dir, peer, ranges))
}

impl Store {
    /// The ledger of `campaign`, checked; `None` when it is not sharded.
    pub async fn shard_ledger(&self, campaign: &CampaignId) -> Result<Option<ShardLedger>, Error> {
        let Some(ids) = self.buckets(campaign).await? else {
            return Ok(None);
        };
        let home: Vec<(String, String)> = self.hash(&CampaignKeys::new(campaign).meta).await?;
        let stock = home.iter().find(|(k, _)| k == "total").map(|(_, v)| v);
        let stock = stock.and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut l = ShardLedger {
            stock,
            ..ShardLedger::default()
        };
        let mut ledgers = Vec::new();
        for b in &ids {
            l.buckets.push(self.bucket_state(b).await?);
            ledgers.push(self.hash(&CampaignKeys::new(b).ledger).await?);
        }
        let mut covered: Vec<(u64, u64)> = Vec::new();
        let mut booked = (Vec::new(), Vec::new());
        let names: Vec<&str> = l.buckets.iter().map(|b| b.bucket.as_str()).collect();
        for (b, ledger) in l.buckets.iter().zip(&ledgers) {
            let ranges = parse_ranges(&b.extents);
            let held: u64 = ranges.iter().map(|(_, n)| n).sum();
            if held != b.total {
                l.problems.push(format!(
                    "bucket {} holds {held} seqs in its extents but counts {}",
                    b.bucket, b.total
                ));
            }
            if b.issued > b.total {
                l.problems.push(format!(
                    "bucket {} issued {} of {}",
                    b.bucket, b.issued, b.total
                ));
            }
            l.issued_seqs.extend(positions(&ranges, b.issued));
            l.owed_seqs
                .extend(positions(&ranges, b.issued.max(b.acked_high)));
            covered.extend(ranges);
            for (id, value) in ledger {
                transit(&mut booked, &b.bucket, id, value, &names, &ledgers);
            }
        }
        l.in_transit = booked.0;
        l.problems.extend(booked.1);
        covered.extend(l.in_transit.iter().flat_map(|t| parse_ranges(&t.ranges)));
        let restocking = restocking(&home, &ledgers);
        l.restocking = restocking.iter().map(|(_, n)| n).sum();
        covered.extend(restocking);
        if let Some(problem) = coverage(&mut covered, l.stock) {
            l.problems.push(problem);
        }
        l.issued_seqs.sort_unstable();
        l.owed_seqs.sort_unstable();
        Ok(Some(l))
    }

    /// One bucket as its meta says.
    pub(super) async fn bucket_state(&self, b: &CampaignId) -> Result<BucketState, Error> {
        let meta: Vec<(String, String)> = self.hash(&CampaignKeys::new(b).meta).await?;
        let get = |name: &str| meta.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let num = |name: &str| get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(BucketState {
            bucket: b.to_string(),
            total: num("total"),
            issued: num("issued"),
            acked_high: num("acked_high"),
            extents: get("extents").unwrap_or_default(),
        })
    }

    /// The transfers between `buckets` that left one and never reached the other, from
    /// their ledgers alone (the rest of [`Store::shard_ledger`] reads every bucket whole).
    pub(super) async fn in_transit(&self, buckets: &[CampaignId]) -> Result<Vec<InTransit>, Error> {
        let mut ledgers = Vec::new();
        for b in buckets {
            ledgers.push(self.hash(&CampaignKeys::new(b).ledger).await?);
        }
        let names: Vec<&str> = buckets.iter().map(CampaignId::as_str).collect();
        let mut booked = (Vec::new(), Vec::new());
        for (b, ledger) in names.iter().zip(&ledgers) {
            for (id, value) in ledger {
                transit(&mut booked, b, id, value, &names, &ledgers);
            }
        }
        Ok(booked.0)
    }

    async fn hash(&self, key: &str) -> Result<Vec<(String, String)>, Error> {
        let key = key.to_owned();
        self.call("hgetall", |mut c| async move {
            redis::cmd("HGETALL").arg(key).query_async(&mut c).await
        })
        .await
    }
}

/// Books one ledger entry of `bucket`: an `out` the recipient never took in is in transit;
/// an `in` from a bucket whose ledger has no matching `out` is stock made from nothing.
fn transit(
    (in_transit, problems): &mut (Vec<InTransit>, Vec<String>),
    bucket: &str,
    id: &str,
    value: &str,
    buckets: &[&str],
    ledgers: &[Vec<(String, String)>],
) {
    let Some((dir, peer, ranges)) = entry(value) else {
        problems.push(format!("bucket {bucket}: unreadable ledger entry {id}"));
        return;
    };
    let peer_ledger = buckets.iter().position(|b| *b == peer).map(|i| &ledgers[i]);
    let peer_has = |want: &str| {
        peer_ledger.is_some_and(|pl| {
            pl.iter()
                .any(|(pid, pv)| pid == id && entry(pv).is_some_and(|(d, ..)| d == want))
        })
    };
    match dir {
        "out" if !peer_has("in") => in_transit.push(InTransit {
            transfer: id.to_owned(),
            from: bucket.to_owned(),
            to: peer.to_owned(),
            ranges: ranges.to_owned(),
        }),
        "in" if peer != "restock" && !peer_has("out") => problems.push(format!(
            "bucket {bucket} took in {ranges} from {peer} (transfer {id}) that {peer} never gave"
        )),
        _ => {}
    }
}

/// The seqs of restocks the campaign recorded (`restock:<after>` = before) that a bucket
/// has not received yet (no `r<after>` in its ledger).
fn restocking(home: &[(String, String)], ledgers: &[Vec<(String, String)>]) -> Vec<(u64, u64)> {
    let steps = home.iter().filter_map(|(k, v)| {
        let after = k.strip_prefix("restock:")?.parse::<u64>().ok()?;
        Some((after, v.parse::<u64>().ok()?))
    });
    let mut ranges = Vec::new();
    for (after, before) in steps {
        for (i, ledger) in ledgers.iter().enumerate() {
            if !ledger.iter().any(|(id, _)| *id == format!("r{after}")) {
                ranges.extend(parse_ranges(&share(before, after, ledgers.len(), i)));
            }
        }
    }
    ranges
}

/// The seqs of the first `count` positions of `ranges`.
fn positions(ranges: &[(u64, u64)], count: u64) -> Vec<u64> {
    ranges
        .iter()
        .flat_map(|(first, n)| *first..first + n)
        .take(count as usize)
        .collect()
}

/// Whether `ranges` cover exactly 1..=stock, each seq once; the first problem if not.
fn coverage(ranges: &mut [(u64, u64)], stock: u64) -> Option<String> {
    ranges.sort_unstable();
    let mut next = 1;
    for (first, n) in ranges.iter().filter(|(_, n)| *n > 0) {
        if *first < next {
            return Some(format!(
                "seq {first} is held twice (in two buckets or transfers)"
            ));
        }
        if *first > next {
            return Some(format!("seqs {next}..{} are in no bucket", first - 1));
        }
        next = first + n;
    }
    (next != stock + 1).then(|| {
        if next <= stock {
            format!("seqs {next}..={stock} are in no bucket")
        } else {
            format!(
                "buckets hold seqs up to {} beyond the stock {stock}",
                next - 1
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_finds_gaps_overlaps_and_excess() {
        assert_eq!(coverage(&mut [(6, 5), (1, 5)], 10), None);
        assert!(
            coverage(&mut [(1, 5), (5, 6)], 10)
                .unwrap()
                .contains("twice")
        );
        assert!(
            coverage(&mut [(1, 4), (6, 5)], 10)
                .unwrap()
                .contains("5..5")
        );
        assert!(coverage(&mut [(1, 12)], 10).unwrap().contains("beyond"));
        assert!(coverage(&mut [(1, 8)], 10).unwrap().contains("9..=10"));
    }

    #[test]
    fn positions_follow_the_extents() {
        assert_eq!(positions(&[(10, 2), (3, 3)], 4), vec![10, 11, 3, 4]);
    }
}
