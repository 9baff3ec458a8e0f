//! Load tests on the real control plane: runner Jobs per segment, created once; verdicts
//! read from pod statuses the test writes as a kubelet would, carrying the summaries of
//! real local k6 runs of the same scripts with the same environment; the gate; the
//! runners' deadlines and shares against what k6 plans.

mod common;
#[path = "e2e_loadtests/gate_hold.rs"]
mod gate_hold;
#[path = "e2e_loadtests/k6_plans.rs"]
mod k6_plans;
#[path = "e2e_loadtests/runners.rs"]
mod runners;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use runners::*;
use serde_json::json;
use stampede_core::coupon::Decision;
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::store::Store;
use stampede_operator::crd::Phase;
use stampede_operator::loadtest::RUN_LABEL;
use std::time::Duration;

const THREE_TESTS: &str = "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: x}
spec:
  stock: 300
  issuer: {minReplicas: 1}
  loadTests:
  - {name: pass, profile: peak, parallelism: 2, rate: 200, thresholds: {p95Ms: 1000, errorRate: 0.05}}
  - {name: fail, profile: smoke, duration: 5s, thresholds: {p95Ms: 1000, errorRate: 0}}
  - {name: crash, profile: soak, rate: 50, duration: 5s}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_jobs_per_segment_once_and_verdicts_from_real_k6_summaries() {
    let c = Cluster::start().await;
    let name = unique("loadtest");
    let _forget = Forget(c.id(&name));
    let service = LocalService::start(&c, &[&name]).await;
    let op = c.operator();
    ready_campaign(&c, &name, THREE_TESTS).await;
    let (pass, fail, crash) = one_job_per_segment_while_the_campaign_opens(&c, &name).await;
    let jobs = [&pass[..], &fail[..], &crash[..]].concat();
    op.stop().await;
    let op = c.operator();
    the_same_jobs_after_a_restart_and_a_spec_change(&c, &name, &jobs).await;

    // The runners run for real (local k6, same scripts and env); their pods terminate
    // with the summaries as termination messages.
    for job in &pass {
        // 5 % dropped iterations allowed, not 1 %: this suite shares two cores with the
        // others, and a loaded spell (CI: p95 190 ms, 13 of 650 dropped) is not a failure.
        let tolerance = [("DROPPED_TOLERANCE", "0.05")];
        let (code, message) = run_like_the_job(job, &service.url, &tolerance);
        assert_eq!(code, 0, "{message}");
        assert!(
            message.len() <= 4096,
            "a summary fits a termination message"
        );
        finish_pod(&c, job, code, &message).await;
    }
    // Every request of `fail` fails (nothing listens): errorRate 0 allows none.
    let (code, message) = run_like_the_job(&fail[0], NOWHERE, &[]);
    assert_eq!(code, 99, "errors above errorRate 0: {message}");
    finish_pod(&c, &fail[0], code, &message).await;
    // A runner that crashes: the script throws at init on a bad RATE.
    let (code, message) = run_like_the_job(&crash[0], &service.url, &[("RATE", "lots")]);
    assert_ne!(code, 0);
    assert_ne!(code, 99);
    finish_pod(&c, &crash[0], code, &message).await;
    verdicts_from_the_summaries(&c, &name, code).await;
    op.stop().await;
}

/// One Job per segment, each with its own execution segment and tags; the campaign (no
/// gate) opens while the tests run, from shadow campaigns with the same stock.
async fn one_job_per_segment_while_the_campaign_opens(
    c: &Cluster,
    name: &str,
) -> (Vec<Job>, Vec<Job>, Vec<Job>) {
    let pass = runner_jobs(c, "pass", 2).await;
    let segments: Vec<String> = pass
        .iter()
        .map(|j| {
            let args = runner(j).args.clone().unwrap();
            args[args
                .iter()
                .position(|a| a == "--execution-segment")
                .unwrap()
                + 1]
            .clone()
        })
        .collect();
    assert_eq!(segments, ["0:1/2", "1/2:1"]);
    let fail = runner_jobs(c, "fail", 1).await;
    let crash = runner_jobs(c, "crash", 1).await;
    let s = c
        .status_until(name, "runs recorded", |s| s.load_tests.len() == 3)
        .await;
    assert_eq!(
        s.phase,
        Some(Phase::Open),
        "no gate: the campaign opens while tests run"
    );
    assert!(
        s.load_tests
            .iter()
            .all(|r| r.verdict.is_none() && r.started_at.is_some())
    );
    let shadow = format!("{}.lt-pass", c.id(name));
    assert_eq!(
        snapshot(&shadow).await.expect("shadow provisioned").total,
        300
    );
    (pass, fail, crash)
}

/// Idempotent: a restarted operator and a spec change that does not touch the tests
/// start nothing new.
async fn the_same_jobs_after_a_restart_and_a_spec_change(c: &Cluster, name: &str, jobs: &[Job]) {
    let mut before: Vec<String> = jobs.iter().map(|j| j.uid().unwrap()).collect();
    c.patch_spec(name, json!({ "alerts": { "p95LatencyMs": 70 } }))
        .await
        .unwrap();
    let generation = c.campaigns().get(name).await.unwrap().metadata.generation;
    c.status_until(name, "new generation observed", |s| {
        s.observed_generation == generation
    })
    .await;
    let all = Api::<Job>::namespaced(c.client.clone(), &c.ns)
        .list(&ListParams::default().labels(RUN_LABEL))
        .await
        .unwrap();
    let mut after: Vec<String> = all.items.iter().map(|j| j.uid().unwrap()).collect();
    after.sort();
    before.sort();
    assert_eq!(after, before, "the same Jobs, no second copy");
}

/// Every run judged from its summaries (`crash_code`: what the crashed runner exited
/// with); shadows gone, nothing real spent, events published.
async fn verdicts_from_the_summaries(c: &Cluster, name: &str, crash_code: i32) {
    let s = c
        .status_until(name, "every verdict", |s| {
            s.load_tests.iter().all(|r| r.verdict.is_some())
        })
        .await;
    let run = |n: &str| s.load_tests.iter().find(|r| r.name == n).unwrap().clone();
    let p = run("pass");
    assert_eq!(p.verdict.as_deref(), Some("Passed"));
    assert_eq!((p.segments, p.segments_done), (2, 2));
    assert!(
        p.rps.unwrap() > 0.0 && p.p95_ms.unwrap() > 0.0 && p.p99_ms.unwrap() >= p.p95_ms.unwrap()
    );
    assert!(p.requests.unwrap() > 0);
    assert!(p.finished_at.is_some());
    let f = run("fail");
    assert_eq!(f.verdict.as_deref(), Some("ThresholdsFailed"));
    assert!(
        f.reason.as_deref().unwrap().contains("errors: rate<=0"),
        "{:?}",
        f.reason
    );
    let x = run("crash");
    assert_eq!(x.verdict.as_deref(), Some("Error"));
    assert!(
        x.reason
            .as_deref()
            .unwrap()
            .contains(&format!("k6 exited {crash_code}")),
        "{:?}",
        x.reason
    );
    let cond = condition(&s, "LoadTestsPassed").unwrap();
    assert_eq!(cond.status, "False");
    // Shadows are gone once judged; the real campaign spent nothing.
    let id = c.id(name);
    assert!(snapshot(&format!("{id}.lt-pass")).await.is_none());
    assert_eq!(snapshot(&id).await.unwrap().issued, 0);
    c.events_until(
        name,
        &["LoadTestStarted", "LoadTestPassed", "LoadTestFailed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_taken_out_or_changed_mid_run_stops_its_runners_and_leaves_no_shadow() {
    let c = Cluster::start().await;
    let name = unique("tests-out");
    let _forget = Forget(c.id(&name));
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    let (kept, dropped) = (id.shadow("keep"), id.shadow("drop"));
    let _shadows = [Forget(kept.to_string()), Forget(dropped.to_string())];
    let op = c.operator();
    let test = |n: &str| format!("{{name: {n}, profile: smoke, duration: 60s}}");
    ready_campaign(
        &c,
        &name,
        &campaign_with_tests(&[test("keep"), test("drop")]),
    )
    .await;
    for shadow in [&kept, &dropped] {
        eventually("both runs under way", Duration::from_secs(30), || async {
            snapshot(shadow.as_str()).await.map(|_| ())
        })
        .await;
    }
    let keep_first = runner_jobs(&c, "keep", 1).await.remove(0);
    runner_jobs(&c, "drop", 1).await;
    let keep_only =
        json!({ "loadTests": [{ "name": "keep", "profile": "smoke", "duration": "60s" }] });
    c.patch_spec(&name, keep_only).await.unwrap();
    eventually(
        "the dropped test's shadow forgotten",
        Duration::from_secs(30),
        || async { snapshot(dropped.as_str()).await.is_none().then_some(()) },
    )
    .await;
    // Its runner stopped (the Job deleted), the other test's left running.
    runner_jobs(&c, "drop", 0).await;
    assert_eq!(runner_jobs(&c, "keep", 1).await[0].uid(), keep_first.uid());
    let s = c
        .status_until(&name, "the dropped test out of the status", |s| {
            s.load_tests.iter().all(|r| r.name != "drop")
        })
        .await;
    assert!(
        s.load_tests
            .iter()
            .any(|r| r.name == "keep" && r.verdict.is_none())
    );
    assert!(
        snapshot(kept.as_str()).await.is_some(),
        "the other run goes on"
    );
    a_changed_test_runs_anew(&c, &name, &keep_first).await;
    op.stop().await;
}

/// Changed mid-run, test `keep` (whose runner was `first`) runs anew: the first run's
/// runner stops and one of the new run starts.
async fn a_changed_test_runs_anew(c: &Cluster, name: &str, first: &Job) {
    let longer =
        json!({ "loadTests": [{ "name": "keep", "profile": "smoke", "duration": "61s" }] });
    c.patch_spec(name, longer).await.unwrap();
    let now = eventually("the new run's runner", Duration::from_secs(60), || async {
        let jobs = runner_jobs(c, "keep", 1).await;
        (jobs[0].uid() != first.uid()).then(|| jobs[0].clone())
    })
    .await;
    assert_ne!(now.labels()[RUN_LABEL], first.labels()[RUN_LABEL]);
    c.events_until(name, &["LoadTestStopped"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_holds_a_failing_campaign_closed_and_opens_a_passing_one() {
    let c = Cluster::start().await;
    let bad = unique("gated-bad");
    let good = unique("gated-good");
    let _f1 = Forget(c.id(&bad));
    let _f2 = Forget(c.id(&good));
    let service = LocalService::start(&c, &[&bad, &good]).await;
    let op = c.operator();
    ready_campaign(&c, &bad, &gated_smoke_campaign("0", 1)).await;
    ready_campaign(&c, &good, &gated_smoke_campaign("0.05", 1)).await;
    let store = store().await;
    for name in [&bad, &good] {
        held_closed_while_testing(&c, &store, name).await;
    }
    // `bad`'s runner meets nothing listening: every request an error, above its 0.
    for (name, target) in [(&bad, NOWHERE), (&good, service.url.as_str())] {
        let job = &runner_jobs_of(&c, name).await;
        let (code, message) = run_like_the_job(job, target, &[]);
        finish_pod(&c, job, code, &message).await;
    }
    let s = c
        .status_until(&bad, "held Closed", |s| s.phase == Some(Phase::Closed))
        .await;
    let cond = condition(&s, "LoadTestsPassed").unwrap();
    assert_eq!(cond.reason, "ThresholdsFailed");
    assert!(cond.message.contains("errors: rate<=0"), "{}", cond.message);
    assert!(snapshot(&c.id(&bad)).await.unwrap().gate_closed);
    the_passing_one_opens(&c, &store, &good).await;
    a_rerun_is_held_until_it_passes(&c, &service, &bad).await;
    op.stop().await;
}

/// Testing, closed in Redis, and an issue attempt is refused.
async fn held_closed_while_testing(c: &Cluster, store: &Store, name: &str) {
    c.status_until(name, "Testing", |s| s.phase == Some(Phase::Testing))
        .await;
    let snap = snapshot(&c.id(name)).await.unwrap();
    assert!(
        snap.gate_closed && !snap.closed,
        "held closed by the gate while the gated test runs"
    );
    let d = store
        .issue(
            &CampaignId::parse(&c.id(name)).unwrap(),
            &UserId::parse("early").unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Closed), "{d:?}");
}

/// The campaign whose gated test passed opens and issues.
async fn the_passing_one_opens(c: &Cluster, store: &Store, good: &str) {
    c.status_until(good, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    assert!(!snapshot(&c.id(good)).await.unwrap().gate_closed);
    let d = store
        .issue(
            &CampaignId::parse(&c.id(good)).unwrap(),
            &UserId::parse("first").unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Issued(_)), "{d:?}");
    c.events_until(good, &["GateOpened"]).await;
}

/// Re-running is a spec change: a new runId (with a threshold it can meet) starts a new
/// run, still held closed until it passes.
async fn a_rerun_is_held_until_it_passes(c: &Cluster, service: &LocalService, bad: &str) {
    c.patch_spec(
        bad,
        json!({ "loadTests": [{ "name": "preflight", "profile": "smoke", "duration": "5s", "gate": true,
            "runId": "2", "thresholds": { "p95Ms": 1000, "errorRate": 0.05 } }] }),
    )
    .await
    .unwrap();
    c.status_until(bad, "Testing again", |s| s.phase == Some(Phase::Testing))
        .await;
    let job = runner_jobs_of(c, bad).await;
    let (code, message) = run_like_the_job(&job, &service.url, &[]);
    finish_pod(c, &job, code, &message).await;
    c.status_until(bad, "Open after the re-run", |s| {
        s.phase == Some(Phase::Open)
    })
    .await;
    assert!(!snapshot(&c.id(bad)).await.unwrap().gate_closed);
}
