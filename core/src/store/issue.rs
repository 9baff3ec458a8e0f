//! The hot path: one Lua script call decides an issuance; a second reads a user's coupon.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Store;
use crate::Error;
use crate::coupon::{Decision, HolderRecord};
use crate::ids::{CampaignId, UserId};
use crate::keys::CampaignKeys;

/// A fresh unguessable coupon code: 64 bits from SipHash under this thread's random
/// keys (`RandomState::new` varies them per call), as 16 hex digits.
fn coupon_code() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016X}", RandomState::new().hash_one(n))
}

impl Store {
    /// Decides one issuance (the hot path).
    pub async fn issue(&self, campaign: &CampaignId, user: &UserId) -> Result<Decision, Error> {
        self.issue_after(campaign, user, 0).await
    }

    /// [`Store::issue`] by a caller that has already handed out seqs up to `handed_out`:
    /// a counter below it means Redis lost acknowledged writes, and the script suspends
    /// the campaign then and there instead of handing those seqs out again.
    pub async fn issue_after(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        handed_out: u64,
    ) -> Result<Decision, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.issue.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.holders)
            .key(&k.outbox)
            .arg(user.as_str())
            .arg(campaign.as_str())
            .arg(coupon_code())
            .arg(handed_out);
        let reply: Vec<String> = self.invoke("issue", inv).await?;
        if reply.first().is_some_and(|s| s == "SUSPENDED") && reply.len() > 1 {
            // This call suspended it: the alert's set lives outside the campaign's slot.
            tracing::error!(
                campaign = %campaign, handed_out,
                "Redis' issued counter is below seqs already handed out (it lost writes): \
                 campaign suspended; run `audit`, then `campaign unsuspend`"
            );
            self.set_suspended(campaign, true).await?;
        }
        Decision::from_reply(&reply)
    }

    /// Finds the coupon `user` holds; `Ok(None)` when the user has none.
    pub async fn lookup(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<Option<HolderRecord>, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.lookup.prepare_invoke();
        inv.key(&k.meta).key(&k.holders).arg(user.as_str());
        let reply: Vec<String> = self.invoke("lookup", inv).await?;
        match reply.first().map(String::as_str) {
            Some("UNKNOWN") => Err(Error::CampaignNotFound(campaign.to_string())),
            Some("NONE") => Ok(None),
            Some("HELD") => HolderRecord::parse(reply.get(1).map_or("", String::as_str)).map(Some),
            _ => Err(Error::Protocol(format!("{reply:?}"))),
        }
    }
}
