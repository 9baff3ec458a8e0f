//! The regular status: one condition per concern (Ready first), the phase, and the stock
//! and topic counters, from one reconcile's [`Observed`].

use stampede_core::campaign::{CampaignSnapshot, CampaignState};

use super::{Alerts, Gate, Observed, Outcome, Problem, condition};
use crate::crd::{
    ClosedBy, ConditionType, CouponCampaignStatus, KafkaStatus, LoadTestStatus, Phase, Reason,
    StockStatus, Verdict, WaitingRoomStatus,
};

/// The status for what was observed. `now` is RFC 3339.
pub(crate) fn compute(
    prev: Option<&CouponCampaignStatus>,
    obs: &Observed,
    now: &str,
) -> CouponCampaignStatus {
    let (redis, kafka, workloads) = (redis(obs), kafka(obs), workloads(obs));
    // Ready needs stock, topics and pods; alert rules are advisory.
    let ready = [&redis, &kafka, &workloads]
        .into_iter()
        .find_map(|r| r.as_ref().err().cloned())
        .map_or_else(
            || {
                Ok((
                    Reason::Ready,
                    "stock, topics and workloads are in place".to_owned(),
                ))
            },
            Err,
        );
    let is_ready = ready.is_ok();
    // A rollout (under way or stuck) is not Ready, but the campaign is served all the same.
    let serving = is_ready
        || ready
            .as_ref()
            .is_err_and(|p| p.reason == Reason::RollingOut);
    let g = obs.generation;
    let mut conditions = vec![
        condition(prev, g, now, ConditionType::Ready, ready),
        condition(prev, g, now, ConditionType::RedisProvisioned, redis),
        condition(prev, g, now, ConditionType::KafkaProvisioned, kafka),
        condition(prev, g, now, ConditionType::WorkloadsReady, workloads),
        condition(prev, g, now, ConditionType::AlertsConfigured, alerts(obs)),
    ];
    if !obs.load_tests.is_empty() {
        let passed = load_tests_passed(&obs.load_tests, is_ready);
        conditions.push(condition(
            prev,
            g,
            now,
            ConditionType::LoadTestsPassed,
            passed,
        ));
    }
    CouponCampaignStatus {
        phase: Some(phase(obs, serving)),
        observed_generation: g,
        campaign_id: pinned_id(prev, obs),
        conditions,
        stock: stock(prev, obs),
        waiting_room: waiting_room(prev, obs),
        closed_by: closed_by(prev, obs),
        kafka: topic(prev, obs),
        load_tests: obs.load_tests.clone(),
    }
}

/// The campaign's id (validate believes a pinned one only if it is this campaign's),
/// pinned once anything was provisioned under it: before, a campaign whose Secrets are
/// missing may yet get another id (reconcile's `spec::fresh_id` looks until it is pinned).
fn pinned_id(prev: Option<&CouponCampaignStatus>, obs: &Observed) -> Option<String> {
    let pinned = prev.is_some_and(|p| p.campaign_id.is_some());
    let provisioned = obs.redis.is_ok() || obs.kafka.is_ok();
    (pinned || provisioned).then(|| obs.campaign_id.clone())
}

fn redis(obs: &Observed) -> Outcome {
    obs.redis.as_ref().map_err(Clone::clone).map(|s| {
        (
            Reason::Provisioned,
            format!(
                "stock {} total, {} issued, {} remaining",
                s.total,
                s.issued,
                s.remaining()
            ),
        )
    })
}

fn kafka(obs: &Observed) -> Outcome {
    match &obs.kafka {
        Err(p) => Err(p.clone()),
        Ok(t) if t.decrease_refused => Err(Problem::new(
            Reason::PartitionDecreaseRefused,
            format!(
                "spec.kafka.partitions asks for fewer partitions than topic {} has ({}); Kafka cannot remove partitions, so the topic keeps {}. Set spec.kafka.partitions to {} or more.",
                t.topic, t.partitions, t.partitions, t.partitions
            ),
        )),
        Ok(t) => Ok((
            Reason::Provisioned,
            format!(
                "topic {} with {} partitions, dead letters to {}",
                t.topic, t.partitions, t.dead_letter_topic
            ),
        )),
    }
}

fn workloads(obs: &Observed) -> Outcome {
    let w = obs.workloads.as_ref().map_err(Clone::clone)?;
    let scaling = if w.issuer_wanted > w.issuer_needed() {
        format!(" (scaling to {})", w.issuer_wanted)
    } else {
        String::new()
    };
    let counts = format!(
        "issuer {}/{} available{scaling}, writer {}/{} available",
        w.issuer_available,
        w.issuer_needed(),
        w.writer_available,
        w.writer_wanted
    );
    if !w.serving() {
        Err(Problem::new(Reason::WaitingForPods, counts))
    } else if !w.ready() {
        let rolling = format!(
            "{counts}; rolling out: issuer {}/{} and writer {}/{} available on the current spec, {} pod(s) of earlier specs left",
            w.issuer_updated,
            w.issuer_needed(),
            w.writer_updated,
            w.writer_wanted,
            w.earlier_pods
        );
        Err(Problem::new(Reason::RollingOut, rolling))
    } else {
        Ok((Reason::Available, counts))
    }
}

fn alerts(obs: &Observed) -> Outcome {
    match &obs.alerts {
        Alerts::Configured => Ok((Reason::RuleApplied, "PrometheusRule applied".to_owned())),
        Alerts::CrdMissing => Err(Problem::new(
            Reason::PrometheusRuleCRDMissing,
            "monitoring.coreos.com/v1 PrometheusRule is not installed; the campaign runs without alert rules",
        )),
        Alerts::Failed(m) => Err(Problem::new(Reason::ApplyFailed, m.clone())),
    }
}

/// `LoadTestsPassed`: every test's latest run finished and passed.
fn load_tests_passed(runs: &[LoadTestStatus], ready: bool) -> Outcome {
    let passed = Verdict::Passed.as_str();
    if let Some(r) = runs
        .iter()
        .find(|r| r.verdict.as_deref().is_some_and(|v| v != passed))
    {
        let reason = if r.verdict.as_deref() == Some(Verdict::ThresholdsFailed.as_str()) {
            Reason::ThresholdsFailed
        } else {
            Reason::LoadTestError
        };
        let why = r.reason.as_deref().unwrap_or("no reason recorded");
        return Err(Problem::new(
            reason,
            format!("load test {} (run {}): {why}", r.name, r.run),
        ));
    }
    // The first unfinished run, preferring one that says what holds it up.
    if let Some(r) = runs
        .iter()
        .filter(|r| r.verdict.is_none())
        .min_by_key(|r| r.reason.is_none())
    {
        return Err(if !ready && r.segments_done == 0 {
            Problem::new(
                Reason::WaitingForWorkloads,
                "load tests start once stock, topics and pods are ready",
            )
        } else {
            // While a run is unfinished its reason says what holds a runner up.
            let held_up = r.reason.as_deref().map(|w| format!("; {w}"));
            Problem::new(
                Reason::Running,
                format!(
                    "load test {} running: {}/{} segments done{}",
                    r.name,
                    r.segments_done,
                    r.segments,
                    held_up.unwrap_or_default()
                ),
            )
        });
    }
    Ok((
        Reason::Passed,
        format!("{} load test(s) passed", runs.len()),
    ))
}

fn phase(obs: &Observed, serving: bool) -> Phase {
    match obs.redis.as_ref().ok().map(CampaignSnapshot::state) {
        _ if !serving && obs.gate == Gate::Testing => Phase::Provisioning,
        _ if obs.gate == Gate::Testing => Phase::Testing,
        Some(CampaignState::Suspended) => Phase::Suspended,
        // A closed campaign is closed whatever else is missing.
        Some(CampaignState::Closed) => Phase::Closed,
        _ if !serving => Phase::Provisioning,
        Some(CampaignState::Scheduled) => Phase::Scheduled,
        Some(CampaignState::Open) => Phase::Open,
        Some(CampaignState::Paused) => Phase::Paused,
        Some(CampaignState::SoldOut) => Phase::SoldOut,
        None => Phase::Provisioning,
    }
}

/// Counters from Redis (and PostgreSQL); the last known ones when Redis could not be read.
fn stock(prev: Option<&CouponCampaignStatus>, obs: &Observed) -> Option<StockStatus> {
    obs.redis
        .as_ref()
        .ok()
        .map(|s| StockStatus {
            total: s.total as i64,
            remaining: s.remaining() as i64,
            issued: s.issued as i64,
            persisted: obs.persisted,
        })
        .or_else(|| prev.and_then(|p| p.stock.clone()))
}

/// The room's counters from Redis; the last known ones when Redis could not be read.
fn waiting_room(prev: Option<&CouponCampaignStatus>, obs: &Observed) -> Option<WaitingRoomStatus> {
    match obs.redis.as_ref() {
        Ok(s) => s.room.map(|r| WaitingRoomStatus {
            queued: r.queued as i64,
            active: r.active as i64,
            admitted: r.admitted as i64,
        }),
        Err(_) => prev.and_then(|p| p.waiting_room.clone()),
    }
}

/// The close flags from Redis; the last known ones when Redis could not be read.
fn closed_by(prev: Option<&CouponCampaignStatus>, obs: &Observed) -> Vec<ClosedBy> {
    match &obs.redis {
        Ok(s) => [
            (s.closed, ClosedBy::Manual),
            (s.gate_closed, ClosedBy::Gate),
        ]
        .into_iter()
        .filter_map(|(set, by)| set.then_some(by))
        .collect(),
        Err(_) => prev.map(|p| p.closed_by.clone()).unwrap_or_default(),
    }
}

fn topic(prev: Option<&CouponCampaignStatus>, obs: &Observed) -> Option<KafkaStatus> {
    obs.kafka
        .as_ref()
        .ok()
        .map(|t| KafkaStatus {
            topic: t.topic.clone(),
            dead_letter_topic: t.dead_letter_topic.clone(),
            partitions: t.partitions,
        })
        .or_else(|| prev.and_then(|p| p.kafka.clone()))
}
