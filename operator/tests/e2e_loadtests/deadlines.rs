//! A runner Job's deadline rests on how long k6 plans to run its script: checked against
//! `k6 inspect --execution-requirements` on the shipped scripts, for every profile.

use std::process::Command;

use serde_json::json;
use stampede_operator::crd::LoadTestSpec;
use stampede_operator::loadtest::planned_secs;

use crate::common::repo;
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
