//! The `CouponCampaign` custom resource: spec, status and the validation the API server
//! enforces (OpenAPI bounds and CEL rules). `stampede-operator crd` prints it.
//!
//! This file holds the top of the spec and its load tests; `settings.rs` the Kafka,
//! issuer, writer and alert sections, `status.rs` the status and `conditions.rs` the
//! condition vocabulary.

mod auth;
mod conditions;
mod settings;
mod status;
mod waiting_room;

pub use auth::{AuthSpec, DEFAULT_AUTH_SECRET, DEFAULT_AUTH_SECRET_KEY, DEFAULT_TOKEN_CLAIM};
pub(crate) use conditions::string_enum;
pub use conditions::{ConditionStatus, ConditionType, Reason, RunPhase, Verdict};
pub use settings::{
    AlertsSpec, DeletionPolicy, Durability, IssuerLimits, IssuerSpec, KafkaSpec, RateSpec,
    Resources, WriterSpec,
};
pub use status::{
    ClosedBy, Condition, CouponCampaignStatus, KafkaStatus, LoadTestStatus, Phase, StockStatus,
    WaitingRoomStatus,
};
pub use waiting_room::WaitingRoomSpec;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use settings::{error_ratio, one, thousand};

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
    // One root rule: with several, kube-derive keeps only the first in some feature
    // combinations (the tests' build did).
    // The name must be what `crate::validate::name_fits` accepts (MAX_NAME).
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]{0,54}[a-z0-9])?$') && !self.metadata.name.startsWith('lt-')").message("metadata.name must be a DNS label of at most 56 characters (a-z, 0-9 and '-', starting with a letter and ending with a letter or digit: it names the campaign's Services, '<name>-issuer', and labels) and must not start with 'lt-' (with its namespace it would name a load-test shadow campaign, '<namespace>.lt-…')")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.waitingRoom) || !has(self.shards) || self.shards == 1 || (has(self.waitingRoom.enabled) && !self.waitingRoom.enabled)").message("a waitingRoom needs shards: 1 (the line and the stock must be in one Redis slot)"))]
pub struct CouponCampaignSpec {
    /// Coupons to hand out. May grow (restock by the difference), never shrink.
    #[schemars(range(min = 1, max = 10_000_000_000_000_i64))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("stock may grow (restock) but never decrease"))]
    pub stock: i64,
    /// Buckets the stock is split into (1..=64), each with its own Redis hash tag: on a
    /// Redis Cluster they sit on different primaries, so one hot campaign spreads over
    /// shards (stock moves between buckets as users arrive). Fixed once the campaign exists.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("shards is fixed once the campaign exists"))]
    pub shards: i32,
    /// When issuance opens and closes; unbounded where omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<SaleWindow>,
    /// A waiting room in front of the issue endpoint (docs/waiting-room.md); campaigns of
    /// one shard only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomSpec>,
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
    /// How the issuer verifies who is asking (bearer JWTs), and the key the load-test
    /// runners mint tokens with.
    #[serde(default)]
    pub auth: AuthSpec,
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
    /// Report 001's queue: users join the waiting room at a rising rate, poll until
    /// decided and issue when admitted (needs `spec.waitingRoom`).
    Queue,
    /// Report 001's queue status: users join once and poll their place (needs
    /// `spec.waitingRoom`).
    #[serde(rename = "queue-status")]
    QueueStatus,
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
            Self::Queue => "queue",
            Self::QueueStatus => "queue-status",
        }
    }

    /// Whether the profile goes through a waiting room (and needs one).
    pub fn needs_waiting_room(self) -> bool {
        matches!(self, Self::Queue | Self::QueueStatus)
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
    /// Share of requests that may fail (5xx, timeouts, contract breaches); 0 allows none.
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

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use stampede_core::store::shards::MAX_SHARDS;

    /// The schema's bound on `spec.shards` and its description are written as literals (an
    /// attribute needs one); they must say the store's, or the API server accepts what the
    /// operator then refuses.
    #[test]
    fn the_schema_bounds_shards_as_the_store_does() {
        let crd = serde_json::to_value(super::CouponCampaign::crd()).unwrap();
        let shards = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["shards"];
        assert_eq!(shards["minimum"].as_f64(), Some(1.0), "{shards}");
        assert_eq!(
            shards["maximum"].as_f64(),
            Some(f64::from(MAX_SHARDS)),
            "{shards}"
        );
        let bound = format!("(1..={MAX_SHARDS})");
        assert!(
            shards["description"].as_str().unwrap().contains(&bound),
            "{shards}"
        );
    }
}
