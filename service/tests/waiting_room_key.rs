//! The waiting room's key on the real binary (issue #16): `serve` without one says loudly
//! at startup which campaigns' rooms cannot work; with one (from its variable) the room
//! works end to end and the key appears in no log line, even at debug level; a place taken
//! before the opening is the user's own draw under it, the same at every join.

mod common;

use std::time::Duration;

use common::role::Role;
use common::room::{ROOM_KEY, room};
use common::{RedisServer, eventually, free_port, id, store, token, unique};
use serde_json::json;

/// `serve` on `redis` serving `campaign`, logging at debug level to `log`.
fn serve(
    redis: &RedisServer,
    campaign: &str,
    log: &std::path::Path,
    key: Option<&str>,
) -> (Role, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let ops = format!("127.0.0.1:{}", free_port());
    let args = [
        "serve",
        "--listen",
        &api,
        "--metrics-listen",
        &ops,
        "--no-relay",
        "--campaigns",
        campaign,
    ];
    let mut env = vec![("STAMPEDE_REDIS_URL", redis.url())];
    if let Some(k) = key {
        env.push(("STAMPEDE_WAITING_ROOM_KEY", k.to_owned()));
    }
    (
        Role::start_logged(&args, &env, log),
        format!("http://{api}"),
    )
}

#[tokio::test]
async fn a_missing_key_is_loud_at_startup_and_a_given_one_is_never_logged() {
    let redis = RedisServer::start().await;
    let store = store(&redis).await;
    store
        .ensure_campaign_with_room(&id("roomy"), 5, None, (false, 1), &room(5, 100))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(unique("wr-key-logs"));
    std::fs::create_dir_all(&dir).unwrap();

    let keyless_log = dir.join("keyless.log");
    let (_keyless, _) = serve(&redis, "roomy", &keyless_log, None);
    eventually("the startup warning", Duration::from_secs(20), || async {
        let log = std::fs::read_to_string(&keyless_log).unwrap_or_default();
        (log.contains("WAITING ROOMS WITHOUT A KEY") && log.contains("roomy")).then_some(())
    })
    .await;

    let key = String::from_utf8(ROOM_KEY.to_vec()).unwrap();
    let keyed_log = dir.join("keyed.log");
    let (_keyed, base) = serve(&redis, "roomy", &keyed_log, Some(&key));
    let http = reqwest::Client::new();
    let join = || {
        http.post(format!("{base}/v1/campaigns/roomy/queue"))
            .bearer_auth(token("u1"))
            .json(&json!({}))
            .send()
    };
    let joined: serde_json::Value =
        eventually("serve to answer", Duration::from_secs(20), || async {
            join().await.ok().filter(|r| r.status().as_u16() == 201)
        })
        .await
        .json()
        .await
        .unwrap();
    let admission = joined["admissionToken"].as_str().expect("admitted at once");
    let issued = http
        .post(format!("{base}/v1/campaigns/roomy/issue"))
        .bearer_auth(token("u1"))
        .header("X-Stampede-Admission", admission)
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status().as_u16(), 201);
    let log = std::fs::read_to_string(&keyed_log).unwrap();
    assert!(!log.contains(&key), "the waiting-room key is in the log");
    assert!(!log.contains("WAITING ROOMS WITHOUT A KEY"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A place taken before the opening is the user's own draw under the room's key: let lapse
/// and taken again it is the same, so retrying for a better one gains nothing.
#[tokio::test]
async fn joining_again_before_the_opening_draws_the_same_place() {
    let rig = common::room::Rig::start().await;
    let window = Some(stampede_core::campaign::Window {
        opens_ms: Some(stampede_core::clock::now_ms() + 3_600_000),
        closes_ms: None,
    });
    rig.campaign("redraw", 100, window, room(1, 100)).await;
    let mut conn = rig.redis.conn().await;
    let mut draws = Vec::new();
    for _ in 0..3 {
        let (s, joined) = rig.join("redraw", "u1").await;
        assert_eq!((s, joined["status"].as_str()), (201, Some("waiting")));
        let score: f64 = redis::cmd("ZSCORE")
            .arg(common::key("redraw", "wr:line"))
            .arg("u1")
            .query_async(&mut conn)
            .await
            .unwrap();
        draws.push(score);
        // As if u1 had not polled for an hour: the next call lapses the place.
        let _: () = redis::cmd("ZADD")
            .arg(common::key("redraw", "wr:seen"))
            .arg(0)
            .arg("u1")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert!(draws.iter().all(|&d| d == draws[0]), "{draws:?}");
    assert!(draws[0] < (1u64 << 50) as f64);
}
