//! The gate: gated load tests must pass before a campaign that has issued nothing opens.
//! Deciding it is pure; holding the campaign closed (and letting it go) and the events of
//! runs that started or finished are the edge. The gate has its own flag in Redis
//! (`gate_closed`, set at creation for a gated campaign): it never sets or clears the
//! manual close, so a campaign closed by hand stays closed whatever the gate decides.

use kube::runtime::events::EventType;
use stampede_core::campaign::{AdminAction, CampaignSnapshot};

use crate::Error;
use crate::backends::Stock;
use crate::context::Context;
use crate::crd::{CouponCampaign, CouponCampaignStatus, LoadTestSpec, LoadTestStatus, Verdict};
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

/// Keeps the gate's flag on the real campaign while the gate holds and clears it once the
/// gate lets go; `snapshot` is refreshed after a change. `created` says this reconcile
/// created the campaign (closed by the gate already, when gated), for the event.
pub(crate) async fn hold_for_gate(
    ctx: &Context,
    cc: &CouponCampaign,
    stock: &dyn Stock,
    plan: &Plan,
    snapshot: &mut CampaignSnapshot,
    gate: &Gate,
    created: bool,
) -> Result<(), Error> {
    let action = gate_action(gate, snapshot.gate_closed);
    if let Some(action) = action {
        stock.admin(&plan.campaign, action).await?;
        if let Some(s) = stock.snapshot(&plan.campaign).await? {
            *snapshot = s;
        }
    } else if !(created && snapshot.gate_closed) {
        return Ok(());
    }
    let (reason, note) = match gate {
        Gate::Open if snapshot.closed => (
            EventReason::GateOpened,
            "gated load tests passed; the campaign stays closed by hand until `stampede-service campaign reopen`".to_owned(),
        ),
        Gate::Open => (
            EventReason::GateOpened,
            "gated load tests passed; the campaign may open".to_owned(),
        ),
        Gate::Failed(why) => (EventReason::GateClosed, format!("held closed: {why}")),
        Gate::Testing => (
            EventReason::GateClosed,
            "held closed until the gated load tests pass".to_owned(),
        ),
    };
    publish(ctx, cc, EventType::Normal, reason, note).await;
    Ok(())
}

/// What the gate must change: its own flag only, never the manual close.
pub(crate) fn gate_action(gate: &Gate, gate_closed: bool) -> Option<AdminAction> {
    match gate {
        Gate::Open if gate_closed => Some(AdminAction::GateOpen),
        Gate::Testing | Gate::Failed(_) if !gate_closed => Some(AdminAction::GateClose),
        _ => None,
    }
}

/// Events for load-test runs that started, finished or stopped unjudged.
pub(crate) async fn report_runs(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    now: &[LoadTestStatus],
    stopped: &[LoadTestStatus],
) {
    let prev = prev.map(|p| p.load_tests.as_slice()).unwrap_or_default();
    let mut events = Vec::new();
    for r in now {
        let before = prev.iter().find(|p| p.name == r.name && p.run == r.run);
        if before.is_none() && r.started_at.is_some() {
            let note = format!(
                "load test {} started: run {}, {} segment(s)",
                r.name, r.run, r.segments
            );
            events.push((EventType::Normal, EventReason::LoadTestStarted, note));
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
                events.push((EventType::Normal, EventReason::LoadTestPassed, note));
            }
            Some((v, _)) if newly => {
                let why = r.reason.as_deref().unwrap_or("");
                let note = format!("load test {} {v}: {why}", r.name);
                events.push((EventType::Warning, EventReason::LoadTestFailed, note));
            }
            _ => {}
        }
    }
    // A run stopped is told once, whether the status read recorded it or only its Jobs did.
    let only_jobs: Vec<LoadTestStatus> = stopped
        .iter()
        .filter(|s| prev.iter().all(|p| p.run != s.run))
        .cloned()
        .collect();
    for note in stopped_runs(&[prev, &only_jobs].concat(), now) {
        events.push((EventType::Normal, EventReason::LoadTestStopped, note));
    }
    for (type_, reason, note) in events {
        publish(ctx, cc, type_, reason, note).await;
    }
}

/// A note for each run `prev` recorded unjudged that `now` no longer has: why it stopped.
pub(super) fn stopped_runs(prev: &[LoadTestStatus], now: &[LoadTestStatus]) -> Vec<String> {
    prev.iter()
        .filter(|p| p.verdict.is_none() && !now.iter().any(|r| r.name == p.name && r.run == p.run))
        .map(|p| {
            let why = match now.iter().find(|r| r.name == p.name) {
                Some(next) => format!(
                    "superseded by run {} (its spec or the stock changed)",
                    next.run
                ),
                None => "taken out of the spec".to_owned(),
            };
            format!(
                "load test {} stopped unjudged: run {}, {why}",
                p.name, p.run
            )
        })
        .collect()
}
