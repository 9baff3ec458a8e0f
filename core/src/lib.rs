//! Stampede's core, shared by the issuance service and the operator: campaign and user ids,
//! campaign and coupon types, the Redis key grammar (both ways), the Redis store with its
//! Lua scripts (split by concern: the issue hot path, admin, audit scans, the relay's outbox
//! reads), the Kafka and PostgreSQL adapters, shutdown signals and the metrics endpoint.
//!
//! Nothing here knows Kubernetes or the service's HTTP API; see `docs/architecture.md` for
//! how the crates fit together.
#![forbid(unsafe_code)]

pub mod batches;
pub mod campaign;
pub mod clock;
pub mod coupon;
pub mod db;
pub mod endpoint;
mod error;
pub mod ids;
pub mod issuance;
pub mod kafka;
pub mod kafka_security;
pub mod keys;
pub mod mac;
pub mod message;
pub mod metrics;
pub mod shutdown;
pub mod store;
pub mod waiting_room;

pub use error::Error;
