//! Unit tests of reconcile: its backoff policy, and the whole pipeline against a fake API
//! server (`apiserver.rs`) and the in-memory backends, one test per branch
//! (`pipeline.rs`); the gate against a close made by hand (`gate.rs`); cleanup when a
//! backend stays away (`cleanup.rs`); the id of a campaign created again (`fresh_id.rs`).

mod apiserver;
mod cleanup;
mod fresh_id;
mod gate;
mod pipeline;
mod room;
mod runs;

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
