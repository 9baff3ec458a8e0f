//! The ClusterIP Service in front of the issuers.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{issuer_name, metadata, selector, typed};
use crate::validate::Plan;

/// The ClusterIP Service in front of the issuers.
pub(crate) fn issuer_service(plan: &Plan, owner: &OwnerReference) -> Service {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan, "issuer"),
            "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }],
        },
    }))
}
