//! The issuer's watch for a Redis that may have lost acknowledged writes: every check it
//! compares who answers with the recorded epoch (`stampede_core::store::epoch`); on a
//! change it suspends the campaigns, reporting the highest seq this process acknowledged
//! for each, and only then records the new epoch. It also keeps the
//! `stampede_campaign_suspended` gauge (0 or 1 per campaign in the registry) that the
//! `StampedeCampaignSuspended` alert reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use stampede_core::Error;
use stampede_core::ids::CampaignId;
use stampede_core::store::epoch::{EpochCheck, EpochScope};
use stampede_core::store::{HandedOut, Store};
use tokio_util::sync::CancellationToken;

use crate::metrics::IssuanceMetrics;

/// What this process handed out, per campaign (the highest seq and the campaign's
/// incarnation); cheap to clone.
#[derive(Clone, Default)]
pub struct AckedSeqs(Arc<RwLock<HashMap<String, Arc<Mutex<Handed>>>>>);

/// What was handed out of one campaign, and the incarnations it replaced.
#[derive(Default)]
struct Handed {
    now: HandedOut,
    /// The last few incarnations replaced (newest last): a late answer of one of them is
    /// not a newer campaign.
    retired: Vec<Arc<str>>,
}

/// How many replaced incarnations a campaign remembers.
const RETIRED_KEPT: usize = 4;

impl AckedSeqs {
    /// Notes that `seq` of `campaign` (its `incarnation`) was handed to a user. A new
    /// incarnation (the campaign was created again) starts afresh; a late answer of one it
    /// replaced (a request that was with Redis while the campaign was created again) is
    /// ignored, so that it cannot wipe what the new one handed out. Incarnations are told
    /// apart by identity, not by their clock: two Redis hosts' clocks need not agree.
    pub fn record(&self, campaign: &str, incarnation: &str, seq: u64) {
        let known = self.0.read().expect("acked lock").get(campaign).cloned();
        let entry = match known {
            Some(entry) => entry,
            None => self
                .0
                .write()
                .expect("acked lock")
                .entry(campaign.to_owned())
                .or_default()
                .clone(),
        };
        let mut h = entry.lock().expect("handed lock");
        if *h.now.incarnation != *incarnation {
            if h.retired.iter().any(|r| **r == *incarnation) {
                return;
            }
            let replaced = std::mem::replace(&mut h.now.incarnation, incarnation.into());
            if !replaced.is_empty() {
                if h.retired.len() == RETIRED_KEPT {
                    h.retired.remove(0);
                }
                h.retired.push(replaced);
            }
            h.now.high = 0;
        }
        h.now.high = h.now.high.max(seq);
    }

    /// What was handed out of `campaign` (nothing: the default).
    pub fn handed(&self, campaign: &str) -> HandedOut {
        let map = self.0.read().expect("acked lock");
        map.get(campaign)
            .map(|h| h.lock().expect("handed lock").now.clone())
            .unwrap_or_default()
    }

    /// Every campaign with what was handed out of it.
    pub fn all(&self) -> HashMap<String, HandedOut> {
        let map = self.0.read().expect("acked lock");
        map.iter()
            .map(|(c, h)| (c.clone(), h.lock().expect("handed lock").now.clone()))
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
    let mut seen: HashMap<EpochScope, String> = HashMap::new();
    let mut gauged = BTreeSet::new();
    let mut reported = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match scopes(&store, &acked).await {
            Ok(scopes) => {
                seen.retain(|s, _| scopes.contains(s));
                for scope in scopes {
                    let before = seen.get(&scope).map(String::as_str);
                    match check(&store, &acked, &metrics, &scope, before, &mut reported).await {
                        Ok(Some(epoch)) => _ = seen.insert(scope, epoch),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(error = %e, "epoch check failed; trying again"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "epoch check failed; trying again"),
        }
        metrics.epoch_checks.inc();
        if let Ok((now, suspended)) = gauge_suspended(&store, &metrics, &gauged).await {
            gauged = now;
            report_late(&store, &acked, &mut reported, &suspended).await;
        }
    }
}

/// The high this process reported to a campaign suspended after an epoch change.
struct Reported {
    id: CampaignId,
    epoch: String,
    everything_lost: bool,
    handed: HandedOut,
}

/// Reports seqs recorded after this process reported its high to a suspended campaign. A
/// request between Redis's answer and its record when Redis failed over records its seq
/// after the suspension, and the user holds that coupon: the audit must count it too.
/// A campaign no longer suspended is forgotten.
async fn report_late(
    store: &Store,
    acked: &AckedSeqs,
    reported: &mut HashMap<String, Reported>,
    suspended: &BTreeSet<String>,
) {
    reported.retain(|c, _| suspended.contains(c));
    for (c, r) in reported.iter_mut() {
        let now = acked.handed(c);
        // Another incarnation is passed on: the script records only the one Redis holds.
        if now.high == 0 || (now.incarnation == r.handed.incarnation && now.high <= r.handed.high) {
            continue;
        }
        match store
            .suspend(&r.id, &r.epoch, &now, r.everything_lost)
            .await
        {
            Ok(_) => {
                tracing::warn!(campaign = %c, high = now.high, "reported a seq acknowledged after the suspension");
                r.handed = now;
            }
            Err(e) => tracing::debug!(error = %e, "reporting a late seq failed; trying again"),
        }
    }
}

/// Sets `stampede_campaign_suspended` for every campaign in the registry (0, or 1 while
/// suspended), so the alert has a series to watch; drops campaigns that left it. A sharded
/// campaign's buckets count as the campaign (any one suspended, it is): the alert's rule
/// selects the campaign's id, and a series per bucket would never match it. Returns the
/// campaigns gauged and the ids (campaigns and buckets) suspended.
async fn gauge_suspended(
    store: &Store,
    metrics: &IssuanceMetrics,
    gauged: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), Error> {
    let suspended: BTreeSet<String> = store.suspended_campaigns().await?.into_iter().collect();
    let registered = store.registry().await?;
    let mut now: BTreeMap<String, i64> = BTreeMap::new();
    for c in registered.iter().chain(&suspended) {
        let on = now
            .entry(stampede_core::ids::campaign_of(c).to_owned())
            .or_default();
        *on = (*on).max(i64::from(suspended.contains(c)));
    }
    for gone in gauged.iter().filter(|c| !now.contains_key(*c)) {
        let _ = metrics.suspended.remove_label_values(&[gone]);
    }
    for (c, on) in &now {
        metrics.suspended.with_label_values(&[c]).set(*on);
    }
    Ok((now.into_keys().collect(), suspended))
}

/// What to check: the whole Redis, or on a cluster each campaign known here (registered,
/// or handed out by this process).
async fn scopes(store: &Store, acked: &AckedSeqs) -> Result<Vec<EpochScope>, Error> {
    if !store.is_cluster() {
        return Ok(store.epoch_scopes([]));
    }
    let mut campaigns: BTreeSet<String> = store.registry().await?.into_iter().collect();
    campaigns.extend(acked.all().into_keys());
    let ids = campaigns
        .iter()
        .filter_map(|c| CampaignId::parse_stored(c).ok());
    Ok(store.epoch_scopes(ids))
}

/// One check of `scope`; returns the epoch to remember as seen, if any.
async fn check(
    store: &Store,
    acked: &AckedSeqs,
    metrics: &IssuanceMetrics,
    scope: &EpochScope,
    seen: Option<&str>,
    reported: &mut HashMap<String, Reported>,
) -> Result<Option<String>, Error> {
    let (before, now, everything_lost) = match store.check_epoch(scope, seen).await? {
        EpochCheck::NotPrimary | EpochCheck::Forgotten => return Ok(None),
        EpochCheck::Recorded(e) | EpochCheck::Unchanged(e) => return Ok(Some(e)),
        EpochCheck::Changed {
            before,
            now,
            everything_lost,
        } => (before, now, everything_lost),
    };
    let done = store
        .suspend_for_change(scope, &now, everything_lost, &acked.all())
        .await?;
    let mut suspended = Vec::new();
    for d in done {
        if d.newly {
            suspended.push(d.id.as_str().to_owned());
        }
        let r = Reported {
            id: d.id,
            epoch: now.clone(),
            everything_lost,
            handed: d.handed,
        };
        reported.insert(r.id.as_str().to_owned(), r);
    }
    // Counted once handled: whoever watches the counter finds the campaigns suspended.
    metrics.epoch_changes.inc();
    tracing::error!(
        ?scope,
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
    fn keeps_the_highest_seq_per_campaign_and_incarnation() {
        let acked = AckedSeqs::default();
        acked.record("a", "1", 3);
        acked.record("a", "1", 9);
        acked.record("a", "1", 4);
        acked.record("b", "1", 1);
        assert_eq!(acked.handed("a").high, 9);
        assert_eq!(acked.handed("c"), HandedOut::default());
        // Created again under the same id: what the old one handed out no longer counts.
        acked.record("a", "2", 2);
        let a = acked.handed("a");
        assert_eq!((&*a.incarnation, a.high), ("2", 2));
        assert_eq!(acked.all().len(), 2);
    }

    #[test]
    fn a_late_answer_of_a_replaced_incarnation_leaves_the_new_one_alone() {
        let acked = AckedSeqs::default();
        acked.record("a", "old", 500);
        acked.record("a", "new", 300);
        // A request that was with Redis while the campaign was created again answers late.
        acked.record("a", "old", 501);
        acked.record("a", "new", 5);
        let a = acked.handed("a");
        assert_eq!((&*a.incarnation, a.high), ("new", 300));
        // Another creation after it is still taken up.
        acked.record("a", "newer", 7);
        acked.record("a", "new", 900);
        let a = acked.handed("a");
        assert_eq!((&*a.incarnation, a.high), ("newer", 7));
    }
}
