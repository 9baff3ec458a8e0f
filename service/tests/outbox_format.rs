//! Batch outbox entries follow the relays, on a real Redis: a campaign's issuers (mode
//! `auto`, as `serve` runs) write them once every live relay of its outbox group reads them,
//! go back to an entry per coupon while an older relay reads, and return to batches when it
//! has stopped; nothing is recorded for a campaign that is gone.

mod common;

use std::time::Duration;

use common::held::queued_behind;
use common::{RedisServer, eventually, id, key, outbox_entries};
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::outbox::{GROUP, Outbox};
use stampede_core::store::outbox_format::{self, FIELD, FORMAT, LIVE};
use stampede_core::store::{Store, StoreConfig};

/// Reads the campaign's outbox as relay `consumer` would, taking nothing (its own history).
async fn read_as(redis: &RedisServer, consumer: &str) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("STREAMS")
        .arg(key("formats", "outbox"))
        .arg("0")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
}

async fn recorded(redis: &RedisServer) -> Option<String> {
    redis::cmd("HGET")
        .arg(key("formats", "meta"))
        .arg(FIELD)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

/// Issues to three new users in two script calls (one, then two together); returns how
/// many coupons each outbox entry written meanwhile holds.
async fn issue_three(redis: &RedisServer, store: &Store, c: &CampaignId, round: u32) -> Vec<usize> {
    let before = outbox_entries(redis, "formats").await.len();
    let users: Vec<UserId> = (0..3)
        .map(|i| UserId::parse(&format!("r{round}-u{i}")).unwrap())
        .collect();
    let mut asks: Vec<_> = users.iter().map(|u| store.issue(c, u)).collect();
    let first = asks.remove(0);
    for answer in queued_behind(redis, first, asks).await {
        assert_eq!(answer.unwrap().label(), "issued");
    }
    let entries = outbox_entries(redis, "formats").await;
    entries[before..].iter().map(Vec::len).collect()
}

/// A fresh campaign with the relays' group on its outbox, a store with one connection (so
/// asks queue behind a call in Redis), and the relays' view of the outbox.
async fn campaign(redis: &RedisServer) -> (CampaignId, Store, Outbox) {
    let config = StoreConfig {
        url: redis.url(),
        connections: 1,
        timeout: Duration::from_secs(2),
    };
    let store = Store::connect(&config, RedisMetrics::detached())
        .await
        .unwrap();
    let c = id("formats");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let mut outbox = Outbox::connect(&redis.url()).await.unwrap();
    outbox.join(&c).await.unwrap();
    (c, store, outbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_wait_for_every_live_relay_to_read_them() {
    let redis = RedisServer::start().await;
    let (c, store, mut outbox) = campaign(&redis).await;

    // No relay has read yet: nothing is known, nothing recorded, a coupon per entry.
    assert_eq!(outbox.settle_format(&c, LIVE).await.unwrap(), None);
    assert_eq!(recorded(&redis).await, None);
    assert_eq!(issue_three(&redis, &store, &c, 0).await, [1, 1, 1]);

    // A relay of this release reads: the two asks that queued go out as one entry.
    read_as(&redis, &outbox_format::consumer_name("new")).await;
    let settled = outbox.settle_format(&c, LIVE).await.unwrap();
    assert_eq!(settled, Some((1, FORMAT)));
    let again = outbox.settle_format(&c, LIVE).await.unwrap();
    assert_eq!(again, None, "unchanged");
    assert_eq!(recorded(&redis).await, Some(FORMAT.to_string()));
    assert_eq!(issue_three(&redis, &store, &c, 1).await, [1, 2]);

    // An older relay reads too (a rolling upgrade, a rollback): an entry per coupon again.
    read_as(&redis, "old").await;
    let settled = outbox.settle_format(&c, LIVE).await.unwrap();
    assert_eq!(settled, Some((FORMAT, 1)));
    assert_eq!(issue_three(&redis, &store, &c, 2).await, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_return_when_the_older_relay_stops_and_a_deleted_campaign_stays_deleted() {
    let redis = RedisServer::start().await;
    let (c, store, mut outbox) = campaign(&redis).await;
    let new = outbox_format::consumer_name("new");
    read_as(&redis, &new).await;
    read_as(&redis, "old").await;
    assert_eq!(
        outbox.settle_format(&c, LIVE).await.unwrap(),
        None,
        "1 is the default"
    );
    assert_eq!(issue_three(&redis, &store, &c, 0).await, [1, 1, 1]);

    // The older relay stops reading; the new one reads on. Past the live window (short
    // here), batches are back.
    let live = Duration::from_millis(500);
    eventually(
        "the old relay no longer counts",
        Duration::from_secs(10),
        || async {
            read_as(&redis, &new).await;
            outbox.clone().settle_format(&c, live).await.unwrap()
        },
    )
    .await;
    assert_eq!(recorded(&redis).await, Some(FORMAT.to_string()));
    assert_eq!(issue_three(&redis, &store, &c, 1).await, [1, 2]);

    // A campaign deleted under the relay: its meta is not brought back with a lone field.
    let _: () = redis::cmd("DEL")
        .arg(key("formats", "meta"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    read_as(&redis, "old").await;
    assert_eq!(outbox.settle_format(&c, LIVE).await.unwrap(), None);
    let exists: bool = redis::cmd("EXISTS")
        .arg(key("formats", "meta"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(!exists, "the deleted campaign's meta stays deleted");
}
