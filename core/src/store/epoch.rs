//! Noticing that Redis may have lost acknowledged writes.
//!
//! A Redis that restarts (`appendfsync everysec` after a host crash) or fails over to a
//! replica that lagged comes back without the last writes it acknowledged: the issued
//! counter goes back and the same seqs would be handed out again. Both change who answers:
//! a restart changes the run id, a failover the run id and the replication id. The epoch
//! key records `<run id>/<replication id>` of the Redis that took the writes so far; an
//! issuer compares it with INFO every second and, when they differ, suspends the campaigns
//! (`lua/suspend.lua`) before recording the new epoch, so a crash in between is noticed
//! again by the next check.
//!
//! A primary also takes a new replication id, with its data intact, when it creates its
//! replication backlog (a first replica attaches) or frees it (an hour without replicas):
//! then it keeps its run id and has no previous id (`master_replid2` all zeros), unlike a
//! promotion, which keeps the id it continues there. Such a change is recorded, not
//! suspended for.
//!
//! On a Redis Cluster every shard restarts and fails over on its own: each campaign keeps
//! the epoch of the primary owning its slot in its own key, INFO is asked of that primary,
//! and a change suspends that campaign alone ([`EpochScope`]).
//!
//! Provisioning checks too ([`Store::notice_epoch_change`]): after a restart that no issuer
//! saw, a campaign created before any issuer starts would otherwise be suspended with the
//! campaigns that lived on the Redis before.

use std::collections::{BTreeSet, HashMap};

use redis::{ErrorKind, RedisError, Value};

use super::{HandedOut, Store};
use crate::Error;
use crate::ids::CampaignId;
use crate::keys::{CampaignKeys, EPOCH, SUSPENDED};

/// Whose epoch a check compares: the single Redis's, or (on a cluster) one campaign's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EpochScope {
    /// The one Redis every campaign lives on.
    Whole,
    /// The campaign's shard.
    Campaign(CampaignId),
}

impl EpochScope {
    /// The key the epoch is recorded under.
    fn key(&self) -> String {
        match self {
            Self::Whole => EPOCH.to_owned(),
            Self::Campaign(c) => CampaignKeys::new(c).epoch,
        }
    }
}

/// Who answers on a Redis connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisIdentity {
    /// `run_id`: new on every start.
    pub run_id: String,
    /// `master_replid`: new on a promotion (and on a start that did not load one).
    pub replid: String,
    /// Whether it is a primary (only a primary takes writes).
    pub primary: bool,
    /// Whether its replication id continues another one (`master_replid2` set): it was
    /// promoted from a replica.
    pub promoted: bool,
}

impl RedisIdentity {
    /// Reads the identity out of `INFO server replication`.
    pub fn parse(info: &str) -> Result<Self, Error> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(str::to_owned)
                .ok_or_else(|| Error::Protocol(format!("INFO without {name}")))
        };
        let previous = field("master_replid2").unwrap_or_default();
        Ok(Self {
            run_id: field("run_id")?,
            replid: field("master_replid")?,
            primary: field("role")? == "master",
            promoted: previous.bytes().any(|b| b != b'0'),
        })
    }

    /// The epoch this identity stands for.
    pub fn epoch(&self) -> String {
        format!("{}/{}", self.run_id, self.replid)
    }
}

/// What one epoch check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochCheck {
    /// No epoch recorded and none seen before by this process: recorded now. A Redis that
    /// lost everything before this process ever saw it cannot be told from a new one.
    Recorded(String),
    /// The same Redis as before.
    Unchanged(String),
    /// Another Redis than the one that took earlier writes (or the same one, emptied).
    Changed {
        /// The epoch recorded, or last seen by this process.
        before: String,
        /// The epoch now.
        now: String,
        /// The epoch key itself is gone: Redis lost everything (campaigns included).
        everything_lost: bool,
    },
    /// Connected to a replica (mid-failover); nothing to compare until a primary answers.
    NotPrimary,
    /// A campaign's epoch key went while the same primary kept answering: the campaign
    /// was deleted (forgotten), not lost. Nothing to record or suspend.
    Forgotten,
}

/// What [`Store::suspend_for_change`] did to one campaign.
#[derive(Debug, Clone)]
pub struct SuspendedFor {
    /// The campaign.
    pub id: CampaignId,
    /// The high reported to it (of what the caller handed out).
    pub handed: HandedOut,
    /// Whether this call suspended it (it was not yet suspended for the change).
    pub newly: bool,
}

/// Decides what an epoch reading means: `stored` is the epoch key, `seen` the epoch this
/// process last saw, `now` the epoch of the Redis answering, `promoted` whether its
/// replication id continues another one (otherwise a new id under the same run id is the
/// same data: a backlog created or freed).
pub fn judge(stored: Option<&str>, seen: Option<&str>, now: &str, promoted: bool) -> EpochCheck {
    judge_in(&EpochScope::Whole, stored, seen, now, promoted)
}

/// [`judge`] for `scope`: a campaign's epoch key gone under an unchanged primary means
/// the campaign was deleted, where the whole Redis's going means Redis lost everything.
pub fn judge_in(
    scope: &EpochScope,
    stored: Option<&str>,
    seen: Option<&str>,
    now: &str,
    promoted: bool,
) -> EpochCheck {
    let changed = |before: &str, everything_lost| EpochCheck::Changed {
        before: before.to_owned(),
        now: now.to_owned(),
        everything_lost,
    };
    let run = |epoch: &str| epoch.split('/').next().unwrap_or_default().to_owned();
    let differs = |before: &str| before != now && (promoted || run(before) != run(now));
    match (stored, seen) {
        (Some(s), _) if differs(s) => changed(s, false),
        // Another process noticed first and recorded the new epoch; this one still reports
        // what it acknowledged.
        (Some(_), Some(l)) if differs(l) => changed(l, false),
        (None, Some(l)) if matches!(scope, EpochScope::Campaign(_)) && !differs(l) => {
            EpochCheck::Forgotten
        }
        (None, Some(l)) => changed(l, true),
        (None, None) => EpochCheck::Recorded(now.to_owned()),
        (Some(_), _) => EpochCheck::Unchanged(now.to_owned()),
    }
}

impl Store {
    /// Who answers for `scope` (on a cluster: the primary owning its slot) and the epoch
    /// recorded there, read on one connection in one round trip. The key read vouches for
    /// the INFO beside it: a cluster client whose connection to the slot's primary is down
    /// (mid-failover) sends the slot's commands to any other node, where the read fails
    /// with MOVED; INFO alone would describe that stranger, whose run id looks like another
    /// failover and suspended the campaign again after an admin had lifted it.
    async fn identity_and_epoch(
        &self,
        scope: &EpochScope,
    ) -> Result<(RedisIdentity, Option<String>), Error> {
        let key = scope.key();
        let (info, stored): (String, Option<String>) = self
            .call("epoch", |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("GET").arg(&key);
                pipe.cmd("INFO").arg("server").arg("replication");
                let replies = c.pipeline_on_primary_of(&key, &pipe).await?;
                let [stored, info] = <[Value; 2]>::try_from(replies).map_err(|r| {
                    RedisError::from((ErrorKind::Parse, "epoch read", format!("{r:?}")))
                })?;
                Ok((answer(info)?, answer(stored)?))
            })
            .await?;
        Ok((RedisIdentity::parse(&info)?, stored))
    }

    /// The scopes to check for `campaigns`: the whole Redis, or on a cluster each campaign.
    pub fn epoch_scopes(&self, campaigns: impl IntoIterator<Item = CampaignId>) -> Vec<EpochScope> {
        if self.is_cluster() {
            campaigns.into_iter().map(EpochScope::Campaign).collect()
        } else {
            vec![EpochScope::Whole]
        }
    }

    /// Compares the Redis answering for `scope` with its recorded epoch and with `seen`,
    /// the epoch this process saw last; records the epoch when there is none. A change is
    /// only reported: the caller suspends, then calls [`Store::record_epoch`].
    pub async fn check_epoch(
        &self,
        scope: &EpochScope,
        seen: Option<&str>,
    ) -> Result<EpochCheck, Error> {
        let (id, stored) = self.identity_and_epoch(scope).await?;
        if !id.primary {
            return Ok(EpochCheck::NotPrimary);
        }
        let now = id.epoch();
        let check = judge_in(scope, stored.as_deref(), seen, &now, id.promoted);
        let relabelled =
            matches!(check, EpochCheck::Unchanged(_)) && stored.as_deref() != Some(&now);
        if matches!(check, EpochCheck::Recorded(_)) || relabelled {
            self.record_epoch(scope, &now).await?;
        }
        Ok(check)
    }

    /// Records `epoch` as the Redis that takes `scope`'s writes from now on.
    pub async fn record_epoch(&self, scope: &EpochScope, epoch: &str) -> Result<(), Error> {
        let key = scope.key();
        self.call("epoch", |mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(epoch)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Suspends every campaign of `scope` (the whole Redis: each registered one and each in
    /// `handed`; on a cluster: the campaign) for the change to `now`, reporting to each the
    /// high `handed` holds for it, and only then records `now`, so that a crash in between is
    /// noticed again by the next check.
    pub async fn suspend_for_change(
        &self,
        scope: &EpochScope,
        now: &str,
        everything_lost: bool,
        handed: &HashMap<String, HandedOut>,
    ) -> Result<Vec<SuspendedFor>, Error> {
        let campaigns: BTreeSet<String> = match scope {
            EpochScope::Whole => {
                let mut all: BTreeSet<String> = self.registry().await?.into_iter().collect();
                all.extend(handed.keys().cloned());
                all
            }
            EpochScope::Campaign(c) => BTreeSet::from([c.to_string()]),
        };
        let mut done = Vec::with_capacity(campaigns.len());
        for c in &campaigns {
            let Ok(id) = CampaignId::parse_stored(c) else {
                continue;
            };
            let handed = handed.get(c).cloned().unwrap_or_default();
            let newly = self.suspend(&id, now, &handed, everything_lost).await?;
            done.push(SuspendedFor { id, handed, newly });
        }
        self.record_epoch(scope, now).await?;
        Ok(done)
    }

    /// Before `campaign` is provisioned: when the Redis answering for it is not the one the
    /// recorded epoch names (it restarted or failed over, its data kept, and no issuer has
    /// noticed: none ran since), suspends the campaigns that lived on the one before and
    /// records the new epoch, as an issuer's watch would. Otherwise the first issuer to start
    /// would suspend the new campaign with them, though all of it lives on this Redis. An
    /// epoch not recorded at all is left to the issuers: a Redis that lost everything looks
    /// new to a process that never saw it, and recording it here would hide the loss from an
    /// issuer that did.
    pub(super) async fn notice_epoch_change(&self, campaign: &CampaignId) -> Result<(), Error> {
        let Some(scope) = self.epoch_scopes([campaign.clone()]).pop() else {
            return Ok(());
        };
        let (id, stored) = self.identity_and_epoch(&scope).await?;
        if !id.primary {
            return Ok(());
        }
        let check = judge_in(&scope, stored.as_deref(), None, &id.epoch(), id.promoted);
        let EpochCheck::Changed {
            before,
            now,
            everything_lost,
        } = check
        else {
            return Ok(());
        };
        let done = self
            .suspend_for_change(&scope, &now, everything_lost, &HashMap::new())
            .await?;
        let suspended: Vec<&str> = done
            .iter()
            .filter(|d| d.newly)
            .map(|d| d.id.as_str())
            .collect();
        tracing::error!(
            %campaign, %before, %now, ?suspended,
            "provisioning found Redis restarted or failed over since the recorded epoch, before \
             any issuer noticed: its campaigns suspended; run `audit`, then `campaign unsuspend`"
        );
        Ok(())
    }

    /// Suspends `campaign` for the change to `epoch`, reporting `handed`, the highest seq
    /// this process handed out; with `everything_lost` the flags are written even though
    /// the campaign is gone. Returns whether this call suspended it.
    pub async fn suspend(
        &self,
        campaign: &CampaignId,
        epoch: &str,
        handed: &HandedOut,
        everything_lost: bool,
    ) -> Result<bool, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.suspend.prepare_invoke();
        inv.key(&k.meta)
            .arg(epoch)
            .arg(handed.high)
            .arg(if everything_lost { "1" } else { "0" })
            .arg(&*handed.incarnation);
        let suspended: u8 = self.invoke("suspend", inv).await?;
        if suspended == 1 {
            self.set_suspended(campaign, true).await?;
            if everything_lost {
                // The registry went with everything else; the relay finds streams by it.
                self.register(campaign).await?;
            }
        }
        Ok(suspended == 1)
    }

    /// Adds `campaign` to, or removes it from, the set of suspended campaigns (the alert's
    /// source; the campaign's own flag is what issuing obeys).
    pub(super) async fn set_suspended(&self, campaign: &CampaignId, on: bool) -> Result<(), Error> {
        self.call("suspended", |mut c| async move {
            redis::cmd(if on { "SADD" } else { "SREM" })
                .arg(SUSPENDED)
                .arg(campaign.as_str())
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// The campaigns suspended now.
    pub async fn suspended_campaigns(&self) -> Result<Vec<String>, Error> {
        self.call("suspended", |mut c| async move {
            redis::cmd("SMEMBERS")
                .arg(SUSPENDED)
                .query_async(&mut c)
                .await
        })
        .await
    }
}

/// One reply of a pipeline, an error reply (MOVED from a node that does not own the slot)
/// as an error.
fn answer<T: redis::FromRedisValue>(v: Value) -> redis::RedisResult<T> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        v => redis::from_redis_value(v).map_err(RedisError::from),
    }
}

#[cfg(test)]
mod tests;
