//! Waiting rooms (issue #16): a campaign's settings for its line, bounded and stock-aware
//! admission, and the signed tokens a user carries through it ([`token`]). The line itself
//! lives in Redis (`store::waiting_room`, `store/lua/queue.lua`); see docs/waiting-room.md.

pub mod token;

use std::time::Duration;

use serde::Serialize;

use crate::Error;

/// The bounds of `maxActive`.
pub const MAX_ACTIVE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// The bounds of `admitPerSecond`.
pub const ADMIT_PER_SECOND: std::ops::RangeInclusive<u32> = 1..=100_000;
/// The shortest `sessionTtl` and `queueTtl`: shorter ones lapse users between two polls.
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// The longest `sessionTtl` and `queueTtl`.
pub const MAX_TTL: Duration = Duration::from_secs(3_600);
/// Scores of places taken before the opening are below this; later arrivals score it plus
/// their ticket, after all of them (exactly representable in a double, as Redis keeps
/// scores, with room for a billion tickets).
pub const PRE_OPEN_SCORES: u64 = 1 << 50;
const _: () = assert!(PRE_OPEN_SCORES + 1_000_000_000 < 1 << 53);

/// One campaign's waiting room, as stored beside its meta and set by the admin CLI (and,
/// later, the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomConfig {
    /// Whether issuing needs an admission; off keeps the settings but lets everyone in.
    pub enabled: bool,
    /// At most this many admitted users at once.
    pub max_active: u32,
    /// Admissions per second (a token bucket holding one second's worth).
    pub admit_per_second: u32,
    /// How long an admission lasts if no coupon ends it first.
    #[serde(serialize_with = "secs")]
    pub session_ttl: Duration,
    /// How long a place in line lasts without a poll.
    #[serde(serialize_with = "secs")]
    pub queue_ttl: Duration,
    /// Whether those who join before the opening are shuffled (else: arrival order).
    pub shuffle_at_open: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

impl Default for WaitingRoomConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_active: 1_000,
            admit_per_second: 100,
            session_ttl: Duration::from_secs(120),
            queue_ttl: Duration::from_secs(60),
            shuffle_at_open: true,
        }
    }
}

impl WaitingRoomConfig {
    /// Checks every bound, naming the field (and its admin CLI flag) that is out of it.
    pub fn validate(&self) -> Result<(), Error> {
        let out = |field: &str, flag: &str, got: String, range: String| {
            Err(Error::InvalidInput(format!(
                "waiting room {field} ({flag}) must be within {range}, got {got}"
            )))
        };
        if !MAX_ACTIVE.contains(&self.max_active) {
            let (lo, hi) = (MAX_ACTIVE.start(), MAX_ACTIVE.end());
            let got = self.max_active.to_string();
            return out("maxActive", "--max-active", got, format!("{lo}..={hi}"));
        }
        if !ADMIT_PER_SECOND.contains(&self.admit_per_second) {
            let (lo, hi) = (ADMIT_PER_SECOND.start(), ADMIT_PER_SECOND.end());
            let got = self.admit_per_second.to_string();
            return out(
                "admitPerSecond",
                "--admit-per-second",
                got,
                format!("{lo}..={hi}"),
            );
        }
        let ttl_range = format!("{}s..={}s", MIN_TTL.as_secs(), MAX_TTL.as_secs());
        for (field, flag, ttl) in [
            ("sessionTtl", "--session-ttl", self.session_ttl),
            ("queueTtl", "--queue-ttl", self.queue_ttl),
        ] {
            if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
                return out(field, flag, format!("{ttl:?}"), ttl_range);
            }
        }
        Ok(())
    }
}

/// Parses a TTL as the admin CLI takes it: `120s`, `2m`, `1h`, `1500ms`, or bare seconds.
pub fn parse_ttl(raw: &str) -> Result<Duration, Error> {
    let s = raw.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| Error::InvalidInput(format!("{raw:?} is not a duration like 120s")))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3_600)),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{raw:?}: unit must be ms, s, m or h"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(c: WaitingRoomConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_field() {
        let ok = WaitingRoomConfig::default();
        ok.validate().unwrap();
        let e = refused(WaitingRoomConfig {
            max_active: 0,
            ..ok
        });
        assert!(e.contains("maxActive") && e.contains("--max-active"), "{e}");
        let e = refused(WaitingRoomConfig {
            max_active: 1_000_001,
            ..ok
        });
        assert!(e.contains("maxActive"), "{e}");
        let e = refused(WaitingRoomConfig {
            admit_per_second: 100_001,
            ..ok
        });
        assert!(e.contains("admitPerSecond"), "{e}");
        let e = refused(WaitingRoomConfig {
            session_ttl: Duration::from_secs(4),
            ..ok
        });
        assert!(
            e.contains("sessionTtl") && e.contains("--session-ttl"),
            "{e}"
        );
        let e = refused(WaitingRoomConfig {
            queue_ttl: Duration::from_secs(3_601),
            ..ok
        });
        assert!(e.contains("queueTtl"), "{e}");
        WaitingRoomConfig {
            max_active: 1,
            admit_per_second: 100_000,
            session_ttl: MIN_TTL,
            queue_ttl: MAX_TTL,
            ..ok
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("120s").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_ttl("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3_600));
        assert_eq!(parse_ttl("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_ttl("1500ms").unwrap(), Duration::from_millis(1_500));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5d").is_err());
        assert!(parse_ttl("").is_err());
    }
}
