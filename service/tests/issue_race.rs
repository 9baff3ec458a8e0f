//! The stampede: 20 000 requests from 10 000 users race for 1 200 coupons on real Redis;
//! exactly the stock is issued, once per user, and Redis and the metrics agree.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{Service, id, issuance_counts, setup};
use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::Value;

const STOCK: u64 = 1_200;
const USERS: usize = 10_000;

/// Every answer one user got: (status, body).
type Answers = Vec<(u16, Value)>;

/// The order users ask in. Half the users send both requests back to back (racing each
/// other); the other half send their second request after everyone's first, when the
/// campaign is long sold out and answered from memory.
fn request_order() -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(2 * USERS);
    for u in 0..USERS {
        order.push(u);
        if u % 2 == 0 {
            order.push(u);
        }
    }
    order.extend((0..USERS).filter(|u| u % 2 == 1));
    order
}

/// Sends the issue requests of `order` for users `user-<u>`, 256 at a time, and groups the
/// answers by user; no answer may be a server error.
async fn stampede(svc: &Service, order: Vec<usize>) -> HashMap<usize, Answers> {
    let results: Vec<(usize, u16, Value)> = futures::stream::iter(order)
        .map(|u| async move {
            let (s, b) = svc.issue("race", &format!("user-{u}")).await;
            (u, s, b)
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert_eq!(results.len(), 2 * USERS);
    let mut by_user: HashMap<usize, Answers> = HashMap::new();
    for (u, s, b) in results {
        assert!(s < 500, "user-{u} got {s}: {b}");
        by_user.entry(u).or_default().push((s, b));
    }
    by_user
}

/// Checks one user's two answers: a new coupon then the same one again (recording its seq
/// in `seqs`, which must not hold it yet), or sold out twice. True for a winner.
fn check_user(u: usize, mut answers: Answers, seqs: &mut BTreeSet<u64>) -> bool {
    answers.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    match statuses[..] {
        [201, 200] => {
            let (first, again) = (&answers[0].1, &answers[1].1);
            assert_eq!(
                first, again,
                "user-{u} got a different coupon the second time"
            );
            assert_eq!(first["userId"], format!("user-{u}"));
            assert_eq!(first["campaign"], "race");
            assert!(first["couponCode"].as_str().is_some_and(|c| c.len() == 16));
            assert!(
                seqs.insert(first["seq"].as_u64().unwrap()),
                "seq issued twice"
            );
            true
        }
        [410, 410] => {
            for (_, b) in &answers {
                assert_eq!(b["error"], "sold_out");
            }
            false
        }
        _ => panic!("user-{u}: unexpected answers {answers:?}"),
    }
}

/// Exactly `STOCK` users won, holding exactly the seqs 1..=STOCK.
fn assert_exactly_the_stock_won(by_user: HashMap<usize, Answers>) {
    let mut seqs = BTreeSet::new();
    let mut winners = 0;
    for (u, answers) in by_user {
        if check_user(u, answers, &mut seqs) {
            winners += 1;
        }
    }
    assert_eq!(winners, STOCK as usize);
    assert_eq!(
        seqs,
        (1..=STOCK).collect::<BTreeSet<_>>(),
        "seqs must be exactly 1..=stock"
    );
}

/// Most late answers came from memory, and metrics never carry user ids.
async fn assert_metrics_answered_from_memory_without_users(svc: &Service) {
    let text = svc.metrics().await;
    assert!(
        common::sample(
            &text,
            "stampede_soldout_memory_answers_total{campaign=\"race\"}"
        ) > 0.0
    );
    assert!(
        !text.contains("user-"),
        "metrics must not be labelled by user"
    );
}

/// The outbox carries, per coupon, what the holder's record says: seq, time and code.
async fn assert_outbox_matches_holders(redis: &common::kit::RedisServer) {
    let mut conn = redis.conn().await;
    let holders: HashMap<String, String> =
        conn.hgetall(common::key("race", "holders")).await.unwrap();
    let outbox = common::outbox_issuances(redis, "race").await;
    let mut seqs = BTreeSet::new();
    for i in &outbox {
        assert_eq!(i.campaign, "race");
        let record = format!("{}:{}:{}", i.seq, i.issued_at_ms, i.coupon_code);
        assert_eq!(holders.get(&i.user_id), Some(&record), "{}", i.user_id);
        seqs.insert(i.seq);
    }
    assert_eq!(seqs, (1..=STOCK).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_stock_is_issued_once_per_user() {
    let (redis, svc, store) = setup().await;
    store
        .ensure_campaign(&id("race"), STOCK, None)
        .await
        .unwrap();

    let by_user = stampede(&svc, request_order()).await;
    assert_exactly_the_stock_won(by_user);

    // Redis agrees: counter, holders, and one outbox entry per coupon.
    let counts = issuance_counts(&redis, "race").await;
    assert_eq!(counts, (STOCK, STOCK, STOCK), "(issued, holders, outbox)");
    assert_outbox_matches_holders(&redis).await;
    let (status, view) = svc.get("/v1/campaigns/race").await;
    assert_eq!(status, 200);
    assert_eq!(view["state"], "sold_out");
    assert_eq!(view["stock"]["remaining"], 0);
    assert_metrics_answered_from_memory_without_users(&svc).await;
}
