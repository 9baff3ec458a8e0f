//! Retrying what the writer must not give up on (the database, the dead-letter topic):
//! exponential backoff until shutdown, and a log that says when trouble starts, reminds
//! now and then while it lasts, and says when it is over, instead of a line per attempt.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While failures last, one line at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// One operation being retried.
pub(super) struct Retry {
    what: &'static str,
    backoff: Duration,
    attempts: u64,
    logged: Option<Instant>,
}

impl Retry {
    /// `what` names the operation in the log (`"database write"`).
    pub(super) fn new(what: &'static str) -> Self {
        Self {
            what,
            backoff: FIRST_BACKOFF,
            attempts: 0,
            logged: None,
        }
    }

    /// Records a failed attempt; logs the first one, then one line per [`LOG_EVERY`].
    pub(super) fn failed(&mut self, error: &dyn Display) {
        self.attempts += 1;
        if self.due(Instant::now()) {
            self.logged = Some(Instant::now());
            tracing::warn!(
                error = %error,
                attempts = self.attempts,
                retry_in = ?self.backoff,
                "{} failed; retrying", self.what
            );
        }
    }

    /// Whether a failure now gets a log line.
    fn due(&self, now: Instant) -> bool {
        self.logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
    }

    /// Says so when an operation that had failed went through.
    pub(super) fn succeeded(&self) {
        if self.attempts > 0 {
            tracing::info!(attempts = self.attempts, "{} succeeded again", self.what);
        }
    }

    /// Waits out the backoff (doubling it for next time); false when shutdown came first.
    pub(super) async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(self.backoff) => {}
        }
        self.backoff = grow(self.backoff);
        true
    }
}

/// The backoff after `d`: doubled, up to [`MAX_BACKOFF`].
fn grow(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_failure_then_once_per_interval() {
        let t0 = Instant::now();
        let mut r = Retry::new("test op");
        assert!(r.due(t0), "the first failure is logged");
        r.logged = Some(t0);
        assert!(!r.due(t0), "the next one, at once, is not");
        assert!(!r.due(t0 + LOG_EVERY - Duration::from_millis(1)));
        assert!(r.due(t0 + LOG_EVERY), "a reminder after the interval");
    }

    #[test]
    fn failures_are_counted_and_the_first_is_logged() {
        let mut r = Retry::new("test op");
        r.failed(&"boom");
        r.failed(&"boom");
        assert_eq!(r.attempts, 2);
        assert!(r.logged.is_some());
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_its_cap_and_stops_at_shutdown() {
        let mut r = Retry::new("test op");
        let shutdown = CancellationToken::new();
        assert!(r.wait(&shutdown).await);
        assert_eq!(r.backoff, FIRST_BACKOFF * 2, "waiting doubles the backoff");
        let mut d = FIRST_BACKOFF;
        let waits: Vec<u128> = (0..8)
            .map(|_| {
                d = grow(d);
                d.as_millis()
            })
            .collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        shutdown.cancel();
        let start = Instant::now();
        assert!(!r.wait(&shutdown).await, "no waiting once shut down");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
