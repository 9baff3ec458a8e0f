//! Campaign domain types, free of Redis and HTTP.

use serde::Serialize;

use crate::Error;
use crate::clock::{format_ms, parse_rfc3339_ms};

/// The largest stock a campaign may hold: the scripts keep counts as Lua numbers, which
/// turn into text as integers only below 10^14 (above, "1e+14", which Redis refuses as an
/// integer), so a larger stock would fail its restocks and counters.
pub const MAX_STOCK: u64 = 10_000_000_000_000;

/// The sale window in Unix milliseconds; `None` means unbounded on that side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// First instant issuance is allowed.
    pub opens_ms: Option<i64>,
    /// First instant issuance is no longer allowed.
    pub closes_ms: Option<i64>,
}

impl Window {
    /// Builds a window from optional RFC 3339 strings, naming the field that is wrong.
    pub fn from_rfc3339(opens_at: Option<&str>, closes_at: Option<&str>) -> Result<Self, Error> {
        let parse = |field: &str, v: Option<&str>| {
            v.map(|s| {
                parse_rfc3339_ms(s).map_err(|e| {
                    Error::InvalidInput(format!("{field} {s:?} is not an RFC 3339 timestamp: {e}"))
                })
            })
            .transpose()
        };
        let w = Self {
            opens_ms: parse("opensAt", opens_at)?,
            closes_ms: parse("closesAt", closes_at)?,
        };
        w.validate()?;
        Ok(w)
    }

    /// Rejects a window that closes before (or when) it opens.
    pub fn validate(&self) -> Result<(), Error> {
        if let (Some(o), Some(c)) = (self.opens_ms, self.closes_ms)
            && c <= o
        {
            return Err(Error::InvalidInput(format!(
                "closesAt ({}) must be after opensAt ({})",
                format_ms(c),
                format_ms(o)
            )));
        }
        Ok(())
    }

    /// Reads the window from the stored "0 means unbounded" form.
    pub fn from_stored(opens_ms: i64, closes_ms: i64) -> Self {
        let some = |v: i64| (v > 0).then_some(v);
        Self {
            opens_ms: some(opens_ms),
            closes_ms: some(closes_ms),
        }
    }
}

/// Where a campaign stands right now, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Before `opensAt`.
    Scheduled,
    /// Issuing.
    Open,
    /// Held because Redis may have lost acknowledged writes (it restarted or failed over);
    /// nothing new is issued until an admin audits and unsuspends it.
    Suspended,
    /// Held by an operator; nothing is issued.
    Paused,
    /// Every coupon is issued.
    SoldOut,
    /// Past `closesAt`, closed by hand, or held closed by the load-test gate.
    Closed,
}

/// A consistent view of one campaign's stock and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSnapshot {
    /// Stock ever made available.
    pub total: u64,
    /// Coupons issued so far.
    pub issued: u64,
    /// The sale window.
    pub window: Window,
    /// Paused by an operator.
    pub paused: bool,
    /// Closed by hand (`campaign close`); only `campaign reopen` undoes it.
    pub closed: bool,
    /// Closed by the load-test gate until its gated tests pass; only the gate opens it.
    pub gate_closed: bool,
    /// Redis server time when the snapshot was taken.
    pub now_ms: i64,
    /// Issuances not yet relayed out of the outbox stream.
    pub outbox_len: u64,
    /// Set while the campaign is suspended because Redis may have lost acknowledged writes.
    pub suspension: Option<Suspension>,
    /// The highest seq any issuer reported having acknowledged when an epoch change was
    /// noticed (0: no report); kept after an unsuspend, for the audit.
    pub acked_high: u64,
    /// The waiting room's counters, when the campaign has a room turned on.
    pub room: Option<RoomCounts>,
}

/// A waiting room's counters as Redis holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoomCounts {
    /// Users in line.
    pub queued: u64,
    /// Users admitted who have neither issued nor let the admission lapse.
    pub active: u64,
    /// Users admitted since the room opened.
    pub admitted: u64,
}

/// Why and since when a campaign is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspension {
    /// Redis time the suspension began.
    pub since_ms: i64,
    /// The issued counter then: the seqs after it may have been issued twice or lost.
    pub issued_then: u64,
}

impl CampaignSnapshot {
    /// Stock still available.
    pub fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.issued)
    }

    /// The public JSON view, shared by the API and the admin CLI.
    pub fn view(&self, campaign: &str) -> serde_json::Value {
        let mut view = serde_json::json!({
            "campaign": campaign,
            "state": self.state(),
            "stock": { "total": self.total, "remaining": self.remaining(), "issued": self.issued },
            "window": {
                "opensAt": self.window.opens_ms.map(format_ms),
                "closesAt": self.window.closes_ms.map(format_ms),
            },
            "closedBy": { "manual": self.closed, "gate": self.gate_closed },
            "suspended": self.suspension.map(|s| serde_json::json!({
                "since": format_ms(s.since_ms),
                "issuedThen": s.issued_then,
                "ackedHigh": self.acked_high,
            })),
        });
        if let Some(room) = self.room {
            view["waitingRoom"] = serde_json::json!(room);
        }
        view
    }

    /// The state, in the same order of precedence the issue script applies.
    pub fn state(&self) -> CampaignState {
        if self.suspension.is_some() {
            CampaignState::Suspended
        } else if self.paused {
            CampaignState::Paused
        } else if self.window.opens_ms.is_some_and(|o| self.now_ms < o) {
            CampaignState::Scheduled
        } else if self.closed
            || self.gate_closed
            || self.window.closes_ms.is_some_and(|c| self.now_ms >= c)
        {
            CampaignState::Closed
        } else if self.issued >= self.total {
            CampaignState::SoldOut
        } else {
            CampaignState::Open
        }
    }
}

/// What provisioning did to a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProvisionOutcome {
    /// The campaign did not exist and was created.
    Created {
        /// Its stock.
        total: u64,
    },
    /// It existed; stock grew by the difference.
    Restocked {
        /// Stock before.
        before: u64,
        /// Stock after.
        after: u64,
        /// Whether the window was changed too.
        window_changed: bool,
    },
    /// Only the window changed.
    WindowUpdated {
        /// Stock (unchanged).
        total: u64,
    },
    /// It already matched; nothing was written.
    Unchanged {
        /// Stock (unchanged).
        total: u64,
    },
}

/// A one-field admin change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Add stock.
    Restock(u64),
    /// Stop issuing until resumed.
    Pause,
    /// Undo a pause.
    Resume,
    /// Stop issuing for good (until reopened).
    Close,
    /// Undo a close.
    Reopen,
    /// The load-test gate holds the campaign closed (its own flag, not the manual one).
    GateClose,
    /// The load-test gate lets go; a manual close stays.
    GateOpen,
    /// Lift a suspension after Redis lost writes, once the audit is understood.
    Unsuspend,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(total: u64, issued: u64) -> CampaignSnapshot {
        CampaignSnapshot {
            total,
            issued,
            window: Window::default(),
            paused: false,
            closed: false,
            gate_closed: false,
            suspension: None,
            acked_high: 0,
            room: None,
            now_ms: 1_000,
            outbox_len: 0,
        }
    }

    #[test]
    fn state_precedence() {
        assert_eq!(snap(10, 3).state(), CampaignState::Open);
        assert_eq!(snap(10, 10).state(), CampaignState::SoldOut);
        let mut s = snap(10, 10);
        s.window.closes_ms = Some(1_000);
        assert_eq!(s.state(), CampaignState::Closed);
        s.window = Window::from_stored(2_000, 0);
        assert_eq!(s.state(), CampaignState::Scheduled);
        s.paused = true;
        assert_eq!(s.state(), CampaignState::Paused);
        s.suspension = Some(Suspension {
            since_ms: 500,
            issued_then: 10,
        });
        assert_eq!(s.state(), CampaignState::Suspended, "above a pause");
        assert_eq!(s.view("c")["suspended"]["issuedThen"], 10);
        assert_eq!(snap(10, 12).remaining(), 0);
        assert!(snap(10, 1).view("c")["suspended"].is_null());
    }

    #[test]
    fn closed_by_hand_or_by_the_gate_is_closed_and_says_which() {
        let mut s = snap(10, 0);
        s.gate_closed = true;
        assert_eq!(s.state(), CampaignState::Closed);
        let v = s.view("c");
        assert_eq!(v["state"], "closed");
        assert_eq!(
            v["closedBy"],
            serde_json::json!({"manual": false, "gate": true})
        );
        s.closed = true;
        s.gate_closed = false;
        assert_eq!(s.state(), CampaignState::Closed);
        assert_eq!(s.view("c")["closedBy"]["manual"], true);
        // Before the window opens it is scheduled, gate or not.
        s.closed = false;
        s.gate_closed = true;
        s.window = Window::from_stored(2_000, 0);
        assert_eq!(s.state(), CampaignState::Scheduled);
    }

    #[test]
    fn window_validation_names_the_field() {
        let e = Window::from_rfc3339(Some("nope"), None).unwrap_err();
        assert!(e.to_string().contains("opensAt"), "{e}");
        let e = Window::from_rfc3339(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z"))
            .unwrap_err();
        assert!(e.to_string().contains("closesAt"), "{e}");
        let w = Window::from_rfc3339(
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T00:00:01+00:00"),
        )
        .unwrap();
        assert_eq!(w.closes_ms.unwrap() - w.opens_ms.unwrap(), 1_000);
    }
}
