//! Cleanup under the finalizer: close the campaign; under `deletionPolicy: Delete`, let
//! the outbox drain (bounded), then delete the Redis keys and topics.

use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use stampede_service::campaign::AdminAction;
use stampede_service::kafka::{KafkaConfig, delete_topics};
use tracing::info;

use crate::Error;
use crate::crd::{CouponCampaign, DeletionPolicy};
use crate::provision::connections;
use crate::reconcile::Context;
use crate::validate::validate;

/// Under the finalizer: close the campaign; under `Delete`, wait for the outbox to drain
/// (bounded by the drain timeout), then remove Redis data and the topics.
pub(crate) async fn cleanup(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    let plan = match validate(cc, &ctx.defaults) {
        Ok(p) => p,
        // Nothing was provisioned for a spec that never validated.
        Err(Error::InvalidSpec(_)) => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    };
    let conns = match connections(&ctx.client, &plan).await {
        Ok(c) => c,
        Err(Error::Secret(m)) if plan.deletion_policy == DeletionPolicy::Retain => {
            // A namespace being deleted takes its Secrets first; Retain keeps data anyway.
            ctx.event(
                cc,
                EventType::Warning,
                "CleanupSkipped",
                format!("campaign not closed: {m}"),
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let store = ctx.backends.store(&conns.redis)?;
    match store.admin(&plan.campaign, AdminAction::Close).await {
        Ok(_) => {
            ctx.event(
                cc,
                EventType::Normal,
                "Closed",
                "campaign closed; holders keep their coupons".into(),
            )
            .await
        }
        Err(stampede_service::Error::CampaignNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if plan.deletion_policy == DeletionPolicy::Retain {
        info!(campaign = %plan.campaign, "closed; data retained");
        return Ok(Action::await_change());
    }
    if let Some(snap) = store.snapshot(&plan.campaign).await?
        && snap.outbox_len > 0
    {
        let waited = cc
            .meta()
            .deletion_timestamp
            .as_ref()
            .map_or(Duration::ZERO, |t| {
                let ms = stampede_service::clock::now_ms() - t.0.as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            });
        if waited < ctx.drain_timeout {
            return Err(Error::OutboxNotDrained {
                pending: snap.outbox_len,
            });
        }
        let note = format!(
            "outbox still held {} issuances after {:?}; deleting anyway (`stampede-service audit` lists what PostgreSQL lacks)",
            snap.outbox_len, ctx.drain_timeout
        );
        ctx.event(cc, EventType::Warning, "DrainTimedOut", note)
            .await;
    }
    let mut removed = store.forget(&plan.campaign).await?;
    for t in &plan.load_tests {
        removed += store
            .forget(&crate::loadtest::shadow_id(&plan.campaign, &t.name))
            .await?;
    }
    let kafka = KafkaConfig {
        brokers: conns.kafka,
    };
    delete_topics(&kafka, plan.campaign.as_str()).await?;
    let note = format!(
        "deleted {removed} Redis keys and the topics of {}; rows in PostgreSQL are kept",
        plan.campaign
    );
    ctx.event(cc, EventType::Normal, "Deleted", note).await;
    Ok(Action::await_change())
}
