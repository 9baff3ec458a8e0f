//! The relay's removal of delivered outbox entries, on a real Redis: it trims the stream
//! below its oldest pending entry instead of deleting entry by entry, and never removes an
//! entry that was not acknowledged, whichever order deliveries finish in.

mod common;

use common::kit::RedisServer;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use stampede_core::store::outbox::{Outbox, OutboxEntry, ReadFrom};

/// The ids of `entries`.
fn ids(entries: &[OutboxEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// The ids left in the stream, oldest first.
async fn left(conn: &mut stampede_core::store::conn::RedisConn, key: &str) -> Vec<String> {
    let r: StreamRangeReply = conn.xrange_all(key).await.unwrap();
    r.ids.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn removal_takes_only_acknowledged_entries_whatever_order_deliveries_finish_in() {
    let redis = RedisServer::start().await;
    let campaign = common::id("trim");
    let key = common::key("trim", "outbox");
    let mut conn = redis.conn().await;
    for n in 0..5 {
        let _: String = conn.xadd(&key, "*", &[("n", n)]).await.unwrap();
    }
    let mut outbox = Outbox::connect(&redis.url()).await.unwrap();
    outbox.join(&campaign).await.unwrap();
    let lanes = [(campaign.clone(), ReadFrom::New)];
    let mut read = async |count| {
        let mut batches = outbox.read("relay-1", &lanes, count, None).await.unwrap();
        ids(&batches.remove(0).entries)
    };
    let older = read(2).await;
    let newer = read(2).await;
    let all = left(&mut conn, &key).await;
    let unread = all[4].clone();

    // The newer delivery finishes first: the older one is still pending, so only the
    // newer entries go.
    outbox.remove(campaign.as_str(), &newer).await.unwrap();
    let expected: Vec<String> = older.iter().chain([&unread]).cloned().collect();
    assert_eq!(left(&mut conn, &key).await, expected);

    // The older one finishes: everything delivered is gone, the unread entry stays.
    outbox.remove(campaign.as_str(), &older).await.unwrap();
    assert_eq!(left(&mut conn, &key).await, vec![unread.clone()]);
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(&key)
        .arg("relay")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending[0], redis::Value::Int(0), "nothing is left pending");

    // It is still delivered, and then removed too.
    let mut batches = outbox.read("relay-1", &lanes, 10, None).await.unwrap();
    let rest = ids(&batches.remove(0).entries);
    assert_eq!(rest, vec![unread]);
    outbox.remove(campaign.as_str(), &rest).await.unwrap();
    assert!(left(&mut conn, &key).await.is_empty());
}
