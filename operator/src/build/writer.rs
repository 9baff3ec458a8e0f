//! The writer Deployment (Kafka → PostgreSQL, one consumer group per campaign).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;
use stampede_core::issuance::topic;

use super::connections::{DATABASE_KEY, KAFKA_KEY, REDIS_KEY, env_from};
use super::pod::pod_template;
use super::{WRITER_PORT, metadata, selector, typed, writer_name};
use crate::validate::Plan;

/// The writer Deployment: one consumer group per campaign over the campaign's topic.
pub(crate) fn writer_deployment(plan: &Plan, owner: &OwnerReference) -> Deployment {
    let w = &plan.writer;
    let mut env = vec![
        json!({ "name": "STAMPEDE_METRICS_LISTEN", "value": format!("0.0.0.0:{WRITER_PORT}") }),
        env_from(plan, "STAMPEDE_REDIS_URL", &plan.redis, REDIS_KEY),
        env_from(plan, "STAMPEDE_KAFKA_BROKERS", &plan.kafka, KAFKA_KEY),
        env_from(plan, "STAMPEDE_DATABASE_URL", &plan.database, DATABASE_KEY),
        json!({ "name": "STAMPEDE_WRITER_TOPICS", "value": topic(plan.campaign.as_str()) }),
        json!({ "name": "STAMPEDE_WRITER_GROUP", "value": format!("stampede-writer.{}", plan.campaign) }),
        json!({ "name": "STAMPEDE_BATCH_ROWS", "value": w.batch_rows.to_string() }),
        json!({ "name": "STAMPEDE_BATCH_LINGER_MS", "value": w.batch_linger_ms.to_string() }),
    ];
    env.extend(super::connections::kafka_security_env(plan));
    env.extend(super::connections::database_ca_env(plan));
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, &writer_name(plan), "writer", owner),
        "spec": {
            "replicas": w.replicas,
            "selector": { "matchLabels": selector(plan, "writer") },
            "template": pod_template(plan, "writer", &w.image, &["writer"], env, &[("metrics", WRITER_PORT)], &w.resources),
        },
    }))
}
