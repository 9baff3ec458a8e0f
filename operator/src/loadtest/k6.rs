//! The k6 command line and environment of one runner segment, shared by the runner Jobs
//! and the local runner.

use stampede_core::ids::CampaignId;

use super::segments;
use crate::crd::{LoadTestSpec, Profile};
use crate::validate::{Plan, duration_secs};

/// `WAITING_ROOM=1` for a campaign with a waiting room: every profile's users join the line,
/// wait to be admitted and issue with their admission (k6-jobs/lib.js).
pub(crate) fn waiting_room_env(plan: &Plan) -> Option<(&'static str, &'static str)> {
    plan.waiting_room
        .as_ref()
        .filter(|w| w.config.enabled)
        .map(|_| ("WAITING_ROOM", "1"))
}

/// The environment a profile script reads, for one segment.
pub(crate) fn script_env(
    test: &LoadTestSpec,
    shadow: &CampaignId,
    run: &str,
    base_url: &str,
    segment: i32,
    summary_file: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("BASE_URL", base_url.to_owned()),
        ("CAMPAIGN", shadow.to_string()),
        ("RUN_ID", run.to_owned()),
        ("INSTANCE", segment.to_string()),
        // With INSTANCE, the runner's share of the counts its thresholds compare with.
        ("SEGMENTS", test.parallelism.to_string()),
        ("P95_MS", test.thresholds.p95_ms.to_string()),
        ("ERROR_RATE", test.thresholds.error_rate.to_string()),
        ("SUMMARY_FILE", summary_file.to_owned()),
        ("LOG_ISSUED", "0".to_owned()),
    ];
    if let Some(r) = test.rate {
        env.push(("RATE", r.to_string()));
    }
    if let Some(v) = test.vus {
        env.push(("VUS", v.to_string()));
    }
    if let Some(s) = test.duration.as_deref().and_then(duration_secs) {
        env.push(("DURATION", s.to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// k6's graceful stop when a script sets none: iterations still running when the stages
/// end get this long to finish.
const K6_GRACEFUL_STOP_SECS: u64 = 30;

/// How long k6 can run a test's script, in seconds: the profile's stages with the test's
/// `duration` (or the script's default) and the graceful stop after them, as the scripts in
/// `k6-jobs/` plan it with the environment the runners get. An upper bound, within 30 s of
/// what `k6 inspect --execution-requirements` reports as `totalDuration` (tested against
/// k6 for every profile); setup, VU start-up and the summary come on top.
pub fn planned_secs(test: &LoadTestSpec) -> u64 {
    // `scaled()` in lib.js makes every stage at least a second.
    let main = |default: u64| {
        test.duration
            .as_deref()
            .and_then(duration_secs)
            .unwrap_or(default)
            .max(1)
    };
    let grace = K6_GRACEFUL_STOP_SECS;
    match test.profile {
        Profile::Smoke => main(10) + grace,
        // 30 s up, the hold, 30 s down.
        Profile::Load => 30 + main(60) + 30 + grace,
        // Four steps (STEPS is not set by the operator), each 1 s to add users and the
        // hold, then 30 s down.
        Profile::Stress => 4 * (1 + main(60)) + 30 + grace,
        // Fixed stages: 10 + 20 + 10 + 20 s.
        Profile::Peak => 60 + grace,
        Profile::Soak => main(600) + grace,
        // maxDuration.
        Profile::Spike => main(60) + grace,
        // Its graceful stop lets the last users wait out MAX_WAIT (300 s) plus 15 s.
        Profile::Queue => main(600) + 315,
        // The spawn ramp and the hold share the duration (the hold at least 1 s); graceful
        // stop 10 s.
        Profile::QueueStatus => main(300) + 1 + 10,
    }
}

/// k6 arguments for one segment of `n` (the script path last).
pub(crate) fn k6_args(test: &LoadTestSpec, plan: &Plan, segment: i32, script: &str) -> Vec<String> {
    let (segs, seq) = segments(test.parallelism);
    let mut args = vec!["run".into(), "--no-color".into(), "--quiet".into()];
    if test.parallelism > 1 {
        args.extend([
            "--execution-segment".into(),
            segs[segment as usize].clone(),
            "--execution-segment-sequence".into(),
            seq,
        ]);
    }
    for (k, v) in [
        ("campaign", plan.campaign.as_str()),
        ("test", test.name.as_str()),
        ("instance", &segment.to_string()),
    ] {
        args.push("--tag".into());
        args.push(format!("{k}={v}"));
    }
    args.push(script.into());
    args
}
