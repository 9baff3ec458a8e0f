//! Which outbox entry shapes a campaign's issuers may write. A relay names itself in the
//! outbox's consumer group with the newest format it reads (`<name>@2`; a relay from before
//! formats were named reads only format 1, the entry per coupon). Every relay records, in the
//! campaign's meta, the lowest format among the group's live consumers; issuers write batch
//! entries (format 2) only once it is 2. So a rolling upgrade turns batch entries on by
//! itself once the last older relay has stopped reading, and an older relay that starts
//! reading again turns them off within a second of its first read.

use std::sync::LazyLock;
use std::time::Duration;

use redis::streams::StreamInfoConsumersReply;

use super::outbox::{GROUP, Outbox};
use crate::Error;
use crate::batches::{Batches, format_of, named};
use crate::ids::CampaignId;
use crate::keys::CampaignKeys;

/// The newest outbox format this release's relays read: 1 is one entry per coupon (and the
/// two-field Kafka message shape), 2 adds the batch entry of one issue script call.
pub const FORMAT: u32 = 2;

/// The campaign meta field holding the lowest format its live relays read.
pub const FIELD: &str = "outbox_format";

/// A consumer that has not read for this long no longer counts as a live relay: far past the
/// relays' longest pause between reads (a lane backing off waits at most 32 s).
pub const LIVE: Duration = Duration::from_secs(120);

impl Batches {
    /// The issue script's ARGV[4].
    pub(super) fn script_arg(self) -> &'static str {
        match self {
            Self::Auto => "",
            Self::Always => "1",
            Self::Never => "0",
        }
    }
}

/// How a relay of this release called `name` appears in the outbox groups.
pub fn consumer_name(name: &str) -> String {
    named(name, FORMAT)
}

/// The lowest format among the consumers (name, idle) idle less than `live`; `None` when
/// none is live (nothing is known, so nothing changes).
pub fn lowest_live<'a>(
    consumers: impl IntoIterator<Item = (&'a str, Duration)>,
    live: Duration,
) -> Option<u32> {
    consumers
        .into_iter()
        .filter(|(_, idle)| *idle < live)
        .map(|(name, _)| format_of(name))
        .min()
}

/// The recording script (`lua/outbox_format.lua`).
static RECORD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/outbox_format.lua")));

impl Outbox {
    /// Records in `campaign`'s meta the lowest format its live relays (read within `live`)
    /// read; returns (before, now) when that changed it. A campaign without live relays, or
    /// without meta (deleted), is left as it is.
    pub async fn settle_format(
        &mut self,
        campaign: &CampaignId,
        live: Duration,
    ) -> Result<Option<(u32, u32)>, Error> {
        let keys = CampaignKeys::new(campaign);
        let reply: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&keys.outbox)
            .arg(GROUP)
            .query_async(self.conn())
            .await?;
        let consumers = reply
            .consumers
            .iter()
            .map(|c| (c.name.as_str(), Duration::from_millis(c.idle as u64)));
        let Some(lowest) = lowest_live(consumers, live) else {
            return Ok(None);
        };
        let was: u32 = RECORD
            .key(&keys.meta)
            .arg(lowest)
            .invoke_async(self.conn())
            .await?;
        Ok((was != 0 && was != lowest).then_some((was, lowest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_relay_of_this_release_names_its_format() {
        assert_eq!(format_of(&consumer_name("host-serve")), FORMAT);
    }

    #[test]
    fn the_oldest_live_relay_decides_and_the_long_gone_do_not() {
        let live = S(120);
        let new = consumer_name("new");
        assert_eq!(lowest_live([(new.as_str(), S(1))], live), Some(FORMAT));
        assert_eq!(
            lowest_live([(new.as_str(), S(1)), ("old", S(119))], live),
            Some(1)
        );
        assert_eq!(
            lowest_live([(new.as_str(), S(1)), ("old", S(121))], live),
            Some(FORMAT)
        );
        assert_eq!(lowest_live([("old", S(500))], live), None);
        assert_eq!(lowest_live([], live), None);
    }
}
