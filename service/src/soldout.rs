//! The sold-out short-circuit. Most of a flash sale's traffic arrives after the last
//! coupon is gone; once a replica has seen SOLD_OUT it answers those requests from memory.
//!
//! A holder asking again must still get their coupon (200), so a sold-out entry carries
//! a Bloom filter of the hashes of every holder, read once from Redis and sized from the
//! stock (about 2 bytes a holder, capped per campaign; see `bloom`). A request whose user
//! is absent from it is certainly not a holder and gets 410 from memory; a hit (a holder,
//! or a false positive at about 0.1 %) goes to Redis for the exact answer. A refresher
//! re-reads each sold-out campaign's stock and drops the entry after a restock, or after
//! a few rechecks in a row failed: a replica that cannot see Redis does not keep saying
//! 410 on old knowledge for ever; it asks Redis again (503 `unavailable` while away).
//! A campaign newly marked sold out wakes the refresher at once: the stampede that follows
//! the last coupon is the largest, and it would otherwise go to Redis until the next recheck.

mod bloom;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use prometheus::IntCounter;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::IssuanceMetrics;
use bloom::Bloom;
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::store::Store;

/// Rechecks failing in a row after which an entry is dropped (then Redis is asked again).
const MAX_FAILED_RECHECKS: u32 = 3;

/// One campaign known to be sold out.
struct SoldOut {
    /// The holders' user-id hashes, once loaded, with the stock total they belong to.
    holders: OnceLock<(u64, Bloom)>,
    /// Rechecks that failed since the last one that succeeded.
    failed_rechecks: AtomicU32,
    /// The ready-made 410 body, so the hot path neither formats nor serialises.
    body: Bytes,
    /// This campaign's counters, resolved once instead of per request.
    memory_answers: IntCounter,
    sold_out_decisions: IntCounter,
}

/// Campaigns this replica knows to be sold out.
#[derive(Clone)]
pub struct SoldOutCache {
    campaigns: Arc<RwLock<HashMap<String, Arc<SoldOut>>>>,
    hasher: RandomState,
    metrics: IssuanceMetrics,
    /// Told when a campaign is newly marked, so its holders load without waiting a recheck.
    marked: Arc<Notify>,
}

impl SoldOutCache {
    /// An empty cache that counts its answers in `metrics`.
    pub fn new(metrics: IssuanceMetrics) -> Self {
        Self {
            campaigns: Arc::default(),
            hasher: RandomState::new(),
            metrics,
            marked: Arc::default(),
        }
    }

    /// The 410 body to send when `user` of `campaign` can be answered without Redis.
    pub fn answer(&self, campaign: &CampaignId, user: &UserId) -> Option<Bytes> {
        // Decided under the read guard: no Arc clone, so no shared refcount bouncing
        // between cores on the hottest path of a sold-out sale.
        let map = self.campaigns.read().unwrap();
        let entry = map.get(campaign.as_str())?;
        let (_, holders) = entry.holders.get()?;
        if holders.may_contain(self.hasher.hash_one(user.as_str())) {
            return None;
        }
        entry.memory_answers.inc();
        entry.sold_out_decisions.inc();
        Some(entry.body.clone())
    }

    /// Records that Redis answered SOLD_OUT for `campaign`; `body` makes the 410 to repeat.
    pub fn mark(&self, campaign: &CampaignId, body: impl FnOnce() -> Bytes) {
        let c = campaign.as_str();
        if self.campaigns.read().unwrap().contains_key(c) {
            return;
        }
        let entry = SoldOut {
            holders: OnceLock::new(),
            failed_rechecks: AtomicU32::new(0),
            body: body(),
            memory_answers: self.metrics.soldout_from_memory.with_label_values(&[c]),
            sold_out_decisions: self.metrics.decisions.with_label_values(&[c, "sold_out"]),
        };
        let mut map = self.campaigns.write().unwrap();
        map.entry(c.to_owned()).or_insert_with(|| Arc::new(entry));
        self.count(&map);
        self.marked.notify_one();
    }

    /// Forgets `campaign` (after a restock).
    fn clear(&self, campaign: &str) {
        let mut map = self.campaigns.write().unwrap();
        map.remove(campaign);
        self.count(&map);
    }

    /// Sets the gauge of sold-out campaigns under the lock that changed the map: a gauge
    /// set once per refresh pass lagged behind it (a restock's clear, or a mark, were
    /// invisible until the pass ended).
    fn count(&self, map: &HashMap<String, Arc<SoldOut>>) {
        self.metrics.soldout_campaigns.set(map.len() as i64);
    }

    fn entries(&self) -> Vec<(String, Arc<SoldOut>)> {
        let map = self.campaigns.read().unwrap();
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Keeps every entry true until `shutdown`: loads holder hashes for new entries (at
    /// once when one is marked) and drops entries whose campaign was restocked or deleted,
    /// every `every`.
    pub async fn refresh(self, store: Store, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.marked.notified() => {}
            }
            for (name, entry) in self.entries() {
                self.refresh_one(&store, &name, &entry).await;
            }
        }
    }

    async fn refresh_one(&self, store: &Store, name: &str, entry: &SoldOut) {
        let Ok(campaign) = CampaignId::parse(name) else {
            return self.clear(name);
        };
        // A recheck or two may fail while the entry stays (sold out is most likely still
        // the truth); after MAX_FAILED_RECHECKS in a row nothing vouches for it any more.
        // A total that moved since the holders were read means a restock (and maybe new
        // holders), even if the new stock is gone again already.
        let loaded_total = entry.holders.get().map(|(t, _)| *t);
        let total = match store.snapshot(&campaign).await {
            Ok(Some(s)) if s.issued >= s.total && loaded_total.is_none_or(|t| t == s.total) => {
                s.total
            }
            Ok(_) => {
                tracing::info!(campaign = name, "stock available again; asking Redis");
                return self.clear(name);
            }
            Err(e) => {
                let failed = entry.failed_rechecks.fetch_add(1, Ordering::Relaxed) + 1;
                if failed >= MAX_FAILED_RECHECKS {
                    tracing::warn!(campaign = name, error = %e, failed, "sold-out rechecks keep failing; asking Redis");
                    return self.clear(name);
                }
                tracing::debug!(campaign = name, error = %e, "sold-out recheck failed");
                return;
            }
        };
        entry.failed_rechecks.store(0, Ordering::Relaxed);
        if entry.holders.get().is_none() {
            self.load_holders(store, &campaign, entry, total).await;
        }
    }

    /// Reads every holder into a filter sized for `total` (holders never exceed the stock).
    async fn load_holders(
        &self,
        store: &Store,
        campaign: &CampaignId,
        entry: &SoldOut,
        total: u64,
    ) {
        let mut filter = Bloom::new(total, bloom::FALSE_POSITIVE_RATE, bloom::MAX_BYTES);
        let mut holders = 0u64;
        let read = store.holder_hashes(campaign, &self.hasher, |h| {
            filter.insert(h);
            holders += 1;
        });
        match read.await {
            Ok(()) => {
                tracing::info!(
                    campaign = %campaign,
                    holders,
                    filter_bytes = filter.bytes(),
                    "sold out; answering from memory"
                );
                let _ = entry.holders.set((total, filter));
            }
            Err(e) => tracing::warn!(campaign = %campaign, error = %e, "loading holders failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_gauge_follows_every_mark_and_clear_at_once() {
        let metrics = Metrics::new().issuance;
        let cache = SoldOutCache::new(metrics.clone());
        let (a, b) = (
            CampaignId::parse("a").unwrap(),
            CampaignId::parse("b").unwrap(),
        );
        cache.mark(&a, Bytes::new);
        cache.mark(&a, Bytes::new);
        cache.mark(&b, Bytes::new);
        assert_eq!(metrics.soldout_campaigns.get(), 2);
        cache.clear("a");
        assert_eq!(metrics.soldout_campaigns.get(), 1);
        cache.clear("a");
        cache.clear("b");
        assert_eq!(metrics.soldout_campaigns.get(), 0);
    }
}
