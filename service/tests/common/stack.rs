//! The shared local stack (`scripts/stack up`): its Kafka and PostgreSQL, a fresh database
//! per test, row counts, and a campaign's topics dropped when a test is done.

use std::time::Duration;

use sqlx::PgPool;
use stampede_core::kafka::KafkaConfig;

use super::kit::unique;

/// The stack's Kafka (`scripts/stack up`).
pub fn stack_kafka() -> String {
    std::env::var("STAMPEDE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The stack's PostgreSQL admin URL.
pub fn stack_database() -> String {
    std::env::var("STAMPEDE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stampede:stampede@127.0.0.1:5432/stampede".into())
}

/// Kafka at `brokers`: the stack's with the SASL and TLS `scripts/stack env` describes
/// (`STAMPEDE_KAFKA_*`), any other (a private broker) plaintext.
pub fn kafka_config(brokers: &str) -> KafkaConfig {
    if brokers == stack_kafka() {
        KafkaConfig::with_env_security(brokers).expect("STAMPEDE_KAFKA_* (scripts/stack env)")
    } else {
        KafkaConfig::new(brokers)
    }
}

/// Replaces the database name in `url`, keeping its parameters (`?sslmode=…`).
pub fn with_database(url: &str, db: &str) -> String {
    let (url, query) = url
        .split_once('?')
        .map_or((url, None), |(u, q)| (u, Some(q)));
    let (base, _) = url.rsplit_once('/').unwrap();
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Creates a fresh database on the server behind `admin_url` and returns its URL.
pub async fn fresh_database(admin_url: &str) -> String {
    fresh_database_with(admin_url, "").await
}

/// Creates a fresh database with `options` (`CREATE DATABASE`'s) and returns its URL.
pub async fn fresh_database_with(admin_url: &str, options: &str) -> String {
    let name = unique("t").replace('-', "_");
    let admin = PgPool::connect(admin_url)
        .await
        .expect("postgres (scripts/stack up)");
    sqlx::query(&format!("CREATE DATABASE {name} {options}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    with_database(admin_url, &name)
}

/// Rows of `campaign` in the database behind `pool`.
pub async fn count_rows(pool: &PgPool, campaign: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM coupon_issuances WHERE campaign = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// The seqs of `campaign`'s rows, ascending.
pub async fn row_seqs(pool: &PgPool, campaign: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM coupon_issuances WHERE campaign = $1 ORDER BY seq")
        .bind(campaign)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Waits up to `limit` for `count` rows of `campaign`, returning the last count seen.
pub async fn wait_rows(pool: &PgPool, campaign: &str, count: i64, limit: Duration) -> i64 {
    let start = std::time::Instant::now();
    loop {
        let n = count_rows(pool, campaign).await;
        if n >= count || start.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes a campaign's topics from a synchronous context (a `Drop`).
pub fn drop_topics(brokers: &str, campaign: &str) {
    let (brokers, campaign) = (brokers.to_owned(), campaign.to_owned());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kafka = kafka_config(&brokers);
        let _ = rt.block_on(stampede_core::kafka::delete_topics(&kafka, &campaign));
    })
    .join();
}
