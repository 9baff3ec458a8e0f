//! The fast answers: sold-out from memory, restock, load shedding, graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Service, eventually, id, setup, setup_with};
use stampede_core::campaign::AdminAction;
use stampede_service::server::Rate;

/// Sends one issue request in the background; yields its status.
fn issue_in_background(svc: &Service, c: &str, user: &str) -> tokio::task::JoinHandle<u16> {
    let request = svc.issue_request(c, user);
    tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
}

/// Sells `c` out and waits until the replica answers sold-out from memory.
async fn sell_out(svc: &Service, c: &str, stock: u64) {
    for i in 0..stock {
        assert_eq!(svc.issue(c, &format!("winner-{i}")).await.0, 201);
    }
    let metric = format!("stampede_soldout_memory_answers_total{{campaign=\"{c}\"}}");
    let mut n = 0;
    eventually(
        "sold-out answers from memory",
        Duration::from_secs(5),
        || {
            n += 1;
            let user = format!("late-{n}");
            let metric = &metric;
            async move {
                assert_eq!(svc.issue(c, &user).await.0, 410);
                (svc.metric(metric).await > 0.0).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_answered_from_memory_without_redis_until_rechecks_keep_failing() {
    let (mut redis, svc, store) =
        setup_with(|cfg| cfg.soldout_recheck = Duration::from_millis(1_000)).await;
    store.ensure_campaign(&id("gone"), 3, None).await.unwrap();
    sell_out(&svc, "gone", 3).await;

    redis.stop();
    let stopped = Instant::now();
    // Three failed rechecks take about two seconds: until then, memory answers.
    for i in 0..50 {
        let (s, b) = svc.issue("gone", &format!("after-{i}")).await;
        assert_eq!((s, b["error"].as_str()), (410, Some("sold_out")));
    }
    assert!(
        stopped.elapsed() < Duration::from_millis(900),
        "too slow to tell"
    );
    // A holder's answer needs Redis, which is away: a clear 503, not a wrong 410.
    let (s, b) = svc.issue("gone", "winner-0").await;
    assert_eq!((s, b["error"].as_str()), (503, Some("unavailable")));
    // Once rechecks keep failing the entry expires: Redis is asked, 503 while it is away,
    // never a stale 410 for ever.
    let mut n = 0;
    eventually("the sold-out entry expires", Duration::from_secs(5), || {
        n += 1;
        let user = format!("later-{n}");
        let svc = &svc;
        async move { (svc.issue("gone", &user).await.0 == 503).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_out_is_answered_from_memory_at_once_not_at_the_next_recheck() {
    // Rechecks a minute apart: only the mark itself can set the memory path going within
    // the five seconds sell_out waits for it.
    let (_redis, svc, store) =
        setup_with(|cfg| cfg.soldout_recheck = Duration::from_secs(60)).await;
    store
        .ensure_campaign(&id("rush-hour"), 2, None)
        .await
        .unwrap();
    sell_out(&svc, "rush-hour", 2).await;
    // Holders still get their coupon, from Redis.
    assert_eq!(svc.issue("rush-hour", "winner-0").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_holder_gets_their_coupon_and_non_holders_410_from_memory() {
    let (_redis, svc, store) = setup().await;
    store.ensure_campaign(&id("many"), 300, None).await.unwrap();
    sell_out(&svc, "many", 300).await;
    let memory = "stampede_soldout_memory_answers_total{campaign=\"many\"}";
    let before = svc.metric(memory).await;
    for i in 0..300 {
        let (s, b) = svc.issue("many", &format!("winner-{i}")).await;
        assert_eq!(s, 200, "winner-{i}: {b}");
        assert_eq!(b["userId"], format!("winner-{i}"));
    }
    for i in 0..300 {
        let (s, b) = svc.issue("many", &format!("loser-{i}")).await;
        assert_eq!((s, b["error"].as_str()), (410, Some("sold_out")));
    }
    // All but the filter's rare false positives (sent to Redis, also 410) from memory.
    let from_memory = svc.metric(memory).await - before;
    assert!(from_memory >= 295.0, "{from_memory} of 300 from memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restock_reopens_issuance_within_a_second() {
    let (_redis, svc, store) =
        setup_with(|cfg| cfg.soldout_recheck = Duration::from_millis(250)).await;
    let c = id("again");
    store.ensure_campaign(&c, 2, None).await.unwrap();
    sell_out(&svc, "again", 2).await;
    // Holders still get their coupon from a sold-out replica.
    assert_eq!(svc.issue("again", "winner-1").await.0, 200);

    store.admin(&c, AdminAction::Restock(1)).await.unwrap();
    let restocked = Instant::now();
    let mut n = 0;
    let coupon = eventually("a coupon after restock", Duration::from_secs(3), || {
        n += 1;
        let user = format!("next-{n}");
        let svc = &svc;
        async move {
            let (s, b) = svc.issue("again", &user).await;
            (s == 201).then_some(b)
        }
    })
    .await;
    let took = restocked.elapsed();
    assert_eq!(coupon["seq"], 3);
    assert!(
        took < Duration::from_millis(1_500),
        "restock noticed after {took:?}"
    );
    let (s, _) = svc.issue("again", "one-too-many").await;
    assert_eq!(s, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_budget_a_loser_still_hears_sold_out_and_a_holder_is_limited() {
    // One request a second, a burst of two: a retry storm is past it at the third.
    let (_redis, svc, store) = setup_with(|cfg| cfg.limits.per_user = Rate::new(1, 2)).await;
    store.ensure_campaign(&id("rush"), 1, None).await.unwrap();
    sell_out(&svc, "rush", 1).await;
    // The answer that tells a client to stop, however often it asks (from memory: a filter
    // of one holder all but never has a false positive to send to Redis).
    for i in 0..8 {
        let (s, b) = svc.issue("rush", "loser").await;
        assert_eq!((s, b["error"].as_str()), (410, Some("sold_out")), "ask {i}");
    }
    // A holder's answer comes from Redis, so the budget guards it.
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(svc.issue("rush", "winner-0").await.0);
    }
    assert_eq!(answers[0], 200, "{answers:?}");
    assert!(
        answers.contains(&429),
        "no holder's ask was limited: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_with_retry_after() {
    let (redis, svc, store) = setup_with(|cfg| {
        cfg.max_in_flight = 1;
        cfg.store.timeout = Duration::from_secs(5);
    })
    .await;
    store.ensure_campaign(&id("busy"), 10, None).await.unwrap();
    assert_eq!(svc.issue("busy", "warm").await.0, 201);

    // Freeze Redis so the next request holds the only slot.
    redis.freeze(1500).await;
    let held = issue_in_background(&svc, "busy", "held");
    eventually(
        "the held request in flight",
        Duration::from_secs(5),
        || async { (svc.metric("stampede_http_in_flight").await >= 1.0).then_some(()) },
    )
    .await;
    let started = Instant::now();
    let r = svc.issue_request("busy", "shed").send().await.unwrap();
    let shed_in = started.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "overloaded");
    assert!(
        !held.is_finished(),
        "the shed answer must not wait for the held request"
    );
    assert!(
        shed_in < Duration::from_millis(1_000),
        "shedding took {shed_in:?}"
    );
    assert_eq!(held.await.unwrap(), 201, "the admitted request completes");
    assert_eq!(svc.metric("stampede_http_shed_total").await, 1.0);
    assert_eq!(svc.metric("stampede_http_in_flight").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let (redis, mut svc, store) = setup().await;
    store.ensure_campaign(&id("bye"), 10, None).await.unwrap();
    redis.freeze(500).await;
    let held = issue_in_background(&svc, "bye", "last");
    eventually("the request in flight", Duration::from_secs(5), || async {
        (svc.metric("stampede_http_in_flight").await >= 1.0).then_some(())
    })
    .await;
    svc.shutdown.cancel();
    assert_eq!(
        held.await.unwrap(),
        201,
        "in-flight request finished during shutdown"
    );
    tokio::time::timeout(Duration::from_secs(10), &mut svc.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    let after = reqwest::Client::new()
        .get(format!("{}/v1/campaigns/any", svc.base))
        .send()
        .await;
    assert!(after.is_err(), "the listener is closed after shutdown");
}
