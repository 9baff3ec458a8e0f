//! Cleanup under the finalizer: close the campaign and remove its load tests' shadow
//! campaigns; under `deletionPolicy: Delete`, wait (bounded) until every issuance is in
//! PostgreSQL, then delete the Redis keys and topics (past the bound they are kept). When
//! Redis, Kafka or a Secret stays away past the drain timeout, it records what was left
//! behind and lets the finalizer go, so deleting a namespace never hangs on a backend that
//! is gone.

use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use stampede_core::campaign::AdminAction;
use tracing::info;

use crate::Error;
use crate::backends::{Connections, Stock, connections};
use crate::context::Context;
use crate::crd::{CouponCampaign, CouponCampaignSpec, DeletionPolicy};
use crate::events::{EventReason, publish};
use crate::loadtest::forget_shadows;
use crate::validate::{Plan, validate};

/// Under the finalizer: close the campaign; under `Delete`, wait until PostgreSQL has every
/// issuance (bounded by the drain timeout), then remove Redis data and the topics. A
/// failure is retried until the drain timeout has passed since deletion started; then it
/// is recorded as a Warning and the finalizer released.
pub(super) async fn cleanup(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    let plan = match validate(cc, &ctx.defaults) {
        Ok(p) => p,
        Err(Error::InvalidSpec(why)) => match where_its_data_lives(cc, ctx) {
            Some(plan) => {
                info!(campaign = %plan.campaign, why, "spec no longer validates; cleaning up by where its data lives");
                plan
            }
            // Nothing was provisioned for a spec that never validated.
            None => return Ok(Action::await_change()),
        },
        Err(e) => return Err(e),
    };
    // Unpinned, its data is where reconcile would have put it: not under an id a campaign
    // of the same name deleted before (and perhaps retained) left.
    // Rows only: a cleanup retried after it closed this campaign's own data must not take
    // that for a predecessor's.
    let plan = super::spec::fresh_id(cc, ctx, plan, super::spec::Leftovers::Rows).await?;
    match clean(cc, ctx, &plan).await {
        Err(e) if waited(cc) >= ctx.drain_timeout => {
            abandon(cc, ctx, &plan, &e).await;
            Ok(Action::await_change())
        }
        result => result,
    }
}

/// The plan of a campaign that was provisioned (its status says so) and whose spec has since
/// become one `validate` refuses (a load test it cannot run, an image no longer allowed, …):
/// validated again from what decides where its data lives and what its deletion policy is,
/// the rest left out, so that deleting it still closes it and, under `Delete`, removes its
/// data. `None`: never provisioned, or even that part does not validate.
fn where_its_data_lives(cc: &CouponCampaign, ctx: &Context) -> Option<Plan> {
    let status = cc.status.as_ref()?;
    if status.campaign_id.is_none() && status.stock.is_none() && status.kafka.is_none() {
        return None;
    }
    let spec = &cc.spec;
    let mut reduced = cc.clone();
    reduced.spec = CouponCampaignSpec {
        stock: spec.stock,
        shards: spec.shards,
        redis: spec.redis.clone(),
        kafka: spec.kafka.clone(),
        database: spec.database.clone(),
        deletion_policy: spec.deletion_policy,
        window: None,
        waiting_room: None,
        paused: spec.paused,
        issuer: Default::default(),
        writer: Default::default(),
        auth: Default::default(),
        alerts: Default::default(),
        load_tests: Vec::new(),
    };
    let mut plan = validate(&reduced, &ctx.defaults).ok()?;
    // Their shadows are removed by name.
    plan.load_tests = spec.load_tests.clone();
    Some(plan)
}

/// Gives up on a cleanup that kept failing: says what stays behind, so someone can remove
/// it by hand, and lets the finalizer go.
async fn abandon(cc: &CouponCampaign, ctx: &Context, plan: &Plan, e: &Error) {
    let c = &plan.campaign;
    let left = match plan.deletion_policy {
        DeletionPolicy::Retain => format!("campaign {c} may still be open in Redis"),
        DeletionPolicy::Delete => format!(
            "the Redis keys {{stampede:{c}}}:* (and those of its load-test shadows) and the \
             topics {} and {} may remain",
            stampede_core::issuance::topic(c.as_str()),
            stampede_core::issuance::dead_letter_topic(c.as_str()),
        ),
    };
    let note = format!(
        "cleanup still failing after {:?} ({e}); releasing the finalizer: {left}",
        ctx.drain_timeout
    );
    tracing::warn!(campaign = %c, "{note}");
    publish(
        ctx,
        cc,
        EventType::Warning,
        EventReason::CleanupAbandoned,
        note,
    )
    .await;
}

/// How long ago deletion of `cc` started (zero when it has not).
fn waited(cc: &CouponCampaign) -> Duration {
    cc.meta()
        .deletion_timestamp
        .as_ref()
        .map_or(Duration::ZERO, |t| {
            let ms = stampede_core::clock::now_ms() - t.0.as_millisecond();
            Duration::from_millis(ms.max(0) as u64)
        })
}

/// The cleanup proper: close, and under `Delete` drain and delete.
async fn clean(cc: &CouponCampaign, ctx: &Context, plan: &Plan) -> Result<Action, Error> {
    let conns = match connections(&ctx.client, plan).await {
        Ok(c) => c,
        Err(Error::Secret(m)) if plan.deletion_policy == DeletionPolicy::Retain => {
            // A namespace being deleted takes its Secrets first; Retain keeps data anyway.
            let note = format!("campaign not closed: {m}");
            publish(
                ctx,
                cc,
                EventType::Warning,
                EventReason::CleanupSkipped,
                note,
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let stock = ctx.backends.stock(&conns.redis)?;
    match stock.admin(&plan.campaign, AdminAction::Close).await {
        Ok(_) => {
            let note = "campaign closed; holders keep their coupons".into();
            publish(ctx, cc, EventType::Normal, EventReason::Closed, note).await;
        }
        Err(stampede_core::Error::CampaignNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // Test scaffolding, never real coupons: a run the deletion interrupted leaves its
    // shadow behind, and nothing would ever remove it, whatever the policy keeps. Those of
    // tests taken out of the spec too, whose removal no reconcile may have carried out.
    let recorded = cc.status.iter().flat_map(|s| &s.load_tests);
    let mut tests: Vec<&str> = plan.load_tests.iter().map(|t| t.name.as_str()).collect();
    tests.extend(recorded.map(|t| t.name.as_str()));
    tests.sort_unstable();
    tests.dedup();
    let shadow_keys = forget_shadows(stock.as_ref(), &plan.campaign, &tests).await?;
    if plan.deletion_policy == DeletionPolicy::Retain {
        info!(campaign = %plan.campaign, shadow_keys, "closed; data retained, load-test shadows removed");
        return Ok(Action::await_change());
    }
    if drained(cc, ctx, stock.as_ref(), (plan, &conns)).await? {
        delete(cc, ctx, stock.as_ref(), plan, &conns, shadow_keys).await?;
    }
    Ok(Action::await_change())
}

/// `Ok(true)` once every issuance is in PostgreSQL (the outbox empty and as many rows as
/// were issued: an empty outbox only says Kafka has them, and the topic goes next);
/// `Ok(false)` when the drain timeout passed first: then the data stays, for the audit
/// to find what PostgreSQL lacks and repair it, and the Warning says what to remove by
/// hand afterwards.
async fn drained(
    cc: &CouponCampaign,
    ctx: &Context,
    stock: &dyn Stock,
    (plan, conns): (&Plan, &Connections),
) -> Result<bool, Error> {
    let Some(snap) = stock.snapshot(&plan.campaign).await? else {
        return Ok(true);
    };
    let rows = match snap.issued {
        0 => Some(0),
        _ => {
            ctx.backends
                .persisted(&conns.database, plan.campaign.as_str())
                .await
        }
    };
    let unwritten = rows.map_or(snap.issued, |r| snap.issued.saturating_sub(r.max(0) as u64));
    if snap.outbox_len == 0 && unwritten == 0 {
        return Ok(true);
    }
    if waited(cc) < ctx.drain_timeout {
        return Err(Error::OutboxNotDrained {
            pending: snap.outbox_len,
            unwritten,
        });
    }
    let c = plan.campaign.as_str();
    let note = format!(
        "after {:?} the outbox still held {} issuances and PostgreSQL lacked {unwritten} of the {} issued; \
         kept the Redis keys {{stampede:{c}}}:* and the topics {} and {} so that nothing is lost: \
         `stampede-service audit --campaign {c}` says what PostgreSQL lacks and `--repair` delivers \
         what Redis still holds (what a failover lost, or the writer dead-lettered, never arrives: \
         see the dead-letter topic), then `campaign forget` and delete the topics by hand",
        ctx.drain_timeout,
        snap.outbox_len,
        snap.issued,
        stampede_core::issuance::topic(c),
        stampede_core::issuance::dead_letter_topic(c),
    );
    tracing::warn!(campaign = %c, "{note}");
    publish(
        ctx,
        cc,
        EventType::Warning,
        EventReason::DrainTimedOut,
        note,
    )
    .await;
    Ok(false)
}

/// Removes the campaign's Redis keys and its topics (`shadow_keys`: its shadows' keys,
/// removed before, counted in the event).
async fn delete(
    cc: &CouponCampaign,
    ctx: &Context,
    stock: &dyn Stock,
    plan: &Plan,
    conns: &Connections,
    shadow_keys: u64,
) -> Result<(), Error> {
    let removed = stock.forget(&plan.campaign).await? + shadow_keys;
    ctx.backends
        .delete_topics(&conns.kafka, plan.campaign.as_str())
        .await?;
    let note = format!(
        "deleted {removed} Redis keys and the topics of {}; rows in PostgreSQL are kept",
        plan.campaign
    );
    publish(ctx, cc, EventType::Normal, EventReason::Deleted, note).await;
    Ok(())
}
