//! The edges reconcile talks to besides the API server: Secrets, Redis (through the
//! service library's `Store`), Kafka and PostgreSQL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use sqlx::PgPool;
use stampede_service::Error as Backend;
use stampede_service::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome};
use stampede_service::kafka::{KafkaConfig, TopicsOutcome, ensure_topics};
use stampede_service::metrics::Metrics as ServiceMetrics;
use stampede_service::store::{Store, StoreConfig};

use crate::Error;
use crate::status::Problem;
use crate::validate::{Endpoint, Plan};

/// Bound on connecting to PostgreSQL for the persisted count (status only).
const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A campaign's backing services, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// Redis URL.
    pub redis: String,
    /// Kafka brokers.
    pub kafka: String,
    /// PostgreSQL URL.
    pub database: String,
}

/// Reads a plan's endpoints, fetching Secret keys from the campaign's namespace.
pub async fn connections(client: &Client, plan: &Plan) -> Result<Connections, Error> {
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

/// Clients shared across reconciles, one per address.
#[derive(Default)]
pub struct Backends {
    stores: Mutex<HashMap<String, Store>>,
    pools: tokio::sync::Mutex<HashMap<String, PgPool>>,
}

impl Backends {
    /// The Redis store at `url` (connections are made lazily and kept).
    pub fn store(&self, url: &str) -> Result<Store, Error> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(url) {
            return Ok(s.clone());
        }
        let config = StoreConfig {
            url: url.to_owned(),
            connections: 1,
            timeout: Duration::from_secs(2),
        };
        let store = Store::connect_lazy(&config, ServiceMetrics::new().redis)?;
        stores.insert(url.to_owned(), store.clone());
        Ok(store)
    }

    /// Rows of `campaign` in PostgreSQL at `url`; `None` when the database cannot be read
    /// (status then leaves `persisted` out rather than failing the reconcile).
    pub async fn persisted(&self, url: &str, campaign: &str) -> Option<i64> {
        let pool = {
            let mut pools = self.pools.lock().await;
            match pools.get(url) {
                Some(p) => p.clone(),
                None => {
                    let p = tokio::time::timeout(
                        DB_CONNECT_TIMEOUT,
                        stampede_service::db::connect(url, 2),
                    )
                    .await
                    .ok()?
                    .map_err(|e| tracing::warn!(error = %e, "database unreachable"))
                    .ok()?;
                    pools.insert(url.to_owned(), p.clone());
                    p
                }
            }
        };
        let count = stampede_service::db::persisted_count(&pool, campaign);
        match tokio::time::timeout(DB_CONNECT_TIMEOUT, count).await {
            Ok(Ok(n)) => Some(n as i64),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, campaign, "counting persisted rows failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// What provisioning Redis did.
#[derive(Debug, Clone)]
pub struct RedisOutcome {
    /// Created, restocked, window updated or unchanged.
    pub provision: ProvisionOutcome,
    /// Pause or resume applied to match `spec.paused`.
    pub pause_change: Option<AdminAction>,
    /// The campaign afterwards.
    pub snapshot: CampaignSnapshot,
}

/// Brings the campaign in Redis to the plan: stock (restock by the difference, never
/// shrink), window (the spec is the truth; none means unbounded), paused.
pub async fn provision_redis(store: &Store, plan: &Plan) -> Result<RedisOutcome, Problem> {
    let provision = store
        .ensure_campaign(
            &plan.campaign,
            plan.stock,
            Some(plan.window.unwrap_or_default()),
        )
        .await
        .map_err(|e| redis_problem(plan, e))?;
    let mut snapshot = snapshot(store, plan).await?;
    let pause_change = match (plan.paused, snapshot.paused) {
        (true, false) => Some(AdminAction::Pause),
        (false, true) => Some(AdminAction::Resume),
        _ => None,
    };
    if let Some(action) = pause_change {
        store
            .admin(&plan.campaign, action)
            .await
            .map_err(|e| redis_problem(plan, e))?;
        snapshot = self::snapshot(store, plan).await?;
    }
    Ok(RedisOutcome {
        provision,
        pause_change,
        snapshot,
    })
}

async fn snapshot(store: &Store, plan: &Plan) -> Result<CampaignSnapshot, Problem> {
    store
        .snapshot(&plan.campaign)
        .await
        .map_err(|e| redis_problem(plan, e))?
        .ok_or_else(|| {
            Problem::new(
                "RedisUnavailable",
                "campaign vanished from Redis while provisioning",
            )
        })
}

fn redis_problem(plan: &Plan, e: Backend) -> Problem {
    match e {
        Backend::StockDecrease { current, .. } => Problem::new(
            "StockDecreaseRefused",
            format!(
                "Redis already holds {current} coupons for {} but spec.stock is {}; stock never shrinks. Set spec.stock to {current} or more.",
                plan.campaign, plan.stock
            ),
        ),
        other => Problem::new("RedisUnavailable", other.to_string()),
    }
}

/// Creates or grows the campaign topic and its dead-letter topic.
pub async fn provision_kafka(brokers: &str, plan: &Plan) -> Result<TopicsOutcome, Problem> {
    let config = KafkaConfig {
        brokers: brokers.to_owned(),
    };
    ensure_topics(
        &config,
        plan.campaign.as_str(),
        plan.partitions,
        plan.replication_factor,
    )
    .await
    .map_err(|e| Problem::new("KafkaUnavailable", e.to_string()))
}
