//! The issuers' HorizontalPodAutoscaler (autoscaling/v2, on CPU).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{issuer_name, metadata, typed};
use crate::validate::Plan;

/// autoscaling/v2 HPA on average CPU utilisation.
pub(crate) fn issuer_hpa(plan: &Plan, owner: &OwnerReference) -> HorizontalPodAutoscaler {
    let i = &plan.issuer;
    typed(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": issuer_name(plan) },
            "minReplicas": i.min_replicas,
            "maxReplicas": i.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu",
                              "target": { "type": "Utilization", "averageUtilization": i.target_cpu } },
            }],
            // A stampede arrives in seconds: scale up at once, scale down slowly.
            "behavior": {
                "scaleUp": { "stabilizationWindowSeconds": 0,
                             "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }] },
                "scaleDown": { "stabilizationWindowSeconds": 300 },
            },
        },
    }))
}
