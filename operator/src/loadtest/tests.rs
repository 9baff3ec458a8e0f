//! Unit tests of the pure load-test parts: names, Jobs, verdicts and the gate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;
use crate::crd::{LoadTestSpec, LoadTestStatus, Profile, Verdict};
use crate::status::Gate;
use crate::validate::Plan;
use crate::validate::tests::{defaults, from_yaml};
use crate::validate::validate;

fn plan() -> (Plan, LoadTestSpec) {
    let cc = from_yaml(
        "
metadata: {name: spring-sale, namespace: shop}
spec:
  stock: 1200
  loadTests:
  - {name: preflight, profile: peak, parallelism: 3, rate: 900, duration: 2m, thresholds: {p95Ms: 50, errorRate: 0.02}, gate: true}
",
    );
    let test = cc.spec.load_tests[0].clone();
    (validate(&cc, &defaults()).unwrap(), test)
}

fn summary(p95: f64, requests: f64, error_rate: f64, passed: bool) -> String {
    let failed = if passed {
        "[]"
    } else {
        r#"["http_req_duration: p(95)<50"]"#
    };
    format!(
        r#"{{"profile":"peak","rps":100.5,"p50":1,"p95":{p95},"p99":{},"errorRate":{error_rate},"requests":{requests},"thresholdsPassed":{passed},"failedThresholds":{failed}}}"#,
        p95 * 2.0
    )
}

#[test]
fn segments_cover_the_whole_run() {
    assert_eq!(segments(1), (vec!["0:1".to_owned()], "0,1".to_owned()));
    let (s, seq) = segments(3);
    assert_eq!(s, ["0:1/3", "1/3:2/3", "2/3:1"]);
    assert_eq!(seq, "0,1/3,2/3,1");
}

#[test]
fn jobs_one_per_segment_with_tags_and_the_summary_as_termination_message() {
    let (plan, test) = plan();
    let run = run_id(&plan, &test);
    let jobs = jobs(
        &plan,
        &test,
        &run,
        &OwnerReference::default(),
        DEFAULT_K6_IMAGE,
    );
    assert_eq!(jobs.len(), 3);
    for (i, job) in jobs.iter().enumerate() {
        let name = job.metadata.name.as_deref().unwrap();
        assert!(
            name.len() <= 63 && name.ends_with(&format!("-{i}")),
            "{name}"
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert!(spec.ttl_seconds_after_finished.is_some());
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        let seg = &args[args
            .iter()
            .position(|a| a == "--execution-segment")
            .unwrap()
            + 1];
        assert_eq!(seg, &segments(3).0[i]);
        assert!(args.contains(&format!("instance={i}")));
        assert!(args.contains(&"campaign=shop.spring-sale".to_owned()));
        assert_eq!(args.last().unwrap(), "/scripts/peak.js");
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert!(c.resources.as_ref().unwrap().limits.is_some());
        let env = serde_json::to_value(&c.env).unwrap().to_string();
        for kv in [
            // Named as clients name campaigns; the issuer maps it to shop.spring-sale.lt-…
            r#""name":"CAMPAIGN","value":"spring-sale.lt-preflight""#,
            r#""name":"RATE","value":"900""#,
            r#""name":"DURATION","value":"120""#,
            r#""name":"SEGMENTS","value":"3""#,
            r#""name":"P95_MS","value":"50""#,
            r#""name":"SUMMARY_FILE","value":"/dev/termination-log""#,
            r#""name":"BASE_URL","value":"http://spring-sale-issuer.shop.svc:80""#,
        ] {
            assert!(env.contains(kv), "{kv} in {env}");
        }
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[RUN_LABEL], run);
        assert_eq!(labels[SEGMENT_LABEL], i.to_string());
    }
}

#[test]
fn runner_jobs_end_at_what_k6_plans_plus_the_grace() {
    let (plan, test) = plan();
    let jobs = jobs(
        &plan,
        &test,
        "r",
        &OwnerReference::default(),
        DEFAULT_K6_IMAGE,
    );
    // peak: 60 s of stages and k6's 30 s graceful stop, then the runner's grace.
    assert_eq!(planned_secs(&test), 90);
    for job in &jobs {
        let spec = job.spec.as_ref().unwrap();
        let deadline = 90 + super::jobs::RUNNER_GRACE_SECS as i32;
        assert_eq!(spec.active_deadline_seconds, Some(deadline as i64));
        // A segment that ended first is kept past the others' deadline: its Job says the
        // run started until the run is judged.
        assert_eq!(spec.ttl_seconds_after_finished, Some(deadline + 3600));
    }
}

#[test]
fn run_ids_are_stable_and_change_with_the_test() {
    let (plan, mut test) = plan();
    let a = run_id(&plan, &test);
    assert_eq!(a, run_id(&plan, &test));
    assert!(a.starts_with("preflight-"));
    test.run_id = Some("again".into());
    assert_ne!(a, run_id(&plan, &test));
}

#[test]
fn verdicts_aggregate_segments() {
    let (_, test) = plan();
    let ok = |p95, n, e| {
        Some(SegmentResult {
            exit_code: 0,
            message: summary(p95, n, e, true),
        })
    };
    let v = verdict(
        &test,
        "r",
        &[ok(10.0, 100.0, 0.0), ok(20.0, 300.0, 0.01)],
        None,
        Some("t".into()),
    );
    assert_eq!(
        (v.phase.as_str(), v.verdict.as_deref()),
        ("Finished", Some(Verdict::Passed.as_str()))
    );
    assert_eq!(v.p95_ms, Some(20.0));
    assert_eq!(v.p99_ms, Some(40.0));
    assert_eq!(v.rps, Some(201.0));
    assert_eq!(v.requests, Some(400));
    assert_eq!(v.error_rate, Some(0.0075));

    let failed = Some(SegmentResult {
        exit_code: 99,
        message: summary(80.0, 100.0, 0.0, false),
    });
    let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), failed], None, None);
    assert_eq!(
        v.verdict.as_deref(),
        Some(Verdict::ThresholdsFailed.as_str())
    );
    assert_eq!(v.reason.as_deref(), Some("http_req_duration: p(95)<50"));

    let crashed = Some(SegmentResult {
        exit_code: 107,
        message: "script exception".into(),
    });
    let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), crashed], None, None);
    assert_eq!(v.verdict.as_deref(), Some(Verdict::Error.as_str()));
    assert!(
        v.reason
            .unwrap()
            .contains("segment 1: k6 exited 107: script exception")
    );
}

#[test]
fn a_runner_past_its_deadline_is_an_error_with_the_jobs_reason() {
    let (_, test) = plan();
    let ok = Some(SegmentResult {
        exit_code: 0,
        message: summary(10.0, 100.0, 0.0, true),
    });
    let past_deadline = Some(SegmentResult {
        exit_code: JOB_FAILED,
        message: "Job failed: DeadlineExceeded Job was active longer than specified deadline"
            .into(),
    });
    let v = verdict(&test, "r", &[ok, past_deadline], None, None);
    assert_eq!(v.verdict.as_deref(), Some(Verdict::Error.as_str()));
    assert_eq!(
        v.reason.as_deref(),
        Some(
            "segment 1: Job failed: DeadlineExceeded Job was active longer than specified deadline"
        )
    );
}

#[test]
fn a_failed_job_stands_for_its_segment_and_its_deadline_overrides_the_pod() {
    let job = |reason: &str| -> k8s_openapi::api::batch::v1::Job {
        serde_json::from_value(serde_json::json!({
            "status": { "conditions": [
                { "type": "Failed", "status": "True", "reason": reason, "message": "why" },
            ] },
        }))
        .unwrap()
    };
    let (deadline, r) = super::pods::job_failure(&job("DeadlineExceeded")).unwrap();
    assert!(deadline);
    assert_eq!(r.exit_code, JOB_FAILED);
    assert_eq!(r.message, "Job failed: DeadlineExceeded why");
    let (deadline, _) = super::pods::job_failure(&job("BackoffLimitExceeded")).unwrap();
    assert!(
        !deadline,
        "a pod that terminated says more than the backoff limit"
    );
    assert!(super::pods::job_failure(&Default::default()).is_none());
}

#[test]
fn unfinished_and_unreadable_segments() {
    let (_, test) = plan();
    let ok = |p95, n, e| {
        Some(SegmentResult {
            exit_code: 0,
            message: summary(p95, n, e, true),
        })
    };
    let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), None], None, None);
    assert_eq!((v.phase.as_str(), v.verdict), ("Running", None));
    assert_eq!((v.segments, v.segments_done), (2, 1));
    let v = verdict(&test, "r", &[None, None], None, None);
    assert_eq!(v.phase, "Pending");

    // Exit 0 without a readable summary is not a pass.
    let garbled = Some(SegmentResult {
        exit_code: 0,
        message: "{not json".into(),
    });
    assert_eq!(
        verdict(&test, "r", &[garbled], None, None)
            .verdict
            .as_deref(),
        Some(Verdict::Error.as_str())
    );
}

fn gated(name: &str, gate: bool) -> LoadTestSpec {
    serde_json::from_value(serde_json::json!({ "name": name, "profile": "smoke", "gate": gate }))
        .unwrap()
}

fn judged(name: &str, verdict: Option<&str>) -> LoadTestStatus {
    LoadTestStatus {
        name: name.into(),
        verdict: verdict.map(Into::into),
        reason: Some("http_req_duration: p(95)<5".into()),
        ..Default::default()
    }
}

#[test]
fn the_gate() {
    let tests = [gated("pre", true), gated("info", false)];
    let passed = Some(Verdict::Passed.as_str());
    assert_eq!(tests[0].profile, Profile::Smoke);
    assert_eq!(gate(&tests, &[], 0), Gate::Testing);
    assert_eq!(gate(&tests, &[judged("pre", None)], 0), Gate::Testing);
    assert_eq!(
        gate(
            &tests,
            &[judged("pre", passed), judged("info", Some("Error"))],
            0
        ),
        Gate::Open
    );
    assert!(
        matches!(gate(&tests, &[judged("pre", Some("ThresholdsFailed"))], 0), Gate::Failed(m) if m.contains("p(95)<5"))
    );
    // A campaign already selling is not closed by a gate added later.
    assert_eq!(gate(&tests, &[], 1), Gate::Open);
    assert_eq!(gate(&[gated("info", false)], &[], 0), Gate::Open);
}

#[test]
fn the_gate_sets_and_clears_only_its_own_flag() {
    use stampede_core::campaign::AdminAction::{GateClose, GateOpen};
    let failed = Gate::Failed("preflight: ThresholdsFailed".into());
    let cases = [
        (Gate::Testing, false, Some(GateClose)),
        (Gate::Testing, true, None),
        (failed.clone(), false, Some(GateClose)),
        (failed, true, None),
        (Gate::Open, true, Some(GateOpen)),
        (Gate::Open, false, None),
    ];
    for (g, gate_closed, want) in cases {
        assert_eq!(
            gate::gate_action(&g, gate_closed),
            want,
            "{g:?} {gate_closed}"
        );
    }
}

#[test]
fn runners_mint_tokens_with_the_issuers_secret_by_reference() {
    let (plan, test) = plan();
    let run = run_id(&plan, &test);
    let owner = OwnerReference::default();
    for job in jobs(&plan, &test, &run, &owner, DEFAULT_K6_IMAGE) {
        let spec = job.spec.unwrap().template.spec.unwrap();
        let env = serde_json::to_value(&spec.containers[0].env).unwrap();
        let var = |name: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(var("STAMPEDE_JWT_ISSUER")["value"], "stampede");
        assert_eq!(var("STAMPEDE_JWT_AUDIENCE")["value"], "stampede");
        let secret = var("STAMPEDE_JWT_HS256_SECRET");
        assert!(secret.get("value").is_none(), "never a value: {secret}");
        assert_eq!(secret["valueFrom"]["secretKeyRef"]["name"], "stampede-auth");
    }
}

#[test]
fn a_runner_held_up_says_why_and_one_on_its_way_up_says_nothing() {
    let pod = |status: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({ "status": status })).unwrap()
    };
    let waiting = |reason: &str| {
        pod(serde_json::json!({ "containerStatuses": [{
            "name": "k6", "image": "k6", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "waiting": { "reason": reason, "message": "pull access denied" } },
        }] }))
    };
    assert_eq!(
        super::pods::held_up(&waiting("ImagePullBackOff")).as_deref(),
        Some("ImagePullBackOff: pull access denied")
    );
    assert_eq!(super::pods::held_up(&waiting("ContainerCreating")), None);
    let unschedulable = pod(serde_json::json!({ "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient cpu.",
    }] }));
    assert_eq!(
        super::pods::held_up(&unschedulable).as_deref(),
        Some("Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.")
    );
    assert_eq!(super::pods::ended(&unschedulable), None);

    let note = |held: &[(usize, &str)]| {
        super::pods::held_up_note(held.iter().map(|(i, w)| (*i, w.to_string())).collect())
    };
    assert_eq!(note(&[]), None);
    assert_eq!(
        note(&[(7, "Unschedulable: no room"), (3, "Unschedulable: no room")]).as_deref(),
        Some("segment 3: Unschedulable: no room (and 1 more held up)")
    );
}
