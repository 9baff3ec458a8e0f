//! The seam between reconcile and the services a campaign runs on: Redis (stock), Kafka
//! (topics) and PostgreSQL (persisted rows), behind [`Backends`]. The real implementation
//! (`real.rs`) talks to them through the service library; unit tests use the in-memory
//! fake (`fake.rs`). Where a campaign's services are is read from its Secrets
//! (`secrets.rs`).

#[cfg(test)]
pub(crate) mod fake;
mod real;
mod secrets;

use std::sync::Arc;

use futures::future::BoxFuture;
use stampede_core::Error as Backend;
use stampede_core::campaign::{AdminAction, CampaignSnapshot, ProvisionOutcome, Window};
use stampede_core::ids::CampaignId;
use stampede_core::kafka::TopicsOutcome;
use stampede_core::waiting_room::WaitingRoomConfig;

use crate::Error;

pub(crate) use real::RealBackends;
pub(crate) use secrets::{Connections, connections};

/// Redis, Kafka and PostgreSQL, each at an address a campaign names.
pub(crate) trait Backends: Send + Sync {
    /// The campaign store of the Redis at `url` (connected lazily, kept per address).
    fn stock(&self, url: &str) -> Result<Arc<dyn Stock>, Error>;

    /// Creates or grows `stampede.<campaign>` and its dead-letter topic.
    fn ensure_topics<'a>(
        &'a self,
        brokers: &'a str,
        campaign: &'a str,
        partitions: i32,
        replication_factor: i32,
    ) -> BoxFuture<'a, Result<TopicsOutcome, Backend>>;

    /// Deletes the campaign's topics.
    fn delete_topics<'a>(
        &'a self,
        brokers: &'a str,
        campaign: &'a str,
    ) -> BoxFuture<'a, Result<(), Backend>>;

    /// Rows of `campaign` in the PostgreSQL at `url`; `None` when it cannot be read
    /// (status then leaves `persisted` out rather than failing the reconcile).
    fn persisted<'a>(&'a self, url: &'a str, campaign: &'a str) -> BoxFuture<'a, Option<i64>>;

    /// Whether the PostgreSQL at `url` holds a row of `campaign` issued before `before_ms`
    /// (a campaign of that id deleted before); `None` when it cannot be read.
    fn rows_before<'a>(
        &'a self,
        url: &'a str,
        campaign: &'a str,
        before_ms: i64,
    ) -> BoxFuture<'a, Option<bool>>;
}

/// What a campaign is provisioned as, beyond its stock and window (default: not gated,
/// unsharded, no room).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape<'a> {
    /// Created closed by the load-test gate.
    pub gated: bool,
    /// Stock buckets (1: unsharded).
    pub shards: u32,
    /// The waiting room (`None`: none, or the one it had turned off).
    pub room: Option<&'a WaitingRoomConfig>,
}

impl Default for Shape<'_> {
    fn default() -> Self {
        Self {
            gated: false,
            shards: 1,
            room: None,
        }
    }
}

/// The campaign operations of one Redis (the core's `Store`).
pub(crate) trait Stock: Send + Sync {
    /// Creates a campaign of `shape.shards` buckets or brings it up to `stock` and `window`
    /// (never shrinking). One this call creates is closed by the gate (`shape.gated`) and
    /// has its waiting room in the creating call, so nothing is issued before either holds;
    /// an existing one gets the room set, or turned off when `shape.room` is `None`.
    fn ensure_campaign<'a>(
        &'a self,
        campaign: &'a CampaignId,
        stock: u64,
        window: Option<Window>,
        shape: Shape<'a>,
    ) -> BoxFuture<'a, Result<ProvisionOutcome, Backend>>;

    /// The campaign's counters and flags, `None` when it does not exist.
    fn snapshot<'a>(
        &'a self,
        campaign: &'a CampaignId,
    ) -> BoxFuture<'a, Result<Option<CampaignSnapshot>, Backend>>;

    /// Pause, resume, close or reopen (by hand), or the gate's close and open.
    fn admin<'a>(
        &'a self,
        campaign: &'a CampaignId,
        action: AdminAction,
    ) -> BoxFuture<'a, Result<u64, Backend>>;

    /// Removes every key of the campaign; returns how many.
    fn forget<'a>(&'a self, campaign: &'a CampaignId) -> BoxFuture<'a, Result<u64, Backend>>;
}
