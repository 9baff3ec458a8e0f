//! Unit tests of the status: conditions, phases, transition times.

use stampede_core::campaign::{CampaignSnapshot, Window};
use stampede_core::kafka::TopicsOutcome;

use super::*;
use crate::crd::{
    ClosedBy, Condition, ConditionType, CouponCampaignStatus, LoadTestStatus, Phase, Reason,
};

fn snapshot(total: u64, issued: u64) -> CampaignSnapshot {
    CampaignSnapshot {
        total,
        issued,
        window: Window::default(),
        paused: false,
        closed: false,
        gate_closed: false,
        now_ms: 10_000,
        outbox_len: 0,
        suspension: None,
        acked_high: 0,
        room: None,
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
        campaign_id: "ns.flash".into(),
        redis: Ok(snapshot(100, 40)),
        kafka: Ok(topics(6, false)),
        workloads: Ok(issuers(2, 2)),
        alerts: Alerts::CrdMissing,
        persisted: Some(39),
        load_tests: vec![],
        stopped_runs: vec![],
        gate: Gate::Open,
    }
}

fn cond(s: &CouponCampaignStatus, t: ConditionType) -> &Condition {
    s.conditions.iter().find(|c| c.type_ == t.as_str()).unwrap()
}

#[test]
fn ready_and_open_without_alert_rules() {
    let s = compute(None, &observed(), "2026-01-01T00:00:00Z");
    assert_eq!(s.phase, Some(Phase::Open));
    assert_eq!(cond(&s, ConditionType::Ready).status, "True");
    assert_eq!(
        cond(&s, ConditionType::AlertsConfigured).reason,
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
    o.redis = Ok(s.clone());
    assert_eq!(compute(None, &o, "t").phase, Some(Phase::Paused));
    s.suspension = Some(stampede_core::campaign::Suspension {
        since_ms: 9_000,
        issued_then: 40,
    });
    o.redis = Ok(s.clone());
    assert_eq!(compute(None, &o, "t").phase, Some(Phase::Suspended));
}

#[test]
fn not_ready_until_pods_are_available() {
    let mut o = observed();
    o.workloads = Ok(Workloads {
        issuer_available: 1,
        issuer_wanted: 2,
        issuer_min: 2,
        writer_available: 0,
        writer_wanted: 1,
        issuer_updated: 1,
        writer_updated: 0,
        earlier_pods: 0,
    });
    let s = compute(None, &o, "t");
    assert_eq!(s.phase, Some(Phase::Provisioning));
    let ready = cond(&s, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForPods")
    );
    assert!(ready.message.contains("issuer 1/2"), "{}", ready.message);
}

/// Issuer pods available and asked for (the HPA's minimum 2), the writer available.
fn issuers(available: i32, wanted: i32) -> Workloads {
    Workloads {
        issuer_available: available,
        issuer_wanted: wanted,
        issuer_min: 2,
        writer_available: 1,
        writer_wanted: 1,
        issuer_updated: available,
        writer_updated: 1,
        earlier_pods: 0,
    }
}

#[test]
fn an_open_campaign_scaling_up_stays_open_and_ready_until_it_falls_below_its_minimum() {
    let mut o = observed();
    let mut phase_and_ready = |w: Workloads| {
        o.workloads = Ok(w);
        let s = compute(None, &o, "t");
        let ready = cond(&s, ConditionType::Ready).status.clone();
        let pods = cond(&s, ConditionType::WorkloadsReady).message.clone();
        (s.phase, ready, pods)
    };
    let (open, ..) = phase_and_ready(issuers(2, 2));
    assert_eq!(open, Some(Phase::Open));
    // The HPA asks for 4 issuers while 2 (its minimum) serve: capacity on the way.
    let (phase, ready, pods) = phase_and_ready(issuers(2, 4));
    assert_eq!((phase, ready.as_str()), (open, "True"));
    assert!(
        pods.contains("issuer 2/2 available (scaling to 4)"),
        "{pods}"
    );
    // One issuer left of a minimum of two: not ready.
    let (phase, ready, pods) = phase_and_ready(issuers(1, 4));
    assert_eq!(
        (phase, ready.as_str()),
        (Some(Phase::Provisioning), "False")
    );
    assert!(
        pods.contains("issuer 1/2 available (scaling to 4)"),
        "{pods}"
    );
    // Before the HPA first acts the Deployment asks for one pod, and one is enough.
    assert_eq!(phase_and_ready(issuers(1, 1)).1, "True");
}

#[test]
fn partition_decrease_is_a_condition_that_says_why() {
    let mut o = observed();
    o.kafka = Ok(topics(8, true));
    let s = compute(None, &o, "t");
    let k = cond(&s, ConditionType::KafkaProvisioned);
    assert_eq!(
        (k.status.as_str(), k.reason.as_str()),
        ("False", "PartitionDecreaseRefused")
    );
    assert!(k.message.contains("8 or more"), "{}", k.message);
    assert_eq!(
        cond(&s, ConditionType::Ready).reason,
        "PartitionDecreaseRefused"
    );
    assert_eq!(s.kafka.as_ref().unwrap().partitions, 8);
}

#[test]
fn transition_time_moves_only_with_the_status() {
    let first = compute(None, &observed(), "2026-01-01T00:00:00Z");
    let again = compute(Some(&first), &observed(), "2026-01-01T00:05:00Z");
    assert_eq!(
        cond(&again, ConditionType::Ready).last_transition_time,
        "2026-01-01T00:00:00Z"
    );
    let mut o = observed();
    o.redis = Err(Problem::new(Reason::RedisUnavailable, "connection refused"));
    let down = compute(Some(&again), &o, "2026-01-01T00:06:00Z");
    assert_eq!(
        cond(&down, ConditionType::Ready).last_transition_time,
        "2026-01-01T00:06:00Z"
    );
    assert_eq!(cond(&down, ConditionType::Ready).reason, "RedisUnavailable");
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
    assert_eq!(cond(&s, ConditionType::LoadTestsPassed).reason, "Running");

    let mut closed = snapshot(100, 0);
    closed.gate_closed = true;
    o.redis = Ok(closed);
    o.load_tests = vec![run(
        Some("ThresholdsFailed"),
        Some("http_req_duration: p(95)<50"),
    )];
    o.gate = Gate::Failed("preflight".into());
    let s = compute(None, &o, "t");
    assert_eq!(s.phase, Some(Phase::Closed));
    let c = cond(&s, ConditionType::LoadTestsPassed);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ThresholdsFailed")
    );
    assert!(c.message.contains("p(95)<50"), "{}", c.message);
    assert_eq!(s.load_tests.len(), 1);
    assert_eq!(s.closed_by, [ClosedBy::Gate]);

    o.redis = Ok(snapshot(100, 0));
    o.load_tests = vec![run(Some("Passed"), None)];
    o.gate = Gate::Open;
    let s = compute(None, &o, "t");
    assert_eq!(s.phase, Some(Phase::Open));
    assert_eq!(cond(&s, ConditionType::LoadTestsPassed).status, "True");
}

#[test]
fn closed_by_names_each_flag_and_survives_an_unreadable_redis() {
    let mut o = observed();
    assert!(compute(None, &o, "t").closed_by.is_empty());
    let mut both = snapshot(100, 0);
    (both.closed, both.gate_closed) = (true, true);
    o.redis = Ok(both);
    let s = compute(None, &o, "t");
    assert_eq!(s.closed_by, [ClosedBy::Manual, ClosedBy::Gate]);
    assert_eq!(s.phase, Some(Phase::Closed));
    let mut by_hand = snapshot(100, 0);
    by_hand.closed = true;
    o.redis = Ok(by_hand);
    let s = compute(Some(&s), &o, "t");
    assert_eq!(s.closed_by, [ClosedBy::Manual]);
    o.redis = Err(Problem::new(Reason::RedisUnavailable, "timed out"));
    assert_eq!(compute(Some(&s), &o, "t").closed_by, [ClosedBy::Manual]);
}

#[test]
fn failed_spec() {
    let s = failed(None, Some(2), "spec.stock must be at least 1", "t");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(cond(&s, ConditionType::Ready).reason, "InvalidSpec");
}

#[test]
fn forbidden_keeps_everything_but_ready() {
    let first = compute(None, &observed(), "t0");
    let s = forbidden(Some(&first), Some(4), "deployments is forbidden", "t1");
    let r = cond(&s, ConditionType::Ready);
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

#[test]
fn a_running_test_says_what_holds_its_runners_up() {
    let mut o = observed();
    o.load_tests = vec![LoadTestStatus {
        name: "preflight".into(),
        run: "preflight-1".into(),
        phase: "Running".into(),
        reason: Some("segment 0: ImagePullBackOff: no such image".into()),
        segments: 2,
        segments_done: 1,
        ..Default::default()
    }];
    o.gate = Gate::Testing;
    let s = compute(None, &o, "t");
    let c = cond(&s, ConditionType::LoadTestsPassed);
    assert_eq!(c.reason, "Running");
    assert_eq!(
        c.message,
        "load test preflight running: 1/2 segments done; segment 0: ImagePullBackOff: no such image"
    );
}

#[test]
fn a_rollout_that_does_not_progress_is_not_ready_but_the_campaign_stays_served() {
    let mut o = observed();
    // Two issuers of the last spec serve; none of the current one is available (a Secret
    // that does not exist yet, an image that cannot be pulled).
    o.workloads = Ok(Workloads {
        issuer_updated: 0,
        earlier_pods: 2,
        ..issuers(2, 2)
    });
    let s = compute(None, &o, "t");
    assert_eq!(s.phase, Some(Phase::Open), "still served");
    let ready = cond(&s, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RollingOut")
    );
    assert!(ready.message.contains("issuer 0/2"), "{}", ready.message);
    assert!(
        !o.workloads.as_ref().unwrap().ready(),
        "no load test starts"
    );
}

#[test]
fn pods_of_an_earlier_spec_beside_enough_new_ones_are_still_a_rollout() {
    // The HPA runs 10 issuers over a minimum of 2: two of the new spec are available, eight
    // of the last one still serve.
    let w = Workloads {
        issuer_updated: 2,
        earlier_pods: 8,
        ..issuers(10, 10)
    };
    assert!(
        w.serving() && !w.ready(),
        "no load test starts against the old eight"
    );
    assert!(
        Workloads {
            earlier_pods: 0,
            ..w
        }
        .ready()
    );
}
