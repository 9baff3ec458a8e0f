//! Load tests on the real control plane: runner Jobs per segment, created once; verdicts
//! read from pod statuses the test writes as a kubelet would, carrying the summaries of
//! real local k6 runs of the same scripts with the same environment; the gate.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stampede_operator::crd::Phase;
use stampede_operator::loadtest::{RUN_LABEL, SEGMENT_LABEL};
use stampede_service::coupon::Decision;
use stampede_service::ids::{CampaignId, UserId};
use stampede_service::server::{ServeConfig, serve};
use stampede_service::store::StoreConfig;
use tokio_util::sync::CancellationToken;

/// An issuance service in-process on a free port, over the stack's Redis.
struct LocalService {
    url: String,
    stop: CancellationToken,
}

impl LocalService {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = ServeConfig {
            store: StoreConfig {
                url: stack_defaults().redis_url,
                connections: 2,
                timeout: Duration::from_secs(1),
            },
            max_in_flight: 512,
            soldout_recheck: Duration::from_millis(50),
            max_body_bytes: 4096,
            relay: None,
        };
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, config, stop.clone()));
        Self { url, stop }
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn k6() -> PathBuf {
    let out = Command::new(repo().join("scripts/deps"))
        .arg("k6-path")
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deps k6-path");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The k6 container of a runner Job.
fn runner(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// Runs a runner Job's container for real with the local k6: its args (script path
/// mapped to `k6-jobs/`) and env (the service URL and summary file mapped to local ones).
/// Returns the exit code and the summary file, what the pod's termination would carry.
fn run_like_the_job(job: &Job, service: &str, extra_env: &[(&str, &str)]) -> (i32, String) {
    let c = runner(job);
    let dir = std::env::temp_dir().join(unique("k6-run"));
    std::fs::create_dir_all(&dir).unwrap();
    let summary = dir.join("summary.json");
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| a.replace("/scripts/", &format!("{}/k6-jobs/", repo().display())))
        .collect();
    let mut cmd = Command::new(k6());
    cmd.args(&args).current_dir(&dir);
    for e in c.env.clone().unwrap() {
        let v = match e.name.as_str() {
            "BASE_URL" => service.to_owned(),
            "SUMMARY_FILE" => summary.to_string_lossy().into_owned(),
            _ => e.value.unwrap_or_default(),
        };
        cmd.env(e.name, v);
    }
    // Short runs: every stage scaled down.
    cmd.env("TIME_SCALE", "0.2");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running k6");
    let code = out.status.code().unwrap_or(-1);
    let message = std::fs::read_to_string(&summary).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (code, message)
}

/// What the Job controller and the kubelet would do for one runner: a pod with the Job's
/// template labels, terminated with `exit_code` and `message`.
async fn finish_pod(c: &Cluster, job: &Job, exit_code: i32, message: &str) {
    let template = &job.spec.as_ref().unwrap().template;
    let pods = Api::<Pod>::namespaced(c.client.clone(), &c.ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": format!("{}-pod", job.name_any()), "labels": template.metadata.as_ref().unwrap().labels },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "k6", "image": "grafana/k6:test" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let now = stampede_service::clock::now_rfc3339();
    let status = json!({ "status": {
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{
            "name": "k6", "image": "grafana/k6:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "terminated": {
                "exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                "message": message, "startedAt": now, "finishedAt": now,
            } },
        }],
    }});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .unwrap();
}

/// The runner Jobs of `test`, once all `n` exist.
async fn runner_jobs(c: &Cluster, test: &str, n: usize) -> Vec<Job> {
    let api = Api::<Job>::namespaced(c.client.clone(), &c.ns);
    let lp = ListParams::default().labels(&format!("stampede.dev/load-test={test}"));
    eventually(
        &format!("{n} Jobs for {test}"),
        Duration::from_secs(60),
        || {
            let (api, lp) = (api.clone(), lp.clone());
            async move {
                let mut jobs = api.list(&lp).await.ok()?.items;
                jobs.sort_by_key(|j| j.labels()[SEGMENT_LABEL].clone());
                (jobs.len() == n).then_some(jobs)
            }
        },
    )
    .await
}

async fn ready_campaign(c: &Cluster, name: &str, yaml: &str) {
    c.create(name, yaml).await.expect("campaign accepted");
    c.mark_campaign_available(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_jobs_per_segment_once_and_verdicts_from_real_k6_summaries() {
    let c = Cluster::start().await;
    let name = unique("lt");
    let _forget = Forget(name.clone());
    let service = LocalService::start().await;
    let op = c.operator();
    ready_campaign(
        &c,
        &name,
        "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: x}
spec:
  stock: 300
  issuer: {minReplicas: 1}
  loadTests:
  - {name: pass, profile: peak, parallelism: 2, rate: 200, thresholds: {p95Ms: 1000, errorRate: 0.05}}
  - {name: fail, profile: smoke, duration: 5s, thresholds: {p95Ms: 1000, errorRate: 0}}
  - {name: crash, profile: soak, rate: 50, duration: 5s}
",
    )
    .await;

    // One Job per segment, each with its own execution segment and tags.
    let pass = runner_jobs(&c, "pass", 2).await;
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
    let fail = runner_jobs(&c, "fail", 1).await;
    let crash = runner_jobs(&c, "crash", 1).await;
    let s = c
        .status_until(&name, "runs recorded", |s| s.load_tests.len() == 3)
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
    // The tests issue from shadow campaigns with the same stock.
    let shadow = format!("{name}.lt-pass");
    assert_eq!(
        snapshot(&shadow).await.expect("shadow provisioned").total,
        300
    );

    // Idempotent: a restarted operator and a spec change that does not touch the tests
    // start nothing new.
    let uids: Vec<String> = [&pass[..], &fail[..], &crash[..]]
        .concat()
        .iter()
        .map(|j| j.uid().unwrap())
        .collect();
    op.stop().await;
    let op = c.operator();
    c.patch_spec(&name, json!({ "alerts": { "p95LatencyMs": 70 } }))
        .await
        .unwrap();
    let generation = c.campaigns().get(&name).await.unwrap().metadata.generation;
    c.status_until(&name, "new generation observed", |s| {
        s.observed_generation == generation
    })
    .await;
    let all = Api::<Job>::namespaced(c.client.clone(), &c.ns)
        .list(&ListParams::default().labels(RUN_LABEL))
        .await
        .unwrap();
    let mut after: Vec<String> = all.items.iter().map(|j| j.uid().unwrap()).collect();
    let mut before = uids.clone();
    after.sort();
    before.sort();
    assert_eq!(after, before, "the same Jobs, no second copy");

    // The runners run for real (local k6, same scripts and env); their pods terminate
    // with the summaries as termination messages.
    for job in &pass {
        let (code, message) = run_like_the_job(job, &service.url, &[]);
        assert_eq!(code, 0, "{message}");
        assert!(
            message.len() <= 4096,
            "a summary fits a termination message"
        );
        finish_pod(&c, job, code, &message).await;
    }
    let (code, message) = run_like_the_job(&fail[0], &service.url, &[]);
    assert_eq!(code, 99, "errorRate 0 cannot hold: {message}");
    finish_pod(&c, &fail[0], code, &message).await;
    // A runner that crashes: the script throws at init on a bad RATE.
    let (code, message) = run_like_the_job(&crash[0], &service.url, &[("RATE", "lots")]);
    assert_ne!(code, 0);
    assert_ne!(code, 99);
    finish_pod(&c, &crash[0], code, &message).await;

    let s = c
        .status_until(&name, "every verdict", |s| {
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
        f.reason.as_deref().unwrap().contains("errors: rate<0"),
        "{:?}",
        f.reason
    );
    let x = run("crash");
    assert_eq!(x.verdict.as_deref(), Some("Error"));
    assert!(
        x.reason
            .as_deref()
            .unwrap()
            .contains(&format!("k6 exited {code}")),
        "{:?}",
        x.reason
    );
    let cond = condition(&s, "LoadTestsPassed").unwrap();
    assert_eq!(cond.status, "False");
    // Shadows are gone once judged; the real campaign spent nothing.
    assert!(snapshot(&shadow).await.is_none());
    assert_eq!(snapshot(&name).await.unwrap().issued, 0);
    let reasons = c.event_reasons(&name).await;
    for r in ["LoadTestStarted", "LoadTestPassed", "LoadTestFailed"] {
        assert!(reasons.iter().any(|x| x == r), "event {r} in {reasons:?}");
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_holds_a_failing_campaign_closed_and_opens_a_passing_one() {
    let c = Cluster::start().await;
    let bad = unique("gated-bad");
    let good = unique("gated-good");
    let _f1 = Forget(bad.clone());
    let _f2 = Forget(good.clone());
    let service = LocalService::start().await;
    let op = c.operator();
    ready_campaign(&c, &bad, &gated_smoke_campaign("0", 1)).await;
    ready_campaign(&c, &good, &gated_smoke_campaign("0.05", 1)).await;
    let store = store().await;
    for name in [&bad, &good] {
        c.status_until(name, "Testing", |s| s.phase == Some(Phase::Testing))
            .await;
        let snap = snapshot(name).await.unwrap();
        assert!(snap.closed, "held closed while the gated test runs");
        let d = store
            .issue(
                &CampaignId::parse(name).unwrap(),
                &UserId::parse("early").unwrap(),
            )
            .await
            .unwrap();
        assert!(matches!(d, Decision::Closed), "{d:?}");
    }

    for name in [&bad, &good] {
        let job = &runner_jobs_of(&c, name).await;
        let (code, message) = run_like_the_job(job, &service.url, &[]);
        finish_pod(&c, job, code, &message).await;
    }
    let s = c
        .status_until(&bad, "held Closed", |s| s.phase == Some(Phase::Closed))
        .await;
    let cond = condition(&s, "LoadTestsPassed").unwrap();
    assert_eq!(cond.reason, "ThresholdsFailed");
    assert!(cond.message.contains("errors: rate<0"), "{}", cond.message);
    assert!(snapshot(&bad).await.unwrap().closed);

    c.status_until(&good, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    assert!(!snapshot(&good).await.unwrap().closed);
    let d = store
        .issue(
            &CampaignId::parse(&good).unwrap(),
            &UserId::parse("first").unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(d, Decision::Issued(_)), "{d:?}");
    assert!(
        c.event_reasons(&good)
            .await
            .iter()
            .any(|r| r == "GateOpened")
    );

    // Re-running is a spec change: a new runId (with a threshold it can meet) starts a
    // new run, still held closed until it passes.
    c.patch_spec(
        &bad,
        json!({ "loadTests": [{ "name": "preflight", "profile": "smoke", "duration": "5s", "gate": true,
            "runId": "2", "thresholds": { "p95Ms": 1000, "errorRate": 0.05 } }] }),
    )
    .await
    .unwrap();
    c.status_until(&bad, "Testing again", |s| s.phase == Some(Phase::Testing))
        .await;
    let job = runner_jobs_of(&c, &bad).await;
    let (code, message) = run_like_the_job(&job, &service.url, &[]);
    finish_pod(&c, &job, code, &message).await;
    c.status_until(&bad, "Open after the re-run", |s| {
        s.phase == Some(Phase::Open)
    })
    .await;
    assert!(!snapshot(&bad).await.unwrap().closed);
    op.stop().await;
}

/// The one runner Job of a campaign's current (unfinished) run.
async fn runner_jobs_of(c: &Cluster, name: &str) -> Job {
    let s = c
        .status_until(name, "a run under way", |s| {
            s.load_tests.iter().any(|r| r.verdict.is_none())
        })
        .await;
    let run = s
        .load_tests
        .iter()
        .find(|r| r.verdict.is_none())
        .unwrap()
        .run
        .clone();
    let api = Api::<Job>::namespaced(c.client.clone(), &c.ns);
    let lp = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    eventually(
        &format!("Job of run {run}"),
        Duration::from_secs(30),
        || {
            let (api, lp) = (api.clone(), lp.clone());
            async move { api.list(&lp).await.ok()?.items.into_iter().next() }
        },
    )
    .await
}
