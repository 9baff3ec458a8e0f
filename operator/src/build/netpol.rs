//! The campaign's NetworkPolicies (with `--network-policies`): issuers admit traffic on the
//! API port from anywhere and on the metrics port only from the monitoring namespace;
//! writers admit only metrics scrapes from there. (Enforced by the cluster's network
//! plugin; one without NetworkPolicy support ignores them.)

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::{
    ISSUER_METRICS_PORT, ISSUER_PORT, WRITER_PORT, issuer_name, metadata, selector, typed,
    writer_name,
};
use crate::validate::Plan;

/// The issuer's and the writer's policies, or none when `--network-policies` is off.
pub(crate) fn network_policies(plan: &Plan, owner: &OwnerReference) -> Vec<NetworkPolicy> {
    let Some(monitoring) = plan.monitoring_namespace.as_deref() else {
        return Vec::new();
    };
    let scrapes = |port: i32| {
        json!({
            "from": [{ "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": monitoring } } }],
            "ports": [{ "protocol": "TCP", "port": port }],
        })
    };
    let api = json!({ "ports": [{ "protocol": "TCP", "port": ISSUER_PORT }] });
    vec![
        policy(
            plan,
            owner,
            &issuer_name(plan),
            "issuer",
            vec![api, scrapes(ISSUER_METRICS_PORT)],
        ),
        policy(
            plan,
            owner,
            &writer_name(plan),
            "writer",
            vec![scrapes(WRITER_PORT)],
        ),
    ]
}

fn policy(
    plan: &Plan,
    owner: &OwnerReference,
    name: &str,
    component: &str,
    ingress: Vec<Value>,
) -> NetworkPolicy {
    typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(plan, name, component, owner),
        "spec": {
            "podSelector": { "matchLabels": selector(plan, component) },
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }))
}
