//! Status: what reconcile observed, turned into phase and conditions. Pure. The types of
//! an observation and the special statuses (invalid spec, RBAC refusal) are here; the
//! regular status is computed in `compute.rs`.

mod compute;
#[cfg(test)]
mod tests;

use std::time::Duration;

use stampede_core::campaign::{CampaignSnapshot, Window};
use stampede_core::kafka::TopicsOutcome;

use crate::crd::{
    Condition, ConditionStatus, ConditionType, CouponCampaignStatus, LoadTestStatus, Phase, Reason,
};

pub(crate) use compute::compute;

/// A condition's outcome: True with a reason and message, or False with a [`Problem`].
pub(crate) type Outcome = Result<(Reason, String), Problem>;

/// Why something is not (yet) as the spec asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The condition's reason.
    pub reason: Reason,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem with this reason and message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Available vs wanted pods of the two Deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Workloads {
    /// Issuer pods available.
    pub issuer_available: i32,
    /// Issuer pods the Deployment asks for (the HPA sets it, at least its minimum).
    pub issuer_wanted: i32,
    /// The HPA's minimum (`spec.issuer.minReplicas`).
    pub issuer_min: i32,
    /// Writer pods available.
    pub writer_available: i32,
    /// Writer pods wanted.
    pub writer_wanted: i32,
    /// Issuer pods available that run the Deployment's current spec (at least).
    pub issuer_updated: i32,
    /// Writer pods available that run the Deployment's current spec (at least).
    pub writer_updated: i32,
    /// Pods of either Deployment's earlier specs still running.
    pub earlier_pods: i32,
}

impl Workloads {
    /// Issuer pods that must be available: the HPA's minimum, or what the Deployment asks
    /// for while that is less (before the HPA first acts). Pods the HPA adds above its
    /// minimum are capacity on the way: a campaign serving at its minimum stays Ready (and
    /// Open) while it scales up.
    pub fn issuer_needed(&self) -> i32 {
        self.issuer_wanted.min(self.issuer_min).max(1)
    }

    /// The needed issuer pods and every wanted writer pod are available: the campaign is
    /// served, perhaps by pods of an earlier spec.
    pub fn serving(&self) -> bool {
        self.issuer_available >= self.issuer_needed() && self.writer_available >= self.writer_wanted
    }

    /// Served by pods of the current spec alone: a load test started now meets what the
    /// spec says, not pods a rollout (under way, or stuck) left running beside them.
    pub fn ready(&self) -> bool {
        self.serving()
            && self.issuer_updated >= self.issuer_needed()
            && self.writer_updated >= self.writer_wanted
            && self.earlier_pods == 0
    }
}

/// Whether the PrometheusRule is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alerts {
    /// Applied.
    Configured,
    /// The monitoring.coreos.com CRD is not installed.
    CrdMissing,
    /// Applying failed.
    Failed(String),
}

/// Whether gated load tests hold the campaign closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Nothing holds it.
    #[default]
    Open,
    /// A gated test has not finished yet.
    Testing,
    /// A gated test failed; says which and why.
    Failed(String),
}

/// Everything one reconcile saw.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The campaign's id in Redis, Kafka and PostgreSQL.
    pub campaign_id: String,
    /// Redis stock after provisioning.
    pub redis: Result<CampaignSnapshot, Problem>,
    /// The topics after provisioning.
    pub kafka: Result<TopicsOutcome, Problem>,
    /// Deployment availability.
    pub workloads: Result<Workloads, Problem>,
    /// Alert rules.
    pub alerts: Alerts,
    /// Rows in PostgreSQL, when it could be read.
    pub persisted: Option<i64>,
    /// The latest run of each load test.
    pub load_tests: Vec<LoadTestStatus>,
    /// Runs this reconcile stopped, as their runner Jobs named them (name and run only).
    pub stopped_runs: Vec<LoadTestStatus>,
    /// The gate.
    pub gate: Gate,
}

/// One condition from its outcome; the transition time is kept from `prev` while the
/// status stays the same.
pub(crate) fn condition(
    prev: Option<&CouponCampaignStatus>,
    generation: Option<i64>,
    now: &str,
    type_: ConditionType,
    outcome: Outcome,
) -> Condition {
    let (status, reason, message) = match outcome {
        Ok((reason, message)) => (ConditionStatus::True, reason, message),
        Err(p) => (ConditionStatus::False, p.reason, p.message),
    };
    // The transition time moves only when the status does.
    let last_transition_time = prev
        .and_then(|s| s.condition(type_))
        .filter(|c| c.status == status.as_str())
        .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.as_str().into(),
        status: status.as_str().into(),
        reason: reason.as_str().into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The status of a campaign whose spec cannot be carried out.
pub(crate) fn failed(
    prev: Option<&CouponCampaignStatus>,
    generation: Option<i64>,
    message: &str,
    now: &str,
) -> CouponCampaignStatus {
    let problem = || Err(Problem::new(Reason::InvalidSpec, message));
    CouponCampaignStatus {
        phase: Some(Phase::Failed),
        observed_generation: generation,
        campaign_id: prev.and_then(|p| p.campaign_id.clone()),
        conditions: vec![condition(
            prev,
            generation,
            now,
            ConditionType::Ready,
            problem(),
        )],
        stock: prev.and_then(|p| p.stock.clone()),
        waiting_room: prev.and_then(|p| p.waiting_room.clone()),
        closed_by: prev.map(|p| p.closed_by.clone()).unwrap_or_default(),
        kafka: prev.and_then(|p| p.kafka.clone()),
        load_tests: prev.map(|p| p.load_tests.clone()).unwrap_or_default(),
    }
}

/// The previous status with `Ready` False for an RBAC refusal (everything else as it was).
pub(crate) fn forbidden(
    prev: Option<&CouponCampaignStatus>,
    generation: Option<i64>,
    message: &str,
    now: &str,
) -> CouponCampaignStatus {
    let mut s = prev.cloned().unwrap_or_default();
    let ready = condition(
        prev,
        generation,
        now,
        ConditionType::Ready,
        Err(Problem::new(Reason::Forbidden, message)),
    );
    s.conditions
        .retain(|c| c.type_ != ConditionType::Ready.as_str());
    s.conditions.insert(0, ready);
    s.phase.get_or_insert(Phase::Provisioning);
    s
}

/// How long until the window next changes the phase (opensAt or closesAt ahead of
/// `now_ms`), so reconcile can requeue for that moment.
pub(crate) fn until_window_edge(window: &Window, now_ms: i64) -> Option<Duration> {
    [window.opens_ms, window.closes_ms]
        .into_iter()
        .flatten()
        .filter(|t| *t > now_ms)
        .min()
        .map(|t| Duration::from_millis((t - now_ms) as u64))
}
