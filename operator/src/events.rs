//! Kubernetes events: publishing one, and the events for what provisioning changed or was
//! refused and for RBAC refusals. (Load-test events are `loadtest/gate.rs`.)

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use stampede_core::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome};
use stampede_core::clock::now_rfc3339;
use stampede_core::kafka::TopicsOutcome;
use tracing::warn;

use crate::context::Context;
use crate::crd::{ConditionType, CouponCampaign, CouponCampaignStatus, Phase, Reason, string_enum};
use crate::kubeapi::write_status;
use crate::status::{self, Problem};

string_enum! {
    /// Reasons of events that are not also condition reasons.
    EventReason {
        /// A campaign's stock was created in Redis.
        StockProvisioned,
        /// Stock grew.
        Restocked,
        /// The sale window changed.
        WindowUpdated,
        /// `spec.paused` paused issuing.
        Paused,
        /// Issuing resumed.
        Resumed,
        /// The campaign topics were created.
        TopicsCreated,
        /// The campaign topic grew.
        PartitionsAdded,
        /// A load-test run started.
        LoadTestStarted,
        /// A load-test run passed.
        LoadTestPassed,
        /// A load-test run failed.
        LoadTestFailed,
        /// A load-test run was stopped unjudged: taken out of the spec, or superseded.
        LoadTestStopped,
        /// The gate let a held campaign open.
        GateOpened,
        /// The gate holds the campaign closed.
        GateClosed,
        /// Cleanup could not close the campaign (Retain).
        CleanupSkipped,
        /// Cleanup closed the campaign.
        Closed,
        /// PostgreSQL did not get every issuance in time; the data was kept.
        DrainTimedOut,
        /// Cleanup deleted the campaign's data.
        Deleted,
        /// Cleanup kept failing past the drain timeout; the finalizer was released anyway.
        CleanupAbandoned,
        /// Redis restarted or failed over: the campaign suspended itself.
        Suspended,
        /// An admin lifted the suspension.
        Unsuspended,
        /// Created under the id of a campaign deleted before whose rows PostgreSQL keeps,
        /// the campaign took the id's next free form (`<id>.2`, …).
        FreshId,
    }
}

/// The event for a campaign entering or leaving the suspended phase, if it did.
pub(crate) fn suspension_event(
    prev: Option<Phase>,
    now: Option<Phase>,
    snapshot: Option<&CampaignSnapshot>,
) -> Option<(EventType, EventReason, String)> {
    let was = prev == Some(Phase::Suspended);
    match now == Some(Phase::Suspended) {
        true if !was => {
            let since = snapshot
                .and_then(|s| s.suspension)
                .map(|s| format!(" after seq {}", s.issued_then))
                .unwrap_or_default();
            let note = format!(
                "Redis restarted or failed over and may have lost acknowledged coupons{since}; \
                 issuing is suspended: run `stampede-service audit`, then `campaign unsuspend`"
            );
            Some((EventType::Warning, EventReason::Suspended, note))
        }
        false if was => Some((
            EventType::Normal,
            EventReason::Unsuspended,
            "the suspension was lifted; issuing follows the campaign's state again".into(),
        )),
        _ => None,
    }
}

/// Publishes one event on the campaign; a failure is logged, never fails the reconcile.
pub(crate) async fn publish(
    ctx: &Context,
    cc: &CouponCampaign,
    type_: EventType,
    reason: impl Into<&'static str>,
    note: String,
) {
    let reason: &str = reason.into();
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &cc.object_ref(&())).await {
        warn!(error = %e, reason, "publishing event failed");
    }
}

/// The reason a condition of the previous status had.
fn prev_reason(prev: Option<&CouponCampaignStatus>, t: ConditionType) -> Option<&str> {
    prev.and_then(|s| s.condition(t)).map(|c| c.reason.as_str())
}

/// A warning for a problem, unless the condition already said so.
async fn warn_once(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    t: ConditionType,
    p: &Problem,
) {
    if prev_reason(prev, t) != Some(p.reason.as_str()) {
        publish(ctx, cc, EventType::Warning, p.reason, p.message.clone()).await;
    }
}

/// Events for what provisioning Redis changed or refused.
pub(crate) async fn report_redis(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    redis: Result<(&ProvisionOutcome, Option<AdminAction>), &Problem>,
) {
    let (provision, pause_change) = match redis {
        Ok(r) => r,
        Err(p) => return warn_once(ctx, cc, prev, ConditionType::RedisProvisioned, p).await,
    };
    let note = match *provision {
        ProvisionOutcome::Created { total } => Some((
            EventReason::StockProvisioned,
            format!("created with {total} coupons"),
        )),
        ProvisionOutcome::Restocked { before, after, .. } => Some((
            EventReason::Restocked,
            format!("stock {before} → {after} (+{})", after - before),
        )),
        ProvisionOutcome::WindowUpdated { .. } => {
            Some((EventReason::WindowUpdated, "sale window updated".into()))
        }
        ProvisionOutcome::Unchanged { .. } => None,
    };
    if let Some((reason, note)) = note {
        publish(ctx, cc, EventType::Normal, reason, note).await;
    }
    if let Some(a) = pause_change {
        let (reason, note) = if a == AdminAction::Pause {
            (EventReason::Paused, "issuing paused by spec.paused")
        } else {
            (EventReason::Resumed, "issuing resumed")
        };
        publish(ctx, cc, EventType::Normal, reason, note.into()).await;
    }
}

/// Events for what provisioning Kafka changed or refused.
pub(crate) async fn report_kafka(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    kafka: &Result<TopicsOutcome, Problem>,
) {
    let t = match kafka {
        Ok(t) => t,
        Err(p) => return warn_once(ctx, cc, prev, ConditionType::KafkaProvisioned, p).await,
    };
    let refused = Reason::PartitionDecreaseRefused;
    let (type_, reason, note): (_, &'static str, _) = if t.decrease_refused {
        if prev_reason(prev, ConditionType::KafkaProvisioned) == Some(refused.as_str()) {
            return;
        }
        let note = format!(
            "topic {} keeps its {} partitions; Kafka cannot remove partitions",
            t.topic, t.partitions
        );
        (EventType::Warning, refused.into(), note)
    } else if t.partitions_before == 0 {
        let note = format!(
            "created {} ({} partitions) and {}",
            t.topic, t.partitions, t.dead_letter_topic
        );
        (EventType::Normal, EventReason::TopicsCreated.into(), note)
    } else if t.partitions > t.partitions_before {
        let note = format!(
            "{} grew from {} to {} partitions",
            t.topic, t.partitions_before, t.partitions
        );
        (EventType::Normal, EventReason::PartitionsAdded.into(), note)
    } else {
        return;
    };
    publish(ctx, cc, type_, reason, note).await;
}

/// RBAC refusals say so on the campaign (condition and event), not only in the log: a
/// ClusterRole missing a verb must not look like a campaign that is merely slow.
pub(crate) async fn report_forbidden(ctx: &Context, cc: &CouponCampaign, message: &str) {
    let prev = cc.status.as_ref();
    let note = format!("the operator's ServiceAccount is not allowed to do this: {message}");
    let again = prev
        .and_then(|s| s.condition(ConditionType::Ready))
        .is_some_and(|c| c.reason == Reason::Forbidden.as_str() && c.message == note);
    if !again {
        publish(ctx, cc, EventType::Warning, Reason::Forbidden, note.clone()).await;
    }
    let status = status::forbidden(prev, cc.meta().generation, &note, &now_rfc3339());
    // If writing status is forbidden too, the event and the log are all there is.
    if let Err(e) = write_status(&ctx.client, cc, status).await {
        warn!(error = %e, "writing the Forbidden condition failed");
    }
}

#[cfg(test)]
mod tests {
    use stampede_core::campaign::{CampaignSnapshot, Suspension, Window};

    use super::*;

    #[test]
    fn entering_and_leaving_the_suspension_are_events() {
        let snap = CampaignSnapshot {
            total: 100,
            issued: 40,
            window: Window::default(),
            paused: false,
            closed: false,
            gate_closed: false,
            now_ms: 0,
            outbox_len: 0,
            suspension: Some(Suspension {
                since_ms: 0,
                issued_then: 40,
            }),
            acked_high: 45,
            room: None,
        };
        let suspended = Some(Phase::Suspended);
        let (type_, reason, note) = suspension_event(Some(Phase::Open), suspended, Some(&snap))
            .expect("entering the suspension is an event");
        assert_eq!(
            (type_, reason),
            (EventType::Warning, EventReason::Suspended)
        );
        assert!(note.contains("after seq 40"), "{note}");
        assert!(suspension_event(suspended, suspended, Some(&snap)).is_none());
        let lifted = suspension_event(suspended, Some(Phase::Open), None);
        assert_eq!(lifted.map(|e| e.1), Some(EventReason::Unsuspended));
        assert!(suspension_event(Some(Phase::Open), Some(Phase::SoldOut), None).is_none());
    }
}
