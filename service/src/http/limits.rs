//! Per-user and per-client request budgets (GCRA, per replica, `governor`): a user or a
//! client address past its budget gets 429 `rate_limited` with Retry-After at once, before
//! Redis is asked anything. Load-test shadow campaigns (`<campaign>.lt-<test>`) are exempt
//! from the client budget: their runner pods send a whole stampede from one address.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A budget: a steady rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Rate {
    /// The budget, or `None` when `per_second` is 0 (off).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then_some(Self {
            per_second,
            burst: burst.max(1),
        })
    }

    fn quota(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(rate).allow_burst(burst)
    }
}

/// What the budgets are.
#[derive(Debug, Clone, Default)]
pub struct LimitConfig {
    /// Per user (the token's subject, or the body's user id without auth).
    pub per_user: Option<Rate>,
    /// Per client address.
    pub per_client: Option<Rate>,
    /// A header whose last address is the client's (`X-Forwarded-For` behind a trusted
    /// proxy, which appends it); without it, the connection's peer address.
    pub client_ip_header: Option<HeaderName>,
}

/// Who was over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The user.
    User,
    /// The client address.
    Client,
}

impl LimitedBy {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }
}

/// The budgets' state: one GCRA cell per key, swept of idle keys now and then.
pub struct Limits {
    /// Keyed by a 64-bit hash of the user id: no allocation per request, 8 bytes a key under
    /// a flood of new ids (two users sharing a hash share a budget; at 64 bits, never in
    /// practice).
    user: Option<DefaultKeyedRateLimiter<u64>>,
    hasher: RandomState,
    client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    client_ip_header: Option<HeaderName>,
}

impl Limits {
    /// Budgets as configured.
    pub fn new(config: &LimitConfig) -> Self {
        Self {
            user: config.per_user.map(|r| RateLimiter::keyed(r.quota())),
            hasher: RandomState::new(),
            client: config.per_client.map(|r| RateLimiter::keyed(r.quota())),
            client_ip_header: config.client_ip_header.clone(),
        }
    }

    /// Counts a request of `user`; `Err` carries how long to wait.
    pub fn check_user(&self, user: &str) -> Result<(), Duration> {
        let Some(l) = &self.user else { return Ok(()) };
        l.check_key(&self.hasher.hash_one(user))
            .map_err(|n| n.wait_time_from(l.clock().now()))
    }

    /// Counts a request from the client (`peer`, or the configured header's last address:
    /// the one the proxy in front of this service added; the entries before it are what
    /// the client sent, and anyone's to write).
    pub fn check_client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), Duration> {
        let Some(l) = &self.client else { return Ok(()) };
        let from_header = self.client_ip_header.as_ref().and_then(|h| {
            let v = headers.get_all(h).iter().next_back()?.to_str().ok()?;
            v.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        });
        let Some(ip) = from_header.or(peer) else {
            return Ok(());
        };
        l.check_key(&ip)
            .map_err(|n| n.wait_time_from(l.clock().now()))
    }

    /// Forgets keys whose budget is full again (bounds memory under a flood of new keys).
    pub fn sweep(&self) {
        if let Some(l) = &self.user {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.client {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys tracked now (users, clients).
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.user.as_ref().map_or(0, |l| l.len()),
            self.client.as_ref().map_or(0, |l| l.len()),
        )
    }
}

/// Seconds for Retry-After: at least 1, rounded up.
pub fn retry_after_secs(wait: Duration) -> u32 {
    u32::try_from(wait.as_millis().div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_burst_waits_and_others_do_not() {
        let limits = Limits::new(&LimitConfig {
            per_user: Rate::new(1, 3),
            ..Default::default()
        });
        for _ in 0..3 {
            assert_eq!(limits.check_user("bot"), Ok(()));
        }
        let wait = limits.check_user("bot").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(limits.check_user("someone-else"), Ok(()));
        assert_eq!(limits.tracked(), (2, 0));
    }

    #[test]
    fn clients_by_peer_or_by_the_trusted_header() {
        let limits = Limits::new(&LimitConfig {
            per_client: Rate::new(1, 1),
            client_ip_header: Some(HeaderName::from_static("x-forwarded-for")),
            ..Default::default()
        });
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(limits.check_client(&h, Some(peer)), Ok(()));
        assert!(limits.check_client(&h, Some(peer)).is_err());
        // The proxy appends the address it saw: the last entry, whatever the client wrote
        // before it.
        h.insert("x-forwarded-for", "10.0.0.1, 192.0.2.7".parse().unwrap());
        assert_eq!(
            limits.check_client(&h, Some(peer)),
            Ok(()),
            "another client"
        );
        assert!(limits.check_client(&h, Some(peer)).is_err());
        h.insert(
            "x-forwarded-for",
            "198.51.100.9, 192.0.2.7".parse().unwrap(),
        );
        assert!(
            limits.check_client(&h, Some(peer)).is_err(),
            "the same client, whatever it wrote first"
        );
    }

    #[test]
    fn off_budgets_admit_everything() {
        let limits = Limits::new(&LimitConfig::default());
        for _ in 0..100 {
            assert_eq!(limits.check_user("u"), Ok(()));
            assert_eq!(limits.check_client(&HeaderMap::new(), None), Ok(()));
        }
        assert_eq!(Rate::new(0, 5), None);
    }
}
