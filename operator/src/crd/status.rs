//! The `CouponCampaign` status: phase, conditions, stock, topic and load-test runs.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConditionStatus, ConditionType};

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
    /// The campaign's id in Redis, Kafka and PostgreSQL (`<namespace>.<name>`; the bare
    /// name for a campaign created before ids carried the namespace), for
    /// `stampede-service campaign … --id` and `audit --campaign`. Kept once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Conditions by type: Ready, RedisProvisioned, KafkaProvisioned, WorkloadsReady,
    /// AlertsConfigured, and LoadTestsPassed when the spec has load tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Stock counters (issued from Redis, persisted from PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockStatus>,
    /// The waiting room's counters (Redis), with `spec.waitingRoom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomStatus>,
    /// What holds the campaign closed in Redis, besides its window: `Manual` (closed by
    /// hand with `stampede-service campaign close`; only `campaign reopen` undoes it, never
    /// the operator) and `Gate` (gated load tests have not passed). Empty when neither.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_by: Vec<ClosedBy>,
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
    /// Why, for anything but Passed; while unfinished, what holds a runner up (no node
    /// has room, an image that cannot be pulled).
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
    /// Redis restarted or failed over and may have lost acknowledged coupons; nothing new
    /// is issued until an admin audits it and runs `campaign unsuspend`.
    Suspended,
    /// Every coupon is issued.
    SoldOut,
    /// Past `closesAt` or closed.
    Closed,
    /// The spec cannot be carried out; waits for a change.
    Failed,
}

/// Who closed a campaign: two separate flags in Redis, each undone only by its owner.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    /// Closed by hand (`stampede-service campaign close`).
    Manual,
    /// Held closed by the load-test gate.
    Gate,
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

/// The waiting room as Redis last showed it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomStatus {
    /// Users in line.
    pub queued: i64,
    /// Users admitted who have neither issued nor let the admission lapse.
    pub active: i64,
    /// Users admitted since the room opened.
    pub admitted: i64,
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

impl CouponCampaignStatus {
    /// The condition of this type, if the status has one.
    pub fn condition(&self, t: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == t.as_str())
    }

    /// Whether the condition of this type has this status.
    pub fn is(&self, t: ConditionType, status: ConditionStatus) -> bool {
        self.condition(t)
            .is_some_and(|c| c.status == status.as_str())
    }
}
