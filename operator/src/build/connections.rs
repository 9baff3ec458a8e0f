//! The campaign's connection Secret: every backend address its pods need that the campaign
//! does not already take from a Secret of its own (an operator default, or a `url` written
//! in the spec). Pods read each one through `secretKeyRef`, so no credential is ever a
//! plain value in a pod spec, and `kubectl get deploy -o yaml` shows none.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::{metadata, typed};
use crate::validate::{Endpoint, Plan};

/// The Secret's key for each backend.
pub(crate) const REDIS_KEY: &str = "redis-url";
/// See [`REDIS_KEY`].
pub(crate) const KAFKA_KEY: &str = "kafka-brokers";
/// See [`REDIS_KEY`].
pub(crate) const DATABASE_KEY: &str = "database-url";
/// The database's CA as PEM text, when the operator's default URL names a CA file.
const DATABASE_CA_KEY: &str = "database-ca-pem";

/// Name of the campaign's connection Secret.
pub(crate) fn connections_name(plan: &Plan) -> String {
    format!("{}-connections", plan.name)
}

/// The connection Secret, or `None` when every backend comes from the campaign's own
/// Secrets.
pub(crate) fn connection_secret(plan: &Plan, owner: &OwnerReference) -> Option<Secret> {
    let data: BTreeMap<String, ByteString> = [
        (REDIS_KEY, &plan.redis),
        (KAFKA_KEY, &plan.kafka),
        (DATABASE_KEY, &plan.database),
    ]
    .into_iter()
    .filter_map(|(key, e)| match e {
        Endpoint::Value(v) => Some((key.to_owned(), ByteString(for_pods(plan, key, v)))),
        Endpoint::Secret { .. } => None,
    })
    .chain(plan.database_ca_pem.iter().map(|pem| {
        (
            DATABASE_CA_KEY.to_owned(),
            ByteString(pem.clone().into_bytes()),
        )
    }))
    .chain(
        kafka_security(plan)
            .into_iter()
            .map(|(_, key, value)| (key, ByteString(value.into_bytes()))),
    )
    .collect();
    if data.is_empty() {
        return None;
    }
    let mut secret: Secret = typed(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(plan, &connections_name(plan), "connections", owner),
        "type": "Opaque",
    }));
    secret.data = Some(data);
    Some(secret)
}

/// A backend address as the pods get it: the database URL without the `sslrootcert` file
/// (which is the operator's, not theirs) when its CA travels as PEM text instead.
fn for_pods(plan: &Plan, key: &str, value: &str) -> Vec<u8> {
    if key == DATABASE_KEY && plan.database_ca_pem.is_some() {
        stampede_core::db::split_root_cert(value).0.into_bytes()
    } else {
        value.as_bytes().to_vec()
    }
}

/// The writer's variable for the database's CA, when it travels as PEM text.
pub(super) fn database_ca_env(plan: &Plan) -> Option<Value> {
    plan.database_ca_pem.as_ref().map(|_| {
        json!({
            "name": stampede_core::db::CA_PEM_ENV,
            "valueFrom": { "secretKeyRef": { "name": connections_name(plan), "key": DATABASE_CA_KEY } },
        })
    })
}

/// Kafka's SASL and TLS settings as (variable, Secret key, value): the key is the variable
/// without `STAMPEDE_`, in lower case with dashes (`kafka-sasl-password`).
fn kafka_security(plan: &Plan) -> Vec<(&'static str, String, String)> {
    let Some(s) = &plan.kafka_security else {
        return Vec::new();
    };
    s.to_env()
        .into_iter()
        .map(|(var, value)| {
            let key = var
                .trim_start_matches("STAMPEDE_")
                .to_ascii_lowercase()
                .replace('_', "-");
            (var, key, value)
        })
        .collect()
}

/// The pods' variables for Kafka's SASL and TLS, each read from the connection Secret.
pub(super) fn kafka_security_env(plan: &Plan) -> Vec<Value> {
    kafka_security(plan)
        .into_iter()
        .map(|(var, key, _)| {
            json!({
                "name": var,
                "valueFrom": { "secretKeyRef": { "name": connections_name(plan), "key": key } },
            })
        })
        .collect()
}

/// The variable `name` read from where `e` lives: the campaign's own Secret, or `key` of
/// the connection Secret.
pub(super) fn env_from(plan: &Plan, name: &str, e: &Endpoint, key: &str) -> Value {
    let (secret, key) = match e {
        Endpoint::Secret { name: s, key } => (s.clone(), key.as_str()),
        Endpoint::Value(_) => (connections_name(plan), key),
    };
    json!({
        "name": name,
        "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
    })
}
