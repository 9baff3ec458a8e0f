//! Unit tests of reconcile's policy.

use std::time::Duration;

use super::backoff;

#[test]
fn backoff_doubles_to_five_minutes() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(2), Duration::from_secs(2));
    assert_eq!(backoff(5), Duration::from_secs(16));
    assert_eq!(backoff(9), Duration::from_secs(256));
    assert_eq!(backoff(10), Duration::from_secs(300));
    assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
}
