//! The load-test harness: an issuance service in-process, runner Jobs run for real with
//! the local k6, and their pods finished as the Job controller and kubelet would.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stampede_core::store::StoreConfig;
use stampede_operator::loadtest::{RUN_LABEL, SEGMENT_LABEL};
use stampede_service::auth::mint::Minter;
use stampede_service::auth::{AuthConfig, JwtConfig, KeySource, Secret};
use stampede_service::server::{Listeners, ServeConfig, serve};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// The HS256 secret the local service verifies with: what the kubelet would resolve a
/// runner's `STAMPEDE_JWT_HS256_SECRET` (Secret `stampede-auth`) to.
pub const AUTH_SECRET: &str = "operator-e2e-secret-0123456789abcdef";

/// `Bearer <token>` for `user`, as a client of the campaign (spec.auth's default claims).
pub fn bearer(user: &str) -> String {
    let minter = Minter::new(AUTH_SECRET.as_bytes(), "stampede", "stampede", 600).unwrap();
    format!("Bearer {}", minter.token(user).unwrap())
}

/// An issuance service in-process on a free port, over the stack's Redis, verifying
/// tokens as the campaign's issuers do.
pub struct LocalService {
    /// Base URL.
    pub url: String,
    stop: CancellationToken,
}

impl LocalService {
    /// Starts one serving the campaigns `names` of `c`'s namespace as their issuer pods
    /// do (`--campaigns <name>=<id>`).
    pub async fn start(c: &Cluster, names: &[&str]) -> Self {
        let served: Vec<String> = names.iter().map(|n| format!("{n}={}", c.id(n))).collect();
        let listeners = Listeners {
            api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            ops: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let url = format!("http://{}", listeners.api.local_addr().unwrap());
        let config = ServeConfig {
            max_in_flight: 512,
            campaigns: stampede_service::server::CampaignScope::parse(&served).unwrap(),
            soldout_recheck: Duration::from_millis(50),
            auth: AuthConfig::Jwt(JwtConfig {
                issuer: "stampede".into(),
                audience: "stampede".into(),
                keys: KeySource::Hs256(Secret(AUTH_SECRET.as_bytes().to_vec())),
                refresh: Duration::from_secs(300),
            }),
            ..ServeConfig::new(StoreConfig {
                url: stack_defaults().redis_url,
                connections: 2,
                timeout: Duration::from_secs(1),
            })
        };
        let stop = CancellationToken::new();
        tokio::spawn(serve(listeners, config, stop.clone()));
        Self { url, stop }
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The local k6 (`scripts/deps k6-path`).
pub fn k6() -> PathBuf {
    let out = Command::new(repo().join("scripts/deps"))
        .arg("k6-path")
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deps k6-path");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The k6 container of a runner Job.
pub fn runner(job: &Job) -> &k8s_openapi::api::core::v1::Container {
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
pub fn run_like_the_job(job: &Job, service: &str, extra_env: &[(&str, &str)]) -> (i32, String) {
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
            "STAMPEDE_JWT_HS256_SECRET" => AUTH_SECRET.to_owned(),
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
pub async fn finish_pod(c: &Cluster, job: &Job, exit_code: i32, message: &str) {
    let template = &job.spec.as_ref().unwrap().template;
    let pods = Api::<Pod>::namespaced(c.client.clone(), &c.ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": format!("{}-pod", job.name_any()), "labels": template.metadata.as_ref().unwrap().labels },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "k6", "image": "grafana/k6:test" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let now = stampede_core::clock::now_rfc3339();
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
pub async fn runner_jobs(c: &Cluster, test: &str, n: usize) -> Vec<Job> {
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

/// Creates the campaign and plays the kubelet for its workloads.
pub async fn ready_campaign(c: &Cluster, name: &str, yaml: &str) {
    c.create(name, yaml).await.expect("campaign accepted");
    c.mark_campaign_available(name).await;
}

/// The one runner Job of a campaign's current (unfinished) run.
pub async fn runner_jobs_of(c: &Cluster, name: &str) -> Job {
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
