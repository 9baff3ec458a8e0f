//! The verdict of a run, read from what its runners left behind (exit code and the k6
//! summary in the termination message).

use serde::Deserialize;

use super::THRESHOLDS_FAILED_EXIT;
use crate::crd::{LoadTestSpec, LoadTestStatus, RunPhase, Verdict};

/// The exit code of a segment whose Job failed without a pod that terminated (or at its
/// deadline): its message is the Job's reason and message.
pub(crate) const JOB_FAILED: i32 = -1;

/// What one runner left: its exit code and termination message (the k6 summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentResult {
    /// Container exit code (99: thresholds failed).
    pub exit_code: i32,
    /// Termination message.
    pub message: String,
}

/// The fields of a k6 summary (`k6-jobs/lib.js`) a verdict needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    /// Requests per second.
    pub rps: f64,
    /// p95, ms.
    pub p95: f64,
    /// p99, ms.
    pub p99: f64,
    /// Failed share.
    pub error_rate: f64,
    /// Requests.
    pub requests: f64,
    /// All thresholds held.
    pub thresholds_passed: bool,
    /// Which did not.
    #[serde(default)]
    pub failed_thresholds: Vec<String>,
}

/// Parses a termination message; k6 may print more than the JSON line.
pub(crate) fn parse_summary(message: &str) -> Option<Summary> {
    message
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

/// `s` trimmed and cut to 200 characters (or a note that it is empty).
pub(super) fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else if s.is_empty() {
        "no termination message".into()
    } else {
        s.to_owned()
    }
}

/// The status of a run from its segments' results (`None`: still running).
pub(crate) fn verdict(
    test: &LoadTestSpec,
    run: &str,
    results: &[Option<SegmentResult>],
    started_at: Option<String>,
    finished_at: Option<String>,
) -> LoadTestStatus {
    let done: Vec<(usize, &SegmentResult)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .collect();
    let mut status = LoadTestStatus {
        name: test.name.clone(),
        profile: test.profile.as_str().into(),
        run: run.into(),
        phase: if done.is_empty() {
            RunPhase::Pending
        } else {
            RunPhase::Running
        }
        .as_str()
        .into(),
        segments: results.len() as i32,
        segments_done: done.len() as i32,
        started_at,
        ..Default::default()
    };
    let judged = judge(&done);
    aggregate(&mut status, &judged.summaries);
    status.failed_thresholds = judged.failed.clone();
    if done.len() == results.len() {
        status.phase = RunPhase::Finished.as_str().into();
        status.finished_at = finished_at;
        let (v, reason) = if !judged.errors.is_empty() {
            (Verdict::Error, Some(judged.errors.join("; ")))
        } else if !judged.failed.is_empty() {
            (Verdict::ThresholdsFailed, Some(judged.failed.join("; ")))
        } else {
            (Verdict::Passed, None)
        };
        status.verdict = Some(v.as_str().into());
        status.reason = reason;
    }
    status
}

/// What the finished segments say.
struct Judged {
    summaries: Vec<Summary>,
    /// Thresholds reported failed, sorted, once each.
    failed: Vec<String>,
    /// Segments that crashed or left no readable summary.
    errors: Vec<String>,
}

fn judge(done: &[(usize, &SegmentResult)]) -> Judged {
    let mut errors = Vec::new();
    let mut failed = Vec::new();
    let summaries = done
        .iter()
        .filter_map(|(i, r)| {
            let s = parse_summary(&r.message);
            match (r.exit_code, &s) {
                (0, Some(s)) if s.thresholds_passed => {}
                (THRESHOLDS_FAILED_EXIT, Some(s)) => {
                    failed.extend(s.failed_thresholds.iter().cloned())
                }
                (0, Some(_)) => failed.push(format!("segment {i}: thresholds reported failed")),
                (JOB_FAILED, _) => errors.push(format!("segment {i}: {}", short(&r.message))),
                (code, _) => errors.push(format!(
                    "segment {i}: k6 exited {code}: {}",
                    short(&r.message)
                )),
            }
            s
        })
        .collect();
    failed.sort();
    failed.dedup();
    Judged {
        summaries,
        failed,
        errors,
    }
}

/// Rates summed, latencies the worst, the error rate weighted by requests.
fn aggregate(status: &mut LoadTestStatus, summaries: &[Summary]) {
    if summaries.is_empty() {
        return;
    }
    let requests: f64 = summaries.iter().map(|s| s.requests).sum();
    let round = |x: f64| (x * 100.0).round() / 100.0;
    status.rps = Some(round(summaries.iter().map(|s| s.rps).sum()));
    status.p95_ms = summaries.iter().map(|s| s.p95).reduce(f64::max);
    status.p99_ms = summaries.iter().map(|s| s.p99).reduce(f64::max);
    status.requests = Some(requests as i64);
    status.error_rate = Some(if requests > 0.0 {
        (summaries
            .iter()
            .map(|s| s.error_rate * s.requests)
            .sum::<f64>()
            / requests
            * 1e6)
            .round()
            / 1e6
    } else {
        0.0
    });
}
