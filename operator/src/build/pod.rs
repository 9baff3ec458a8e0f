//! The pod template every Stampede workload shares, hardened, with probes and resources.

use serde_json::{Value, json};

use crate::crd::Resources;
use crate::validate::{Plan, labels};

/// Non-root user the pods run as.
const RUN_AS: i64 = 65532;

fn resources(r: &Resources) -> Value {
    json!({ "requests": r.requests, "limits": r.limits })
}

/// A pod template with the hardening every Stampede pod gets: non-root, read-only root
/// filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp, no
/// service-account token, probes on /healthz and /readyz of the port named `metrics`
/// (scraped there too).
pub(super) fn pod_template(
    plan: &Plan,
    component: &str,
    image: &str,
    args: &[&str],
    env: Vec<Value>,
    ports: &[(&str, i32)],
    res: &Resources,
) -> Value {
    let metrics = ports
        .iter()
        .find(|(name, _)| *name == "metrics")
        .map_or(0, |(_, p)| *p);
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, p)| json!({ "name": name, "containerPort": p, "protocol": "TCP" }))
        .collect();
    json!({
        "metadata": {
            "labels": labels(plan, component),
            // For Prometheus setups that scrape pods by annotation.
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": metrics.to_string(),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [{
                "name": component,
                "image": image,
                "args": args,
                "env": env,
                "ports": ports,
                "resources": resources(res),
                "securityContext": container_security(),
                "livenessProbe": {
                    "httpGet": { "path": "/healthz", "port": "metrics" },
                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": { "path": "/readyz", "port": "metrics" },
                    "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 2,
                },
            }],
        },
    })
}

/// The container's security context: nothing beyond running the binary.
fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "privileged": false,
        "capabilities": { "drop": ["ALL"] },
    })
}

pub(super) fn pod_name_env(var: &str) -> Value {
    json!({ "name": var, "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } })
}
