//! The stampede: 20 000 requests from 10 000 users race for 1 200 coupons on real Redis.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{RedisServer, Service, config};
use futures::StreamExt;
use redis::AsyncCommands;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use stampede_service::metrics::Metrics;

const STOCK: u64 = 1_200;
const USERS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_stock_is_issued_once_per_user() {
    let redis = RedisServer::start().await;
    let svc = Service::start(config(&redis.url())).await;
    let store = Store::connect(&config(&redis.url()).store, Metrics::new().redis)
        .await
        .unwrap();
    let c = CampaignId::parse("race").unwrap();
    store.ensure_campaign(&c, STOCK, None).await.unwrap();

    // Half the users send both requests back to back (racing each other); the other
    // half send their second request after everyone's first, when the campaign is
    // long sold out and answered from memory.
    let mut order: Vec<usize> = Vec::with_capacity(2 * USERS);
    for u in 0..USERS {
        order.push(u);
        if u % 2 == 0 {
            order.push(u);
        }
    }
    order.extend((0..USERS).filter(|u| u % 2 == 1));
    let results: Vec<(usize, u16, serde_json::Value)> = futures::stream::iter(order)
        .map(|u| {
            let svc = &svc;
            async move {
                let (s, b) = svc.issue("race", &format!("user-{u}")).await;
                (u, s, b)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert_eq!(results.len(), 2 * USERS);

    let mut by_user: HashMap<usize, Vec<(u16, serde_json::Value)>> = HashMap::new();
    for (u, s, b) in results {
        assert!(s < 500, "user-{u} got {s}: {b}");
        by_user.entry(u).or_default().push((s, b));
    }
    let mut seqs = BTreeSet::new();
    let mut winners = 0;
    for (u, mut answers) in by_user {
        answers.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        match statuses[..] {
            [201, 200] => {
                winners += 1;
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
            }
            [410, 410] => {
                for (_, b) in &answers {
                    assert_eq!(b["error"], "sold_out");
                }
            }
            _ => panic!("user-{u}: unexpected answers {answers:?}"),
        }
    }
    assert_eq!(winners, STOCK as usize);
    assert_eq!(
        seqs,
        (1..=STOCK).collect::<BTreeSet<_>>(),
        "seqs must be exactly 1..=stock"
    );

    // Redis agrees: counter, holders, and one outbox entry per coupon.
    let mut conn = redis.conn().await;
    let issued: u64 = conn.hget("{stampede:race}:meta", "issued").await.unwrap();
    let holders: u64 = conn.hlen("{stampede:race}:holders").await.unwrap();
    let outbox: u64 = conn.xlen("{stampede:race}:outbox").await.unwrap();
    assert_eq!((issued, holders, outbox), (STOCK, STOCK, STOCK));
    let (status, view) = svc.get("/v1/campaigns/race").await;
    assert_eq!(status, 200);
    assert_eq!(view["state"], "sold_out");
    assert_eq!(view["stock"]["remaining"], 0);

    // Most late answers came from memory, and metrics never carry user ids.
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
