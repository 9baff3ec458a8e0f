//! The load-test edge of reconcile: start each test's run (shadow campaign, scripts
//! ConfigMap, runner Jobs) once, and read the runners' results back from their pods.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, Client};
use stampede_service::campaign::AdminAction;
use stampede_service::clock::now_rfc3339;
use stampede_service::store::Store;

use crate::Error;
use crate::crd::{CouponCampaign, CouponCampaignStatus, LoadTestSpec, LoadTestStatus};
use crate::kubeapi::ssa;
use crate::loadtest::{
    PASSED, RUN_LABEL, SEGMENT_LABEL, SegmentResult, config_map, jobs, run_id, shadow_id, verdict,
};
use crate::provision::RedisOutcome;
use crate::reconcile::Context;
use crate::status::Gate;
use crate::validate::Plan;

/// Brings every load test's current run along and returns its status. Before the
/// workloads are ready (`ready` false) nothing starts; runs already recorded keep their
/// status.
pub async fn reconcile_runs(
    client: &Client,
    store: &Store,
    plan: &Plan,
    owner: &OwnerReference,
    image: &str,
    prev: &[LoadTestStatus],
    ready: bool,
) -> Result<Vec<LoadTestStatus>, Error> {
    if plan.load_tests.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(plan.load_tests.len());
    let mut scripts_applied = false;
    for test in &plan.load_tests {
        let run = run_id(plan, test);
        let recorded = prev.iter().find(|s| s.name == test.name && s.run == run);
        if let Some(done) = recorded.filter(|s| s.verdict.is_some()) {
            out.push(done.clone());
            continue;
        }
        // The scripts only matter while a run is under way; judged runs need no apply.
        if ready && !scripts_applied {
            ssa(client, &plan.namespace, &config_map(plan, owner)).await?;
            scripts_applied = true;
        }
        if !ready {
            let pending = vec![None; test.parallelism as usize];
            out.push(
                recorded
                    .cloned()
                    .unwrap_or_else(|| verdict(test, &run, &pending, None, None)),
            );
            continue;
        }
        out.push(advance(client, store, plan, owner, image, test, &run, recorded).await?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn advance(
    client: &Client,
    store: &Store,
    plan: &Plan,
    owner: &OwnerReference,
    image: &str,
    test: &LoadTestSpec,
    run: &str,
    recorded: Option<&LoadTestStatus>,
) -> Result<LoadTestStatus, Error> {
    let ns = &plan.namespace;
    let runners = jobs(plan, test, run, owner, image);
    let jobs_api = Api::<Job>::namespaced(client.clone(), ns);
    let first = runners[0].metadata.name.clone().unwrap_or_default();
    // The Jobs' existence (not our status, which a crash may not have written) says
    // whether this run started: a fresh shadow campaign only for a run that did not.
    let started_at = match jobs_api.get_opt(&first).await? {
        Some(job) => recorded
            .and_then(|r| r.started_at.clone())
            .or_else(|| job.metadata.creation_timestamp.map(|t| t.0.to_string())),
        None => {
            let shadow = shadow_id(&plan.campaign, &test.name);
            store.forget(&shadow).await?;
            store.ensure_campaign(&shadow, plan.stock, None).await?;
            Some(now_rfc3339())
        }
    };
    for job in &runners {
        ssa(client, ns, job).await?;
    }
    let results = results(client, ns, run, test.parallelism).await?;
    let all_done = results.iter().all(Option::is_some);
    let status = verdict(test, run, &results, started_at, all_done.then(now_rfc3339));
    if status.verdict.is_some() {
        // The shadow's stock and holders served their purpose; nothing real was spent.
        store.forget(&shadow_id(&plan.campaign, &test.name)).await?;
    }
    Ok(status)
}

/// Each segment's result: the runner pod's termination (exit code and message, the k6
/// summary), or the Job's failure when it failed without a pod that terminated.
async fn results(
    client: &Client,
    ns: &str,
    run: &str,
    n: i32,
) -> Result<Vec<Option<SegmentResult>>, Error> {
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    let mut out: Vec<Option<SegmentResult>> = vec![None; n as usize];
    let segment = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels
            .and_then(|l| l.get(SEGMENT_LABEL))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| *i < n as usize)
    };
    for pod in Api::<Pod>::namespaced(client.clone(), ns)
        .list(&selector)
        .await?
        .items
    {
        let Some(i) = segment(pod.metadata.labels.as_ref()) else {
            continue;
        };
        let terminated = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == "k6"))
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref());
        if let Some(t) = terminated {
            out[i] = Some(SegmentResult {
                exit_code: t.exit_code,
                message: t.message.clone().unwrap_or_default(),
            });
        }
    }
    for job in Api::<Job>::namespaced(client.clone(), ns)
        .list(&selector)
        .await?
        .items
    {
        let Some(i) = segment(job.metadata.labels.as_ref()) else {
            continue;
        };
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
            });
        if let (None, Some(c)) = (&out[i], failed) {
            out[i] = Some(SegmentResult {
                exit_code: -1,
                message: format!(
                    "Job failed: {} {}",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                ),
            });
        }
    }
    Ok(out)
}

/// The gate: gated tests must pass before a campaign that has issued nothing yet opens.
pub fn gate(tests: &[LoadTestSpec], runs: &[LoadTestStatus], issued: u64) -> Gate {
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
            Some((_, v)) if v == PASSED => {}
            Some((r, v)) => {
                let why = r.reason.as_deref().unwrap_or(v);
                return Gate::Failed(format!("{}: {v}: {why}", t.name));
            }
        }
    }
    if testing { Gate::Testing } else { Gate::Open }
}

/// Keeps the real campaign closed while the gate holds, and reopens it once the gate that
/// held it lets go.
pub(crate) async fn hold_for_gate(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    store: &Store,
    plan: &Plan,
    r: &mut RedisOutcome,
    gate: &Gate,
) -> Result<(), Error> {
    let held_before = prev.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "LoadTestsPassed" && c.status == "False")
    });
    let action = match gate {
        Gate::Open if r.snapshot.closed && held_before => AdminAction::Reopen,
        Gate::Testing | Gate::Failed(_) if !r.snapshot.closed => AdminAction::Close,
        _ => return Ok(()),
    };
    store.admin(&plan.campaign, action).await?;
    if let Some(s) = store.snapshot(&plan.campaign).await? {
        r.snapshot = s;
    }
    let (reason, note) = match (action, gate) {
        (AdminAction::Reopen, _) => (
            "GateOpened",
            "gated load tests passed; the campaign may open".to_owned(),
        ),
        (_, Gate::Failed(why)) => ("GateClosed", format!("held closed: {why}")),
        _ => (
            "GateClosed",
            "held closed until the gated load tests pass".to_owned(),
        ),
    };
    ctx.event(cc, EventType::Normal, reason, note).await;
    Ok(())
}

/// Only the pure parts are unit-tested here; the rest runs on the real control plane.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Profile;

    fn test(name: &str, gate: bool) -> LoadTestSpec {
        serde_json::from_value(
            serde_json::json!({ "name": name, "profile": "smoke", "gate": gate }),
        )
        .unwrap()
    }

    fn run(name: &str, verdict: Option<&str>) -> LoadTestStatus {
        LoadTestStatus {
            name: name.into(),
            verdict: verdict.map(Into::into),
            reason: Some("http_req_duration: p(95)<5".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_gate() {
        let tests = [test("pre", true), test("info", false)];
        assert_eq!(tests[0].profile, Profile::Smoke);
        assert_eq!(gate(&tests, &[], 0), Gate::Testing);
        assert_eq!(gate(&tests, &[run("pre", None)], 0), Gate::Testing);
        assert_eq!(
            gate(
                &tests,
                &[run("pre", Some(PASSED)), run("info", Some("Error"))],
                0
            ),
            Gate::Open
        );
        assert!(
            matches!(gate(&tests, &[run("pre", Some("ThresholdsFailed"))], 0), Gate::Failed(m) if m.contains("p(95)<5"))
        );
        // A campaign already selling is not closed by a gate added later.
        assert_eq!(gate(&tests, &[], 1), Gate::Open);
        assert_eq!(gate(&[test("info", false)], &[], 0), Gate::Open);
    }
}
