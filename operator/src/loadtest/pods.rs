//! What a runner pod says about its segment: how it ended, or what holds it up.

use k8s_openapi::api::core::v1::{ContainerState, Pod};

use super::SegmentResult;
use super::verdict::short;

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
