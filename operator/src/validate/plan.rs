//! The [`Plan`]: everything reconcile needs to know about one campaign, defaults applied
//! and free of Kubernetes types, and the labels every child carries.

use std::collections::BTreeMap;

use stampede_core::campaign::Window;
use stampede_core::ids::CampaignId;
use stampede_core::kafka::KafkaSecurity;

use crate::crd::{AlertsSpec, DeletionPolicy, Durability, IssuerLimits, LoadTestSpec, Resources};

/// Operator-wide defaults for what a campaign does not name.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Redis URL.
    pub redis_url: String,
    /// Kafka brokers.
    pub kafka_brokers: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Image of `stampede-service` (issuer and writer).
    pub service_image: String,
    /// Image of the k6 load-test runners.
    pub k6_image: String,
    /// Image patterns a campaign's `spec.issuer.image` / `spec.writer.image` may use (`*`
    /// wildcard); empty: the repository of `service_image`.
    pub allowed_images: Vec<String>,
    /// With `--network-policies`: the namespace Prometheus scrapes from; `None`: no
    /// NetworkPolicies.
    pub monitoring_namespace: Option<String>,
    /// Kafka's SASL and TLS (the operator's and its pods'); `None`: plaintext.
    pub kafka_security: Option<KafkaSecurity>,
    /// The CA file `database_url`'s `sslrootcert` names, read (for the pods).
    pub database_ca_pem: Option<String>,
}

/// Where a backing service is found: a value, or a Secret key the operator and the pods
/// both read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The value itself.
    Value(String),
    /// A key of a Secret in the campaign's namespace.
    Secret {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
}

/// Issuer settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerPlan {
    /// Image.
    pub image: String,
    /// HPA bounds.
    pub min_replicas: i32,
    /// HPA bounds.
    pub max_replicas: i32,
    /// HPA CPU target, percent.
    pub target_cpu: i32,
    /// Per-pod in-flight cap, when set.
    pub max_in_flight: Option<i32>,
    /// Container resources.
    pub resources: Resources,
    /// When a coupon is acknowledged.
    pub durability: Durability,
    /// Request budgets, when set.
    pub limits: Option<IssuerLimits>,
}

/// Bearer-token verification with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlan {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must include.
    pub audience: String,
    /// The keys.
    pub keys: AuthKeys,
}

/// Where the issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKeys {
    /// An HS256 secret in a Secret key (the runners mint with it too).
    Hs256 {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// A JWKS URL.
    JwksUrl(String),
}

/// Writer settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterPlan {
    /// Image.
    pub image: String,
    /// Pods.
    pub replicas: i32,
    /// Rows per batch.
    pub batch_rows: i32,
    /// Batch linger, ms.
    pub batch_linger_ms: i32,
    /// Container resources.
    pub resources: Resources,
}

/// Everything reconcile needs to know about one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The campaign's id in Redis, Kafka and PostgreSQL (`<namespace>.<name>`).
    pub campaign: CampaignId,
    /// The resource's name: what clients call the campaign in URLs, and the stem of its
    /// children's names.
    pub name: String,
    /// Namespace of the resource and its children.
    pub namespace: String,
    /// Stock to provision.
    pub stock: u64,
    /// Buckets the stock is split into.
    pub shards: u32,
    /// Sale window, when the spec has one.
    pub window: Option<Window>,
    /// The waiting room, when the spec has one.
    pub waiting_room: Option<super::WaitingRoomPlan>,
    /// Held by the spec.
    pub paused: bool,
    /// Topic partitions.
    pub partitions: i32,
    /// Replication factor of new topics.
    pub replication_factor: i32,
    /// Redis.
    pub redis: Endpoint,
    /// Kafka brokers.
    pub kafka: Endpoint,
    /// PostgreSQL.
    pub database: Endpoint,
    /// Issuer.
    pub issuer: IssuerPlan,
    /// Writer.
    pub writer: WriterPlan,
    /// Bearer-token verification.
    pub auth: AuthPlan,
    /// Alert thresholds.
    pub alerts: AlertsSpec,
    /// What deletion does.
    pub deletion_policy: DeletionPolicy,
    /// Load tests.
    pub load_tests: Vec<LoadTestSpec>,
    /// Where metrics scrapes come from, when NetworkPolicies are built.
    pub monitoring_namespace: Option<String>,
    /// Kafka's SASL and TLS, which the pods get through the connection Secret.
    pub kafka_security: Option<KafkaSecurity>,
    /// With the operator's default database: its CA as PEM text, which the writer gets
    /// through the connection Secret instead of the URL's `sslrootcert` file.
    pub database_ca_pem: Option<String>,
}
impl Plan {
    /// The campaign as clients name it in URLs: the object's name (validated as an id).
    pub fn public_id(&self) -> CampaignId {
        CampaignId::parse(&self.name).expect("validate checked the name")
    }
}

/// Label naming the campaign on everything the operator makes for it.
pub(crate) const CAMPAIGN_LABEL: &str = "stampede.dev/campaign";

/// Labels every child carries; the selector uses the stable subset.
pub(crate) fn labels(plan: &Plan, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "stampede".into()),
        ("app.kubernetes.io/instance".into(), plan.name.clone()),
        ("app.kubernetes.io/component".into(), component.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "stampede-operator".into(),
        ),
        (CAMPAIGN_LABEL.into(), plan.name.clone()),
    ])
}
