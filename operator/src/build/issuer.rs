//! The issuer Deployment (its replicas belong to the HPA).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::connections::{KAFKA_KEY, REDIS_KEY, env_from};
use super::pod::{pod_name_env, pod_template};
use super::{ISSUER_METRICS_PORT, ISSUER_PORT, issuer_name, metadata, selector, typed};
use crate::crd::{IssuerLimits, RateSpec};
use crate::validate::Plan;

/// The issuer Deployment. No `replicas`: the HPA owns that field.
pub(crate) fn issuer_deployment(plan: &Plan, owner: &OwnerReference) -> Deployment {
    let name = issuer_name(plan);
    let mut env = vec![
        json!({ "name": "STAMPEDE_LISTEN", "value": format!("0.0.0.0:{ISSUER_PORT}") }),
        json!({ "name": "STAMPEDE_METRICS_LISTEN", "value": format!("0.0.0.0:{ISSUER_METRICS_PORT}") }),
        env_from(plan, "STAMPEDE_REDIS_URL", &plan.redis, REDIS_KEY),
        env_from(plan, "STAMPEDE_KAFKA_BROKERS", &plan.kafka, KAFKA_KEY),
        // A restarted pod keeps its name's pending outbox entries; others claim them.
        pod_name_env("STAMPEDE_RELAY_CONSUMER"),
        // Only its own campaign, to its own Kafka: other campaigns on the same Redis have
        // their own issuers (and maybe another Kafka).
        json!({ "name": "STAMPEDE_RELAY_CAMPAIGNS", "value": plan.campaign.as_str() }),
        // Serves only its own campaign (and its load tests' shadows): clients name it by
        // the object's name, the data is kept under the namespaced id.
        json!({ "name": "STAMPEDE_CAMPAIGNS", "value": format!("{}={}", plan.name, plan.campaign) }),
        json!({ "name": "STAMPEDE_DURABILITY", "value": plan.issuer.durability.flag() }),
        // Kube-proxy and ingresses learn of a terminating pod a moment after its SIGTERM:
        // it answers meanwhile (unready), well within the 30 s grace period.
        json!({ "name": "STAMPEDE_DRAIN_DELAY_MS", "value": "5000" }),
    ];
    env.extend(super::connections::kafka_security_env(plan));
    env.extend(super::auth::issuer_auth_env(plan));
    if let Some(n) = plan.issuer.max_in_flight {
        env.push(json!({ "name": "STAMPEDE_MAX_IN_FLIGHT", "value": n.to_string() }));
    }
    env.extend(limit_env(plan.issuer.limits.as_ref()));
    let i = &plan.issuer;
    let ports = [("http", ISSUER_PORT), ("metrics", ISSUER_METRICS_PORT)];
    let template = pod_template(
        plan,
        "issuer",
        &i.image,
        &["serve"],
        env,
        &ports,
        &i.resources,
    );
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, &name, "issuer", owner),
        "spec": {
            "selector": { "matchLabels": selector(plan, "issuer") },
            "strategy": { "type": "RollingUpdate",
                          "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "25%" } },
            "template": template,
        },
    }))
}

/// The budgets' variables, for what the spec sets (the service's defaults otherwise).
fn limit_env(limits: Option<&IssuerLimits>) -> Vec<serde_json::Value> {
    let Some(l) = limits else { return Vec::new() };
    let mut env = Vec::new();
    let mut rate = |who: &str, r: Option<RateSpec>| {
        if let Some(r) = r {
            let (rate, burst) = (r.per_second.to_string(), r.burst.to_string());
            env.push(json!({ "name": format!("STAMPEDE_{who}_RATE"), "value": rate }));
            env.push(json!({ "name": format!("STAMPEDE_{who}_BURST"), "value": burst }));
        }
    };
    rate("USER", l.per_user);
    rate("CLIENT", l.per_client);
    if let Some(h) = &l.client_ip_header {
        env.push(json!({ "name": "STAMPEDE_CLIENT_IP_HEADER", "value": h }));
    }
    env
}
