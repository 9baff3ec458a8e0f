//! What a run's runners say: how each pod ended or what holds it up, and each segment's
//! result read from its pod and Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::verdict::short;
use super::{JOB_FAILED, RUN_LABEL, SEGMENT_LABEL, SegmentResult};
use crate::Error;

/// The k6 container's state.
fn k6_state(pod: &Pod) -> Option<&ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "k6")?
        .state
        .as_ref()
}

/// How the runner ended: its exit code and termination message (the k6 summary).
pub(super) fn ended(pod: &Pod) -> Option<SegmentResult> {
    let t = k6_state(pod)?.terminated.as_ref()?;
    Some(SegmentResult {
        exit_code: t.exit_code,
        message: t.message.clone().unwrap_or_default(),
    })
}

/// What keeps a runner from running, when it is worth telling: the scheduler's reason (no
/// node has room) or the container's (an image that cannot be pulled, a Secret key that
/// is missing), not the moments every pod passes through on its way up.
pub(super) fn held_up(pod: &Pod) -> Option<String> {
    let unscheduled = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    let (reason, message) = match unscheduled {
        Some(c) => (c.reason.as_deref()?, c.message.as_deref()),
        None => {
            let w = k6_state(pod)?.waiting.as_ref()?;
            (w.reason.as_deref()?, w.message.as_deref())
        }
    };
    if matches!(reason, "ContainerCreating" | "PodInitializing") {
        return None;
    }
    Some(match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason}: {m}"),
        None => reason.to_owned(),
    })
}

/// What holds a run's unfinished segments up, from `(segment, why)`: the first says why,
/// the rest are counted (thirty-two runners could each repeat it).
pub(super) fn held_up_note(mut held: Vec<(usize, String)>) -> Option<String> {
    held.sort();
    let (first, why) = held.first()?;
    Some(match held.len() - 1 {
        0 => format!("segment {first}: {}", short(why)),
        more => format!("segment {first}: {} (and {more} more held up)", short(why)),
    })
}

/// The segment a runner pod or Job carries, when it is one of the `n`.
fn segment(labels: Option<&BTreeMap<String, String>>, n: i32) -> Option<usize> {
    labels
        .and_then(|l| l.get(SEGMENT_LABEL))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|i| *i < n as usize)
}

/// What the runners of a run say.
pub(super) struct Runners {
    /// Each segment's result, once it has one.
    pub results: Vec<Option<SegmentResult>>,
    /// What holds unfinished segments up (`segment i: reason: message`), if anything.
    pub held_up: Option<String>,
}

/// Each segment's result: the runner pod's termination (exit code and message, the k6
/// summary), or the Job's failure when it failed without a pod that terminated; and what
/// holds up the runners that have neither.
pub(super) async fn read_runners(
    client: &Client,
    ns: &str,
    run: &str,
    n: i32,
) -> Result<Runners, Error> {
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    let mut out: Vec<Option<SegmentResult>> = vec![None; n as usize];
    let mut held = Vec::new();
    let mut has_pod = vec![false; n as usize];
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    for pod in pods.list(&selector).await?.items {
        let Some(i) = segment(pod.metadata.labels.as_ref(), n) else {
            continue;
        };
        has_pod[i] = true;
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
        } else if out[i].is_none() && !has_pod[i] && condition(&job, "Complete").is_some() {
            out[i] = Some(summary_lost());
        }
    }
    held.retain(|(i, _)| out[*i].is_none());
    let held_up = held_up_note(held);
    Ok(Runners {
        results: out,
        held_up,
    })
}

/// A segment whose Job completed but whose pod, with the summary it terminated with, is
/// gone (evicted or deleted by a node drain): nothing says how it went.
pub(super) fn summary_lost() -> SegmentResult {
    SegmentResult {
        exit_code: JOB_FAILED,
        message: "the runner completed, but its pod (and the k6 summary it ended with) \
                  was removed before the operator read it"
            .into(),
    }
}

/// The Job's condition `type_`, when it holds (status True).
pub(super) fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// A failed Job as a segment result ([`JOB_FAILED`], the Job's reason and message), and
/// whether its deadline ended it.
pub(super) fn job_failure(job: &Job) -> Option<(bool, SegmentResult)> {
    let c = condition(job, "Failed")?;
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
