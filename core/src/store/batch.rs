//! Group commit for the issue script: the issuances of one campaign (or bucket) that arrive
//! while its earlier ones are with Redis wait and go out together, as one script call for
//! the lot. A request that finds a free turn goes straight out alone, so a quiet campaign
//! pays no wait; under a stampede Redis reads, parses and starts one script per batch
//! instead of one per request (the script itself: `lua/issue.lua`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::issue::Counted;
use super::{HandedOut, Store};
use crate::Error;
use crate::ids::{CampaignId, UserId};

/// The most issuances one script call decides.
pub const MAX_BATCH: usize = 256;

/// One issuance waiting for its batch.
pub(super) struct Ask {
    /// Who asks.
    pub user: UserId,
    /// The bucket count the user was routed by (0: not to a bucket).
    pub siblings: usize,
    /// The expiry of the user's verified admission token, if one came.
    pub admission: Option<i64>,
    /// What this process had handed out of the target when the request came.
    pub handed: HandedOut,
    reply: oneshot::Sender<Result<Counted, Error>>,
}

/// Each target's turns and waiting asks.
#[derive(Default)]
pub(super) struct Lanes {
    lanes: Mutex<HashMap<CampaignId, Arc<Mutex<Lane>>>>,
}

#[derive(Default)]
struct Lane {
    /// Batches of this target with Redis now.
    in_flight: usize,
    /// Asks that came while every turn was taken, in arrival order.
    waiting: Vec<Ask>,
}

/// A request's hold on one of its target's turns while its batch of one is out; dropping
/// it (answered, or the request gone) hands the turn to a task that works off the asks
/// that came meanwhile, or frees it.
struct Turn {
    store: Store,
    target: CampaignId,
    lane: Arc<Mutex<Lane>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.lane.lock().expect("issue lane lock").release_if_idle() {
            return;
        }
        let (store, target, lane) = (self.store.clone(), self.target.clone(), self.lane.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move { store.work_off(&target, &lane).await })),
            Err(_) => {
                // Outside a runtime (shutting down): the waiting callers are told so.
                let mut lane = lane.lock().expect("issue lane lock");
                lane.waiting.clear();
                lane.in_flight -= 1;
            }
        }
    }
}

impl Store {
    /// One issuance on `target` (a campaign, or a bucket of one; the caller routes,
    /// `issue_routed`), decided in the target's next batch: at once when the target has a
    /// turn free (one per Redis connection), otherwise with the asks that come while the
    /// batches in flight are out. `admission`: the expiry of the user's verified admission
    /// token, which a campaign with a waiting room needs (and the coupon ends).
    pub(super) async fn issue_counted(
        &self,
        target: &CampaignId,
        siblings: usize,
        user: &UserId,
        admission: Option<i64>,
        handed: &HandedOut,
    ) -> Result<Counted, Error> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            user: user.clone(),
            siblings,
            admission,
            handed: handed.clone(),
            reply,
        };
        let lane = self.lanes.lane(target);
        let alone = {
            let mut l = lane.lock().expect("issue lane lock");
            if l.in_flight < self.conns.len() {
                l.in_flight += 1;
                Some(ask)
            } else {
                l.waiting.push(ask);
                None
            }
        };
        if let Some(ask) = alone {
            let _turn = Turn {
                store: self.clone(),
                target: target.clone(),
                lane,
            };
            self.decide(target, vec![ask]).await;
        }
        // A wait for the batch to go out, then the batch's own call, each bounded by the
        // timeout; a caller that gave up before its batch was taken is left out of it (its
        // stock unspent), one that gives up later may have been issued a coupon, which its
        // retry is answered with. The late-reply grace too: a frozen process wakes with
        // this timer and the batch's reply both due, and the batch may have issued this
        // caller a coupon.
        match super::within(2 * self.timeout, answer).await {
            Ok(Ok(decided)) => decided,
            Ok(Err(_)) => Err(Error::Protocol(format!(
                "the batch deciding {user}'s issuance of {target} was dropped"
            ))),
            Err(_) => Err(Error::RedisTimeout(self.timeout)),
        }
    }

    /// Holding one of `target`'s turns, decides what waits for one, batch after batch,
    /// until nothing does; then frees the turn.
    async fn work_off(&self, target: &CampaignId, lane: &Mutex<Lane>) {
        loop {
            let asks = {
                let mut lane = lane.lock().expect("issue lane lock");
                if lane.release_if_idle() {
                    return;
                }
                let n = lane.waiting.len().min(MAX_BATCH);
                lane.waiting.drain(..n).collect::<Vec<_>>()
            };
            self.decide(target, asks).await;
        }
    }

    /// One script call for `asks`, each told its answer (or the call's error).
    async fn decide(&self, target: &CampaignId, asks: Vec<Ask>) {
        // The freshest view of what was handed out: seqs only grow within an incarnation,
        // and a stale incarnation merely skips the check for this batch.
        let handed = asks
            .iter()
            .map(|a| &a.handed)
            .max_by_key(|h| h.high)
            .cloned()
            .unwrap_or_default();
        // The count the bucket checks: one the asks share (the usual case), else one no
        // bucket has, so that all of them route afresh rather than one by another's count.
        let siblings = match asks.split_first() {
            Some((first, rest)) if rest.iter().all(|a| a.siblings == first.siblings) => {
                first.siblings
            }
            _ => usize::MAX,
        };
        self.metrics.observe_batch(asks.len());
        let questions: Vec<_> = asks.iter().map(|a| (&a.user, a.admission)).collect();
        match self
            .issue_script(target, siblings, &questions, &handed)
            .await
        {
            Ok(answers) => {
                for (ask, answer) in asks.into_iter().zip(answers) {
                    let _ = ask.reply.send(answer);
                }
            }
            Err(e) => {
                for ask in asks {
                    let _ = ask.reply.send(Err(e.for_another_caller()));
                }
            }
        }
    }
}

impl Lane {
    /// Frees a turn when nobody waits for one (asks whose caller gave up do not count).
    fn release_if_idle(&mut self) -> bool {
        self.waiting.retain(|a| !a.reply.is_closed());
        if self.waiting.is_empty() {
            self.in_flight -= 1;
        }
        self.waiting.is_empty()
    }
}

impl Lanes {
    fn lane(&self, target: &CampaignId) -> Arc<Mutex<Lane>> {
        let mut lanes = self.lanes.lock().expect("issue lanes lock");
        // Looked up before inserting: the key is copied once per campaign, not per request.
        if let Some(lane) = lanes.get(target) {
            return lane.clone();
        }
        lanes.entry(target.clone()).or_default().clone()
    }
}
