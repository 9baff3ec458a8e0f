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
pub(super) fn coupon_code() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016X}", RandomState::new().hash_one(n))
}

/// What an issuer has handed out of one campaign: the highest seq, and the incarnation of
/// the campaign it belongs to (a campaign created again under the same id starts afresh).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandedOut {
    /// The campaign's incarnation, as the issue script returned it (shared: the hot path
    /// copies this per request).
    pub incarnation: std::sync::Arc<str>,
    /// The highest seq handed out (0: none).
    pub high: u64,
}

/// One issue script call's answer.
#[derive(Debug)]
pub struct Counted {
    /// What it decided.
    pub decision: Decision,
    /// The incarnation of the campaign (or bucket) it asked.
    pub incarnation: String,
    /// The issued counter to record as handed out, if the answer hands out a coupon
    /// (none for a coupon held before in a bucket: its position is not known).
    pub counter: Option<u64>,
}

/// One user's four values of the issue script's answer: status, detail, incarnation,
/// counter.
fn counted(target: &CampaignId, answer: &[String]) -> Result<Counted, Error> {
    let [_, _, incarnation, counter] = answer else {
        return Err(Error::Protocol(format!("{answer:?}")));
    };
    let decision = Decision::from_reply(&answer[..2])?;
    // What a caller records as handed out: the counter the script compares (a bucket
    // counts its own positions; elsewhere the counter is the seq).
    let counter = match &decision {
        Decision::Already(r) if !target.is_bucket() => Some(r.seq),
        _ => counter.parse().ok(),
    };
    Ok(Counted {
        decision,
        incarnation: incarnation.clone(),
        counter,
    })
}

/// The scripts' argument for the bucket count a caller routed by: '' for none (0).
fn sibling_arg(siblings: usize) -> String {
    match siblings {
        0 => String::new(),
        n => n.to_string(),
    }
}

impl Store {
    /// Decides one issuance (the hot path).
    pub async fn issue(&self, campaign: &CampaignId, user: &UserId) -> Result<Decision, Error> {
        let routed = self
            .issue_routed(campaign, user, None, |_| HandedOut::default())
            .await?;
        Ok(routed.decision)
    }

    /// [`Store::issue`] by a caller that has already handed out seqs of this campaign up to
    /// `handed.high`: a counter below it means Redis lost acknowledged writes, and the
    /// script suspends the campaign then and there instead of handing those seqs out again.
    /// Also returns the campaign's incarnation, which the caller's next `handed` names.
    pub async fn issue_after(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        handed: &HandedOut,
    ) -> Result<(Decision, String), Error> {
        let counted = self.issue_counted(campaign, 0, user, None, handed).await?;
        Ok((counted.decision, counted.incarnation))
    }

    /// One issue script call on `target` deciding `asks` (user, admission expiry) in order;
    /// each ask's answer on its own, so that one unreadable answer (a holder record someone
    /// wrote by hand) fails that ask alone, not the users decided beside it.
    pub(super) async fn issue_script(
        &self,
        target: &CampaignId,
        siblings: usize,
        asks: &[(&UserId, Option<i64>)],
        handed: &HandedOut,
    ) -> Result<Vec<Result<Counted, Error>>, Error> {
        let k = CampaignKeys::new(target);
        let mut inv = self.scripts.issue.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.holders)
            .key(&k.outbox)
            .key(&k.wr.active)
            .key(&k.wr.entry)
            .arg(target.campaign())
            .arg(handed.high)
            .arg(&*handed.incarnation)
            .arg(self.outbox_batches.script_arg())
            .arg(sibling_arg(siblings));
        for (user, admission) in asks {
            inv.arg(user.as_str())
                .arg(coupon_code())
                .arg(admission.map(|a| a.to_string()).unwrap_or_default());
        }
        let reply: Vec<String> = self.invoke("issue", inv).await?;
        if reply.len() != asks.len() * 4 {
            return Err(Error::Protocol(format!(
                "issue of {} users answered {} values",
                asks.len(),
                reply.len()
            )));
        }
        if reply
            .chunks_exact(4)
            .any(|a| a[0] == "SUSPENDED" && a[1] == "NEW")
        {
            // This call suspended it: the alert's set lives outside the campaign's slot.
            tracing::error!(
                campaign = %target, handed_out = handed.high,
                "Redis' issued counter is below seqs already handed out (it lost writes): \
                 campaign suspended; run `audit`, then `campaign unsuspend`"
            );
            self.set_suspended(target, true).await?;
        }
        Ok(reply
            .chunks_exact(4)
            .map(|answer| counted(target, answer))
            .collect())
    }

    /// Finds the coupon `user` holds, and the campaign or bucket that holds it (what a
    /// replica fence waits on); `Ok(None)` when the user has none.
    pub async fn lookup(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<Option<(HolderRecord, CampaignId)>, Error> {
        // A sharded campaign answers with its buckets (one call more, the first time this
        // process meets it): a plain campaign's lookup stays one script call.
        let (mut target, mut siblings) = self.route(campaign, user);
        // A stale bucket, then the campaign, then the user's bucket.
        for _ in 0..3 {
            let k = CampaignKeys::new(&target);
            let mut inv = self.scripts.lookup.prepare_invoke();
            inv.key(&k.meta)
                .key(&k.holders)
                .arg(user.as_str())
                .arg(sibling_arg(siblings));
            let reply: Vec<String> = self.invoke("lookup", inv).await?;
            let detail = reply.get(1).map_or("", String::as_str);
            return match reply.first().map(String::as_str) {
                Some("SHARDED") if !target.is_bucket() => {
                    let buckets = CampaignId::parse_buckets(detail)?;
                    siblings = buckets.len();
                    target = buckets[super::shards::bucket_index(user.as_str(), siblings)].clone();
                    self.learn(campaign, buckets);
                    continue;
                }
                Some("UNKNOWN") if target.is_bucket() => {
                    self.unlearn(campaign);
                    (target, siblings) = (campaign.clone(), 0);
                    continue;
                }
                Some("UNKNOWN") => Err(Error::CampaignNotFound(campaign.to_string())),
                Some("NONE") => Ok(None),
                Some("HELD") => HolderRecord::parse(detail).map(|r| Some((r, target))),
                _ => Err(Error::Protocol(format!("{reply:?}"))),
            };
        }
        Err(Error::Protocol(format!(
            "lookup of {campaign}: the route did not settle"
        )))
    }
}
