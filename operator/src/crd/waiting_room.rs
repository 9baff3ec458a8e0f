//! `spec.waitingRoom`: the admission queue in front of the issue endpoint (docs/waiting-room.md).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// A waiting room: joiners get a place in line, at most `maxActive` of them hold an
/// admission at once, admitted at `admitPerSecond`, and never more undecided admissions than
/// stock remains. Only for campaigns of one shard.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomSpec {
    /// Whether issuing needs an admission; false keeps the settings and lets everyone in.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At most this many admitted users at once.
    #[serde(default = "default_max_active")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_active: i32,
    /// Admissions per second.
    #[serde(default = "default_admit_per_second")]
    #[schemars(range(min = 1, max = 100_000))]
    pub admit_per_second: i32,
    /// How long an admission lasts unless a coupon ends it first (5s..1h).
    #[serde(default = "default_session_ttl")]
    #[schemars(length(max = 8), regex(pattern = r"^[0-9]{1,5}(s|m|h)$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('5s') && duration(self) <= duration('1h')").message("waitingRoom.sessionTtl must be between 5s and 1h"))]
    pub session_ttl: String,
    /// How long a place in line lasts without a poll (5s..1h).
    #[serde(default = "default_queue_ttl")]
    #[schemars(length(max = 8), regex(pattern = r"^[0-9]{1,5}(s|m|h)$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('5s') && duration(self) <= duration('1h')").message("waitingRoom.queueTtl must be between 5s and 1h"))]
    pub queue_ttl: String,
    /// Shuffle those who join before `window.opensAt` at the opening (else: arrival order).
    #[serde(default = "yes")]
    pub shuffle_at_open: bool,
    /// The Secret key (at least 32 bytes) the issuers sign queue and admission tokens with;
    /// default: the HS256 secret of `spec.auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,
}

impl Default for WaitingRoomSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_active: default_max_active(),
            admit_per_second: default_admit_per_second(),
            session_ttl: default_session_ttl(),
            queue_ttl: default_queue_ttl(),
            shuffle_at_open: true,
            key_secret_ref: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_active() -> i32 {
    1_000
}

fn default_admit_per_second() -> i32 {
    100
}

fn default_session_ttl() -> String {
    "120s".into()
}

fn default_queue_ttl() -> String {
    "60s".into()
}
