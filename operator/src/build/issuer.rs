//! The issuer Deployment (its replicas belong to the HPA).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::pod::{env_var, pod_name_env, pod_template};
use super::{ISSUER_PORT, issuer_name, metadata, selector, typed};
use crate::validate::Plan;

/// The issuer Deployment. No `replicas`: the HPA owns that field.
pub(crate) fn issuer_deployment(plan: &Plan, owner: &OwnerReference) -> Deployment {
    let name = issuer_name(plan);
    let mut env = vec![
        json!({ "name": "STAMPEDE_LISTEN", "value": format!("0.0.0.0:{ISSUER_PORT}") }),
        env_var("STAMPEDE_REDIS_URL", &plan.redis),
        env_var("STAMPEDE_KAFKA_BROKERS", &plan.kafka),
        // A restarted pod keeps its name's pending outbox entries; others claim them.
        pod_name_env("STAMPEDE_RELAY_CONSUMER"),
        // Only its own campaign, to its own Kafka: other campaigns on the same Redis have
        // their own issuers (and maybe another Kafka).
        json!({ "name": "STAMPEDE_RELAY_CAMPAIGNS", "value": plan.campaign.as_str() }),
        json!({ "name": "STAMPEDE_DURABILITY", "value": plan.issuer.durability.flag() }),
    ];
    env.extend(super::auth::issuer_auth_env(plan));
    if let Some(n) = plan.issuer.max_in_flight {
        env.push(json!({ "name": "STAMPEDE_MAX_IN_FLIGHT", "value": n.to_string() }));
    }
    let i = &plan.issuer;
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, &name, "issuer", owner),
        "spec": {
            "selector": { "matchLabels": selector(plan, "issuer") },
            "strategy": { "type": "RollingUpdate",
                          "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "25%" } },
            "template": pod_template(plan, "issuer", &i.image, &["serve"], env, ISSUER_PORT, &i.resources),
        },
    }))
}
