//! Redis key names, both ways: a campaign's keys from its id, and the campaign a key
//! belongs to. Every key of a campaign shares the hash tag `{stampede:<c>}` so one script
//! may touch them all, on a single node or a cluster.

use crate::ids::CampaignId;

/// The set of every campaign id ever provisioned (lets the relay find outbox streams).
pub const REGISTRY: &str = "stampede:campaigns";

/// Which Redis took the writes so far: `<run id>/<replication id>` (see `store::epoch`).
pub const EPOCH: &str = "stampede:epoch";

/// The set of campaigns suspended because Redis may have lost acknowledged writes.
pub const SUSPENDED: &str = "stampede:suspended";

/// The keys of one campaign.
#[derive(Debug, Clone)]
pub struct CampaignKeys {
    /// Hash: total, issued (the last seq), opens_ms, closes_ms, paused, closed, created_ms.
    pub meta: String,
    /// Hash: user id → "seq:issuedMs:code".
    pub holders: String,
    /// Stream: one entry per issuance, drained to Kafka by the relay.
    pub outbox: String,
    /// String: on a Redis Cluster, `<run id>/<replication id>` of the primary that took
    /// this campaign's writes so far (`store::epoch`; a single Redis has one [`EPOCH`]).
    pub epoch: String,
    /// Counter: on a Redis Cluster, the replica fence's write in this campaign's slot
    /// (`store::fence`).
    pub fence: String,
    /// Hash: a bucket's stock transfers, transfer id → `out|in:<peer>:<ranges>`
    /// (`store::shards`).
    pub ledger: String,
    /// The waiting room's keys (`store::waiting_room`); each carries a TTL.
    pub wr: WaitingRoomKeys,
}

/// The keys of one campaign's waiting room, `{stampede:<c>}:wr:*`. Every one carries a TTL
/// refreshed by each join and poll, and users leave them when they lapse or are served.
#[derive(Debug, Clone)]
pub struct WaitingRoomKeys {
    /// Sorted set: the line, user → score (a random number below 2^50 for those who came
    /// before the opening, 2^50 + their arrival ticket after it).
    pub line: String,
    /// Sorted set: user in line → when they last polled (ms), for the queue TTL.
    pub seen: String,
    /// Sorted set: admitted user → when the admission lapses (ms).
    pub active: String,
    /// Hash: user → `score:tokenExpiresMs`, what their queue token carries.
    pub entry: String,
    /// Hash: the arrival ticket counter and the admission token bucket.
    pub state: String,
}

/// The key suffixes of a campaign, for [`CampaignKeys::campaign_of`].
const SUFFIXES: [&str; 11] = [
    "meta",
    "holders",
    "outbox",
    "epoch",
    "fence",
    "ledger",
    "wr:line",
    "wr:seen",
    "wr:active",
    "wr:entry",
    "wr:state",
];

impl CampaignKeys {
    /// Names the keys of `campaign`.
    pub fn new(campaign: &CampaignId) -> Self {
        let tag = format!("{{stampede:{campaign}}}");
        Self {
            meta: format!("{tag}:meta"),
            holders: format!("{tag}:holders"),
            outbox: format!("{tag}:outbox"),
            epoch: format!("{tag}:epoch"),
            fence: format!("{tag}:fence"),
            ledger: format!("{tag}:ledger"),
            wr: WaitingRoomKeys {
                line: format!("{tag}:wr:line"),
                seen: format!("{tag}:wr:seen"),
                active: format!("{tag}:wr:active"),
                entry: format!("{tag}:wr:entry"),
                state: format!("{tag}:wr:state"),
            },
        }
    }

    /// Every key, for removing them all.
    pub fn all(&self) -> [&str; 11] {
        [
            &self.meta,
            &self.holders,
            &self.outbox,
            &self.epoch,
            &self.fence,
            &self.ledger,
            &self.wr.line,
            &self.wr.seen,
            &self.wr.active,
            &self.wr.entry,
            &self.wr.state,
        ]
    }

    /// The campaign whose key `key` is (any of its keys), or `None` for a foreign key.
    pub fn campaign_of(key: &str) -> Option<&str> {
        let rest = key.strip_prefix("{stampede:")?;
        let (campaign, suffix) = rest.split_once("}:")?;
        SUFFIXES.contains(&suffix).then_some(campaign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = CampaignKeys::new(&CampaignId::parse("spring.sale-1").unwrap());
        for key in k.all() {
            assert!(key.starts_with("{stampede:spring.sale-1}:"), "{key}");
            assert_eq!(CampaignKeys::campaign_of(key), Some("spring.sale-1"));
        }
    }

    #[test]
    fn foreign_keys_belong_to_no_campaign() {
        for key in [
            REGISTRY,
            "{stampede:c}:other",
            "stampede:c:outbox",
            "{other:c}:meta",
        ] {
            assert_eq!(CampaignKeys::campaign_of(key), None, "{key}");
        }
    }
}
