//! Whether the writer's consumer is still a member of its group. librdkafka's statistics
//! (every [`STATS_EVERY_MS`]) say where its group handler stands; a consumer that has not
//! been a settled member for the stall limit ends its session, and the writer builds a new
//! one. Why: after a broker restart with offset commits waiting for the group coordinator,
//! librdkafka 2.12's consumer can stay in `query-coord` for good, consuming nothing, while
//! a new consumer joins at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// librdkafka's `statistics.interval.ms` for the writer's consumer.
pub(super) const STATS_EVERY_MS: &str = "5000";
/// The longest stall limit: while rebuilt consumers never settle (the broker still away),
/// the limit doubles per rebuild up to this.
pub(super) const MAX_STALL: Duration = Duration::from_secs(120);
/// How often the watch looks at the last statistics.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The part of librdkafka's statistics the health check reads.
#[derive(Deserialize)]
struct Stats {
    cgrp: Option<GroupStats>,
}

/// The consumer group handler's state (librdkafka's STATISTICS.md, `cgrp`).
#[derive(Deserialize)]
struct GroupStats {
    state: String,
    join_state: String,
}

/// Where the consumer's group membership stood at the last statistics.
#[derive(Debug)]
pub(super) struct GroupHealth {
    state: Mutex<Seen>,
}

#[derive(Debug)]
struct Seen {
    /// When it was last seen settled (or built, before any statistics).
    settled_at: Instant,
    /// Whether the last statistics saw it settled (`true` before any).
    settled_now: bool,
    /// Whether it was ever seen settled.
    ever_settled: bool,
    /// The last unsettled state seen, for the log.
    last: String,
}

impl GroupHealth {
    /// A consumer built now.
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(Seen {
                settled_at: Instant::now(),
                settled_now: true,
                ever_settled: false,
                last: String::new(),
            }),
        }
    }

    /// Reads one statistics report (JSON); a report without a group handler is ignored.
    pub(super) fn record_stats(&self, raw: &[u8]) {
        match serde_json::from_slice::<Stats>(raw) {
            Ok(Stats { cgrp: Some(g) }) => self.record(&g.state, &g.join_state, Instant::now()),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "unreadable kafka statistics"),
        }
    }

    fn record(&self, state: &str, join_state: &str, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.settled_now = settled(state, join_state);
        if s.settled_now {
            s.settled_at = now;
            s.ever_settled = true;
        } else {
            s.last = format!("{state}/{join_state}");
        }
    }

    /// How long it has been unsettled, when the last statistics saw it so: `None` when they
    /// saw it settled, or none came (a consumer that is not polled reports nothing).
    fn stalled_for(&self, now: Instant) -> Option<(Duration, String)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (!s.settled_now).then(|| (now.saturating_duration_since(s.settled_at), s.last.clone()))
    }

    /// Whether the consumer was ever a settled member.
    pub(super) fn ever_settled(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ever_settled
    }

    /// Cancels `session` and returns true once the consumer has been unsettled for `limit`;
    /// returns false when `session` ends first.
    pub(super) async fn watch(&self, limit: Duration, session: CancellationToken) -> bool {
        loop {
            tokio::select! {
                _ = session.cancelled() => return false,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            if let Some((stalled, state)) = self.stalled_for(Instant::now())
                && stalled >= limit
            {
                tracing::warn!(
                    ?stalled,
                    state,
                    "kafka consumer has not been a member of its group for too long; building a new one"
                );
                session.cancel();
                return true;
            }
        }
    }
}

/// A member that has joined its group (`up`), with its assignment in place (`steady`), or
/// with nothing to join yet (`init`: a subscription that matches no topic).
fn settled(state: &str, join_state: &str) -> bool {
    state == "up" && matches!(join_state, "steady" | "init")
}

/// The stall limit after a session that stalled: the configured one again if its consumer
/// had settled, else twice the last, up to [`MAX_STALL`].
pub(super) fn next_limit(configured: Duration, last: Duration, had_settled: bool) -> Duration {
    if had_settled {
        configured
    } else {
        (last * 2).min(MAX_STALL.max(configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_settled_member_is_never_stalled() {
        let h = GroupHealth::new();
        let t0 = Instant::now();
        assert!(h.stalled_for(t0 + 100 * S).is_none(), "no statistics yet");
        h.record("up", "steady", t0);
        assert!(h.stalled_for(t0 + 100 * S).is_none());
        assert!(h.ever_settled());
    }

    #[test]
    fn stalled_counts_from_the_last_settled_report() {
        let h = GroupHealth::new();
        let t0 = Instant::now();
        h.record("up", "steady", t0);
        h.record("query-coord", "init", t0 + 10 * S);
        h.record("query-coord", "init", t0 + 20 * S);
        let (d, state) = h.stalled_for(t0 + 30 * S).unwrap();
        assert_eq!(d, 30 * S);
        assert_eq!(state, "query-coord/init");
        h.record("up", "steady", t0 + 31 * S);
        assert!(h.stalled_for(t0 + 40 * S).is_none(), "settled again");
    }

    #[test]
    fn joining_is_not_settled_and_an_idle_subscription_is() {
        assert!(!settled("up", "wait-join"));
        assert!(!settled("up", "wait-sync"));
        assert!(!settled("wait-coord", "steady"));
        assert!(settled("up", "init"));
    }

    #[test]
    fn reads_the_group_handler_out_of_librdkafkas_statistics() {
        let h = GroupHealth::new();
        let raw = br#"{"name":"rdkafka#consumer-1","ts":1,"brokers":{"x":{"state":"UP"}},
            "cgrp":{"state":"query-coord","stateage":12,"join_state":"init","rebalance_cnt":0}}"#;
        h.record_stats(raw);
        assert!(h.stalled_for(Instant::now()).is_some());
        h.record_stats(br#"{"name":"p","cgrp":null}"#);
        h.record_stats(b"not json");
        assert!(
            h.stalled_for(Instant::now()).is_some(),
            "nothing settled it"
        );
        assert!(!h.ever_settled());
    }

    #[test]
    fn the_limit_doubles_while_rebuilt_consumers_never_settle() {
        let c = 60 * S;
        assert_eq!(next_limit(c, c, false), 120 * S);
        assert_eq!(next_limit(c, 90 * S, false), MAX_STALL);
        assert_eq!(next_limit(c, 240 * S, true), c);
    }

    #[tokio::test]
    async fn the_watch_ends_the_session_once_the_limit_passes() {
        let h = GroupHealth::new();
        h.record("up", "steady", Instant::now());
        h.record("query-coord", "init", Instant::now());
        let session = CancellationToken::new();
        assert!(h.watch(Duration::ZERO, session.clone()).await);
        assert!(session.is_cancelled());
        let other = CancellationToken::new();
        other.cancel();
        assert!(
            !h.watch(Duration::ZERO, other).await,
            "a session that ended"
        );
    }
}
