//! What the operator and the scripts assume of k6, checked against k6 itself: how long it
//! plans to run each shipped script (a runner Job's deadline rests on it), and how it splits
//! users between runners (a runner's thresholds compare with its share).

use std::path::Path;
use std::process::Command;

use serde_json::json;
use stampede_operator::crd::LoadTestSpec;
use stampede_operator::loadtest::planned_secs;

use crate::common::{repo, unique};
use crate::runners::k6;

/// k6's duration text (`40s`, `2m30s`, `1h0m0s`) in seconds.
fn seconds(text: &str) -> u64 {
    let (mut total, mut n) = (0, 0);
    for c in text.chars() {
        match c {
            '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap()),
            'h' => (total, n) = (total + n * 3600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => panic!("k6 duration {text:?}"),
        }
    }
    total
}

/// What k6 plans for `profile` with `DURATION` (seconds) set or not: `totalDuration`.
fn k6_total(profile: &str, duration: Option<u64>) -> u64 {
    // `inspect` reads no environment of its own: the variables go in with `-e`.
    let mut cmd = Command::new(k6());
    cmd.args([
        "inspect",
        "--execution-requirements",
        "-e",
        "CAMPAIGN=inspect",
    ])
    .current_dir(repo());
    if let Some(d) = duration {
        cmd.args(["-e", &format!("DURATION={d}")]);
    }
    cmd.arg(format!("k6-jobs/{profile}.js"));
    let out = cmd.output().expect("k6 inspect");
    assert!(
        out.status.success(),
        "k6 inspect {profile}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req: serde_json::Value = serde_json::from_slice(&out.stdout).expect("k6 inspect's JSON");
    seconds(req["totalDuration"].as_str().expect("totalDuration"))
}

#[test]
fn planned_lengths_bound_what_k6_plans_for_every_profile() {
    let profiles = [
        "smoke",
        "load",
        "stress",
        "peak",
        "soak",
        "spike",
        "queue",
        "queue-status",
    ];
    for profile in profiles {
        for (duration, secs) in [(None, None), (Some("5s"), Some(5)), (Some("2m"), Some(120))] {
            let test: LoadTestSpec = serde_json::from_value(json!({
                "name": "t", "profile": profile, "duration": duration,
            }))
            .unwrap();
            let (planned, k6) = (planned_secs(&test), k6_total(profile, secs));
            // An upper bound (the runner must not be stopped early), and a close one (a
            // formula that drifted from the script shows).
            assert!(
                (k6..=k6 + 30).contains(&planned),
                "{profile} duration {duration:?}: planned {planned} s, k6 plans {k6} s"
            );
        }
    }
}

/// A one-iteration-per-user scenario (the spike's shape) of `USERS` users that prints
/// `lib.js`'s `segmentShare(USERS)` beside the iterations k6 ran in this execution segment.
const SHARE_JS: &str = "import { segmentShare } from 'LIB';
const USERS = Number(__ENV.USERS);
export const options = { scenarios: { s: { executor: 'per-vu-iterations', vus: USERS, iterations: 1 } } };
export default function () {}
export function handleSummary(data) {
  const it = data.metrics.iterations;
  return { stdout: JSON.stringify({ share: segmentShare(USERS), ran: it ? it.values.count : 0 }) + '\\n' };
}
";

/// [`SHARE_JS`] in runner `i` of `n` for `users` users: `(share, ran)`.
fn share_and_ran(script: &Path, users: u32, i: u32, n: u32) -> (u64, u64) {
    let frac = |k: u32| match k {
        0 => "0".to_owned(),
        k if k == n => "1".to_owned(),
        k => format!("{k}/{n}"),
    };
    let sequence: Vec<String> = (0..=n).map(frac).collect();
    let out = Command::new(k6())
        .args(["run", "--quiet", "--no-color", "-e", "CAMPAIGN=share"])
        .args([
            "-e",
            &format!("USERS={users}"),
            "-e",
            &format!("SEGMENTS={n}"),
            "-e",
            &format!("INSTANCE={i}"),
        ])
        .args([
            "--execution-segment",
            &format!("{}:{}", frac(i), frac(i + 1)),
        ])
        .args(["--execution-segment-sequence", &sequence.join(",")])
        .arg(script)
        .output()
        .expect("k6 run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "k6 share.js: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v["share"].as_u64().unwrap(), v["ran"].as_u64().unwrap())
}

#[test]
fn each_runner_s_share_is_what_k6_runs_in_its_segment() {
    let dir = std::env::temp_dir().join(unique("k6-share"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("share.js");
    let lib = repo().join("k6-jobs/lib.js");
    std::fs::write(&script, SHARE_JS.replace("LIB", &lib.to_string_lossy())).unwrap();
    for n in 1..=4 {
        for users in [1, 3, 7, 10] {
            let shares: Vec<(u64, u64)> = (0..n)
                .map(|i| share_and_ran(&script, users, i, n))
                .collect();
            for (i, (share, ran)) in shares.iter().enumerate() {
                assert_eq!(share, ran, "{users} users, runner {i} of {n}: {shares:?}");
            }
            let total: u64 = shares.iter().map(|(s, _)| s).sum();
            assert_eq!(total, u64::from(users), "the shares add up");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
