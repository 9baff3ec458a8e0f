//! The gate: gated load tests must pass before a campaign that has issued nothing opens.
//! Deciding it is pure; holding the campaign closed (and reopening it) and the events of
//! runs that started or finished are the edge.

use kube::runtime::events::EventType;
use stampede_core::campaign::{AdminAction, CampaignSnapshot};

use crate::Error;
use crate::backends::Stock;
use crate::context::Context;
use crate::crd::{
    ConditionStatus, ConditionType, CouponCampaign, CouponCampaignStatus, LoadTestSpec,
    LoadTestStatus, Verdict,
};
use crate::events::{EventReason, publish};
use crate::status::Gate;
use crate::validate::Plan;

/// The gate: gated tests must pass before a campaign that has issued nothing yet opens.
pub(crate) fn gate(tests: &[LoadTestSpec], runs: &[LoadTestStatus], issued: u64) -> Gate {
    if issued > 0 {
        return Gate::Open;
    }
    let mut testing = false;
    for t in tests.iter().filter(|t| t.gate) {
        match runs
            .iter()
            .find(|r| r.name == t.name)
            .and_then(|r| r.verdict.as_deref().map(|v| (r, v)))
        {
            None => testing = true,
            Some((_, v)) if v == Verdict::Passed.as_str() => {}
            Some((r, v)) => {
                let why = r.reason.as_deref().unwrap_or(v);
                return Gate::Failed(format!("{}: {v}: {why}", t.name));
            }
        }
    }
    if testing { Gate::Testing } else { Gate::Open }
}

/// Keeps the real campaign closed while the gate holds, and reopens it once the gate that
/// held it lets go; `snapshot` is refreshed after a change.
pub(crate) async fn hold_for_gate(
    ctx: &Context,
    cc: &CouponCampaign,
    stock: &dyn Stock,
    plan: &Plan,
    snapshot: &mut CampaignSnapshot,
    gate: &Gate,
) -> Result<(), Error> {
    let held_before = cc
        .status
        .as_ref()
        .is_some_and(|s| s.is(ConditionType::LoadTestsPassed, ConditionStatus::False));
    let action = match gate {
        Gate::Open if snapshot.closed && held_before => AdminAction::Reopen,
        Gate::Testing | Gate::Failed(_) if !snapshot.closed => AdminAction::Close,
        _ => return Ok(()),
    };
    stock.admin(&plan.campaign, action).await?;
    if let Some(s) = stock.snapshot(&plan.campaign).await? {
        *snapshot = s;
    }
    let (reason, note) = match (action, gate) {
        (AdminAction::Reopen, _) => (
            EventReason::GateOpened,
            "gated load tests passed; the campaign may open".to_owned(),
        ),
        (_, Gate::Failed(why)) => (EventReason::GateClosed, format!("held closed: {why}")),
        _ => (
            EventReason::GateClosed,
            "held closed until the gated load tests pass".to_owned(),
        ),
    };
    publish(ctx, cc, EventType::Normal, reason, note).await;
    Ok(())
}

/// Events for load-test runs that started or finished.
pub(crate) async fn report_runs(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    now: &[LoadTestStatus],
) {
    let prev = prev.map(|p| p.load_tests.as_slice()).unwrap_or_default();
    for r in now {
        let before = prev.iter().find(|p| p.name == r.name && p.run == r.run);
        if before.is_none() && r.started_at.is_some() {
            let note = format!(
                "load test {} started: run {}, {} segment(s)",
                r.name, r.run, r.segments
            );
            publish(
                ctx,
                cc,
                EventType::Normal,
                EventReason::LoadTestStarted,
                note,
            )
            .await;
        }
        let newly = r.verdict.is_some() && before.is_none_or(|p| p.verdict.is_none());
        match r.verdict.as_deref().map(|v| (v, Verdict::parse(v))) {
            Some((_, Some(Verdict::Passed))) if newly => {
                let note = format!(
                    "load test {} passed: {} rps, p95 {} ms, error rate {}",
                    r.name,
                    r.rps.unwrap_or_default(),
                    r.p95_ms.unwrap_or_default(),
                    r.error_rate.unwrap_or_default()
                );
                publish(
                    ctx,
                    cc,
                    EventType::Normal,
                    EventReason::LoadTestPassed,
                    note,
                )
                .await;
            }
            Some((v, _)) if newly => {
                let why = r.reason.as_deref().unwrap_or("");
                let note = format!("load test {} {v}: {why}", r.name);
                publish(
                    ctx,
                    cc,
                    EventType::Warning,
                    EventReason::LoadTestFailed,
                    note,
                )
                .await;
            }
            _ => {}
        }
    }
}
