//! Status: what reconcile observed, turned into phase and conditions. Pure.

use std::time::Duration;

use stampede_service::campaign::{CampaignSnapshot, CampaignState, Window};
use stampede_service::kafka::TopicsOutcome;

use crate::crd::{
    Condition, CouponCampaignStatus, KafkaStatus, LoadTestStatus, Phase, StockStatus,
};
use crate::loadtest::PASSED;

/// Why something is not (yet) as the spec asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem with this reason and message.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Available vs wanted pods of the two Deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Workloads {
    /// Issuer pods available.
    pub issuer_available: i32,
    /// Issuer pods wanted (at least the HPA minimum).
    pub issuer_wanted: i32,
    /// Writer pods available.
    pub writer_available: i32,
    /// Writer pods wanted.
    pub writer_wanted: i32,
}

impl Workloads {
    /// Every wanted pod is available.
    pub fn ready(&self) -> bool {
        self.issuer_available >= self.issuer_wanted && self.writer_available >= self.writer_wanted
    }
}

/// Whether the PrometheusRule is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alerts {
    /// Applied.
    Configured,
    /// The monitoring.coreos.com CRD is not installed.
    CrdMissing,
    /// Applying failed.
    Failed(String),
}

/// Whether gated load tests hold the campaign closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Gate {
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
pub struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
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
    /// The gate.
    pub gate: Gate,
}

fn condition(
    prev: Option<&CouponCampaignStatus>,
    generation: Option<i64>,
    now: &str,
    type_: &str,
    outcome: Result<(&'static str, String), Problem>,
) -> Condition {
    let (status, reason, message) = match outcome {
        Ok((reason, message)) => ("True", reason, message),
        Err(p) => ("False", p.reason, p.message),
    };
    // The transition time moves only when the status does.
    let last_transition_time = prev
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The status for what was observed. `now` is RFC 3339.
pub fn compute(
    prev: Option<&CouponCampaignStatus>,
    obs: &Observed,
    now: &str,
) -> CouponCampaignStatus {
    let redis = obs.redis.as_ref().map_err(Clone::clone).map(|s| {
        (
            "Provisioned",
            format!(
                "stock {} total, {} issued, {} remaining",
                s.total,
                s.issued,
                s.remaining()
            ),
        )
    });
    let kafka = match &obs.kafka {
        Err(p) => Err(p.clone()),
        Ok(t) if t.decrease_refused => Err(Problem::new(
            "PartitionDecreaseRefused",
            format!(
                "spec.kafka.partitions asks for fewer partitions than topic {} has ({}); Kafka cannot remove partitions, so the topic keeps {}. Set spec.kafka.partitions to {} or more.",
                t.topic, t.partitions, t.partitions, t.partitions
            ),
        )),
        Ok(t) => Ok((
            "Provisioned",
            format!(
                "topic {} with {} partitions, dead letters to {}",
                t.topic, t.partitions, t.dead_letter_topic
            ),
        )),
    };
    let workloads = match &obs.workloads {
        Err(p) => Err(p.clone()),
        Ok(w) => {
            let counts = format!(
                "issuer {}/{} available, writer {}/{} available",
                w.issuer_available, w.issuer_wanted, w.writer_available, w.writer_wanted
            );
            if w.ready() {
                Ok(("Available", counts))
            } else {
                Err(Problem::new("WaitingForPods", counts))
            }
        }
    };
    let alerts = match &obs.alerts {
        Alerts::Configured => Ok(("RuleApplied", "PrometheusRule applied".to_owned())),
        Alerts::CrdMissing => Err(Problem::new(
            "PrometheusRuleCRDMissing",
            "monitoring.coreos.com/v1 PrometheusRule is not installed; the campaign runs without alert rules",
        )),
        Alerts::Failed(m) => Err(Problem::new("ApplyFailed", m.clone())),
    };
    // Ready needs stock, topics and pods; alert rules are advisory.
    let ready = [&redis, &kafka, &workloads]
        .into_iter()
        .find_map(|r| r.as_ref().err().cloned())
        .map_or_else(
            || {
                Ok((
                    "Ready",
                    "stock, topics and workloads are in place".to_owned(),
                ))
            },
            Err,
        );
    let is_ready = ready.is_ok();
    let g = obs.generation;
    let mut conditions = vec![
        condition(prev, g, now, "Ready", ready),
        condition(prev, g, now, "RedisProvisioned", redis),
        condition(prev, g, now, "KafkaProvisioned", kafka),
        condition(prev, g, now, "WorkloadsReady", workloads),
        condition(prev, g, now, "AlertsConfigured", alerts),
    ];
    if !obs.load_tests.is_empty() {
        let passed = load_tests_passed(&obs.load_tests, is_ready);
        conditions.push(condition(prev, g, now, "LoadTestsPassed", passed));
    }
    let snapshot = obs.redis.as_ref().ok();
    let phase = match snapshot.map(CampaignSnapshot::state) {
        _ if !is_ready && obs.gate == Gate::Testing => Phase::Provisioning,
        _ if obs.gate == Gate::Testing => Phase::Testing,
        // A closed campaign is closed whatever else is missing.
        Some(CampaignState::Closed) => Phase::Closed,
        _ if !is_ready => Phase::Provisioning,
        Some(CampaignState::Scheduled) => Phase::Scheduled,
        Some(CampaignState::Open) => Phase::Open,
        Some(CampaignState::Paused) => Phase::Paused,
        Some(CampaignState::SoldOut) => Phase::SoldOut,
        None => Phase::Provisioning,
    };
    let stock = snapshot
        .map(|s| StockStatus {
            total: s.total as i64,
            remaining: s.remaining() as i64,
            issued: s.issued as i64,
            persisted: obs.persisted,
        })
        .or_else(|| prev.and_then(|p| p.stock.clone()));
    let kafka = obs
        .kafka
        .as_ref()
        .ok()
        .map(|t| KafkaStatus {
            topic: t.topic.clone(),
            dead_letter_topic: t.dead_letter_topic.clone(),
            partitions: t.partitions,
        })
        .or_else(|| prev.and_then(|p| p.kafka.clone()));
    CouponCampaignStatus {
        phase: Some(phase),
        observed_generation: g,
        conditions,
        stock,
        kafka,
        load_tests: obs.load_tests.clone(),
    }
}

/// `LoadTestsPassed`: every test's latest run finished and passed.
fn load_tests_passed(
    runs: &[LoadTestStatus],
    ready: bool,
) -> Result<(&'static str, String), Problem> {
    if let Some(r) = runs
        .iter()
        .find(|r| r.verdict.as_deref().is_some_and(|v| v != PASSED))
    {
        let reason = if r.verdict.as_deref() == Some(crate::loadtest::THRESHOLDS_FAILED) {
            "ThresholdsFailed"
        } else {
            "LoadTestError"
        };
        let why = r.reason.as_deref().unwrap_or("no reason recorded");
        return Err(Problem::new(
            reason,
            format!("load test {} (run {}): {why}", r.name, r.run),
        ));
    }
    if let Some(r) = runs.iter().find(|r| r.verdict.is_none()) {
        return Err(if !ready && r.segments_done == 0 {
            Problem::new(
                "WaitingForWorkloads",
                "load tests start once stock, topics and pods are ready",
            )
        } else {
            Problem::new(
                "Running",
                format!(
                    "load test {} running: {}/{} segments done",
                    r.name, r.segments_done, r.segments
                ),
            )
        });
    }
    Ok(("Passed", format!("{} load test(s) passed", runs.len())))
}

/// The status of a campaign whose spec cannot be carried out.
pub fn failed(
    prev: Option<&CouponCampaignStatus>,
    generation: Option<i64>,
    message: &str,
    now: &str,
) -> CouponCampaignStatus {
    let problem = || Err(Problem::new("InvalidSpec", message));
    CouponCampaignStatus {
        phase: Some(Phase::Failed),
        observed_generation: generation,
        conditions: vec![condition(prev, generation, now, "Ready", problem())],
        stock: prev.and_then(|p| p.stock.clone()),
        kafka: prev.and_then(|p| p.kafka.clone()),
        load_tests: prev.map(|p| p.load_tests.clone()).unwrap_or_default(),
    }
}

/// The previous status with `Ready` False for an RBAC refusal (everything else as it was).
pub fn forbidden(
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
        "Ready",
        Err(Problem::new("Forbidden", message)),
    );
    s.conditions.retain(|c| c.type_ != "Ready");
    s.conditions.insert(0, ready);
    s.phase.get_or_insert(Phase::Provisioning);
    s
}

/// How long until the window next changes the phase (opensAt or closesAt ahead of
/// `now_ms`), so reconcile can requeue for that moment.
pub fn until_window_edge(window: &Window, now_ms: i64) -> Option<Duration> {
    [window.opens_ms, window.closes_ms]
        .into_iter()
        .flatten()
        .filter(|t| *t > now_ms)
        .min()
        .map(|t| Duration::from_millis((t - now_ms) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(total: u64, issued: u64) -> CampaignSnapshot {
        CampaignSnapshot {
            total,
            issued,
            window: Window::default(),
            paused: false,
            closed: false,
            now_ms: 10_000,
            outbox_len: 0,
        }
    }

    fn topics(partitions: i32, refused: bool) -> TopicsOutcome {
        TopicsOutcome {
            topic: "stampede.c".into(),
            dead_letter_topic: "stampede-dlq.c".into(),
            partitions_before: partitions,
            partitions,
            decrease_refused: refused,
        }
    }

    fn observed() -> Observed {
        Observed {
            generation: Some(3),
            redis: Ok(snapshot(100, 40)),
            kafka: Ok(topics(6, false)),
            workloads: Ok(Workloads {
                issuer_available: 2,
                issuer_wanted: 2,
                writer_available: 1,
                writer_wanted: 1,
            }),
            alerts: Alerts::CrdMissing,
            persisted: Some(39),
            load_tests: vec![],
            gate: Gate::Open,
        }
    }

    fn cond<'a>(s: &'a CouponCampaignStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn ready_and_open_without_alert_rules() {
        let s = compute(None, &observed(), "2026-01-01T00:00:00Z");
        assert_eq!(s.phase, Some(Phase::Open));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(
            cond(&s, "AlertsConfigured").reason,
            "PrometheusRuleCRDMissing"
        );
        assert_eq!(s.stock.as_ref().unwrap().remaining, 60);
        assert_eq!(s.stock.as_ref().unwrap().persisted, Some(39));
        assert_eq!(s.observed_generation, Some(3));
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "Ready",
                "RedisProvisioned",
                "KafkaProvisioned",
                "WorkloadsReady",
                "AlertsConfigured"
            ]
        );
    }

    #[test]
    fn phases_follow_the_stock_and_window() {
        let mut o = observed();
        o.redis = Ok(snapshot(100, 100));
        assert_eq!(compute(None, &o, "t").phase, Some(Phase::SoldOut));
        let mut s = snapshot(100, 0);
        s.window = Window::from_stored(20_000, 0);
        o.redis = Ok(s.clone());
        assert_eq!(compute(None, &o, "t").phase, Some(Phase::Scheduled));
        s.window = Window::from_stored(0, 5_000);
        o.redis = Ok(s.clone());
        assert_eq!(compute(None, &o, "t").phase, Some(Phase::Closed));
        s.window = Window::default();
        s.paused = true;
        o.redis = Ok(s);
        assert_eq!(compute(None, &o, "t").phase, Some(Phase::Paused));
    }

    #[test]
    fn not_ready_until_pods_are_available() {
        let mut o = observed();
        o.workloads = Ok(Workloads {
            issuer_available: 1,
            issuer_wanted: 2,
            writer_available: 0,
            writer_wanted: 1,
        });
        let s = compute(None, &o, "t");
        assert_eq!(s.phase, Some(Phase::Provisioning));
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "WaitingForPods")
        );
        assert!(ready.message.contains("issuer 1/2"), "{}", ready.message);
    }

    #[test]
    fn partition_decrease_is_a_condition_that_says_why() {
        let mut o = observed();
        o.kafka = Ok(topics(8, true));
        let s = compute(None, &o, "t");
        let k = cond(&s, "KafkaProvisioned");
        assert_eq!(
            (k.status.as_str(), k.reason.as_str()),
            ("False", "PartitionDecreaseRefused")
        );
        assert!(k.message.contains("8 or more"), "{}", k.message);
        assert_eq!(cond(&s, "Ready").reason, "PartitionDecreaseRefused");
        assert_eq!(s.kafka.as_ref().unwrap().partitions, 8);
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let first = compute(None, &observed(), "2026-01-01T00:00:00Z");
        let again = compute(Some(&first), &observed(), "2026-01-01T00:05:00Z");
        assert_eq!(
            cond(&again, "Ready").last_transition_time,
            "2026-01-01T00:00:00Z"
        );
        let mut o = observed();
        o.redis = Err(Problem::new("RedisUnavailable", "connection refused"));
        let down = compute(Some(&again), &o, "2026-01-01T00:06:00Z");
        assert_eq!(
            cond(&down, "Ready").last_transition_time,
            "2026-01-01T00:06:00Z"
        );
        assert_eq!(cond(&down, "Ready").reason, "RedisUnavailable");
        // Counters the operator could not read keep their last known values.
        assert_eq!(down.stock, first.stock);
    }

    #[test]
    fn gated_tests_hold_the_phase_and_say_why() {
        let run = |verdict: Option<&str>, reason: Option<&str>| LoadTestStatus {
            name: "preflight".into(),
            run: "preflight-1".into(),
            phase: if verdict.is_some() {
                "Finished"
            } else {
                "Running"
            }
            .into(),
            verdict: verdict.map(Into::into),
            reason: reason.map(Into::into),
            segments: 2,
            segments_done: 1,
            ..Default::default()
        };
        let mut o = observed();
        o.load_tests = vec![run(None, None)];
        o.gate = Gate::Testing;
        let s = compute(None, &o, "t");
        assert_eq!(s.phase, Some(Phase::Testing));
        assert_eq!(cond(&s, "LoadTestsPassed").reason, "Running");

        let mut closed = snapshot(100, 0);
        closed.closed = true;
        o.redis = Ok(closed);
        o.load_tests = vec![run(
            Some("ThresholdsFailed"),
            Some("http_req_duration: p(95)<50"),
        )];
        o.gate = Gate::Failed("preflight".into());
        let s = compute(None, &o, "t");
        assert_eq!(s.phase, Some(Phase::Closed));
        let c = cond(&s, "LoadTestsPassed");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ThresholdsFailed")
        );
        assert!(c.message.contains("p(95)<50"), "{}", c.message);
        assert_eq!(s.load_tests.len(), 1);

        o.redis = Ok(snapshot(100, 0));
        o.load_tests = vec![run(Some("Passed"), None)];
        o.gate = Gate::Open;
        let s = compute(None, &o, "t");
        assert_eq!(s.phase, Some(Phase::Open));
        assert_eq!(cond(&s, "LoadTestsPassed").status, "True");
    }

    #[test]
    fn failed_spec() {
        let s = failed(None, Some(2), "spec.stock must be at least 1", "t");
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, "Ready").reason, "InvalidSpec");
    }

    #[test]
    fn forbidden_keeps_everything_but_ready() {
        let first = compute(None, &observed(), "t0");
        let s = forbidden(Some(&first), Some(4), "deployments is forbidden", "t1");
        let r = cond(&s, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "Forbidden")
        );
        assert_eq!(r.last_transition_time, "t1");
        assert_eq!(s.conditions.len(), first.conditions.len());
        assert_eq!(s.stock, first.stock);
        assert_eq!(s.phase, first.phase);
    }

    #[test]
    fn window_edges() {
        let w = Window::from_stored(5_000, 9_000);
        assert_eq!(
            until_window_edge(&w, 1_000),
            Some(Duration::from_millis(4_000))
        );
        assert_eq!(
            until_window_edge(&w, 6_000),
            Some(Duration::from_millis(3_000))
        );
        assert_eq!(until_window_edge(&w, 9_000), None);
        assert_eq!(until_window_edge(&Window::default(), 0), None);
    }
}
