//! The load-test edge of reconcile: start each test's run (shadow campaign, scripts
//! ConfigMap, runner Jobs) once, and read the runners' results back from their pods.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use stampede_core::clock::now_rfc3339;
use stampede_core::ids::CampaignId;

use super::pods::{Runners, condition, read_runners};
use super::{RUN_LABEL, TEST_LABEL, config_map, jobs, run_id, verdict};
use crate::Error;
use crate::backends::{Shape, Stock};
use crate::crd::{LoadTestSpec, LoadTestStatus};
use crate::kubeapi::ssa;
use crate::validate::{CAMPAIGN_LABEL, Plan};

/// What every run of one reconcile shares.
pub(crate) struct Runs<'a> {
    /// API client.
    pub client: &'a Client,
    /// The Redis holding the shadow campaigns.
    pub stock: &'a dyn Stock,
    /// The campaign.
    pub plan: &'a Plan,
    /// Owner of the ConfigMap and Jobs.
    pub owner: &'a OwnerReference,
    /// Runner image.
    pub image: &'a str,
    /// The spec changed since the status was last written as this reconcile sees it: the
    /// status may predate runs the last reconcile started (its write not yet in the cache).
    pub spec_unseen: bool,
}

/// The load tests after a reconcile.
pub(crate) struct RunsNow {
    /// Each test's current run.
    pub statuses: Vec<LoadTestStatus>,
    /// The runs whose runners this reconcile stopped, as their Jobs named them (name and
    /// run only): the status read may not have recorded them.
    pub stopped: Vec<LoadTestStatus>,
}

/// Brings every load test's current run along and returns its status. Before the
/// workloads are ready (`ready` false) nothing starts; runs already recorded keep their
/// status.
pub(crate) async fn reconcile_runs(
    r: &Runs<'_>,
    prev: &[LoadTestStatus],
    ready: bool,
) -> Result<RunsNow, Error> {
    let plan = r.plan;
    // Runners of a run the spec no longer names: a test taken out, or changed or restocked
    // so that it runs anew. The Jobs say which, not only `prev`: a status read before the
    // last reconcile's write reached the cache lacks the runs that write recorded.
    let current: Vec<String> = plan.load_tests.iter().map(|t| run_id(plan, t)).collect();
    let mut stale = Stale::default();
    if r.spec_unseen || may_have_stale_runners(prev, &current) {
        let named: Vec<&str> = plan.load_tests.iter().map(|t| t.name.as_str()).collect();
        stale = stale_runners(&list_runners(r.client, plan).await?, &current, &named);
    }
    // A test taken out of the spec mid-run drops out of the status below, and nothing else
    // would ever forget its shadow. Forgotten before its runners stop: should this reconcile
    // fail in between, their Jobs still name it to the next.
    for s in prev {
        let taken_out = !plan.load_tests.iter().any(|t| t.name == s.name);
        if s.verdict.is_none() && taken_out && !stale.gone.contains(&s.name) {
            stale.gone.push(s.name.clone());
        }
    }
    let gone: Vec<&str> = stale.gone.iter().map(String::as_str).collect();
    if forget_shadows(r.stock, &plan.campaign, &gone).await? > 0 {
        tracing::info!(campaign = %plan.campaign, tests = ?gone, "forgot the shadows of tests the spec no longer names");
    }
    // They stop before a new run resets the shadow they would go on hitting.
    stop_runners(r.client, plan, &stale.stop).await?;
    let mut out = Vec::with_capacity(plan.load_tests.len());
    let mut scripts_applied = false;
    for (test, run) in plan.load_tests.iter().zip(current) {
        let recorded = prev.iter().find(|s| s.name == test.name && s.run == run);
        if let Some(done) = recorded.filter(|s| s.verdict.is_some()) {
            out.push(done.clone());
            continue;
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
        // The scripts only matter while a run is under way; judged runs need no apply.
        if !scripts_applied {
            ssa(r.client, &plan.namespace, &config_map(plan, r.owner)).await?;
            scripts_applied = true;
        }
        out.push(r.advance(test, &run, recorded).await?);
    }
    Ok(RunsNow {
        statuses: out,
        stopped: stale.stopped,
    })
}

/// Whether runners of a run not in `current` may be running: a run recorded unjudged that
/// the spec no longer names, or a run about to start (whose predecessor a crash may have
/// kept out of the status). Otherwise the Jobs are not listed.
pub(super) fn may_have_stale_runners(prev: &[LoadTestStatus], current: &[String]) -> bool {
    prev.iter()
        .any(|s| s.verdict.is_none() && !current.contains(&s.run))
        || current.iter().any(|run| prev.iter().all(|s| &s.run != run))
}

/// The campaign's runner Jobs, of every run.
async fn list_runners(client: &Client, plan: &Plan) -> Result<Vec<Job>, Error> {
    let jobs = Api::<Job>::namespaced(client.clone(), &plan.namespace);
    let selector = format!("{CAMPAIGN_LABEL}={},{RUN_LABEL}", plan.name);
    Ok(jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Deletes the runner Jobs named `stop` (their pods with them).
async fn stop_runners(client: &Client, plan: &Plan, stop: &[String]) -> Result<(), Error> {
    let jobs = Api::<Job>::namespaced(client.clone(), &plan.namespace);
    for name in stop {
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(campaign = %plan.campaign, job = %name, "stopped a runner of a run the spec no longer names")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What the runner Jobs of runs the spec no longer names call for.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Stale {
    /// Jobs to delete: they have not finished.
    pub stop: Vec<String>,
    /// Tests (each once) that the spec no longer names.
    pub gone: Vec<String>,
    /// The runs (each once, name and run only) of the Jobs to delete.
    pub stopped: Vec<LoadTestStatus>,
}

/// Of `jobs`, those that run a run not in `current`: the unfinished ones to stop (finished
/// ones are left to their TTL), and their tests not in `named`.
pub(super) fn stale_runners(jobs: &[Job], current: &[String], named: &[&str]) -> Stale {
    let finished = |job| condition(job, "Complete").is_some() || condition(job, "Failed").is_some();
    let mut stale = Stale::default();
    for job in jobs {
        let labels = job.metadata.labels.as_ref();
        let run = labels.and_then(|l| l.get(RUN_LABEL));
        if run.is_none_or(|r| current.contains(r)) {
            continue;
        }
        let test = labels.and_then(|l| l.get(TEST_LABEL));
        if let Some(name) = job.metadata.name.as_ref().filter(|_| !finished(job)) {
            stale.stop.push(name.clone());
            if let (Some(test), Some(run)) = (test, run)
                && !stale.stopped.iter().any(|s| &s.run == run)
            {
                stale.stopped.push(LoadTestStatus {
                    name: test.clone(),
                    run: run.clone(),
                    ..Default::default()
                });
            }
        }
        if let Some(test) = test.filter(|t| !named.contains(&t.as_str()) && !stale.gone.contains(t))
        {
            stale.gone.push(test.clone());
        }
    }
    stale
}

/// Forgets the shadow campaigns of `campaign`'s load tests named `tests`; the keys removed.
pub(crate) async fn forget_shadows(
    stock: &dyn Stock,
    campaign: &CampaignId,
    tests: &[&str],
) -> Result<u64, Error> {
    let mut removed = 0;
    for test in tests {
        removed += stock.forget(&campaign.shadow(test)).await?;
    }
    Ok(removed)
}

/// Makes `shadow` afresh for a run, as deployed: the campaign's stock, shard count and
/// waiting room (the queue profiles need it). The operator's runs and the local runner's.
pub(crate) async fn fresh_shadow(
    stock: &dyn Stock,
    plan: &Plan,
    shadow: &CampaignId,
) -> Result<(), Error> {
    stock.forget(shadow).await?;
    let shape = Shape {
        gated: false,
        shards: plan.shards,
        room: plan.waiting_room.as_ref().map(|w| &w.config),
    };
    stock
        .ensure_campaign(shadow, plan.stock, None, shape)
        .await?;
    Ok(())
}

impl Runs<'_> {
    async fn advance(
        &self,
        test: &LoadTestSpec,
        run: &str,
        recorded: Option<&LoadTestStatus>,
    ) -> Result<LoadTestStatus, Error> {
        let (plan, ns) = (self.plan, &self.plan.namespace);
        let runners = jobs(plan, test, run, self.owner, self.image);
        let jobs_api = Api::<Job>::namespaced(self.client.clone(), ns);
        let first = runners[0].metadata.name.clone().unwrap_or_default();
        let shadow = plan.campaign.shadow(&test.name);
        // The Jobs' existence (not our status, which a crash may not have written) says
        // whether this run started: a fresh shadow campaign only for a run that did not.
        let first_job = jobs_api.get_opt(&first).await?;
        let started = first_job.is_some();
        let started_at = match first_job {
            Some(job) => recorded
                .and_then(|r| r.started_at.clone())
                .or_else(|| job.metadata.creation_timestamp.map(|t| t.0.to_string())),
            None => {
                fresh_shadow(self.stock, plan, &shadow).await?;
                Some(now_rfc3339())
            }
        };
        // Created once, never applied again: a Job's pod template cannot change (the API
        // server refuses), and one made by an earlier operator (another runner image) is
        // this run's all the same.
        for job in &runners {
            let name = job.name_any();
            if !started || (name != first && jobs_api.get_opt(&name).await?.is_none()) {
                ssa(self.client, ns, job).await?;
            }
        }
        let Runners { results, held_up } =
            read_runners(self.client, ns, run, test.parallelism).await?;
        let all_done = results.iter().all(Option::is_some);
        let mut status = verdict(test, run, &results, started_at, all_done.then(now_rfc3339));
        if status.verdict.is_none() {
            status.reason = held_up;
        } else {
            // The shadow's stock and holders served their purpose; nothing real was spent.
            self.stock.forget(&shadow).await?;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::gate::stopped_runs;

    fn job(name: &str, run: &str, finished: Option<&str>) -> Job {
        let test = run.split('-').next().unwrap_or_default();
        let conditions: Vec<_> = finished
            .map(|t| serde_json::json!({ "type": t, "status": "True" }))
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { RUN_LABEL: run, TEST_LABEL: test } },
            "status": { "conditions": conditions },
        }))
        .unwrap()
    }

    fn run(name: &str, run: &str, verdict: Option<&str>) -> LoadTestStatus {
        LoadTestStatus {
            name: name.into(),
            run: run.into(),
            verdict: verdict.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn only_unfinished_runners_of_runs_the_spec_no_longer_names_are_stale() {
        let jobs = [
            job("old-0", "t-1", None),
            job("old-1", "t-1", Some("Complete")),
            job("gone-0", "u-1", Some("Failed")),
            job("gone-1", "u-1", None),
            job("now-0", "t-2", None),
        ];
        let current = ["t-2".to_owned()];
        let stale = stale_runners(&jobs, &current, &["t"]);
        assert_eq!(stale.stop, ["old-0", "gone-1"]);
        assert_eq!(stale.gone, ["u"], "u taken out (once); t runs anew");
        let stopped: Vec<_> = stale.stopped.iter().map(|s| (&*s.name, &*s.run)).collect();
        assert_eq!(stopped, [("t", "t-1"), ("u", "u-1")]);
        let all = ["t-1".to_owned(), "u-1".to_owned(), "t-2".to_owned()];
        let none = stale_runners(&jobs, &all, &["t"]);
        assert_eq!(none, Stale::default());
    }

    #[test]
    fn jobs_are_listed_only_when_a_run_ends_unjudged_or_a_new_one_starts() {
        let steady = [run("t", "t-1", None), run("u", "u-1", Some("Passed"))];
        let current = ["t-1".to_owned(), "u-1".to_owned()];
        assert!(!may_have_stale_runners(&steady, &current));
        assert!(!may_have_stale_runners(&[], &[]));
        assert!(
            may_have_stale_runners(&steady, &["u-1".to_owned()]),
            "t taken out"
        );
        let changed = ["t-2".to_owned(), "u-1".to_owned()];
        assert!(may_have_stale_runners(&steady, &changed), "t runs anew");
        assert!(
            may_have_stale_runners(&[], &current),
            "a first run: a crash may have kept an earlier one out of the status"
        );
        // A judged run taken out has finished runners: nothing to stop.
        assert!(!may_have_stale_runners(&steady, &["t-1".to_owned()]));
    }

    #[test]
    fn a_run_that_ends_unjudged_is_told_apart_from_one_superseded() {
        let prev = [
            run("t", "t-1", None),
            run("u", "u-1", None),
            run("v", "v-1", Some("Passed")),
        ];
        let now = [run("t", "t-2", None)];
        assert_eq!(
            stopped_runs(&prev, &now),
            [
                "load test t stopped unjudged: run t-1, superseded by run t-2 (its spec or the stock changed)",
                "load test u stopped unjudged: run u-1, taken out of the spec",
            ]
        );
        assert!(stopped_runs(&prev, &prev).is_empty());
    }
}
