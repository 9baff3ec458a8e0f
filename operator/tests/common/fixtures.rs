//! Campaign fixtures and small API helpers shared by the control-plane and node suites.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// RFC 3339 `secs` from now (a campaign window edge).
pub fn in_secs(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A campaign with `stock` coupons and one issuer replica, everything else defaulted.
pub fn minimal_campaign(stock: u64) -> String {
    format!(
        "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {{name: x}}\nspec: {{stock: {stock}, issuer: {{minReplicas: 1}}}}\n"
    )
}

/// A campaign with stock 50, one small issuer and these load tests (YAML flow maps).
pub fn campaign_with_tests(tests: &[String]) -> String {
    let tests: String = tests.iter().map(|t| format!("  - {t}\n")).collect();
    format!(
        "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {{name: x}}
spec:
  stock: 50
  issuer: {{minReplicas: 1, maxReplicas: 1, resources: {{requests: {{cpu: 50m}}}}}}
  loadTests:
{tests}"
    )
}

/// A campaign with stock 50 and one gated smoke preflight (`vus` users, 5 s) at
/// `error_rate` (the smoke sells the shadow out: 410s, not errors).
pub fn gated_smoke_campaign(error_rate: &str, vus: u32) -> String {
    campaign_with_tests(&[format!(
        "{{name: preflight, profile: smoke, duration: 5s, vus: {vus}, gate: true, thresholds: {{p95Ms: 1000, errorRate: {error_rate}}}}}"
    )])
}

/// Where nothing listens: a runner sent there fails every request (connection refused).
pub const NOWHERE: &str = "http://127.0.0.1:1";

/// Field managers that server-side-applied a Deployment.
pub fn apply_managers(d: &Deployment) -> Vec<String> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// Creates namespace `ns`.
/// The Secret a campaign's issuers verify tokens with and its load-test runners mint
/// them with (`spec.auth`'s default: key `hs256-secret` of `stampede-auth`).
pub async fn create_auth_secret(client: &Client, ns: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": { "name": "stampede-auth" },
        "stringData": { "hs256-secret": format!("{}-0123456789abcdef0123456789abcdef", super::unique("auth")) },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

pub async fn create_namespace(client: &Client, ns: &str) {
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

/// The service's outbox relay and writer on the stack's Redis, Kafka and PostgreSQL,
/// in-process, for `campaigns` only: what gets a campaign's issuances into PostgreSQL so
/// that `deletionPolicy: Delete` can proceed.
pub struct StackPipeline {
    campaigns: std::collections::HashSet<String>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Result<(), stampede_core::Error>>>,
}

impl StackPipeline {
    /// Relays and writes `campaigns` (ids).
    pub fn start(campaigns: std::collections::HashSet<String>) -> Self {
        let mut pipeline = Self::relay_only(campaigns);
        pipeline.start_writer();
        pipeline
    }

    /// Only relays `campaigns` (ids) to Kafka: nothing reaches PostgreSQL until
    /// [`StackPipeline::start_writer`].
    pub fn relay_only(campaigns: std::collections::HashSet<String>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let relay = stampede_service::relay::RelayConfig {
            redis_url: super::stack_defaults().redis_url,
            kafka: super::kafka(),
            consumer: super::unique("test-relay"),
            batch: 100,
            gather: std::time::Duration::from_millis(10),
            linger_ms: 1,
            claim_idle: std::time::Duration::from_secs(30),
            campaigns: Some(campaigns.clone()),
            message_batches: Default::default(),
        };
        let metrics = stampede_service::metrics::Metrics::new().pipeline;
        let tasks = vec![tokio::spawn(stampede_service::relay::run(
            relay,
            metrics,
            stop.clone(),
        ))];
        Self {
            campaigns,
            stop,
            tasks,
        }
    }

    /// Starts the writer of the campaigns' topics.
    pub fn start_writer(&mut self) {
        let topics: Vec<String> = self
            .campaigns
            .iter()
            .map(|c| c.replace('.', "\\."))
            .collect();
        let writer = stampede_service::writer::WriterConfig {
            kafka: super::kafka(),
            group: super::unique("test-writer"),
            topics: format!("^stampede\\.({})$", topics.join("|")),
            database_url: super::stack_defaults().database_url,
            batch_rows: 100,
            batch_linger: std::time::Duration::from_millis(10),
            batches_in_flight: 1,
            stall: std::time::Duration::from_secs(20),
            write_timeout: std::time::Duration::from_secs(30),
        };
        let metrics = stampede_service::metrics::Metrics::new().pipeline;
        let stop = self.stop.clone();
        let task = stampede_service::writer::run(writer, metrics, stop);
        self.tasks.push(tokio::spawn(task));
    }

    /// Stops it and checks that every role ended cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

/// Waits up to `within` until campaign `name` of `c` is gone from the API (its finalizer
/// released).
pub async fn gone_from_the_api(
    c: &super::Cluster,
    what: &str,
    name: &str,
    within: std::time::Duration,
) {
    super::eventually(what, within, || {
        let api = c.campaigns();
        let name = name.to_owned();
        async move { api.get_opt(&name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}
