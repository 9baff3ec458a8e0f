//! The issuer's watch for a Redis that may have lost acknowledged writes: every check it
//! compares who answers with the recorded epoch (`stampede_core::store::epoch`); on a
//! change it suspends the campaigns, reporting the highest seq this process acknowledged
//! for each, and only then records the new epoch. It also keeps the
//! `stampede_campaign_suspended` gauge that the `StampedeCampaignSuspended` alert reads.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use stampede_core::Error;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use stampede_core::store::epoch::EpochCheck;
use tokio_util::sync::CancellationToken;

use crate::metrics::IssuanceMetrics;

/// The highest seq this process answered, per campaign; cheap to clone.
#[derive(Clone, Default)]
pub struct AckedSeqs(Arc<RwLock<HashMap<String, Arc<AtomicU64>>>>);

impl AckedSeqs {
    /// Notes that `seq` of `campaign` was handed to a user.
    pub fn record(&self, campaign: &str, seq: u64) {
        let known = self.0.read().expect("acked lock").get(campaign).cloned();
        let high = match known {
            Some(high) => high,
            None => self
                .0
                .write()
                .expect("acked lock")
                .entry(campaign.to_owned())
                .or_default()
                .clone(),
        };
        high.fetch_max(seq, Ordering::Relaxed);
    }

    /// The highest seq answered for `campaign` (0: none).
    pub fn high(&self, campaign: &str) -> u64 {
        let map = self.0.read().expect("acked lock");
        map.get(campaign).map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// Every campaign with its highest answered seq.
    pub fn highs(&self) -> HashMap<String, u64> {
        let map = self.0.read().expect("acked lock");
        map.iter()
            .map(|(c, h)| (c.clone(), h.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Checks the epoch every `every` until `shutdown`.
pub async fn watch(
    store: Store,
    acked: AckedSeqs,
    metrics: IssuanceMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<String> = None;
    let mut gauged = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match check(&store, &acked, &metrics, seen.as_deref()).await {
            Ok(Some(epoch)) => seen = Some(epoch),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "epoch check failed; trying again"),
        }
        if let Ok(now) = store.suspended_campaigns().await {
            let now: BTreeSet<String> = now.into_iter().collect();
            for gone in gauged.difference(&now) {
                let _ = metrics.suspended.remove_label_values(&[gone]);
            }
            for c in &now {
                metrics.suspended.with_label_values(&[c]).set(1);
            }
            gauged = now;
        }
    }
}

/// One check; returns the epoch to remember as seen, if any.
async fn check(
    store: &Store,
    acked: &AckedSeqs,
    metrics: &IssuanceMetrics,
    seen: Option<&str>,
) -> Result<Option<String>, Error> {
    let (before, now, everything_lost) = match store.check_epoch(seen).await? {
        EpochCheck::NotPrimary => return Ok(None),
        EpochCheck::Recorded(e) | EpochCheck::Unchanged(e) => return Ok(Some(e)),
        EpochCheck::Changed {
            before,
            now,
            everything_lost,
        } => (before, now, everything_lost),
    };
    metrics.epoch_changes.inc();
    let highs = acked.highs();
    let mut campaigns: BTreeSet<String> = store.registry().await?.into_iter().collect();
    campaigns.extend(highs.keys().cloned());
    let mut suspended = Vec::new();
    for c in &campaigns {
        let Ok(id) = CampaignId::parse(c) else {
            continue;
        };
        let high = highs.get(c).copied().unwrap_or(0);
        if store.suspend(&id, &now, high, everything_lost).await? {
            suspended.push(c.as_str());
        }
    }
    store.record_epoch(&now).await?;
    tracing::error!(
        %before, %now, everything_lost, ?suspended,
        "Redis restarted or failed over and may have lost acknowledged coupons: campaigns \
         suspended; run `audit`, then `campaign unsuspend`"
    );
    Ok(Some(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_seq_per_campaign() {
        let acked = AckedSeqs::default();
        acked.record("a", 3);
        acked.record("a", 9);
        acked.record("a", 4);
        acked.record("b", 1);
        assert_eq!((acked.high("a"), acked.high("c")), (9, 0));
        assert_eq!(
            acked.highs(),
            HashMap::from([("a".to_owned(), 9), ("b".to_owned(), 1)])
        );
    }
}
