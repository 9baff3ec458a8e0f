//! The issuers' PodDisruptionBudget.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{issuer_name, metadata, selector, typed};
use crate::validate::Plan;

/// At most one issuer down at a time for voluntary disruptions.
pub(crate) fn issuer_pdb(plan: &Plan, owner: &OwnerReference) -> PodDisruptionBudget {
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector(plan, "issuer") },
        },
    }))
}
