//! The relay's side of the outbox streams: a consumer group per campaign stream, reads of
//! new or own pending entries, take-over of a dead relay's entries, and removal once Kafka
//! acknowledged them. It holds connections of its own: XREADGROUP blocks the one it runs on.
//! On a Redis Cluster a read may not span slots: each campaign's stream is read on its own,
//! side by side, without blocking (a blocked read would hold up the others on its node).

use std::time::Duration;

use futures::future::try_join_all;
use redis::Value;
use redis::streams::{StreamInfoGroupsReply, StreamReadOptions};

use super::conn::{Patience, RedisConn, RedisTarget};
use super::read_reply;
use crate::Error;
use crate::ids::CampaignId;
use crate::keys::{CampaignKeys, REGISTRY};

/// The consumer group every relay joins.
pub const GROUP: &str = "relay";

/// Whether `e` is Redis saying a stream or its consumer group does not exist (NOGROUP): the
/// campaign was deleted (or re-created) under the relay. A read over several streams fails
/// whole with it, whichever stream is gone.
pub fn is_missing_group(e: &Error) -> bool {
    matches!(e, Error::Redis(r) if r.code() == Some("NOGROUP"))
}

/// Entries read from one campaign's outbox.
#[derive(Debug, PartialEq, Eq)]
pub struct OutboxBatch {
    /// The campaign.
    pub campaign: String,
    /// Its entries, oldest first.
    pub entries: Vec<OutboxEntry>,
}

/// One stream entry, its fields as Redis sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The entry id (`ms-seq`).
    pub id: String,
    /// Field-value pairs in the order written; none for an entry deleted while pending.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a read starts in one campaign's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Entries never delivered to any relay (`>`).
    New,
    /// This consumer's own pending entries (`0`): after a start or a failed delivery.
    OwnPending,
}

/// The relay's connections to the outbox streams; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    /// Reads (may block up to `block`).
    read: RedisConn,
    /// Acknowledgements, from delivery tasks, never behind a blocked read.
    ack: RedisConn,
    /// Whether Redis is a cluster.
    cluster: bool,
}

/// How long connecting and a reply may take (a blocked read's reply included).
const PATIENCE: Duration = Duration::from_secs(10);

impl Outbox {
    /// Connects both connections.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let target = RedisTarget::parse(url)?;
        Ok(Self {
            read: target.connect(Patience::both(PATIENCE)).await?,
            ack: target.connect(Patience::both(PATIENCE)).await?,
            cluster: target.is_cluster(),
        })
    }

    /// The connection reads and other relay bookkeeping run on.
    pub(super) fn conn(&mut self) -> &mut RedisConn {
        &mut self.read
    }

    /// Every campaign id in the registry.
    pub async fn campaigns(&mut self) -> Result<Vec<String>, Error> {
        Ok(redis::cmd("SMEMBERS")
            .arg(REGISTRY)
            .query_async(&mut self.read)
            .await?)
    }

    /// Creates the relays' consumer group on `campaign`'s stream (and the stream) unless
    /// it exists.
    pub async fn join(&mut self, campaign: &CampaignId) -> Result<(), Error> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(CampaignKeys::new(campaign).outbox)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.read)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Whether `campaign`'s stream exists and has the relays' group.
    pub async fn has_group(&mut self, campaign: &CampaignId) -> Result<bool, Error> {
        let key = CampaignKeys::new(campaign).outbox;
        // XINFO on a missing key is a plain ERR: ask EXISTS first rather than parse it.
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut self.read)
            .await?;
        if !exists {
            return Ok(false);
        }
        let reply: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut self.read)
            .await?;
        Ok(reply.groups.iter().any(|g| g.name == GROUP))
    }

    /// Entries in `campaign`'s stream (not yet acknowledged by Kafka).
    pub async fn backlog(&mut self, campaign: &CampaignId) -> Result<u64, Error> {
        Ok(redis::cmd("XLEN")
            .arg(CampaignKeys::new(campaign).outbox)
            .query_async(&mut self.read)
            .await?)
    }

    /// Reads up to `count` entries per stream for `consumer`, each lane from where it says;
    /// waits up to `block` for new entries when given (on a cluster with several lanes:
    /// reads each at once and, when all come back empty, waits out `block`).
    pub async fn read(
        &mut self,
        consumer: &str,
        lanes: &[(CampaignId, ReadFrom)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<OutboxBatch>, Error> {
        if !self.cluster || lanes.len() <= 1 {
            return read_streams(&mut self.read, consumer, lanes, count, block).await;
        }
        let reads = lanes.chunks(1).map(|lane| {
            let mut conn = self.read.clone();
            async move { read_streams(&mut conn, consumer, lane, count, None).await }
        });
        let batches: Vec<OutboxBatch> = try_join_all(reads).await?.into_iter().flatten().collect();
        if batches.is_empty()
            && let Some(block) = block
        {
            tokio::time::sleep(block).await;
        }
        Ok(batches)
    }

    /// Takes over for `consumer` every entry of `campaign` that another consumer read
    /// and left unacknowledged for at least `idle`.
    pub async fn claim(
        &mut self,
        campaign: &CampaignId,
        consumer: &str,
        idle: Duration,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, Error> {
        let key = CampaignKeys::new(campaign).outbox;
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut self.read)
                .await?;
            let (next, entries) = read_reply::claimed(reply)?;
            claimed.extend(entries);
            if next == "0-0" {
                return Ok(claimed);
            }
            cursor = next;
        }
    }

    /// Acknowledges and deletes delivered entries of `campaign`: one script trims the
    /// stream below its oldest pending entry; only acknowledged entries above that (a newer
    /// delivery that finished first) are deleted one by one.
    pub async fn remove(&mut self, campaign: &str, ids: &[String]) -> Result<(), Error> {
        let Some(highest) = ids.iter().filter_map(|id| parse_id(id)).max() else {
            return Ok(());
        };
        let key = CampaignKeys::new(&CampaignId::parse_stored(campaign)?).outbox;
        let floor: String = REMOVE
            .key(&key)
            .arg(GROUP)
            .arg(format!("{}-{}", highest.0, highest.1))
            .arg(ids)
            .invoke_async(&mut self.ack)
            .await?;
        let floor = parse_id(&floor)
            .ok_or_else(|| Error::Protocol(format!("outbox trim floor {floor:?}")))?;
        let above: Vec<&String> = ids
            .iter()
            .filter(|id| parse_id(id).is_none_or(|i| i >= floor))
            .collect();
        if !above.is_empty() {
            redis::cmd("XDEL")
                .arg(&key)
                .arg(above)
                .query_async::<()>(&mut self.ack)
                .await?;
        }
        Ok(())
    }
}

/// One XREADGROUP over `lanes`' streams (on a cluster: streams of one slot).
async fn read_streams(
    conn: &mut RedisConn,
    consumer: &str,
    lanes: &[(CampaignId, ReadFrom)],
    count: usize,
    block: Option<Duration>,
) -> Result<Vec<OutboxBatch>, Error> {
    let keys: Vec<String> = lanes
        .iter()
        .map(|(c, _)| CampaignKeys::new(c).outbox)
        .collect();
    let ids: Vec<&str> = lanes
        .iter()
        .map(|(_, from)| match from {
            ReadFrom::New => ">",
            ReadFrom::OwnPending => "0",
        })
        .collect();
    let mut opts = StreamReadOptions::default()
        .group(GROUP, consumer)
        .count(count);
    if let Some(block) = block {
        opts = opts.block(block.as_millis() as usize);
    }
    let reply: Value = redis::cmd("XREADGROUP")
        .arg(&opts)
        .arg("STREAMS")
        .arg(&keys)
        .arg(&ids)
        .query_async(conn)
        .await?;
    read_reply::batches(reply)
}

/// The outbox's removal script (`lua/outbox_remove.lua`).
static REMOVE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("lua/outbox_remove.lua")));

/// A stream entry id `ms-seq` as a pair that orders like the stream.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
