//! The waiting-room flags of `campaign create --waiting-room …`, and `campaign
//! waiting-room`, which changes (or turns off) an existing campaign's room.

use clap::Args;
use serde_json::json;

use super::campaign::IdArg;
use super::{RedisArgs, print};
use stampede_core::Error;
use stampede_core::ids::CampaignId;
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::Store;
use stampede_core::waiting_room::{WaitingRoomConfig, parse_ttl};

/// A waiting room's settings; each left out keeps its current value (or the default).
#[derive(Debug, Clone, Args)]
pub struct RoomArgs {
    /// At most this many admitted users at once (1..=1000000; default 1000).
    #[arg(long)]
    pub max_active: Option<u32>,
    /// Admissions per second (1..=100000; default 100).
    #[arg(long)]
    pub admit_per_second: Option<u32>,
    /// How long an admission lasts unless a coupon ends it (5s..=1h; default 120s).
    #[arg(long)]
    pub session_ttl: Option<String>,
    /// How long a place in line lasts without a poll (5s..=1h; default 60s).
    #[arg(long)]
    pub queue_ttl: Option<String>,
    /// Admit those who join before the opening in arrival order instead of shuffled.
    #[arg(long)]
    pub no_shuffle: bool,
}

impl RoomArgs {
    /// Whether any setting was given.
    pub fn any(&self) -> bool {
        self.max_active.is_some()
            || self.admit_per_second.is_some()
            || self.session_ttl.is_some()
            || self.queue_ttl.is_some()
            || self.no_shuffle
    }

    /// `base` with the given settings applied, turned on, and checked (naming the flag).
    pub fn config(&self, base: WaitingRoomConfig) -> Result<WaitingRoomConfig, Error> {
        let ttl = |flag: &str, v: &Option<String>, current| match v {
            Some(raw) => parse_ttl(raw).map_err(|e| Error::InvalidInput(format!("{flag}: {e}"))),
            None => Ok(current),
        };
        let room = WaitingRoomConfig {
            enabled: true,
            max_active: self.max_active.unwrap_or(base.max_active),
            admit_per_second: self.admit_per_second.unwrap_or(base.admit_per_second),
            session_ttl: ttl("--session-ttl", &self.session_ttl, base.session_ttl)?,
            queue_ttl: ttl("--queue-ttl", &self.queue_ttl, base.queue_ttl)?,
            shuffle_at_open: !self.no_shuffle && base.shuffle_at_open,
        };
        room.validate()?;
        Ok(room)
    }
}

/// `campaign waiting-room`: give an existing campaign a waiting room, change it, or turn
/// it off.
#[derive(Debug, Args)]
pub struct WaitingRoomCommand {
    #[command(flatten)]
    id: IdArg,
    #[command(flatten)]
    room: RoomArgs,
    /// Turn the waiting room off (its settings are kept): issuing needs no admission.
    #[arg(long, conflicts_with_all = ["max_active", "admit_per_second", "session_ttl", "queue_ttl", "no_shuffle"])]
    off: bool,
    /// Admit those who join before the opening shuffled again (after --no-shuffle).
    #[arg(long, conflicts_with = "no_shuffle")]
    shuffle: bool,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Runs `campaign waiting-room`.
pub async fn run(cmd: WaitingRoomCommand) -> Result<(), Error> {
    let campaign =
        CampaignId::parse(&cmd.id.id).map_err(|e| Error::InvalidInput(format!("--id: {e}")))?;
    let store = Store::connect(&cmd.redis.store_config(), RedisMetrics::detached()).await?;
    let current = store.waiting_room(&campaign).await?;
    let mut base = current.unwrap_or_default();
    if cmd.shuffle {
        base.shuffle_at_open = true;
    }
    let room = if cmd.off {
        WaitingRoomConfig {
            enabled: false,
            ..base
        }
    } else {
        cmd.room.config(base)?
    };
    store.set_waiting_room(&campaign, &room).await?;
    print(json!({ "campaign": campaign.as_str(), "waitingRoom": room }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RoomArgs {
        RoomArgs {
            max_active: None,
            admit_per_second: None,
            session_ttl: None,
            queue_ttl: None,
            no_shuffle: false,
        }
    }

    #[test]
    fn the_key_comes_from_one_source_and_is_never_printed() {
        use crate::cli::WaitingRoomArgs;
        let dir = std::env::temp_dir().join(format!("wr-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, short) = (dir.join("good"), dir.join("short"));
        std::fs::write(&good, "a-waiting-room-key-of-32-bytes-at-least\n").unwrap();
        std::fs::write(&short, "tiny-secret\n").unwrap();
        let args = |file: Option<&std::path::Path>, key: Option<&str>| WaitingRoomArgs {
            waiting_room_key_file: file.map(Into::into),
            waiting_room_key: key.map(|k| k.parse().unwrap()),
        };
        assert!(args(None, None).key().unwrap().is_none());
        assert!(args(Some(&good), None).key().unwrap().is_some());
        let e = args(Some(&short), None).key().unwrap_err().to_string();
        assert!(
            e.contains("--waiting-room-key-file") && !e.contains("tiny-secret"),
            "{e}"
        );
        let e = args(None, Some("tiny-secret"))
            .key()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("STAMPEDE_WAITING_ROOM_KEY") && !e.contains("tiny"),
            "{e}"
        );
        let both = args(Some(&good), Some("a-waiting-room-key-of-32-bytes-at-least"));
        assert!(both.key().is_err());
        assert!(
            !format!("{both:?}").contains("a-waiting-room-key"),
            "{both:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_override_the_base_and_are_checked_by_name() {
        let base = WaitingRoomConfig::default();
        assert_eq!(args().config(base).unwrap(), base);
        let mut a = args();
        a.session_ttl = Some("30s".into());
        a.no_shuffle = true;
        let room = a.config(base).unwrap();
        assert_eq!(room.session_ttl.as_secs(), 30);
        assert!(!room.shuffle_at_open);
        let mut a = args();
        a.queue_ttl = Some("2s".into());
        let e = a.config(base).unwrap_err().to_string();
        assert!(e.contains("--queue-ttl"), "{e}");
        let mut a = args();
        a.session_ttl = Some("soon".into());
        let e = a.config(base).unwrap_err().to_string();
        assert!(e.contains("--session-ttl"), "{e}");
        let mut a = args();
        a.max_active = Some(0);
        let e = a.config(base).unwrap_err().to_string();
        assert!(e.contains("--max-active"), "{e}");
    }
}
