//! Kubernetes events for what reconcile did and what it was refused: provisioning,
//! load-test runs, RBAC.

use kube::Resource;
use kube::runtime::events::EventType;
use stampede_service::campaign::{AdminAction, ProvisionOutcome};
use stampede_service::clock::now_rfc3339;
use stampede_service::kafka::TopicsOutcome;
use tracing::warn;

use crate::crd::{CouponCampaign, CouponCampaignStatus, LoadTestStatus};
use crate::kubeapi::write_status;
use crate::provision::RedisOutcome;
use crate::reconcile::Context;
use crate::status::{self, Problem};

/// Events for what provisioning changed or refused.
pub(crate) async fn report_provisioning(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    redis: &Result<RedisOutcome, Problem>,
    kafka: &Result<TopicsOutcome, Problem>,
) {
    let prev_reason = |t: &str| {
        prev.and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
            .map(|c| c.reason.clone())
    };
    match redis {
        Ok(r) => {
            let note = match r.provision {
                ProvisionOutcome::Created { total } => {
                    Some(("StockProvisioned", format!("created with {total} coupons")))
                }
                ProvisionOutcome::Restocked { before, after, .. } => Some((
                    "Restocked",
                    format!("stock {before} → {after} (+{})", after - before),
                )),
                ProvisionOutcome::WindowUpdated { .. } => {
                    Some(("WindowUpdated", "sale window updated".into()))
                }
                ProvisionOutcome::Unchanged { .. } => None,
            };
            if let Some((reason, note)) = note {
                ctx.event(cc, EventType::Normal, reason, note).await;
            }
            if let Some(a) = r.pause_change {
                let (reason, note) = if a == AdminAction::Pause {
                    ("Paused", "issuing paused by spec.paused")
                } else {
                    ("Resumed", "issuing resumed")
                };
                ctx.event(cc, EventType::Normal, reason, note.into()).await;
            }
        }
        Err(p) if prev_reason("RedisProvisioned").as_deref() != Some(p.reason) => {
            ctx.event(cc, EventType::Warning, p.reason, p.message.clone())
                .await;
        }
        Err(_) => {}
    }
    match kafka {
        Ok(t) if t.decrease_refused => {
            if prev_reason("KafkaProvisioned").as_deref() != Some("PartitionDecreaseRefused") {
                let note = format!(
                    "topic {} keeps its {} partitions; Kafka cannot remove partitions",
                    t.topic, t.partitions
                );
                ctx.event(cc, EventType::Warning, "PartitionDecreaseRefused", note)
                    .await;
            }
        }
        Ok(t) if t.partitions_before == 0 => {
            let note = format!(
                "created {} ({} partitions) and {}",
                t.topic, t.partitions, t.dead_letter_topic
            );
            ctx.event(cc, EventType::Normal, "TopicsCreated", note)
                .await;
        }
        Ok(t) if t.partitions > t.partitions_before => {
            let note = format!(
                "{} grew from {} to {} partitions",
                t.topic, t.partitions_before, t.partitions
            );
            ctx.event(cc, EventType::Normal, "PartitionsAdded", note)
                .await;
        }
        Ok(_) => {}
        Err(p) if prev_reason("KafkaProvisioned").as_deref() != Some(p.reason) => {
            ctx.event(cc, EventType::Warning, p.reason, p.message.clone())
                .await;
        }
        Err(_) => {}
    }
}

/// Events for load-test runs that started or finished.
pub(crate) async fn report_runs(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: &[LoadTestStatus],
    now: &[LoadTestStatus],
) {
    for r in now {
        let before = prev.iter().find(|p| p.name == r.name && p.run == r.run);
        if before.is_none() && r.started_at.is_some() {
            let note = format!(
                "load test {} started: run {}, {} segment(s)",
                r.name, r.run, r.segments
            );
            ctx.event(cc, EventType::Normal, "LoadTestStarted", note)
                .await;
        }
        let newly = r.verdict.is_some() && before.is_none_or(|p| p.verdict.is_none());
        match r.verdict.as_deref() {
            Some(v) if newly && v == crate::loadtest::PASSED => {
                let note = format!(
                    "load test {} passed: {} rps, p95 {} ms, error rate {}",
                    r.name,
                    r.rps.unwrap_or_default(),
                    r.p95_ms.unwrap_or_default(),
                    r.error_rate.unwrap_or_default()
                );
                ctx.event(cc, EventType::Normal, "LoadTestPassed", note)
                    .await;
            }
            Some(v) if newly => {
                let note = format!(
                    "load test {} {v}: {}",
                    r.name,
                    r.reason.as_deref().unwrap_or("")
                );
                ctx.event(cc, EventType::Warning, "LoadTestFailed", note)
                    .await;
            }
            _ => {}
        }
    }
}

/// RBAC refusals say so on the campaign (condition and event), not only in the log: a
/// ClusterRole missing a verb must not look like a campaign that is merely slow.
pub(crate) async fn report_forbidden(ctx: &Context, cc: &CouponCampaign, message: &str) {
    let prev = cc.status.as_ref();
    let note = format!("the operator's ServiceAccount is not allowed to do this: {message}");
    let again = prev.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Forbidden" && c.message == note)
    });
    if !again {
        ctx.event(cc, EventType::Warning, "Forbidden", note.clone())
            .await;
    }
    let status = status::forbidden(prev, cc.meta().generation, &note, &now_rfc3339());
    // If writing status is forbidden too, the event and the log are all there is.
    if let Err(e) = write_status(&ctx.client, cc, status).await {
        warn!(error = %e, "writing the Forbidden condition failed");
    }
}
