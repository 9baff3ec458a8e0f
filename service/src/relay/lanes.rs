//! Which campaigns the relay reads: lanes that back off, and lanes that leave when their
//! campaign leaves the registry or their stream or group vanishes (a deleted campaign).

use std::collections::HashSet;
use std::time::Instant;

use stampede_core::Error;
use stampede_core::ids::CampaignId;
use stampede_core::store::outbox::ReadFrom;
use stampede_core::store::outbox_format;

use super::Relay;

impl Relay {
    /// The lanes not backing off, each with where its read starts.
    pub(super) fn ready(&self) -> Vec<(CampaignId, ReadFrom)> {
        let now = Instant::now();
        self.lanes
            .iter()
            .filter(|(_, l)| l.resume_at <= now)
            .map(|(c, l)| {
                let from = if l.reread {
                    ReadFrom::OwnPending
                } else {
                    ReadFrom::New
                };
                (c.clone(), from)
            })
            .collect()
    }

    /// After a read over `ready` failed with NOGROUP (it fails whole, whichever stream is
    /// gone): retires the lanes whose stream or group is gone, so the others read on at
    /// once. `err` stands when no lane is found gone (the step backs off and retries).
    pub(super) async fn retire_gone(
        &mut self,
        ready: &[(CampaignId, ReadFrom)],
        err: Error,
    ) -> Result<(), Error> {
        let mut retired = false;
        for (campaign, _) in ready {
            if !self.outbox.has_group(campaign).await? {
                self.retire(campaign, "its outbox stream or group is gone");
                retired = true;
            }
        }
        if retired { Ok(()) } else { Err(err) }
    }

    /// Drops a campaign's lane and backlog series. A campaign still (or again) in the
    /// registry joins again at the next refresh, recreating its group.
    pub(super) fn retire(&mut self, campaign: &CampaignId, why: &str) {
        if self.lanes.remove(campaign).is_some() {
            tracing::info!(campaign = %campaign, "relay lane retired: {why}");
        }
        self.unready.remove(campaign);
        self.registered.remove(campaign);
        // An error only says there was no such series. (A sharded campaign's series, the sum
        // of its buckets', comes back at the next refresh while a bucket is still served.)
        let _ = self
            .metrics
            .relay_backlog
            .remove_label_values(&[campaign.campaign()]);
    }

    /// Retires every lane, backoff entry and backlog series of a campaign no longer in
    /// `registered` (the registry just read).
    pub(super) fn leave_unregistered(&mut self, registered: &HashSet<CampaignId>) {
        let gone: Vec<CampaignId> = (self.lanes.keys())
            .chain(self.unready.keys())
            .chain(&self.registered)
            .filter(|c| !registered.contains(*c))
            .cloned()
            .collect();
        for c in &gone {
            self.retire(c, "the campaign left the registry");
        }
    }

    /// Records, per lane, the lowest outbox format its live relays read (what lets its
    /// issuers write batch entries). Bookkeeping: a failure is logged, and tried again at the
    /// next refresh.
    pub(super) async fn settle_formats(&mut self) {
        for c in self.lanes.keys() {
            match self.outbox.settle_format(c, outbox_format::LIVE).await {
                Ok(Some((was, now))) => tracing::info!(
                    campaign = %c, was, now,
                    "outbox format the campaign's live relays read changed: its issuers {} batch entries",
                    if now >= 2 { "now write" } else { "no longer write" }
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(campaign = %c, error = %e, "recording the outbox format its relays read")
                }
            }
        }
    }
}
