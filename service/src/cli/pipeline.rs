//! `relay`, `writer`, `migrate` and `audit`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{DatabaseArgs, KafkaArgs, RedisArgs, RelayArgs};
use crate::metrics::Metrics;
use crate::server::serve_metrics;
use crate::writer::WriterConfig;
use crate::{audit as audit_mod, relay as relay_mod, writer as writer_mod};
use stampede_core::Error;
use stampede_core::db;
use stampede_core::ids::CampaignId;
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::Store;

/// `relay` flags.
#[derive(Debug, Args)]
pub struct RelayRoleArgs {
    /// Where to serve /metrics and /healthz.
    #[arg(
        long,
        env = "STAMPEDE_METRICS_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    pub(super) relay: RelayArgs,
}

/// `writer` flags.
#[derive(Debug, Args)]
pub struct WriterArgs {
    /// Where to serve /metrics and /healthz.
    #[arg(
        long,
        env = "STAMPEDE_METRICS_LISTEN",
        default_value = "127.0.0.1:9466"
    )]
    metrics_listen: SocketAddr,
    /// Rows per database batch, at most.
    #[arg(long, env = "STAMPEDE_BATCH_ROWS", default_value_t = 5_000)]
    batch_rows: usize,
    /// How long a batch waits to fill, in milliseconds.
    #[arg(long, env = "STAMPEDE_BATCH_LINGER_MS", default_value_t = 20)]
    batch_linger_ms: u64,
    /// Batches written at once, each on its own database connection; offsets are still
    /// committed in order.
    #[arg(long, env = "STAMPEDE_BATCHES_IN_FLIGHT", default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=16))]
    batches_in_flight: u16,
    /// Seconds the Kafka consumer may go without being a settled member of its group
    /// before it is closed and a new one built (what it had not committed is read again).
    #[arg(long, env = "STAMPEDE_WRITER_STALL_SECS", default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(15..=3600))]
    stall_secs: u64,
    /// Seconds a database write may run before the server ends it (statement_timeout) and it
    /// is written again; one unanswered 5 s after that is given up on a new connection (a
    /// server whose node vanished mid-write answers never).
    #[arg(long, env = "STAMPEDE_DB_WRITE_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    db_write_timeout_secs: u64,
    /// Kafka consumer group shared by all writers.
    #[arg(long, env = "STAMPEDE_WRITER_GROUP", default_value = "stampede-writer")]
    group: String,
    /// Topics to consume: a name, or a regex when it starts with `^`.
    #[arg(long, env = "STAMPEDE_WRITER_TOPICS", default_value = crate::writer::ALL_CAMPAIGN_TOPICS)]
    topics: String,
    /// How often to refresh the unpersisted-issuances metric, in milliseconds.
    #[arg(long, env = "STAMPEDE_AUDIT_INTERVAL_MS", default_value_t = 5_000)]
    audit_interval_ms: u64,
    /// How long an issuance may take from Redis to PostgreSQL before the unpersisted
    /// metric counts it as missing, in seconds (younger ones are in flight).
    #[arg(long, env = "STAMPEDE_UNPERSISTED_GRACE_SECS", default_value_t = 30)]
    unpersisted_grace_secs: u64,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

/// `migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
}

/// `audit` flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Campaign to audit.
    #[arg(long)]
    campaign: String,
    /// Put missing issuances back into the outbox so the pipeline delivers them again.
    #[arg(long)]
    repair: bool,
    /// Print the report as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Issuances younger than this are in flight, not missing, in seconds.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

/// Runs the relay with its own metrics endpoint.
pub async fn relay(a: RelayRoleArgs, shutdown: CancellationToken) -> Result<(), Error> {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(a.metrics_listen).await?;
    let http = tokio::spawn(serve_metrics(listener, metrics.clone(), shutdown.clone()));
    let config = a.relay.config("relay")?;
    let r = relay_mod::run(config, metrics.pipeline.clone(), shutdown.clone()).await;
    shutdown.cancel();
    let _ = http.await;
    r
}

/// The campaigns a writer consuming `topics` writes: the one campaign of a plain topic
/// name; `None` (every campaign) for a regex.
fn written_campaigns(topics: &str) -> Option<std::collections::HashSet<String>> {
    if topics.starts_with('^') {
        return None;
    }
    stampede_core::issuance::campaign_of_topic(topics).map(|c| [c.to_owned()].into())
}

/// Runs the writer with its own metrics endpoint and the unpersisted-issuances gauge.
pub async fn writer(a: WriterArgs, shutdown: CancellationToken) -> Result<(), Error> {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(a.metrics_listen).await?;
    let http = tokio::spawn(serve_metrics(listener, metrics.clone(), shutdown.clone()));
    let store = Store::connect_lazy(&a.redis.store_config(), metrics.redis.clone())?;
    let pool = db::connect(&a.database.database_url, 2).await?;
    let gauge = tokio::spawn(audit_mod::report_unpersisted(
        store,
        pool,
        metrics.pipeline.clone(),
        audit_mod::DriftConfig {
            every: Duration::from_millis(a.audit_interval_ms.max(100)),
            grace: Duration::from_secs(a.unpersisted_grace_secs),
            campaigns: written_campaigns(&a.topics),
        },
        shutdown.clone(),
    ));
    let config = WriterConfig {
        kafka: a.kafka.config()?,
        group: a.group,
        topics: a.topics,
        database_url: a.database.database_url,
        batch_rows: a.batch_rows.max(1),
        batch_linger: Duration::from_millis(a.batch_linger_ms),
        batches_in_flight: a.batches_in_flight.into(),
        stall: Duration::from_secs(a.stall_secs),
        write_timeout: Duration::from_secs(a.db_write_timeout_secs),
    };
    let r = writer_mod::run(config, metrics.pipeline.clone(), shutdown.clone()).await;
    shutdown.cancel();
    let _ = tokio::join!(http, gauge);
    r
}

/// Applies migrations and prints what it applied.
pub async fn migrate(a: MigrateArgs) -> Result<(), Error> {
    let pool = db::connect(&a.database.database_url, 1).await?;
    let applied = db::migrate(&pool).await?;
    super::print(serde_json::json!({ "applied": applied }))
}

/// Audits a campaign; an unclean report is an error (exit status 1).
pub async fn audit(a: AuditArgs) -> Result<(), Error> {
    let campaign = CampaignId::parse(&a.campaign)
        .map_err(|e| Error::InvalidInput(format!("--campaign: {e}")))?;
    let store = Store::connect(&a.redis.store_config(), RedisMetrics::detached()).await?;
    let pool = db::connect(&a.database.database_url, 1).await?;
    let r = audit_mod::audit(
        &store,
        &pool,
        &campaign,
        Duration::from_secs(a.grace_secs),
        a.repair,
    )
    .await?;
    if a.json {
        super::print(serde_json::to_value(&r).expect("report serialises"))?;
    } else {
        print_audit(&r);
    }
    if r.clean {
        Ok(())
    } else {
        Err(Error::AuditFailed(r.campaign))
    }
}

/// The audit report as text.
fn print_audit(r: &audit_mod::AuditReport) {
    println!("audit of campaign {}", r.campaign);
    for (k, v) in [
        ("stock", r.stock),
        ("issued", r.issued),
        ("holders", r.holders),
        ("persisted", r.persisted),
        ("outbox pending", r.outbox_pending),
        ("in flight", r.in_flight),
        ("missing", r.missing),
        ("oversold", r.oversold),
        ("duplicated", r.duplicated),
        ("mismatched", r.mismatched),
        ("unknown in redis", r.unknown_in_redis),
        ("repaired", r.repaired),
        ("restored", r.restored),
        ("counter raised", r.counter_raised),
        ("acked high", r.seqs.acked_high),
        ("counter behind", r.seqs.counter_behind),
        ("issued twice", r.seqs.issued_twice),
        ("lost", r.seqs.lost),
    ] {
        println!("  {k:<17} {v}");
    }
    for (k, v) in [
        ("issued twice", &r.seqs.issued_twice_seqs),
        ("lost", &r.seqs.lost_seqs),
    ] {
        if !v.is_empty() {
            println!(
                "  {k} seqs{} {v:?}",
                if v.len() == 100 { " (first 100)" } else { "" }
            );
        }
    }
    if r.suspended {
        println!("  suspended         yes (lift with `campaign unsuspend` once handled)");
    }
    println!(
        "  verdict           {}",
        if r.clean { "CLEAN" } else { "NOT CLEAN" }
    );
}
