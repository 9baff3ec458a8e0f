//! Provisioning and admin: create or restock a campaign, change its window or state, read
//! a snapshot, forget it, list the registry.

use super::Store;
use crate::Error;
use crate::campaign::{
    AdminAction, CampaignSnapshot, ProvisionOutcome, RoomCounts, Suspension, Window,
};
use crate::ids::CampaignId;
use crate::keys::{CampaignKeys, REGISTRY};

impl Store {
    /// Reads a view of a campaign; `Ok(None)` when it does not exist. A sharded campaign's
    /// counts are its buckets' sums (each bucket read consistently, one after another).
    pub async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<CampaignSnapshot>, Error> {
        let Some(mut snap) = self.snapshot_one(campaign).await? else {
            return Ok(None);
        };
        if let Some(buckets) = self.buckets(campaign).await? {
            for b in &buckets {
                let Some(part) = self.snapshot_one(b).await? else {
                    continue;
                };
                snap.issued += part.issued;
                snap.outbox_len += part.outbox_len;
                snap.acked_high = snap.acked_high.max(part.acked_high);
                snap.suspension = snap.suspension.or(part.suspension);
            }
        }
        Ok(Some(snap))
    }

    async fn snapshot_one(&self, campaign: &CampaignId) -> Result<Option<CampaignSnapshot>, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.snapshot.prepare_invoke();
        inv.key(&k.meta).key(&k.outbox);
        inv.key(&k.wr.line).key(&k.wr.active).key(&k.wr.state);
        let r: Vec<i64> = self.invoke("snapshot", inv).await?;
        if r.is_empty() {
            return Ok(None);
        }
        let [
            total,
            issued,
            opens,
            closes,
            paused,
            closed,
            now,
            outbox,
            gate_closed,
            suspended,
            suspended_ms,
            issued_then,
            acked_high,
            room_on,
            queued,
            active,
            admitted,
        ] = r[..]
        else {
            return Err(Error::Protocol(format!("snapshot {r:?}")));
        };
        Ok(Some(CampaignSnapshot {
            total: total.max(0) as u64,
            issued: issued.max(0) as u64,
            window: Window::from_stored(opens, closes),
            paused: paused == 1,
            closed: closed == 1,
            gate_closed: gate_closed == 1,
            now_ms: now,
            outbox_len: outbox.max(0) as u64,
            suspension: (suspended == 1).then_some(Suspension {
                since_ms: suspended_ms,
                issued_then: issued_then.max(0) as u64,
            }),
            acked_high: acked_high.max(0) as u64,
            room: (room_on == 1).then_some(RoomCounts {
                queued: queued.max(0) as u64,
                active: active.max(0) as u64,
                admitted: admitted.max(0) as u64,
            }),
        }))
    }

    /// Creates a campaign, or brings an existing one up to `stock` (restocking by the
    /// difference) and to `window` when given. Never resets holders or the issued count.
    pub async fn ensure_campaign(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
    ) -> Result<ProvisionOutcome, Error> {
        self.ensure_campaign_gated(campaign, stock, window, false)
            .await
    }

    /// [`Store::ensure_campaign`]; with `gated`, a campaign this call creates is created
    /// closed by the load-test gate in the same atomic script, so no issuance can slip in
    /// before the gate's verdict. An existing campaign's flags are never changed here.
    pub async fn ensure_campaign_gated(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        gated: bool,
    ) -> Result<ProvisionOutcome, Error> {
        self.ensure_sharded(campaign, stock, window, gated, 1).await
    }

    /// [`Store::ensure_campaign_gated`] for a campaign, a sharded campaign's own meta or one
    /// of its buckets (`role`: see `lua/ensure.lua`).
    pub(super) async fn ensure_campaign_as(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        gated: bool,
        role: &str,
    ) -> Result<ProvisionOutcome, Error> {
        self.ensure_with_room(campaign, stock, window, gated, role, "")
            .await
    }

    /// [`Store::ensure_campaign_as`]; a campaign this call creates gets the waiting room
    /// `room` (`lua/ensure.lua`'s `wr=…` fields, '' for none) in the creating call.
    pub(super) async fn ensure_with_room(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        gated: bool,
        role: &str,
        room: &str,
    ) -> Result<ProvisionOutcome, Error> {
        if stock == 0 {
            return Err(Error::InvalidInput("stock must be at least 1".into()));
        }
        if stock > crate::campaign::MAX_STOCK {
            return Err(Error::InvalidInput(format!(
                "stock must be at most {} (was {stock})",
                crate::campaign::MAX_STOCK
            )));
        }
        if let Some(w) = &window {
            w.validate()?;
        }
        self.notice_epoch_change(campaign).await?;
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.ensure.prepare_invoke();
        inv.key(&k.meta)
            .arg(stock)
            .arg(if window.is_some() { "1" } else { "0" })
            .arg(window.and_then(|w| w.opens_ms).unwrap_or(0))
            .arg(window.and_then(|w| w.closes_ms).unwrap_or(0))
            .arg(if gated { "1" } else { "0" })
            .arg(role)
            .arg(room);
        let (outcome, before, after, window_changed): (String, u64, u64, u8) =
            self.invoke("ensure", inv).await?;
        // The registry lives outside the campaign's hash slot, so it cannot join the script.
        self.register(campaign).await?;
        provision_outcome(
            campaign,
            stock,
            &outcome,
            (before, after, window_changed == 1),
        )
    }

    /// Applies one admin change (to a sharded campaign: to every bucket, then the
    /// campaign; a restock is shared out); returns the stock total afterwards.
    pub async fn admin(&self, campaign: &CampaignId, action: AdminAction) -> Result<u64, Error> {
        let Some(buckets) = self.buckets(campaign).await? else {
            return self.admin_one(campaign, action).await;
        };
        if let AdminAction::Restock(n) = action {
            return self.restock_sharded(campaign, n, &buckets).await;
        }
        for b in &buckets {
            self.admin_one(b, action).await?;
        }
        self.admin_one(campaign, action).await
    }

    /// Adds `n` to a sharded campaign's stock: one atomic add to the campaign's total,
    /// recorded beside it as `ensure.lua` records a restock, then shared out to the buckets
    /// (a sharing cut short is finished by the next provisioning or restock). Returns the
    /// total.
    async fn restock_sharded(
        &self,
        campaign: &CampaignId,
        n: u64,
        buckets: &[CampaignId],
    ) -> Result<u64, Error> {
        let total = self.admin_one(campaign, AdminAction::Restock(n)).await?;
        self.share_restocks(campaign, buckets).await?;
        Ok(total)
    }

    async fn admin_one(&self, campaign: &CampaignId, action: AdminAction) -> Result<u64, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.admin.prepare_invoke();
        inv.key(&k.meta);
        match action {
            AdminAction::Restock(0) => {
                return Err(Error::InvalidInput("--add must be at least 1".into()));
            }
            AdminAction::Restock(n) => inv.arg("restock").arg(n).arg(crate::campaign::MAX_STOCK),
            AdminAction::Pause => inv.arg("pause"),
            AdminAction::Resume => inv.arg("resume"),
            AdminAction::Close => inv.arg("close"),
            AdminAction::Reopen => inv.arg("reopen"),
            AdminAction::GateClose => inv.arg("gate_close"),
            AdminAction::GateOpen => inv.arg("gate_open"),
            AdminAction::Unsuspend => inv.arg("unsuspend"),
        };
        let reply: Vec<String> = self.invoke("admin", inv).await?;
        match reply.as_slice() {
            [s, total] if s == "OK" => {
                if action == AdminAction::Unsuspend {
                    self.set_suspended(campaign, false).await?;
                }
                total
                    .parse()
                    .map_err(|_| Error::Protocol(format!("admin {reply:?}")))
            }
            [s] if s == "UNKNOWN" => Err(Error::CampaignNotFound(campaign.to_string())),
            [s] if s == "UNPROVISIONED" => Err(Error::InvalidInput(format!(
                "campaign {campaign} lost its stock with Redis and holds only its suspension: \
                 provision it again first (`campaign create`, or the operator), then audit it"
            ))),
            [s, total] if s == "TOO_MUCH" => Err(too_much(total)),
            _ => Err(Error::Protocol(format!("admin {reply:?}"))),
        }
    }

    /// Removes every key of `campaign`, then its registry and suspended-set entries
    /// (`deletionPolicy: Delete`).
    /// Returns how many keys existed. Two calls, not one transaction: on a cluster the
    /// registry lives in another slot. Keys first, so a failure in between leaves a
    /// registered campaign without keys (the relay retires its lane; forgetting again
    /// finishes the job), never keys nobody can find.
    pub async fn forget(&self, campaign: &CampaignId) -> Result<u64, Error> {
        let mut removed = 0;
        for b in self.buckets(campaign).await?.unwrap_or_default() {
            removed += self.forget_one(&b).await?;
        }
        Ok(removed + self.forget_one(campaign).await?)
    }

    async fn forget_one(&self, campaign: &CampaignId) -> Result<u64, Error> {
        let k = CampaignKeys::new(campaign);
        let removed: u64 = self
            .call("forget", |mut c| async move {
                redis::cmd("DEL").arg(&k.all()).query_async(&mut c).await
            })
            .await?;
        self.call("forget", |mut c| async move {
            redis::cmd("SREM")
                .arg(REGISTRY)
                .arg(campaign.as_str())
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        // Else the suspension alert fires for good for a campaign nobody can unsuspend.
        self.set_suspended(campaign, false).await?;
        Ok(removed)
    }

    /// Adds `campaign` to the registry (the relay and the audit find campaigns by it).
    pub(super) async fn register(&self, campaign: &CampaignId) -> Result<(), Error> {
        self.call("register", |mut c| async move {
            redis::cmd("SADD")
                .arg(REGISTRY)
                .arg(campaign.as_str())
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Every campaign id ever provisioned.
    pub async fn registry(&self) -> Result<Vec<String>, Error> {
        self.call("registry", |mut c| async move {
            redis::cmd("SMEMBERS")
                .arg(REGISTRY)
                .query_async(&mut c)
                .await
        })
        .await
    }
}

/// What `lua/ensure.lua` answered `(outcome, (before, after, window changed))`, for a
/// provisioning of `campaign` with `stock`.
fn provision_outcome(
    campaign: &CampaignId,
    stock: u64,
    outcome: &str,
    (before, after, window_changed): (u64, u64, bool),
) -> Result<ProvisionOutcome, Error> {
    Ok(match outcome {
        "CREATED" => ProvisionOutcome::Created { total: after },
        "RESTOCKED" => ProvisionOutcome::Restocked {
            before,
            after,
            window_changed,
        },
        "UPDATED" => ProvisionOutcome::WindowUpdated { total: after },
        "UNCHANGED" => ProvisionOutcome::Unchanged { total: after },
        "SHARDED" => {
            return Err(Error::InvalidInput(format!(
                "campaign {campaign} is sharded; shards cannot change once created \
                 (asked for 1)"
            )));
        }
        "STALE_BUCKET" => {
            return Err(Error::InvalidInput(format!(
                "bucket {campaign} holds coupons of a provisioning that was cut short \
                 with other shares: provision it as it was first asked, or remove its \
                 keys ({{stampede:{campaign}}}:*) after an audit"
            )));
        }
        "MISSING" => {
            return Err(Error::InvalidInput(format!(
                "bucket {campaign} is missing (a `campaign forget` that did not finish, or \
                 Redis lost it): it is not made anew over shares that moved since; run \
                 `campaign forget` again, or audit"
            )));
        }
        "STOCK_DECREASE" => {
            return Err(Error::StockDecrease {
                campaign: campaign.to_string(),
                current: before,
                requested: stock,
            });
        }
        other => return Err(Error::Protocol(format!("ensure {other}"))),
    })
}

/// A restock past the most a campaign may hold, naming the flag.
fn too_much(total: &str) -> Error {
    Error::InvalidInput(format!(
        "--add: a campaign's stock must be at most {} (it is {total})",
        crate::campaign::MAX_STOCK
    ))
}
