//! The stack's Redis, Kafka and PostgreSQL (`scripts/stack up`) as the operator tests use
//! them, and the cleanup that leaves nothing of a test behind in them.

use std::time::Duration;

use stampede_core::campaign::CampaignSnapshot;
use stampede_core::ids::{CampaignId, SHADOW_MARK};
use stampede_core::kafka::KafkaConfig;
use stampede_core::store::{Store, StoreConfig};
use stampede_operator::validate::Defaults;
use stampede_service::metrics::Metrics;

/// The stack's database when `STAMPEDE_DATABASE_URL` is not set.
const STACK_DATABASE_URL: &str = "postgres://stampede:stampede@127.0.0.1:5432/stampede";

/// The stack's Redis, Kafka and PostgreSQL (`scripts/stack up`).
pub fn stack_defaults() -> Defaults {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let database_url = env("STAMPEDE_DATABASE_URL", STACK_DATABASE_URL);
    Defaults {
        redis_url: env("STAMPEDE_REDIS_URL", "redis://127.0.0.1:6379"),
        kafka_brokers: env("STAMPEDE_KAFKA_BROKERS", "127.0.0.1:9092"),
        database_ca_pem: stampede_operator::cli::database_ca_pem(&database_url)
            .expect("the database CA"),
        database_url,
        service_image: "stampede/service:test".into(),
        k6_image: "grafana/k6:test".into(),
        allowed_images: Vec::new(),
        monitoring_namespace: Some("monitoring".into()),
        kafka_security: stampede_operator::cli::kafka_security().expect("STAMPEDE_KAFKA_*"),
    }
}

/// Creates the issuance tables in the stack's database, as a campaign's first writer does
/// (on a fresh stack no writer may have run yet, and the persisted count needs them).
pub async fn migrate_stack_database() {
    let url = stack_defaults().database_url;
    let pool = stampede_core::db::connect(&url, 1)
        .await
        .expect("the stack's PostgreSQL");
    stampede_core::db::migrate(&pool)
        .await
        .expect("migrating the stack's database");
    pool.close().await;
}

/// The stack's Redis, as the service library sees it.
pub async fn store() -> Store {
    let config = StoreConfig {
        url: stack_defaults().redis_url,
        connections: 1,
        timeout: Duration::from_secs(2),
    };
    Store::connect(&config, Metrics::new().redis)
        .await
        .expect("stack Redis (scripts/stack up)")
}

/// A campaign's Redis snapshot, if it exists.
pub async fn snapshot(campaign: &str) -> Option<CampaignSnapshot> {
    store()
        .await
        .snapshot(&CampaignId::parse(campaign).unwrap())
        .await
        .unwrap()
}

/// Partitions of a topic (0 when it does not exist).
pub async fn partitions(topic: &str) -> i32 {
    stampede_core::kafka::partition_count(&kafka(), topic)
        .await
        .unwrap()
}

/// The stack's Kafka.
pub fn kafka() -> KafkaConfig {
    let d = stack_defaults();
    KafkaConfig {
        brokers: d.kafka_brokers,
        security: d.kafka_security,
    }
}

/// Removes a campaign's Redis keys (its load tests' shadows' too) and topics when dropped
/// (tests leave nothing behind in the shared stack, even when they fail).
pub struct Forget(pub String);

impl Drop for Forget {
    fn drop(&mut self) {
        let campaign = self.0.clone();
        // Drop cannot await; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let store = store().await;
                // Its shadows too: a test may end with a load test still running.
                let registry = store.registry().await.unwrap_or_default();
                let prefix = format!("{campaign}{SHADOW_MARK}");
                let shadow = |s: &&String| s.starts_with(&prefix);
                let ours = registry.iter().filter(shadow).chain([&campaign]);
                for c in ours.filter_map(|c| CampaignId::parse(c).ok()) {
                    let _ = store.forget(&c).await;
                }
                let _ = stampede_core::kafka::delete_topics(&kafka(), &campaign).await;
            });
        })
        .join();
    }
}
