//! The waiting room's key on the real binary (issue #16): `serve` without one says loudly
//! at startup which campaigns' rooms cannot work; with one (from its variable) the room
//! works end to end and the key appears in no log line, even at debug level.

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
