//! Where a campaign's services are: its endpoints, with Secret keys read from the
//! campaign's namespace (an API-server edge).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::Error;
use crate::validate::{Endpoint, Plan};

/// A campaign's backing services, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connections {
    /// Redis URL.
    pub redis: String,
    /// Kafka brokers.
    pub kafka: String,
    /// PostgreSQL URL.
    pub database: String,
}

/// Reads a plan's endpoints, fetching Secret keys from the campaign's namespace.
pub(crate) async fn connections(client: &Client, plan: &Plan) -> Result<Connections, Error> {
    Ok(Connections {
        redis: resolve(client, &plan.namespace, &plan.redis).await?,
        kafka: resolve(client, &plan.namespace, &plan.kafka).await?,
        database: resolve(client, &plan.namespace, &plan.database).await?,
    })
}

async fn resolve(client: &Client, ns: &str, e: &Endpoint) -> Result<String, Error> {
    let (name, key) = match e {
        Endpoint::Value(v) => return Ok(v.clone()),
        Endpoint::Secret { name, key } => (name, key),
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Secret(format!("{ns}/{name} does not exist")))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| Error::Secret(format!("{ns}/{name} has no key {key:?}")))?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| Error::Secret(format!("{ns}/{name} key {key:?} is not UTF-8")))
}
