//! The spec's sections for Kafka, the issuer, the writer, alert thresholds and deletion,
//! with their defaults.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Connection;

/// The campaign topic `stampede.<name>` and its dead-letter topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Partitions of the campaign topic; grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("kafka.partitions may grow but never decrease (Kafka cannot remove partitions)"))]
    pub partitions: i32,
    /// Replication factor of new topics.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 7))]
    pub replication_factor: i32,
    /// Brokers; default: the operator's `--kafka-brokers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<Connection>,
}

impl Default for KafkaSpec {
    fn default() -> Self {
        Self {
            partitions: default_partitions(),
            replication_factor: 1,
            brokers: None,
        }
    }
}

/// The issuance service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("issuer.minReplicas must not exceed issuer.maxReplicas"))]
pub struct IssuerSpec {
    /// Container image; default: the operator's `--service-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// HPA lower bound.
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// HPA upper bound.
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// HPA target average CPU utilisation, percent of the request.
    #[serde(default = "seventy")]
    #[schemars(range(min = 1, max = 100))]
    #[serde(rename = "targetCPUUtilization")]
    pub target_cpu_utilization: i32,
    /// Requests in flight per pod before 503 `overloaded`; default: the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<i32>,
    /// Container resources; defaults suit one issuer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// When a coupon is acknowledged: `Local` once the Redis primary holds it, `Replica`
    /// once a Redis replica holds it too (a failover loses nothing acknowledged; needs a
    /// replica, else every issue answers 503).
    #[serde(default)]
    pub durability: Durability,
    /// Per-user and per-client request budgets (429 `rate_limited` past them); default:
    /// the service's (5/s, burst 10 per user; no client budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<IssuerLimits>,
}

/// The issuer's request budgets (`stampede-service serve --user-rate …`), per replica.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerLimits {
    /// One user's budget (the token's subject); `perSecond: 0` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<RateSpec>,
    /// One client address's budget; load tests' shadow campaigns are exempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client: Option<RateSpec>,
    /// Take the client address from this header (e.g. `X-Forwarded-For`), only behind a
    /// proxy that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{1,64}$"))]
    pub client_ip_header: Option<String>,
}

/// A steady rate and the burst on top of it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateSpec {
    /// Requests per second, sustained (0: no limit).
    #[schemars(range(min = 0, max = 1000000))]
    pub per_second: i32,
    /// Requests allowed at once.
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: i32,
}

impl Default for IssuerSpec {
    fn default() -> Self {
        Self {
            image: None,
            min_replicas: 2,
            max_replicas: 10,
            target_cpu_utilization: 70,
            max_in_flight: None,
            resources: None,
            durability: Durability::Local,
            limits: None,
        }
    }
}

/// When the issuer acknowledges a coupon (`stampede-service serve --durability`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once the Redis primary holds it.
    #[default]
    Local,
    /// Once a Redis replica holds it too.
    Replica,
}

impl Durability {
    /// The service's `--durability` value.
    pub fn flag(self) -> &'static str {
        match self {
            Durability::Local => "local",
            Durability::Replica => "replica",
        }
    }
}

/// The writer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WriterSpec {
    /// Container image; default: the issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Writer pods (at most one per partition does work).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Rows per INSERT.
    #[serde(default = "batch_rows")]
    #[schemars(range(min = 1, max = 100000))]
    pub batch_rows: i32,
    /// How long a batch waits to fill, in milliseconds.
    #[serde(default = "twenty")]
    #[schemars(range(min = 0, max = 60000))]
    pub batch_linger_ms: i32,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

impl Default for WriterSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: 1,
            batch_rows: batch_rows(),
            batch_linger_ms: 20,
            resources: None,
        }
    }
}

/// Container requests and limits, as Kubernetes quantities (`500m`, `256Mi`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Resources {
    /// Requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Alert thresholds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertsSpec {
    /// p95 issue latency above this fires `StampedeIssueLatencyHigh`.
    #[serde(default = "fifty")]
    #[schemars(range(min = 1))]
    pub p95_latency_ms: i32,
    /// Share of 5xx answers on the issue route above this fires `StampedeIssueErrorsHigh`.
    #[serde(default = "error_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_ratio: f64,
    /// Share of issue requests shed (503 overloaded) above this fires `StampedeLoadShedding`.
    #[serde(default = "shed_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub shed_ratio: f64,
    /// p95 seconds from issuance to the row in PostgreSQL above this fires
    /// `StampedeIssueToDbSlow`.
    #[serde(default = "issue_to_db_seconds")]
    #[schemars(range(min = 0.001))]
    pub issue_to_db_seconds: f64,
    /// Outbox entries waiting for Kafka above this fire `StampedeRelayBacklogHigh`.
    #[serde(default = "relay_backlog")]
    #[schemars(range(min = 1))]
    pub relay_backlog: i64,
    /// Writer consumer lag (messages) above this fires `StampedeWriterLagHigh`.
    #[serde(default = "consumer_lag")]
    #[schemars(range(min = 1))]
    pub consumer_lag: i64,
    /// How long a condition must hold before firing (Prometheus duration).
    #[serde(default = "for_duration", rename = "for")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub for_: String,
    /// Extra labels on every rule (e.g. `team`, `severity` routing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_labels: BTreeMap<String, String>,
}

impl Default for AlertsSpec {
    fn default() -> Self {
        Self {
            p95_latency_ms: 50,
            error_ratio: error_ratio(),
            shed_ratio: shed_ratio(),
            issue_to_db_seconds: issue_to_db_seconds(),
            relay_backlog: relay_backlog(),
            consumer_lag: consumer_lag(),
            for_: for_duration(),
            rule_labels: BTreeMap::new(),
        }
    }
}

/// What deleting the resource does to the campaign's data.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Close the campaign; keep its Redis data and the Kafka topics (its load tests'
    /// shadow campaigns go either way).
    #[default]
    Retain,
    /// Close the campaign, let the outbox drain, then remove Redis data and the topics.
    Delete,
}

pub(super) fn default_partitions() -> i32 {
    6
}
pub(super) fn one() -> i32 {
    1
}
pub(super) fn two() -> i32 {
    2
}
pub(super) fn ten() -> i32 {
    10
}
pub(super) fn twenty() -> i32 {
    20
}
pub(super) fn fifty() -> i32 {
    50
}
pub(super) fn seventy() -> i32 {
    70
}
pub(super) fn thousand() -> i32 {
    1_000
}
pub(super) fn batch_rows() -> i32 {
    5_000
}
pub(super) fn error_ratio() -> f64 {
    0.01
}
pub(super) fn shed_ratio() -> f64 {
    0.05
}
pub(super) fn issue_to_db_seconds() -> f64 {
    5.0
}
pub(super) fn relay_backlog() -> i64 {
    10_000
}
pub(super) fn consumer_lag() -> i64 {
    100_000
}
pub(super) fn for_duration() -> String {
    "2m".into()
}
