//! The waiting room's contract (issue #16) over real TCP on real Redis: join, poll, admit
//! and issue; issue refused without a live admission of this user and campaign (missing,
//! forged, expired, another user's or campaign's); 503 without a key; no room on a sharded
//! campaign; a TTL on every key; the admin command. Admission bounds, the stock, lapses
//! and the shuffle at the opening: `waiting_room_admission.rs`.

mod common;

use common::role::service_command;
use common::room::{Rig, queue_token, room, room_key};
use common::stack::{drop_topics, stack_kafka};
use common::{id, issuance_counts, key, status_and_json, token};
use serde_json::Value;
use stampede_core::clock::now_ms;
use stampede_core::waiting_room::WaitingRoomConfig;
use stampede_core::waiting_room::token::{Claims, TokenKey, TokenKind};

fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"].as_str())
}

fn status(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["status"].as_str())
}

#[tokio::test]
async fn join_poll_admit_and_issue() {
    let rig = Rig::start().await;
    rig.campaign("flash", 10, None, room(1, 100)).await;
    let refused = rig.issue("flash", "u1", None).await;
    assert_eq!(code(&refused), (403, Some("admission_required")));

    let (s, joined) = rig.join("flash", "u1").await;
    assert_eq!(
        (s, joined["status"].as_str()),
        (201, Some("admitted")),
        "{joined}"
    );
    let (s, again) = rig.join("flash", "u1").await;
    assert_eq!((s, &again["queueToken"]), (200, &joined["queueToken"]));
    let qt = queue_token(&joined);
    let polled = rig.poll("flash", "u1", &qt).await;
    assert_eq!(status(&polled), (200, Some("admitted")));
    assert_eq!(polled.1["admissionToken"], joined["admissionToken"]);
    // The one slot is taken: the next user waits, and learns the stock left.
    let (s, waiting) = rig.join("flash", "u2").await;
    assert_eq!((s, waiting["status"].as_str()), (201, Some("waiting")));
    assert_eq!(waiting["position"], 1);
    assert_eq!(waiting["remainingStock"], 10);
    assert_eq!(waiting["withinStock"], true);
    assert!(waiting["estimatedWaitSeconds"].as_u64().unwrap() >= 1);
    let url = rig
        .svc
        .url(&format!("/v1/campaigns/flash/queue?token={qt}"));
    let by_query = status_and_json(rig.svc.http.get(url).bearer_auth(token("u1"))).await;
    assert_eq!(status(&by_query), (200, Some("admitted")));

    let admission = joined["admissionToken"].as_str().unwrap();
    let (s, coupon) = rig.issue("flash", "u1", Some(admission)).await;
    assert_eq!(s, 201, "{coupon}");
    // The coupon ended the admission in the same script: the slot went to u2 at its poll.
    assert_eq!(rig.active("flash").await, 0);
    assert_eq!(rig.issue("flash", "u1", None).await, (200, coupon));
    assert_eq!(
        status(&rig.poll("flash", "u1", &qt).await),
        (200, Some("issued"))
    );
    let u2 = rig.poll("flash", "u2", &queue_token(&waiting)).await;
    assert_eq!(status(&u2), (200, Some("admitted")));
    let m = rig.svc.metrics().await;
    assert!(
        m.contains("route=\"/v1/campaigns/{campaign}/queue\""),
        "{m}"
    );
    assert!(
        m.contains("stampede_waiting_room_admitted_total{campaign=\"flash\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn bad_queue_requests_get_their_codes() {
    let rig = Rig::start().await;
    rig.campaign("flash", 10, None, room(5, 100)).await;
    rig.store
        .ensure_campaign(&id("plain"), 5, None)
        .await
        .unwrap();
    let (_, joined) = rig.join("flash", "u1").await;
    let qt = queue_token(&joined);
    assert_eq!(
        code(&rig.poll("flash", "u1", "garbage").await),
        (401, Some("invalid_token"))
    );
    let url = rig.svc.url("/v1/campaigns/flash/queue");
    let missing = status_and_json(rig.svc.http.get(url).bearer_auth(token("u1"))).await;
    assert_eq!(code(&missing), (400, Some("invalid_request")));
    let mismatch = rig.poll("flash", "u2", &qt).await;
    assert_eq!(code(&mismatch), (403, Some("user_mismatch")));
    // A queue token of one campaign is nothing in another.
    rig.campaign("other", 10, None, room(5, 100)).await;
    assert_eq!(
        code(&rig.poll("other", "u1", &qt).await),
        (401, Some("invalid_token"))
    );
    // An expired queue token, signed right: expired, not refused.
    let mut claims = room_key().verify(&qt, TokenKind::Queue).unwrap();
    claims.expires_ms = now_ms() - 1_000;
    let stale = rig.poll("flash", "u1", &room_key().sign(&claims)).await;
    assert_eq!(status(&stale), (200, Some("expired")));
    assert_eq!(
        code(&rig.join("plain", "u1").await),
        (404, Some("no_waiting_room"))
    );
    assert_eq!(rig.issue("plain", "u1", None).await.0, 201);
    assert_eq!(
        code(&rig.join("nope", "u1").await),
        (404, Some("campaign_not_found"))
    );
    let anonymous = rig.svc.http.post(rig.svc.url("/v1/campaigns/flash/queue"));
    let anonymous = status_and_json(anonymous.json(&serde_json::json!({"userId": "u9"}))).await;
    assert_eq!(code(&anonymous), (401, Some("unauthenticated")));
}

/// Every admission a user might send that is not their live one for campaign `a`:
/// `a1` is u1's, `a2` u2's, `b1` u1's of campaign `b`.
fn bad_admissions(a1: &str, a2: String, b1: String) -> Vec<(&'static str, &'static str, String)> {
    let claims = room_key().verify(a1, TokenKind::Admission).unwrap();
    let signed = |c: Claims| room_key().sign(&c);
    let forger = TokenKey::new(b"another-waiting-room-key-0123456789abcdef").unwrap();
    let expired = Claims {
        expires_ms: now_ms() - 1_000,
        ..claims.clone()
    };
    let not_live = Claims {
        expires_ms: claims.expires_ms + 1,
        ..claims.clone()
    };
    let never = Claims {
        user: "u3".into(),
        ..claims.clone()
    };
    let queue = Claims {
        kind: TokenKind::Queue,
        ..claims.clone()
    };
    vec![
        ("another user's", "u1", a2),
        ("another campaign's", "u1", b1),
        ("forged", "u1", forger.sign(&claims)),
        ("expired", "u1", signed(expired)),
        ("not the live one", "u1", signed(not_live)),
        ("never admitted", "u3", signed(never)),
        ("a queue token", "u1", signed(queue)),
        ("garbage", "u1", "not.a-token".into()),
    ]
}

#[tokio::test]
async fn issue_refuses_admissions_not_live_for_this_user_and_campaign() {
    let rig = Rig::start().await;
    rig.campaign("a", 10, None, room(10, 100)).await;
    rig.campaign("b", 10, None, room(10, 100)).await;
    let admission = |v: &Value| v["admissionToken"].as_str().unwrap().to_owned();
    let a1 = admission(&rig.join("a", "u1").await.1);
    let a2 = admission(&rig.join("a", "u2").await.1);
    let b1 = admission(&rig.join("b", "u1").await.1);
    let cases = bad_admissions(&a1, a2, b1);
    for (what, user, token) in cases {
        let answer = rig.issue("a", user, Some(&token)).await;
        assert_eq!(
            code(&answer),
            (403, Some("admission_required")),
            "{what}: {answer:?}"
        );
    }
    assert_eq!(issuance_counts(&rig.redis, "a").await, (0, 0, 0));
    assert_eq!(rig.issue("a", "u1", Some(&a1)).await.0, 201);
    // Spent: the same admission never issues for anyone else, nor again as new.
    assert_eq!(issuance_counts(&rig.redis, "a").await, (1, 1, 1));
}

#[tokio::test]
async fn without_a_key_rooms_answer_503_and_sharded_campaigns_get_none() {
    let rig = Rig::start_keyed(false).await;
    rig.campaign("keyless", 5, None, room(5, 100)).await;
    rig.store
        .ensure_campaign(&id("plain"), 5, None)
        .await
        .unwrap();
    let unavailable = (503, Some("waiting_room_unavailable"));
    assert_eq!(code(&rig.join("keyless", "u1").await), unavailable);
    assert_eq!(code(&rig.poll("keyless", "u1", "x.y").await), unavailable);
    assert_eq!(
        code(&rig.issue("keyless", "u1", Some("x.y")).await),
        unavailable
    );
    assert_eq!(
        code(&rig.join("plain", "u1").await),
        (404, Some("no_waiting_room"))
    );
    assert_eq!(rig.issue("plain", "u1", None).await.0, 201);

    let store = &rig.store;
    let e = store
        .ensure_campaign_with_room(&id("sh"), 10, None, (false, 2), &room(5, 100))
        .await;
    assert!(e.unwrap_err().to_string().contains("unsharded"));
    store
        .ensure_sharded(&id("sh"), 10, None, false, 2)
        .await
        .unwrap();
    let e = store
        .set_waiting_room(&id("sh"), &room(5, 100))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unsharded"), "{e}");
    let bad = WaitingRoomConfig {
        max_active: 0,
        ..room(5, 100)
    };
    let e = store
        .set_waiting_room(&id("keyless"), &bad)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("maxActive"), "{e}");
    // Turned off, the campaign issues to anyone again and has no line.
    let off = WaitingRoomConfig {
        enabled: false,
        ..room(5, 100)
    };
    store.set_waiting_room(&id("keyless"), &off).await.unwrap();
    assert_eq!(store.waiting_room(&id("keyless")).await.unwrap(), Some(off));
    assert_eq!(rig.issue("keyless", "u1", None).await.0, 201);
}

#[tokio::test]
async fn every_waiting_room_key_has_a_ttl_and_forget_removes_them() {
    let rig = Rig::start().await;
    rig.campaign("keys", 5, None, room(1, 100)).await;
    let u1 = rig.join("keys", "u1").await.1;
    assert_eq!(u1["status"], "admitted");
    let u2 = rig.join("keys", "u2").await.1;
    assert_eq!(u2["status"], "waiting");
    // u1's coupon empties wr:active (Redis deletes an empty set); u2's admission makes it
    // anew, between two of the script's periodic TTL renewals: it must get one at once.
    let admission = u1["admissionToken"].as_str().unwrap();
    assert_eq!(rig.issue("keys", "u1", Some(admission)).await.0, 201);
    assert_eq!(rig.active("keys").await, 0);
    let polled = rig.poll("keys", "u2", &queue_token(&u2)).await.1;
    assert_eq!(polled["status"], "admitted");
    // u3 waits: every key of the room exists now.
    assert_eq!(rig.join("keys", "u3").await.1["status"], "waiting");
    let mut conn = rig.redis.conn().await;
    let names = ["wr:line", "wr:seen", "wr:active", "wr:entry", "wr:state"];
    let mut all: Vec<String> = names.iter().map(|n| key("keys", n)).collect();
    if !rig.redis.is_cluster() {
        // Any other key under the room's prefix must carry one too.
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(key("keys", "wr:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        all.extend(found);
    }
    for k in &all {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has PTTL {ttl}");
    }
    rig.store.forget(&id("keys")).await.unwrap();
    for k in &all {
        let n: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{k} outlived forget");
    }
}

fn cli(rig: &Rig, args: &str) -> std::process::Output {
    service_command()
        .args(args.split_whitespace())
        .env("STAMPEDE_REDIS_URL", rig.redis.url())
        .output()
        .unwrap()
}

fn cli_json(rig: &Rig, args: &str) -> Value {
    let out = cli(rig, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args}: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cli_fails_naming(rig: &Rig, args: &str, needle: &str) {
    let out = cli(rig, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(needle),
        "{args}: {err}"
    );
}

#[tokio::test]
async fn the_admin_command_sets_changes_and_turns_off_a_room() {
    let rig = Rig::start().await;
    rig.store
        .ensure_campaign(&id("cli"), 5, None)
        .await
        .unwrap();
    let set = cli_json(
        &rig,
        "campaign waiting-room --id cli --max-active 3 --queue-ttl 30s",
    );
    let r = &set["waitingRoom"];
    assert_eq!(
        (r["enabled"].clone(), r["maxActive"].clone()),
        (true.into(), 3.into())
    );
    assert_eq!(
        (r["queueTtl"].as_str(), r["sessionTtl"].as_str()),
        (Some("30s"), Some("120s"))
    );
    let changed = cli_json(&rig, "campaign waiting-room --id cli --admit-per-second 7");
    assert_eq!(
        changed["waitingRoom"]["maxActive"], 3,
        "other settings kept"
    );
    assert_eq!(
        cli_json(&rig, "campaign show --id cli")["waitingRoom"]["admitPerSecond"],
        7
    );
    let off = cli_json(&rig, "campaign waiting-room --id cli --off");
    assert_eq!(off["waitingRoom"]["enabled"], false);
    cli_fails_naming(
        &rig,
        "campaign waiting-room --id cli --queue-ttl 2s",
        "--queue-ttl",
    );
    cli_fails_naming(
        &rig,
        "campaign waiting-room --id nope --max-active 3",
        "not found",
    );
    let sharded = "campaign create --id s --stock 5 --shards 2 --waiting-room";
    cli_fails_naming(&rig, sharded, "--shards 1");
    cli_fails_naming(
        &rig,
        "campaign create --id s --stock 5 --max-active 3",
        "--waiting-room",
    );
    let zero = "campaign create --id s --stock 5 --waiting-room --max-active 0";
    cli_fails_naming(&rig, zero, "--max-active");
}

#[tokio::test]
async fn campaign_create_gives_a_room_in_the_creating_call() {
    let rig = Rig::start().await;
    let campaign = common::unique("wr-cli");
    let created = cli_json(
        &rig,
        &format!(
            "campaign create --id {campaign} --stock 5 --waiting-room --max-active 2 \
             --session-ttl 1m --no-shuffle --kafka-brokers {}",
            stack_kafka()
        ),
    );
    assert_eq!(created["provision"]["outcome"], "created");
    let room = rig
        .store
        .waiting_room(&id(&campaign))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((room.max_active, room.session_ttl.as_secs()), (2, 60));
    assert!(room.enabled && !room.shuffle_at_open);
    assert_eq!(
        code(&rig.issue(&campaign, "u1", None).await),
        (403, Some("admission_required"))
    );
    drop_topics(&stack_kafka(), &campaign);
}
