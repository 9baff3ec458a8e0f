//! A campaign's waiting room in Redis (issue #16): its settings in the campaign's meta
//! (`lua/queue_config.lua`, or `lua/ensure.lua` when the campaign is created with one), and
//! each join and poll as one call of `lua/queue.lua`, which also lapses and admits a bounded
//! number of users, so the line moves without a background worker.

use std::time::Duration;

use super::Store;
use crate::Error;
use crate::campaign::{ProvisionOutcome, Window};
use crate::ids::{CampaignId, UserId};
use crate::keys::CampaignKeys;
use crate::waiting_room::{PRE_OPEN_SCORES, WaitingRoomConfig};

/// Where a user stands in a waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// In line.
    Waiting,
    /// Admitted: may issue until the admission lapses.
    Admitted,
    /// The stock is gone: nobody waits any longer.
    SoldOut,
    /// The place (or admission) lapsed, or the token is not the user's current one.
    Expired,
    /// The user already holds a coupon: nothing to wait for.
    Issued,
    /// The campaign is closed.
    Closed,
}

/// One join's or poll's answer, with what the room looked like then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAnswer {
    /// Where the user stands.
    pub status: QueueStatus,
    /// The user's score in line: what their queue token carries ('' when none).
    pub ticket: String,
    /// When the user's queue token expires, Unix ms (0 when none).
    pub token_expires_ms: i64,
    /// 1-based place in line while waiting (0 otherwise).
    pub position: u64,
    /// When the user's admission lapses, Unix ms (0 unless admitted).
    pub admission_expires_ms: i64,
    /// Users in line.
    pub queued: u64,
    /// Users admitted and not yet decided.
    pub active: u64,
    /// Coupons not yet issued.
    pub remaining: u64,
    /// Users this call admitted.
    pub admitted_now: u64,
    /// Places and admissions this call found lapsed.
    pub lapsed_now: u64,
    /// When the campaign opens, Unix ms (0: no window start).
    pub opens_ms: i64,
    /// Redis' clock at the call, Unix ms.
    pub now_ms: i64,
    /// Whether this join put the user in line (a repeated join finds them there).
    pub created: bool,
    /// The room's admissions a second.
    pub admit_per_second: u32,
    /// The room's queue TTL.
    pub queue_ttl: Duration,
    /// Whether the room admits now: open, not paused or suspended, stock left.
    pub admitting: bool,
}

/// The `wr=…` fields `lua/ensure.lua` and `lua/queue_config.lua` store.
fn room_args(room: &WaitingRoomConfig) -> [String; 6] {
    let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
    [
        flag(room.enabled),
        room.max_active.to_string(),
        room.admit_per_second.to_string(),
        room.session_ttl.as_millis().to_string(),
        room.queue_ttl.as_millis().to_string(),
        flag(room.shuffle_at_open),
    ]
}

impl Store {
    /// Creates a campaign (or brings it to `stock` and `window`, as
    /// [`Store::ensure_sharded`]; `gated` as there) with the waiting room `room`: set in the
    /// creating call, so no issuance slips in before it; an existing campaign's room is set
    /// afterwards. A waiting room needs an unsharded campaign (`shards` 1).
    pub async fn ensure_campaign_with_room(
        &self,
        campaign: &CampaignId,
        stock: u64,
        window: Option<Window>,
        (gated, shards): (bool, u32),
        room: &WaitingRoomConfig,
    ) -> Result<ProvisionOutcome, Error> {
        room.validate()?;
        if shards > 1 {
            return Err(sharded_refused(campaign));
        }
        let [e, max, rate, session, queue, shuffle] = room_args(room);
        let fields = format!(
            "wr={e},wr_max={max},wr_rate={rate},wr_session_ms={session},\
             wr_queue_ms={queue},wr_shuffle={shuffle}"
        );
        let outcome = self
            .ensure_with_room(campaign, stock, window, gated, "", &fields)
            .await?;
        if !matches!(outcome, ProvisionOutcome::Created { .. }) {
            self.set_waiting_room(campaign, room).await?;
        }
        Ok(outcome)
    }

    /// Sets (or with `enabled: false` turns off) an existing campaign's waiting room.
    /// Refused for a sharded campaign: its buckets issue on slots of their own, where no
    /// one script could see the line.
    pub async fn set_waiting_room(
        &self,
        campaign: &CampaignId,
        room: &WaitingRoomConfig,
    ) -> Result<(), Error> {
        room.validate()?;
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.queue_config.prepare_invoke();
        inv.key(&k.meta);
        let w = &k.wr;
        for key in [&w.line, &w.seen, &w.active, &w.entry, &w.state] {
            inv.key(key);
        }
        for a in room_args(room) {
            inv.arg(a);
        }
        let reply: Vec<String> = self.invoke("queue_config", inv).await?;
        match reply.first().map(String::as_str) {
            Some("OK") => Ok(()),
            Some("UNKNOWN") => Err(Error::CampaignNotFound(campaign.to_string())),
            Some("SHARDED") => Err(sharded_refused(campaign)),
            _ => Err(Error::Protocol(format!("queue_config {reply:?}"))),
        }
    }

    /// The campaign's waiting room as stored (`None`: never given one).
    pub async fn waiting_room(
        &self,
        campaign: &CampaignId,
    ) -> Result<Option<WaitingRoomConfig>, Error> {
        let k = CampaignKeys::new(campaign);
        let fields: Vec<Option<u64>> = self
            .call("waiting_room", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(&k.meta)
                    .arg(&["total", "wr", "wr_max", "wr_rate"])
                    .arg(&["wr_session_ms", "wr_queue_ms", "wr_shuffle"])
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let [total, enabled, max, rate, session, queue, shuffle] = fields[..] else {
            return Err(Error::Protocol(format!("waiting_room {fields:?}")));
        };
        if total.is_none() {
            return Err(Error::CampaignNotFound(campaign.to_string()));
        }
        let number = |v: Option<u64>| u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX);
        Ok(enabled.map(|e| WaitingRoomConfig {
            enabled: e == 1,
            max_active: number(max),
            admit_per_second: number(rate),
            session_ttl: Duration::from_millis(session.unwrap_or(0)),
            queue_ttl: Duration::from_millis(queue.unwrap_or(0)),
            shuffle_at_open: shuffle == Some(1),
        }))
    }

    /// Puts `user` in `campaign`'s line (a repeated join finds the same place and ticket),
    /// moving the line on a bounded step; `pre_open_score` is the user's place should they
    /// join before the opening (`TokenKey::pre_open_score`).
    pub async fn queue_join(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        pre_open_score: u64,
    ) -> Result<QueueAnswer, Error> {
        let score = pre_open_score.min(PRE_OPEN_SCORES - 1).to_string();
        self.queue_call(campaign, "join", user, &score).await
    }

    /// Where `user`, holding the queue token with `ticket`, stands now (a poll also keeps
    /// the place from lapsing), moving the line on a bounded step.
    pub async fn queue_poll(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        ticket: &str,
    ) -> Result<QueueAnswer, Error> {
        self.queue_call(campaign, "poll", user, ticket).await
    }

    async fn queue_call(
        &self,
        campaign: &CampaignId,
        op: &str,
        user: &UserId,
        score: &str,
    ) -> Result<QueueAnswer, Error> {
        let k = CampaignKeys::new(campaign);
        let mut inv = self.scripts.queue.prepare_invoke();
        let w = &k.wr;
        for key in [
            &k.meta, &k.holders, &w.line, &w.seen, &w.active, &w.entry, &w.state,
        ] {
            inv.key(key);
        }
        inv.arg(op).arg(user.as_str()).arg(score);
        let reply: Vec<String> = self.invoke("queue", inv).await?;
        parse_answer(campaign, &reply)
    }
}

fn sharded_refused(campaign: &CampaignId) -> Error {
    Error::InvalidInput(format!(
        "campaign {campaign}: a waiting room needs an unsharded campaign (shards 1); its \
         buckets issue on slots of their own, where no one script could see the line"
    ))
}

/// Decodes `lua/queue.lua`'s reply.
fn parse_answer(campaign: &CampaignId, reply: &[String]) -> Result<QueueAnswer, Error> {
    let bad = || Error::Protocol(format!("queue {reply:?}"));
    let status = match reply.first().map(String::as_str) {
        Some("UNKNOWN") => return Err(Error::CampaignNotFound(campaign.to_string())),
        Some("NO_ROOM") => return Err(Error::NoWaitingRoom(campaign.to_string())),
        Some("WAITING") => QueueStatus::Waiting,
        Some("ADMITTED") => QueueStatus::Admitted,
        Some("SOLD_OUT") => QueueStatus::SoldOut,
        Some("EXPIRED") => QueueStatus::Expired,
        Some("ISSUED") => QueueStatus::Issued,
        Some("CLOSED") => QueueStatus::Closed,
        _ => return Err(bad()),
    };
    if reply.len() != 16 {
        return Err(bad());
    }
    let n = |i: usize| reply[i].parse::<i64>().map_err(|_| bad());
    let u = |i: usize| n(i).map(|v| v.max(0) as u64);
    Ok(QueueAnswer {
        status,
        ticket: reply[1].clone(),
        token_expires_ms: n(2)?,
        position: u(3)?,
        admission_expires_ms: n(4)?,
        queued: u(5)?,
        active: u(6)?,
        remaining: u(7)?,
        admitted_now: u(8)?,
        lapsed_now: u(9)?,
        opens_ms: n(10)?,
        now_ms: n(11)?,
        created: n(12)? == 1,
        admit_per_second: u32::try_from(u(13)?).unwrap_or(u32::MAX),
        queue_ttl: Duration::from_millis(u(14)?),
        admitting: n(15)? == 1,
    })
}
