//! The load-test edge of reconcile: start each test's run (shadow campaign, scripts
//! ConfigMap, runner Jobs) once, and read the runners' results back from their pods.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;
use kube::{Api, Client};
use stampede_core::clock::now_rfc3339;
use stampede_core::ids::CampaignId;

use super::pods::{ended, held_up, held_up_note};
use super::{
    JOB_FAILED, RUN_LABEL, SEGMENT_LABEL, SegmentResult, config_map, jobs, run_id, verdict,
};
use crate::Error;
use crate::backends::{Shape, Stock};
use crate::crd::{LoadTestSpec, LoadTestStatus};
use crate::kubeapi::ssa;
use crate::validate::Plan;

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
}

/// Brings every load test's current run along and returns its status. Before the
/// workloads are ready (`ready` false) nothing starts; runs already recorded keep their
/// status.
pub(crate) async fn reconcile_runs(
    r: &Runs<'_>,
    prev: &[LoadTestStatus],
    ready: bool,
) -> Result<Vec<LoadTestStatus>, Error> {
    let plan = r.plan;
    let mut out = Vec::with_capacity(plan.load_tests.len());
    let mut scripts_applied = false;
    for test in &plan.load_tests {
        let run = run_id(plan, test);
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
    // A test taken out of the spec mid-run drops out of the status below, and nothing else
    // would ever forget its shadow; its runners find it gone and end.
    let removed: Vec<&str> = prev
        .iter()
        .filter(|s| s.verdict.is_none() && !plan.load_tests.iter().any(|t| t.name == s.name))
        .map(|s| s.name.as_str())
        .collect();
    forget_shadows(r.stock, &plan.campaign, &removed).await?;
    Ok(out)
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
        let started_at = match jobs_api.get_opt(&first).await? {
            Some(job) => recorded
                .and_then(|r| r.started_at.clone())
                .or_else(|| job.metadata.creation_timestamp.map(|t| t.0.to_string())),
            None => {
                self.stock.forget(&shadow).await?;
                // As deployed: the shadow has the campaign's waiting room.
                let shape = Shape {
                    gated: false,
                    shards: plan.shards,
                    room: plan.waiting_room.as_ref().map(|w| &w.config),
                };
                self.stock
                    .ensure_campaign(&shadow, plan.stock, None, shape)
                    .await?;
                Some(now_rfc3339())
            }
        };
        for job in &runners {
            ssa(self.client, ns, job).await?;
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

/// The segment a runner pod or Job carries, when it is one of the `n`.
fn segment(labels: Option<&BTreeMap<String, String>>, n: i32) -> Option<usize> {
    labels
        .and_then(|l| l.get(SEGMENT_LABEL))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|i| *i < n as usize)
}

/// What the runners of a run say.
struct Runners {
    /// Each segment's result, once it has one.
    results: Vec<Option<SegmentResult>>,
    /// What holds unfinished segments up (`segment i: reason: message`), if anything.
    held_up: Option<String>,
}

/// Each segment's result: the runner pod's termination (exit code and message, the k6
/// summary), or the Job's failure when it failed without a pod that terminated; and what
/// holds up the runners that have neither.
async fn read_runners(client: &Client, ns: &str, run: &str, n: i32) -> Result<Runners, Error> {
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    let mut out: Vec<Option<SegmentResult>> = vec![None; n as usize];
    let mut held = Vec::new();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    for pod in pods.list(&selector).await?.items {
        let Some(i) = segment(pod.metadata.labels.as_ref(), n) else {
            continue;
        };
        if let Some(result) = ended(&pod) {
            out[i] = Some(result);
        } else if let Some(why) = held_up(&pod) {
            held.push((i, why));
        }
    }
    let jobs = Api::<Job>::namespaced(client.clone(), ns);
    for job in jobs.list(&selector).await?.items {
        let Some(i) = segment(job.metadata.labels.as_ref(), n) else {
            continue;
        };
        // A runner stopped at its deadline may still show a terminated pod (killed by the
        // Job controller); the deadline is what ended it.
        if let Some((deadline, failure)) = job_failure(&job)
            && (deadline || out[i].is_none())
        {
            out[i] = Some(failure);
        }
    }
    held.retain(|(i, _)| out[*i].is_none());
    let held_up = held_up_note(held);
    Ok(Runners {
        results: out,
        held_up,
    })
}

/// A failed Job as a segment result ([`JOB_FAILED`], the Job's reason and message), and
/// whether its deadline ended it.
pub(super) fn job_failure(job: &Job) -> Option<(bool, SegmentResult)> {
    let c = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let reason = c.reason.as_deref().unwrap_or("");
    let failure = SegmentResult {
        exit_code: JOB_FAILED,
        message: format!(
            "Job failed: {reason} {}",
            c.message.as_deref().unwrap_or("")
        ),
    };
    Some((reason == "DeadlineExceeded", failure))
}
