//! Waiting-room admission on real Redis (issue #16), many users at once over real TCP:
//! never more than `maxActive` admitted, at `admitPerSecond` (measured from the admission
//! times Redis recorded), never more undecided admissions than stock left, lapses that
//! move the line, the room's keys outlasting every place promised, sold out ending every
//! wait at once, and those who came before the opening shuffled ahead of everyone after it.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::room::{Rig, queue_token, room, spearman};
use common::{eventually, id, issuance_counts, key};
use futures::future::join_all;
use serde_json::Value;
use stampede_core::campaign::{AdminAction, Window};
use stampede_core::clock::now_ms;
use stampede_core::waiting_room::WaitingRoomConfig;

/// `n` users named `<prefix><i>`, joined at once; their queue tokens.
async fn crowd(rig: &Rig, campaign: &str, prefix: &str, n: usize) -> Vec<(String, String)> {
    let users: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let joins = join_all(users.iter().map(|u| rig.join(campaign, u))).await;
    users
        .into_iter()
        .zip(joins)
        .map(|(u, (s, b))| {
            assert!(s == 201 || s == 200, "{u}: {s} {b}");
            (u, queue_token(&b))
        })
        .collect()
}

/// Every user's poll, at once.
async fn poll_all(rig: &Rig, campaign: &str, users: &[(String, String)]) -> Vec<Value> {
    let polls = join_all(users.iter().map(|(u, t)| rig.poll(campaign, u, t))).await;
    polls
        .into_iter()
        .map(|(s, b)| {
            assert_eq!(s, 200, "{b}");
            b
        })
        .collect()
}

/// The users a round of polls found admitted, with their admission tokens.
fn admitted(users: &[(String, String)], polls: &[Value]) -> HashMap<String, String> {
    users
        .iter()
        .zip(polls)
        .filter(|(_, p)| p["status"] == "admitted")
        .map(|((u, _), p)| (u.clone(), p["admissionToken"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_paused_campaign_admits_nobody_until_it_resumes() {
    let rig = Rig::start().await;
    rig.campaign("held", 10, None, room(5, 1_000)).await;
    let held = id("held");
    rig.store.admin(&held, AdminAction::Pause).await.unwrap();
    let users = crowd(&rig, "held", "h", 3).await;
    for p in poll_all(&rig, "held", &users).await {
        assert_eq!(p["status"], "waiting", "{p}");
    }
    assert_eq!(rig.active("held").await, 0);
    rig.store.admin(&held, AdminAction::Resume).await.unwrap();
    let polls = poll_all(&rig, "held", &users).await;
    assert_eq!(admitted(&users, &polls).len(), 3, "{polls:?}");
}

#[tokio::test]
async fn never_more_than_max_active_admitted_at_once() {
    let rig = Rig::start().await;
    rig.campaign("busy", 1_000, None, room(5, 1_000)).await;
    let users = crowd(&rig, "busy", "u", 60).await;
    let mut served = HashSet::new();
    for _ in 0..8 {
        let polls = poll_all(&rig, "busy", &users).await;
        let now = admitted(&users, &polls);
        assert!(now.len() <= 5, "{} admitted at once", now.len());
        assert!(rig.active("busy").await <= 5);
        // Two of them issue: their slots go to the next in line.
        for (u, a) in now.iter().take(2) {
            assert_eq!(rig.issue("busy", u, Some(a)).await.0, 201);
            served.insert(u.clone());
        }
    }
    assert_eq!(
        served.len(),
        16,
        "the line moved as coupons ended admissions"
    );
    assert_eq!(issuance_counts(&rig.redis, "busy").await.0, 16);
}

#[tokio::test]
async fn admissions_follow_admit_per_second() {
    let rig = Rig::start().await;
    let rate = 20;
    rig.campaign("paced", 10_000, None, room(10_000, rate))
        .await;
    let users = crowd(&rig, "paced", "u", 300).await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        poll_all(&rig, "paced", &users[..100]).await;
    }
    // When each was admitted, as Redis recorded it: the admission's expiry less the session.
    let mut conn = rig.redis.conn().await;
    let scored: Vec<String> = redis::cmd("ZRANGE")
        .arg(key("paced", "wr:active"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let session = room(1, 1).session_ttl.as_millis() as f64;
    let times: Vec<f64> = scored
        .chunks(2)
        .map(|pair| pair[1].parse::<f64>().unwrap() - session)
        .collect();
    let span_ms = times.last().unwrap() - times.first().unwrap();
    let bound = f64::from(rate) * (1.0 + span_ms / 1_000.0) + 1.0;
    assert!(
        (times.len() as f64) <= bound,
        "{} admitted in {span_ms} ms",
        times.len()
    );
    assert!(span_ms >= 2_500.0, "admissions spread over {span_ms} ms");
    // Every one-second window holds at most a bucket plus a second's refill.
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|&&u| u < t + 1_000.0).count();
        assert!(
            within <= 2 * rate as usize + 1,
            "{within} admitted within a second"
        );
    }
    assert!(times.len() as f64 >= 0.6 * f64::from(rate) * span_ms / 1_000.0);
    let metric = "stampede_waiting_room_admitted_total{campaign=\"paced\"}";
    assert_eq!(rig.svc.metric(metric).await as usize, times.len());
}

#[tokio::test]
async fn admission_follows_the_stock_and_sold_out_ends_every_wait() {
    let rig = Rig::start().await;
    let scarce = WaitingRoomConfig {
        session_ttl: Duration::from_secs(5),
        ..room(50, 1_000)
    };
    rig.campaign("scarce", 5, None, scarce).await;
    let users = crowd(&rig, "scarce", "u", 30).await;
    let first = admitted(&users, &poll_all(&rig, "scarce", &users).await);
    assert_eq!(first.len(), 5, "admitted beyond the stock of 5");
    // Nobody decides: the admissions lapse and five others get in.
    let second = eventually(
        "lapsed admissions to make room",
        Duration::from_secs(20),
        || async {
            let now = admitted(&users, &poll_all(&rig, "scarce", &users).await);
            (now.len() == 5 && now.keys().all(|u| !first.contains_key(u))).then_some(now)
        },
    )
    .await;
    assert!(rig.active("scarce").await <= 5);
    let (u, t) = users.iter().find(|(u, _)| first.contains_key(u)).unwrap();
    assert_eq!(rig.poll("scarce", u, t).await.1["status"], "expired");
    for (u, a) in &second {
        assert_eq!(rig.issue("scarce", u, Some(a)).await.0, 201);
    }
    assert_eq!(issuance_counts(&rig.redis, "scarce").await, (5, 5, 5));
    // Sold out: everyone still waiting hears so at once; holders that they hold one.
    for (poll, (u, _)) in poll_all(&rig, "scarce", &users).await.iter().zip(&users) {
        let expected = if second.contains_key(u) {
            "issued"
        } else {
            "sold_out"
        };
        assert_eq!(poll["status"], expected, "{u}");
    }
    assert_eq!(rig.active("scarce").await, 0);
    assert_eq!(rig.join("scarce", "late").await.0, 410);
    let (u, a) = first.iter().next().unwrap();
    assert_eq!(rig.issue("scarce", u, Some(a)).await.0, 410);
}

#[tokio::test]
async fn a_place_nobody_polls_lapses_and_the_line_moves_on() {
    let rig = Rig::start().await;
    let short = WaitingRoomConfig {
        queue_ttl: Duration::from_secs(5),
        ..room(1, 100)
    };
    rig.campaign("ttl", 100, None, short).await;
    assert_eq!(rig.join("ttl", "u0").await.1["status"], "admitted");
    let mut tokens = Vec::new();
    for (i, u) in ["u1", "u2", "u3"].iter().enumerate() {
        let (_, b) = rig.join("ttl", u).await;
        assert_eq!(
            (b["status"].as_str(), b["position"].as_u64()),
            (Some("waiting"), Some(i as u64 + 1))
        );
        tokens.push(queue_token(&b));
    }
    // u1 stops polling; u2 and u3 keep their places and move up when u1's lapses.
    eventually("u1's place to lapse", Duration::from_secs(15), || async {
        let u2 = rig.poll("ttl", "u2", &tokens[1]).await.1;
        let u3 = rig.poll("ttl", "u3", &tokens[2]).await.1;
        (u2["position"] == 1 && u3["position"] == 2).then_some(())
    })
    .await;
    assert_eq!(
        rig.poll("ttl", "u1", &tokens[0]).await.1["status"],
        "expired"
    );
    let (s, back) = rig.join("ttl", "u1").await;
    assert_eq!(
        (s, back["position"].as_u64()),
        (201, Some(3)),
        "to the back of the line"
    );
    assert_ne!(queue_token(&back), tokens[0]);
    assert!(
        rig.svc
            .metric("stampede_waiting_room_lapsed_total{campaign=\"ttl\"}")
            .await
            >= 1.0
    );
}

/// The room's keys (`PTTL`s of all five).
async fn room_ttls(rig: &Rig, campaign: &str) -> Vec<i64> {
    let mut conn = rig.redis.conn().await;
    let mut ttls = Vec::new();
    for k in ["wr:line", "wr:seen", "wr:active", "wr:entry", "wr:state"] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key(campaign, k))
            .query_async(&mut conn)
            .await
            .unwrap();
        ttls.push(ttl);
    }
    ttls
}

/// A place lasts its queue TTL from every poll, however long that TTL: the room's keys
/// are made to outlive it by the poll itself (they were renewed after a share of their
/// TTL, which left a quiet room's keys short of a long queue TTL), and at once when the
/// settings raise it.
#[tokio::test]
async fn the_rooms_keys_outlast_every_promised_place() {
    let rig = Rig::start().await;
    let ten_minutes = 600_000;
    rig.campaign("long", 100, None, room(1, 100)).await;
    assert_eq!(rig.join("long", "u0").await.1["status"], "admitted");
    let (_, u1) = rig.join("long", "u1").await;
    assert_eq!(u1["status"], "waiting");
    // 160 s after the last renewal, as a quiet room would stand: the keys have 500 s left.
    let mut conn = rig.redis.conn().await;
    let renewed = (now_ms() - 160_000).to_string();
    let _: () = redis::cmd("HSET")
        .arg(key("long", "wr:state"))
        .arg(&["renewed_ms", renewed.as_str()])
        .query_async(&mut conn)
        .await
        .unwrap();
    for k in ["wr:line", "wr:seen", "wr:active", "wr:entry", "wr:state"] {
        let _: () = redis::cmd("PEXPIRE")
            .arg(key("long", k))
            .arg(500_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let polled = rig.poll("long", "u1", &queue_token(&u1)).await.1;
    assert_eq!(polled["status"], "waiting");
    let ttls = room_ttls(&rig, "long").await;
    assert!(
        ttls.iter().all(|&t| t >= ten_minutes),
        "u1's place lasts 10 min from this poll; the keys: {ttls:?} ms"
    );
    let hour = WaitingRoomConfig {
        queue_ttl: Duration::from_secs(3600),
        ..room(1, 100)
    };
    rig.store
        .set_waiting_room(&id("long"), &hour)
        .await
        .unwrap();
    let ttls = room_ttls(&rig, "long").await;
    assert!(
        ttls.iter().all(|&t| t >= 3_600_000),
        "raised to an hour: {ttls:?} ms"
    );
}

/// Each user's place in the order admissions follow: the admitted one first, then the line.
fn order(polls: &[Value]) -> Vec<usize> {
    polls
        .iter()
        .map(|p| match p["status"].as_str() {
            Some("admitted") => 0,
            _ => p["position"].as_u64().expect("waiting") as usize,
        })
        .collect()
}

#[tokio::test]
async fn those_who_came_before_the_opening_are_shuffled_and_go_first() {
    let rig = Rig::start().await;
    let opens = now_ms() + 6_000;
    let window = Some(Window {
        opens_ms: Some(opens),
        closes_ms: None,
    });
    rig.campaign("opening", 1_000, window, room(1, 1_000)).await;
    let in_order = WaitingRoomConfig {
        shuffle_at_open: false,
        ..room(1, 1_000)
    };
    rig.campaign("in-order", 1_000, window, in_order).await;
    let pre = crowd_in_order(&rig, "opening", "pre", 200).await;
    let ordered = crowd_in_order(&rig, "in-order", "o", 20).await;
    assert_eq!(
        rig.active("opening").await,
        0,
        "admitted before the opening"
    );
    assert!(
        now_ms() < opens,
        "the joins took past the opening; the test proves nothing"
    );
    eventually("the opening", Duration::from_secs(10), || async {
        let (_, c) =
            common::status_and_json(rig.svc.http.get(rig.svc.url("/v1/campaigns/opening"))).await;
        (c["state"] == "open").then_some(())
    })
    .await;
    let post = crowd_in_order(&rig, "opening", "post", 20).await;
    let everyone: Vec<_> = pre.iter().chain(&post).cloned().collect();
    let ranks = order(&poll_all(&rig, "opening", &everyone).await);
    let (pre_ranks, post_ranks) = ranks.split_at(200);
    assert!(
        pre_ranks.iter().max() < post_ranks.iter().min(),
        "a later joiner went first"
    );
    let rho = spearman(&(0..200).collect::<Vec<_>>(), pre_ranks);
    assert!(
        rho < 0.5,
        "the opening's line follows the join order: rho {rho}"
    );
    assert_eq!(
        post_ranks,
        (200..220).collect::<Vec<_>>(),
        "later arrivals in order"
    );
    // Without the shuffle, the line is the join order.
    let kept = order(&poll_all(&rig, "in-order", &ordered).await);
    assert_eq!(kept, (0..20).collect::<Vec<_>>());
}

/// `n` users joined one after another.
async fn crowd_in_order(
    rig: &Rig,
    campaign: &str,
    prefix: &str,
    n: usize,
) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for i in 0..n {
        let u = format!("{prefix}{i}");
        let (_, b) = rig.join(campaign, &u).await;
        users.push((u, queue_token(&b)));
    }
    users
}
