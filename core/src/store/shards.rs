//! Sharded campaigns (`--shards N`): one hot campaign's stock split into N buckets, each a
//! campaign of its own in Redis (`<id>~<n>`, its own hash tag: on a cluster its own slot,
//! placed on distinct primaries when the campaign is created). A user's bucket follows from
//! the user id, so "one coupon per user" stays one atomic script in that bucket.
//!
//! Seqs stay unique and within the stock: the campaign's seqs 1..=stock are split into
//! disjoint ranges, and a bucket's `extents` say which ranges its positions stand for. When
//! a bucket runs dry, stock moves to it from the bucket with the most to spare: take
//! (`lua/bucket_take.lua`, off the donor's unissued top) before give
//! (`lua/bucket_give.lua`), both recorded under one transfer id in the buckets' ledgers,
//! so stock in transit is in no bucket and never in two; the audit checks the ledgers
//! ([`super::shard_audit`](crate::store::shard_audit)). The campaign is sold out only when no bucket has any left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{HandedOut, Store};
use crate::Error;
use crate::coupon::Decision;
use crate::ids::{CampaignId, UserId};
use crate::keys::CampaignKeys;

/// The most buckets a campaign may have.
pub const MAX_SHARDS: u32 = 64;

/// Which of `n` buckets `user` belongs to: FNV-1a of the user id, the same in every
/// process and release (a user's bucket must never move).
pub fn bucket_index(user: &str, n: usize) -> usize {
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % n.max(1) as u64) as usize
}

/// What this process learned about sharded campaigns, and one rebalance at a time per
/// bucket.
#[derive(Default)]
pub(super) struct Routes {
    buckets: RwLock<HashMap<CampaignId, Arc<[CampaignId]>>>,
    moving: Mutex<HashMap<CampaignId, Arc<tokio::sync::Mutex<()>>>>,
}

/// One routed issuance.
#[derive(Debug)]
pub struct Routed {
    /// Where it was decided: the campaign, or the user's bucket.
    pub target: CampaignId,
    /// The decision. `SoldOut` means no bucket has any left.
    pub decision: Decision,
    /// The incarnation of `target`.
    pub incarnation: String,
    /// The counter to record as handed out of `target`, if any.
    pub counter: Option<u64>,
}

/// What a refill of a dry bucket did.
enum Refill {
    /// Stock moved to it (or reached it meanwhile).
    Refilled,
    /// Only a suspended bucket has stock left: answered as suspended, not sold out.
    Held,
    /// No bucket has any left: the campaign is sold out.
    Dry,
}

/// What a bucket could spare.
struct Spare {
    free: u64,
    suspended: bool,
}

/// How often one issuance follows a route change or a rebalance before it gives up.
const ROUTE_ATTEMPTS: usize = 8;

impl Store {
    /// Decides one issuance of `campaign`, in the user's bucket when it is sharded (moving
    /// stock there when the bucket ran dry); `handed` says what this process handed out of
    /// a target before; `admission` the expiry of the user's verified admission token, if
    /// one came (a campaign with a waiting room needs it; a sharded one has none).
    pub async fn issue_routed(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        admission: Option<i64>,
        handed: impl Fn(&CampaignId) -> HandedOut,
    ) -> Result<Routed, Error> {
        let (mut target, mut siblings) = self.route(campaign, user);
        for _ in 0..ROUTE_ATTEMPTS {
            let c = self
                .issue_counted(&target, siblings, user, admission, &handed(&target))
                .await?;
            let dry = matches!(c.decision, Decision::SoldOut(_)) && target.is_bucket();
            let decision = if dry {
                match self.refill(campaign, &target).await? {
                    Refill::Refilled => continue,
                    Refill::Held => Decision::Suspended,
                    Refill::Dry => c.decision,
                }
            } else {
                c.decision
            };
            match decision {
                Decision::Sharded(buckets) => {
                    siblings = buckets.len();
                    target = buckets[bucket_index(user.as_str(), siblings)].clone();
                    self.learn(campaign, buckets);
                }
                Decision::Unknown if target.is_bucket() => {
                    // Deleted, or created again with another bucket count, since this
                    // process learned.
                    self.unlearn(campaign);
                    (target, siblings) = (campaign.clone(), 0);
                }
                decision => {
                    return Ok(Routed {
                        target,
                        decision,
                        incarnation: c.incarnation,
                        counter: c.counter,
                    });
                }
            }
        }
        Err(Error::RedisTimeout(self.timeout))
    }

    /// The target of `user`'s issuance as far as this process knows, and the bucket count
    /// it routed by (0: the campaign itself), which the bucket checks.
    pub(super) fn route(&self, campaign: &CampaignId, user: &UserId) -> (CampaignId, usize) {
        let known = self.routes.buckets.read().expect("routes lock");
        match known.get(campaign) {
            Some(b) => (b[bucket_index(user.as_str(), b.len())].clone(), b.len()),
            None => (campaign.clone(), 0),
        }
    }

    pub(super) fn learn(&self, campaign: &CampaignId, buckets: Vec<CampaignId>) {
        let mut known = self.routes.buckets.write().expect("routes lock");
        known.insert(campaign.clone(), buckets.into());
    }

    pub(super) fn unlearn(&self, campaign: &CampaignId) {
        self.routes
            .buckets
            .write()
            .expect("routes lock")
            .remove(campaign);
    }

    /// The buckets of `campaign` as Redis says now (`None`: not sharded, or unknown).
    pub async fn buckets(&self, campaign: &CampaignId) -> Result<Option<Vec<CampaignId>>, Error> {
        let meta = CampaignKeys::new(campaign).meta;
        let list: Option<String> = self
            .call("buckets", |mut c| async move {
                redis::cmd("HGET")
                    .arg(meta)
                    .arg("buckets")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        list.as_deref().map(CampaignId::parse_buckets).transpose()
    }

    /// Brings stock to the dry `bucket` from the one with most to spare, one rebalance at
    /// a time per bucket in this process.
    async fn refill(&self, campaign: &CampaignId, bucket: &CampaignId) -> Result<Refill, Error> {
        let lock = {
            let mut moving = self.routes.moving.lock().expect("moving lock");
            moving.entry(bucket.clone()).or_default().clone()
        };
        let _turn = lock.lock().await;
        let Some(buckets) = self.buckets(campaign).await? else {
            return Ok(Refill::Dry);
        };
        let mut spare = Vec::new();
        for b in &buckets {
            spare.push((b.clone(), self.bucket_spare(b).await?));
        }
        if spare.iter().any(|(b, s)| b == bucket && s.free > 0) {
            return Ok(Refill::Refilled); // another rebalance refilled it meanwhile
        }
        spare.sort_by_key(|(_, s)| std::cmp::Reverse(s.free));
        let donors = spare.iter().filter(|(b, s)| b != bucket && s.free > 0);
        for (donor, s) in donors.clone().filter(|(_, s)| !s.suspended) {
            if self.transfer(donor, bucket, s.free.div_ceil(2)).await? > 0 {
                return Ok(Refill::Refilled);
            }
        }
        // A transfer cut between take and give (the process that moved it died, or its give
        // timed out) holds seqs neither bucket counts: given now, not left out of the sale.
        if self.finish_transfers(&buckets).await? > 0 {
            return Ok(Refill::Refilled);
        }
        // Stock left only in a suspended bucket: not sold out, not to be had either.
        let held = donors.clone().any(|(_, s)| s.suspended);
        Ok(if held { Refill::Held } else { Refill::Dry })
    }

    /// Gives every transfer between `buckets` that was taken and never given (a give is
    /// once per transfer id, so one still under way elsewhere is given once all the same);
    /// returns how many seqs it gave.
    async fn finish_transfers(&self, buckets: &[CampaignId]) -> Result<u64, Error> {
        let mut given = 0;
        for t in self.in_transit(buckets).await? {
            let to = CampaignId::parse_stored(&t.to)?;
            if self
                .transfer_give(&to, &t.from, &t.transfer, &t.ranges)
                .await?
                == 1
            {
                given += range_count(&t.ranges);
            }
        }
        Ok(given)
    }

    /// What a bucket could spare: unissued seqs, and whether it is suspended.
    async fn bucket_spare(&self, bucket: &CampaignId) -> Result<Spare, Error> {
        let (total, issued, suspended) = self.bucket_fill(bucket).await?;
        Ok(Spare {
            free: total.saturating_sub(issued),
            suspended,
        })
    }

    /// A bucket's `(total, issued, suspended)`.
    pub(super) async fn bucket_fill(&self, bucket: &CampaignId) -> Result<(u64, u64, bool), Error> {
        let meta = CampaignKeys::new(bucket).meta;
        let (total, issued, suspended): (Option<u64>, Option<u64>, Option<String>) = self
            .call("bucket_fill", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(meta)
                    .arg("total")
                    .arg("issued")
                    .arg("suspended")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let suspended = suspended.as_deref() == Some("1");
        Ok((total.unwrap_or(0), issued.unwrap_or(0), suspended))
    }

    /// Moves up to `count` unissued seqs from `from` to `to`: take, then give, under one
    /// fresh transfer id. Returns how many moved.
    pub async fn transfer(
        &self,
        from: &CampaignId,
        to: &CampaignId,
        count: u64,
    ) -> Result<u64, Error> {
        let id = format!("t{}", super::issue::coupon_code());
        let ranges = self.transfer_take(from, to, &id, count).await?;
        if ranges.is_empty() {
            return Ok(0);
        }
        self.transfer_give(to, from.as_str(), &id, &ranges).await?;
        Ok(range_count(&ranges))
    }

    /// The first half of transfer `id` (`lua/bucket_take.lua`): up to `count` unissued
    /// seqs off `from`'s top, for `to`; returns the ranges taken (the same again for the
    /// same id).
    pub async fn transfer_take(
        &self,
        from: &CampaignId,
        to: &CampaignId,
        id: &str,
        count: u64,
    ) -> Result<String, Error> {
        let k = CampaignKeys::new(from);
        let mut inv = self.scripts.bucket_take.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.ledger)
            .arg(id)
            .arg(to.as_str())
            .arg(count);
        self.invoke("bucket_take", inv).await
    }

    /// The second half of transfer `id` from `source` (a bucket, or `restock`), or finishing
    /// one the ledger shows in transit (`lua/bucket_give.lua`); returns 1 given now, 0 given
    /// before, -1 the bucket is gone.
    pub async fn transfer_give(
        &self,
        to: &CampaignId,
        source: &str,
        id: &str,
        ranges: &str,
    ) -> Result<i64, Error> {
        let k = CampaignKeys::new(to);
        let mut inv = self.scripts.bucket_give.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.ledger)
            .arg(id)
            .arg(source)
            .arg(ranges);
        self.invoke("bucket_give", inv).await
    }
}

/// How many seqs `first:count,…` ranges hold.
pub fn range_count(ranges: &str) -> u64 {
    parse_ranges(ranges).iter().map(|(_, n)| n).sum()
}

/// `first:count,…` as pairs (malformed parts skipped).
pub fn parse_ranges(ranges: &str) -> Vec<(u64, u64)> {
    ranges
        .split(',')
        .filter_map(|r| {
            let (first, count) = r.split_once(':')?;
            Some((first.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_bucket_is_stable_and_spread() {
        assert_eq!(bucket_index("alice", 4), bucket_index("alice", 4));
        let mut counts = [0; 4];
        for i in 0..4_000 {
            counts[bucket_index(&format!("user-{i}"), 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(bucket_index("anyone", 1), 0);
    }

    #[test]
    fn ranges_parse_and_count() {
        assert_eq!(parse_ranges("1:10,51:5"), vec![(1, 10), (51, 5)]);
        assert_eq!(range_count("1:10,51:5"), 15);
        assert_eq!(range_count(""), 0);
    }
}
