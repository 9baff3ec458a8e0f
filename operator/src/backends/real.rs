//! The real [`Backends`]: Redis through the service library's `Store`, Kafka through its
//! topic admin, PostgreSQL through its pool; clients shared across reconciles, one per
//! address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::PgPool;
use stampede_core::Error as Backend;
use stampede_core::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome, Window};
use stampede_core::ids::CampaignId;
use stampede_core::kafka::{
    KafkaConfig, KafkaSecurity, TopicsOutcome, delete_topics, ensure_topics,
};
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::{Store, StoreConfig};
use stampede_core::waiting_room::WaitingRoomConfig;

use super::{Backends, Shape, Stock};
use crate::Error;

/// Bound on connecting to PostgreSQL for the persisted count (status only).
const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Clients shared across reconciles, one per address.
#[derive(Default)]
pub(crate) struct RealBackends {
    stores: Mutex<HashMap<String, Store>>,
    pools: tokio::sync::Mutex<HashMap<String, PgPool>>,
    /// The operator's Kafka credentials, and the brokers they are for.
    kafka_security: Option<(KafkaSecurity, String)>,
}

impl RealBackends {
    /// Backends whose Kafka clients authenticate with `kafka_security` to the operator's
    /// own `brokers`, and to no others (a campaign's own brokers are not to see them).
    pub(crate) fn new(kafka_security: Option<KafkaSecurity>, brokers: &str) -> Self {
        Self {
            kafka_security: kafka_security.map(|s| (s, brokers.to_owned())),
            ..Self::default()
        }
    }

    fn kafka(&self, brokers: &str) -> KafkaConfig {
        let security = self.kafka_security.as_ref();
        KafkaConfig {
            brokers: brokers.to_owned(),
            security: security
                .filter(|(_, own)| own == brokers)
                .map(|(s, _)| s.clone()),
        }
    }

    async fn pool(&self, url: &str) -> Option<PgPool> {
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(url) {
            return Some(p.clone());
        }
        let connect = stampede_core::db::connect(url, 2);
        let p = match tokio::time::timeout(DB_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database unreachable");
                return None;
            }
            Err(_) => {
                tracing::warn!(timeout = ?DB_CONNECT_TIMEOUT, "connecting to the database timed out");
                return None;
            }
        };
        pools.insert(url.to_owned(), p.clone());
        Some(p)
    }
}

impl Backends for RealBackends {
    fn stock(&self, url: &str) -> Result<Arc<dyn Stock>, Error> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(url) {
            return Ok(Arc::new(s.clone()));
        }
        let config = StoreConfig {
            url: url.to_owned(),
            connections: 1,
            timeout: Duration::from_secs(2),
        };
        let store = Store::connect_lazy(&config, RedisMetrics::detached())?;
        stores.insert(url.to_owned(), store.clone());
        Ok(Arc::new(store))
    }

    fn ensure_topics<'a>(
        &'a self,
        brokers: &'a str,
        campaign: &'a str,
        partitions: i32,
        replication_factor: i32,
    ) -> BoxFuture<'a, Result<TopicsOutcome, Backend>> {
        async move {
            let config = self.kafka(brokers);
            ensure_topics(&config, campaign, partitions, replication_factor).await
        }
        .boxed()
    }

    fn delete_topics<'a>(
        &'a self,
        brokers: &'a str,
        campaign: &'a str,
    ) -> BoxFuture<'a, Result<(), Backend>> {
        async move {
            let config = self.kafka(brokers);
            delete_topics(&config, campaign).await
        }
        .boxed()
    }

    fn persisted<'a>(&'a self, url: &'a str, campaign: &'a str) -> BoxFuture<'a, Option<i64>> {
        async move {
            let pool = self.pool(url).await?;
            let count = stampede_core::db::persisted_count(&pool, campaign);
            let n = bounded(count, campaign, "counting persisted rows").await?;
            Some(n as i64)
        }
        .boxed()
    }

    fn rows_before<'a>(
        &'a self,
        url: &'a str,
        campaign: &'a str,
        before_ms: i64,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
            let pool = self.pool(url).await?;
            let found = stampede_core::db::has_rows_before(&pool, campaign, before_ms);
            bounded(
                found,
                campaign,
                "looking for rows of a campaign deleted before",
            )
            .await
        }
        .boxed()
    }
}

/// `query`'s answer within [`DB_CONNECT_TIMEOUT`]; `None` (logged) when it fails or lapses.
async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, Backend>>,
    campaign: &str,
    what: &str,
) -> Option<T> {
    match tokio::time::timeout(DB_CONNECT_TIMEOUT, query).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, campaign, "{what} failed");
            None
        }
        Err(_) => {
            tracing::warn!(timeout = ?DB_CONNECT_TIMEOUT, campaign, "{what} timed out");
            None
        }
    }
}

impl Stock for Store {
    fn ensure_campaign<'a>(
        &'a self,
        campaign: &'a CampaignId,
        stock: u64,
        window: Option<Window>,
        shape: Shape<'a>,
    ) -> BoxFuture<'a, Result<ProvisionOutcome, Backend>> {
        let Shape {
            gated,
            shards,
            room,
        } = shape;
        async move {
            let Some(room) = room else {
                let outcome = Store::ensure_sharded(self, campaign, stock, window, gated, shards);
                let outcome = outcome.await?;
                // A room taken out of the spec is turned off, its settings kept.
                if let Some(had) = Store::waiting_room(self, campaign).await?
                    && had.enabled
                {
                    let off = WaitingRoomConfig {
                        enabled: false,
                        ..had
                    };
                    Store::set_waiting_room(self, campaign, &off).await?;
                }
                return Ok(outcome);
            };
            let how = (gated, shards);
            Store::ensure_campaign_with_room(self, campaign, stock, window, how, room).await
        }
        .boxed()
    }

    fn snapshot<'a>(
        &'a self,
        campaign: &'a CampaignId,
    ) -> BoxFuture<'a, Result<Option<CampaignSnapshot>, Backend>> {
        Store::snapshot(self, campaign).boxed()
    }

    fn admin<'a>(
        &'a self,
        campaign: &'a CampaignId,
        action: AdminAction,
    ) -> BoxFuture<'a, Result<u64, Backend>> {
        Store::admin(self, campaign, action).boxed()
    }

    fn forget<'a>(&'a self, campaign: &'a CampaignId) -> BoxFuture<'a, Result<u64, Backend>> {
        Store::forget(self, campaign).boxed()
    }
}
