//! The relay's removal of delivered outbox entries, on a real Redis: it trims the stream
//! below its oldest pending entry instead of deleting entry by entry, and never removes an
//! entry that was not acknowledged, whichever order deliveries finish in; reads and removals
//! go in chunks, so no one command holds Redis long.

mod common;

use common::kit::RedisServer;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use stampede_core::store::outbox::{CHUNK, Outbox, OutboxEntry, ReadFrom};

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

/// How many times Redis ran `command` (scripts' calls included).
async fn calls(conn: &mut stampede_core::store::conn::RedisConn, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    (info.lines())
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn reads_and_removals_go_in_chunks_that_add_up_to_the_count() {
    let redis = RedisServer::start().await;
    let campaign = common::id("chunks");
    let key = common::key("chunks", "outbox");
    let mut conn = redis.conn().await;
    for n in 0..100 {
        let _: String = conn.xadd(&key, "*", &[("n", n)]).await.unwrap();
    }
    let all = left(&mut conn, &key).await;
    let mut outbox = Outbox::connect(&redis.url()).await.unwrap();
    outbox.join(&campaign).await.unwrap();
    let read = async |outbox: &mut Outbox, from, count| {
        let lanes = [(campaign.clone(), from)];
        let mut batches = outbox.read("relay-1", &lanes, count, None).await.unwrap();
        ids(&batches.remove(0).entries)
    };
    let chunks = |n: usize| n.div_ceil(CHUNK) as u64;

    // 70 new entries: in order, each once, in chunks of at most CHUNK.
    let before = calls(&mut conn, "xreadgroup").await;
    let first = read(&mut outbox, ReadFrom::New, 70).await;
    assert_eq!(first, all[..70]);
    assert_eq!(calls(&mut conn, "xreadgroup").await - before, chunks(70));

    // Re-reading our pending entries goes on from each chunk's last id, not from the start.
    let before = calls(&mut conn, "xreadgroup").await;
    assert_eq!(read(&mut outbox, ReadFrom::OwnPending, 100).await, first);
    assert_eq!(calls(&mut conn, "xreadgroup").await - before, chunks(70));

    // Removing them acknowledges chunk by chunk and leaves only the unread entries.
    let before = calls(&mut conn, "xack").await;
    outbox.remove(campaign.as_str(), &first).await.unwrap();
    assert_eq!(calls(&mut conn, "xack").await - before, chunks(70));
    assert_eq!(left(&mut conn, &key).await, all[70..]);

    // A read that comes back short ends there.
    let before = calls(&mut conn, "xreadgroup").await;
    assert_eq!(read(&mut outbox, ReadFrom::New, 1000).await, all[70..]);
    assert_eq!(calls(&mut conn, "xreadgroup").await - before, 1);
}
