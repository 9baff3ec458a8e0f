//! The objects a run applies: the scripts ConfigMap and one runner Job per segment.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};
use stampede_core::ids::CampaignId;

use super::{
    RUN_LABEL, SCRIPTS, SEGMENT_LABEL, TEST_LABEL, config_map_name, job_name, k6_args,
    planned_secs, script_env,
};
use crate::build::{issuer_name, runner_auth_env};
use crate::crd::LoadTestSpec;
use crate::validate::{Plan, labels};

/// The ConfigMap holding every script, mounted at /scripts in the runners.
pub(crate) fn config_map(plan: &Plan, owner: &OwnerReference) -> ConfigMap {
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

/// What a runner gets beyond the time k6 plans to run: scheduling, pulling the image,
/// starting its virtual users, setup and the summary. Past it the Job fails
/// (`DeadlineExceeded`) and the run's verdict is `Error`, so a runner that never starts (an
/// image that cannot be pulled) or never ends (k6 thrashing at its memory limit) cannot
/// hold a gate closed for ever.
pub(crate) const RUNNER_GRACE_SECS: u64 = 600;

/// One run's runner, as everything its Jobs share.
struct Runner<'a> {
    plan: &'a Plan,
    test: &'a LoadTestSpec,
    run: &'a str,
    image: &'a str,
    shadow: CampaignId,
    base_url: String,
}

/// The runner Jobs of one run: one per segment, never retried, ended at their deadline,
/// cleaned up after an hour, the k6 summary left in the pod's termination message.
pub(crate) fn jobs(
    plan: &Plan,
    test: &LoadTestSpec,
    run: &str,
    owner: &OwnerReference,
    image: &str,
) -> Vec<Job> {
    let runner = Runner {
        plan,
        test,
        run,
        image,
        // The runners name the shadow as clients name campaigns: by the object's name (the
        // issuer maps it to the shadow of the namespaced id).
        shadow: plan.public_id().shadow(&test.name),
        base_url: format!("http://{}.{}.svc:80", issuer_name(plan), plan.namespace),
    };
    (0..test.parallelism)
        .map(|i| runner.job(owner, i))
        .collect()
}

impl Runner<'_> {
    fn job(&self, owner: &OwnerReference, i: i32) -> Job {
        let plan = self.plan;
        let mut l = labels(plan, "load-test");
        l.insert(RUN_LABEL.into(), self.run.into());
        l.insert(SEGMENT_LABEL.into(), i.to_string());
        l.insert(TEST_LABEL.into(), self.test.name.clone());
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name(plan, self.run, i),
                "namespace": plan.namespace,
                "labels": l,
                "ownerReferences": [owner],
            },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": planned_secs(self.test) + RUNNER_GRACE_SECS,
                // Kept until every segment of the run has ended and an hour more: the Jobs
                // say the run started (a segment that ended early and was then removed
                // would run again, on a shadow made anew under the others).
                "ttlSecondsAfterFinished": planned_secs(self.test) + RUNNER_GRACE_SECS + 3600,
                "template": {
                    "metadata": { "labels": l },
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 12345,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [self.container(i)],
                        "volumes": [
                            { "name": "scripts", "configMap": { "name": config_map_name(plan) } },
                            { "name": "tmp", "emptyDir": {} },
                        ],
                    },
                },
            },
        }))
        .expect("Job literal")
    }

    fn container(&self, i: i32) -> Value {
        let env: Vec<_> = script_env(
            self.test,
            &self.shadow,
            self.run,
            &self.base_url,
            i,
            "/dev/termination-log",
        )
        .into_iter()
        .chain(super::k6::waiting_room_env(self.plan).map(|(k, v)| (k.to_owned(), v.to_owned())))
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .chain(runner_auth_env(self.plan))
        .collect();
        let script = format!("/scripts/{}.js", self.test.profile.as_str());
        json!({
            "name": "k6",
            "image": self.image,
            "args": k6_args(self.test, self.plan, i, &script),
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
        })
    }
}
