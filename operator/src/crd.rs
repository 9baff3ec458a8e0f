//! The `CouponCampaign` custom resource: spec, status and the validation the API server
//! enforces (OpenAPI bounds and CEL rules). `stampede-operator crd` prints it.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "stampede.dev";
/// The finalizer that closes (and under `Delete` removes) a campaign's data.
pub const FINALIZER: &str = "stampede.dev/cleanup";

/// A first-come-first-served coupon campaign: stock, sale window, and what runs it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stampede.dev",
    version = "v1alpha1",
    kind = "CouponCampaign",
    namespaced,
    shortname = "cc",
    status = "CouponCampaignStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Stock","type":"integer","jsonPath":".spec.stock"}"#,
    printcolumn = r#"{"name":"Remaining","type":"integer","jsonPath":".status.stock.remaining"}"#,
    printcolumn = r#"{"name":"Issued","type":"integer","jsonPath":".status.stock.issued"}"#,
    printcolumn = r#"{"name":"Tests","type":"string","jsonPath":".status.conditions[?(@.type==\"LoadTestsPassed\")].status"}"#,
    // a string: kubectl renders a future `date` as <invalid>
    printcolumn = r#"{"name":"Opens","type":"string","jsonPath":".spec.window.opensAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 128").message("metadata.name must be at most 128 characters (it is the campaign id)")
)]
#[serde(rename_all = "camelCase")]
pub struct CouponCampaignSpec {
    /// Coupons to hand out. May grow (restock by the difference), never shrink.
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("stock may grow (restock) but never decrease"))]
    pub stock: i64,
    /// When issuance opens and closes; unbounded where omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<SaleWindow>,
    /// Stop issuing until set back to false.
    #[serde(default)]
    pub paused: bool,
    /// Redis holding the stock; default: the operator's `--redis-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Connection>,
    /// Kafka topic settings and brokers.
    #[serde(default)]
    pub kafka: KafkaSpec,
    /// PostgreSQL the writer fills; default: the operator's `--database-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Connection>,
    /// The HTTP issuance service (Deployment + Service + HPA + PodDisruptionBudget).
    #[serde(default)]
    pub issuer: IssuerSpec,
    /// The Kafka → PostgreSQL writer (Deployment).
    #[serde(default)]
    pub writer: WriterSpec,
    /// Alert thresholds for the campaign's PrometheusRule.
    #[serde(default)]
    pub alerts: AlertsSpec,
    /// What deleting the resource does to Redis data and Kafka topics.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// k6 load tests run in the cluster against a shadow copy of the campaign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 16))]
    pub load_tests: Vec<LoadTestSpec>,
}

/// One k6 load test.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestSpec {
    /// Name, unique in the campaign (lower-case letters, digits, dashes).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$"))]
    pub name: String,
    /// The k6 profile (`k6-jobs/<profile>.js`).
    pub profile: Profile,
    /// Runner Jobs; k6 splits the load between them with execution segments.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 32))]
    pub parallelism: i32,
    /// Arrival rate in requests per second (profiles load, peak, soak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate: Option<i32>,
    /// Virtual users (profiles smoke, stress, spike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub vus: Option<i32>,
    /// Main phase length, e.g. `90s`, `10m` (the profile's default when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,5}(s|m|h)$"))]
    pub duration: Option<String>,
    /// Pass/fail thresholds.
    #[serde(default)]
    pub thresholds: LoadTestThresholds,
    /// Must pass before the campaign may open.
    #[serde(default)]
    pub gate: bool,
    /// When the test runs.
    #[serde(default)]
    pub when: LoadTestWhen,
    /// Change to run the test again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub run_id: Option<String>,
}

/// k6 profiles.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One user, a few seconds.
    Smoke,
    /// Ramp to a rate, hold, ramp down.
    Load,
    /// Steps of more looping users.
    Stress,
    /// Base rate, climb to a peak, back down.
    Peak,
    /// A steady rate held long.
    Soak,
    /// Many users at once, one request each.
    Spike,
}

impl Profile {
    /// The script's name without `.js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smoke => "smoke",
            Self::Load => "load",
            Self::Stress => "stress",
            Self::Peak => "peak",
            Self::Soak => "soak",
            Self::Spike => "spike",
        }
    }
}

/// When a load test runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadTestWhen {
    /// Once the workloads are ready, before the campaign has issued anything.
    #[default]
    BeforeOpen,
}

/// Thresholds a load test must meet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestThresholds {
    /// p95 of issue requests must stay below this.
    #[serde(default = "thousand")]
    #[schemars(range(min = 1))]
    pub p95_ms: i32,
    /// Share of requests that may fail (5xx, timeouts, contract breaches).
    #[serde(default = "error_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: f64,
}

impl Default for LoadTestThresholds {
    fn default() -> Self {
        Self {
            p95_ms: 1000,
            error_rate: error_ratio(),
        }
    }
}

/// The sale window (RFC 3339).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.opensAt) || !has(self.closesAt) || self.closesAt > self.opensAt").message("window.closesAt must be after window.opensAt"))]
pub struct SaleWindow {
    /// First instant issuance is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub opens_at: Option<String>,
    /// First instant issuance is no longer allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub closes_at: Option<String>,
}

/// Where a backing service is: a literal value, or a key of a Secret in the campaign's
/// namespace (the issuer and writer pods read the same key).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.secretRef)").message("set exactly one of url and secretRef"))]
pub struct Connection {
    /// The URL (or, for Kafka, the comma-separated broker list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret key holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// One key of one Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within it.
    #[schemars(length(min = 1))]
    pub key: String,
}

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
    /// Close the campaign; keep Redis data and the Kafka topics.
    #[default]
    Retain,
    /// Close the campaign, let the outbox drain, then remove Redis data and the topics.
    Delete,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CouponCampaignStatus {
    /// Where the campaign stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, RedisProvisioned, KafkaProvisioned, WorkloadsReady, AlertsConfigured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Stock counters (issued from Redis, persisted from PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockStatus>,
    /// The campaign topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStatus>,
    /// The latest run of each load test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub load_tests: Vec<LoadTestStatus>,
}

/// The latest run of one load test.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestStatus {
    /// The test's name.
    pub name: String,
    /// Its profile.
    pub profile: String,
    /// This run's id (the Jobs are named after it).
    pub run: String,
    /// Pending, Running or Finished.
    pub phase: String,
    /// Passed, ThresholdsFailed or Error (when finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Why, for anything but Passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the Jobs were created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the last segment finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Segments (runner Jobs).
    pub segments: i32,
    /// Segments finished.
    pub segments_done: i32,
    /// Requests per second, summed over segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Worst p95 over segments, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// Worst p99 over segments, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Failed share of all requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Requests over all segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
    /// Thresholds k6 reported failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_thresholds: Vec<String>,
}

/// Campaign phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Seen, nothing done yet.
    Pending,
    /// Stock, topics or workloads are being provisioned.
    Provisioning,
    /// Load tests are running.
    Testing,
    /// Ready, before `opensAt`.
    Scheduled,
    /// Issuing.
    Open,
    /// Held by `spec.paused`.
    Paused,
    /// Every coupon is issued.
    SoldOut,
    /// Past `closesAt` or closed.
    Closed,
    /// The spec cannot be carried out; waits for a change.
    Failed,
}

/// A status condition (the `metav1.Condition` shape).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Stock counters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct StockStatus {
    /// Stock ever made available (Redis).
    pub total: i64,
    /// Not yet issued.
    pub remaining: i64,
    /// Issued (Redis).
    pub issued: i64,
    /// Rows in PostgreSQL; absent when the database could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisted: Option<i64>,
}

/// The campaign topic as provisioned.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStatus {
    /// Issuance topic.
    pub topic: String,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// Partitions the topic has.
    pub partitions: i32,
}

fn default_partitions() -> i32 {
    6
}
fn one() -> i32 {
    1
}
fn two() -> i32 {
    2
}
fn ten() -> i32 {
    10
}
fn twenty() -> i32 {
    20
}
fn fifty() -> i32 {
    50
}
fn seventy() -> i32 {
    70
}
fn thousand() -> i32 {
    1_000
}
fn batch_rows() -> i32 {
    5_000
}
fn error_ratio() -> f64 {
    0.01
}
fn shed_ratio() -> f64 {
    0.05
}
fn issue_to_db_seconds() -> f64 {
    5.0
}
fn relay_backlog() -> i64 {
    10_000
}
fn consumer_lag() -> i64 {
    100_000
}
fn for_duration() -> String {
    "2m".into()
}
