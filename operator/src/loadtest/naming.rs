//! Names of a load test's run, shadow campaign, runner Jobs and scripts ConfigMap, and
//! how k6 splits a run into execution segments.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::crd::LoadTestSpec;
use crate::validate::Plan;

/// The run id: the test's name and a hash of everything that shapes the run, so the same
/// spec always names the same Jobs and a changed one (or a new `runId`) starts a new run.
pub(crate) fn run_id(plan: &Plan, test: &LoadTestSpec) -> String {
    let mut h = DefaultHasher::new();
    (plan.campaign.as_str(), plan.stock).hash(&mut h);
    serde_json::to_string(test).unwrap_or_default().hash(&mut h);
    format!("{}-{:08x}", test.name, h.finish() as u32)
}

/// Name of a runner Job (at most 63 characters: it becomes a label value).
pub(crate) fn job_name(plan: &Plan, run: &str, segment: i32) -> String {
    let tail = format!("-{run}-{segment}");
    let keep = 63usize.saturating_sub(tail.len());
    let base: String = plan.name.chars().take(keep).collect();
    format!("{}{tail}", base.trim_end_matches(['.', '-']))
}

/// Name of the scripts ConfigMap.
pub(crate) fn config_map_name(plan: &Plan) -> String {
    format!("{}-k6", plan.name)
}

/// k6 execution segments for `n` runners, and the sequence they come from.
pub(crate) fn segments(n: i32) -> (Vec<String>, String) {
    let n = n.max(1);
    let point = |i: i32| match i {
        0 => "0".to_owned(),
        i if i == n => "1".to_owned(),
        i => format!("{i}/{n}"),
    };
    let segs = (0..n)
        .map(|i| format!("{}:{}", point(i), point(i + 1)))
        .collect();
    let seq = (0..=n).map(point).collect::<Vec<_>>().join(",");
    (segs, seq)
}
