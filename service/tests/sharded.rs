//! One hot campaign split into buckets (`--shards`), on real Redis (a cluster with
//! `STAMPEDE_TEST_REDIS_CLUSTER=1`, where the buckets sit on different primaries): never
//! more than the stock, seqs unique within 1..=stock, one coupon per user, stock moving to
//! the bucket users come to (take before give, in the ledger the audit checks), sold out
//! only when every bucket is, restocks shared out, admin changes on every bucket.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use common::{RedisServer, Service, eventually, id, key, setup, setup_with};
use futures::StreamExt;
use stampede_core::campaign::AdminAction;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use stampede_core::store::shards::bucket_index;

/// Sends one issue request per user in `users` (64 at a time); returns user → (status, seq).
async fn stampede(svc: &Service, campaign: &str, users: &[String]) -> HashMap<String, (u16, u64)> {
    futures::stream::iter(users.iter().cloned())
        .map(|u| async move {
            let (s, b) = svc.issue(campaign, &u).await;
            assert!(s == 201 || s == 200 || s == 410, "{u}: {s} {b}");
            (u, (s, b["seq"].as_u64().unwrap_or(0)))
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// Users whose bucket among `n` is `bucket`.
fn users_of(bucket: usize, n: usize, count: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|u| bucket_index(u, n) == bucket)
        .take(count)
        .collect()
}

/// The seqs of the coupons handed out in `answers`, checked unique.
fn seqs_of(answers: &HashMap<String, (u16, u64)>) -> BTreeSet<u64> {
    let issued: Vec<u64> = answers
        .values()
        .filter(|(s, _)| *s == 201)
        .map(|(_, q)| *q)
        .collect();
    let unique: BTreeSet<u64> = issued.iter().copied().collect();
    assert_eq!(unique.len(), issued.len(), "no seq handed out twice");
    unique
}

/// The ledger of `c`, which must balance; returns it.
async fn balanced(store: &Store, c: &CampaignId) -> stampede_core::store::shard_audit::ShardLedger {
    let ledger = store.shard_ledger(c).await.unwrap().expect("sharded");
    assert!(ledger.problems.is_empty(), "{ledger:?}");
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_a_sharded_campaign_sells_exactly_the_stock_once_per_user() {
    let (_redis, svc, store) = setup().await;
    let c = id("hot");
    store.ensure_sharded(&c, 300, None, false, 3).await.unwrap();
    let users: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    let first = stampede(&svc, "hot", &users).await;
    let seqs = seqs_of(&first);
    assert_eq!(seqs, (1..=300).collect(), "exactly the stock, seqs 1..=300");
    // Everyone again: the same coupon for holders, sold out for the rest.
    let again = stampede(&svc, "hot", &users).await;
    for (u, (s, q)) in &again {
        let (s0, q0) = first[u];
        match s0 {
            201 => assert_eq!((*s, *q), (200, q0), "{u} gets the same coupon back"),
            _ => assert_eq!(*s, 410, "{u}"),
        }
    }
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!((snap.total, snap.issued), (300, 300));
    let ledger = balanced(&store, &c).await;
    assert_eq!(ledger.issued_seqs, (1..=300).collect::<Vec<_>>());
    assert_eq!(store.holders(&c).await.unwrap().len(), 300);
    let (s, b) = svc.get("/v1/campaigns/hot/users/user-1/coupon").await;
    assert!(s == 200 || s == 404, "{s} {b}");
    assert_eq!(
        s == 200,
        first["user-1"].0 == 201,
        "lookups find the user's bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_moves_to_the_bucket_users_come_to_and_sells_out_only_when_all_are_dry() {
    let (_redis, svc, store) = setup().await;
    let c = id("lopsided");
    store.ensure_sharded(&c, 30, None, false, 3).await.unwrap();
    // Only users of bucket 0 come: its own 10, then everything the others can spare.
    let users = users_of(0, 3, 40, "u");
    let mut handed = 0;
    for u in &users {
        let (s, _) = svc.issue("lopsided", u).await;
        handed += usize::from(s == 201);
        if handed < 30 {
            assert_eq!(s, 201, "{u}: stock remains in other buckets");
        } else if s != 201 {
            assert_eq!(s, 410, "{u}");
        }
    }
    assert_eq!(handed, 30, "the whole stock reached bucket 0's users");
    let ledger = balanced(&store, &c).await;
    assert!(ledger.in_transit.is_empty(), "{ledger:?}");
    let totals: Vec<(u64, u64)> = ledger.buckets.iter().map(|b| (b.total, b.issued)).collect();
    assert_eq!(totals, [(30, 30), (0, 0), (0, 0)], "{ledger:?}");
    // A user of another bucket arriving now: sold out everywhere.
    let other = &users_of(1, 3, 1, "late")[0];
    assert_eq!(svc.issue("lopsided", other).await.0, 410);
}

#[tokio::test]
async fn a_transfer_cut_between_take_and_give_creates_no_stock_and_completes_once() {
    let redis = RedisServer::start().await;
    let store = common::store(&redis).await;
    let c = id("transit");
    store.ensure_sharded(&c, 12, None, false, 2).await.unwrap();
    let buckets = store.buckets(&c).await.unwrap().unwrap();
    let (a, b) = (&buckets[0], &buckets[1]);
    // The first half only, as if the process died after it.
    let ranges = store.transfer_take(a, b, "t-cut", 4).await.unwrap();
    assert_eq!(ranges, "3:4", "the top of bucket 0's 1..=6");
    let ledger = balanced(&store, &c).await;
    assert_eq!(ledger.in_transit.len(), 1, "{ledger:?}");
    assert_eq!(
        ledger.buckets[0].total + ledger.buckets[1].total,
        8,
        "4 in transit"
    );
    // Taking again under the same id takes nothing more.
    assert_eq!(store.transfer_take(a, b, "t-cut", 4).await.unwrap(), "3:4");
    assert_eq!(
        store
            .transfer_give(b, a.as_str(), "t-cut", &ranges)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .transfer_give(b, a.as_str(), "t-cut", &ranges)
            .await
            .unwrap(),
        0
    );
    let ledger = balanced(&store, &c).await;
    assert!(ledger.in_transit.is_empty(), "{ledger:?}");
    assert_eq!((ledger.buckets[0].total, ledger.buckets[1].total), (2, 10));
    // A give nobody took is stock made from nothing: the ledger says so.
    store
        .transfer_give(a, b.as_str(), "t-forged", "100:1")
        .await
        .unwrap();
    let ledger = store.shard_ledger(&c).await.unwrap().unwrap();
    assert!(
        ledger.problems.iter().any(|p| p.contains("never gave")),
        "{ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restock_is_shared_out_and_admin_changes_reach_every_bucket() {
    let (_redis, svc, store) = setup().await;
    let c = id("grows");
    store.ensure_sharded(&c, 9, None, false, 3).await.unwrap();
    let users: Vec<String> = (0..30).map(|i| format!("g-{i}")).collect();
    assert_eq!(seqs_of(&stampede(&svc, "grows", &users).await).len(), 9);
    assert_eq!(store.admin(&c, AdminAction::Restock(6)).await.unwrap(), 15);
    // Sold out until the issuer's recheck sees the restock (then it asks Redis again).
    eventually("the restock seen", Duration::from_secs(10), || async {
        (svc.metric("stampede_soldout_campaigns").await == 0.0).then_some(())
    })
    .await;
    store.admin(&c, AdminAction::Pause).await.unwrap();
    for u in (0..3).map(|b| users_of(b, 3, 1, "p").remove(0)) {
        let (s, body) = svc.issue("grows", &u).await;
        assert_eq!((s, body["error"].as_str()), (409, Some("paused")), "{u}");
    }
    store.admin(&c, AdminAction::Resume).await.unwrap();
    let more: Vec<String> = (30..60).map(|i| format!("g-{i}")).collect();
    let seqs = seqs_of(&stampede(&svc, "grows", &more).await);
    assert_eq!(seqs, (10..=15).collect(), "the new seqs, each once");
    balanced(&store, &c).await;
    let err = store
        .ensure_sharded(&c, 15, None, false, 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shards cannot change"), "{err}");
    let err = store.ensure_campaign(&c, 15, None).await.unwrap_err();
    assert!(err.to_string().contains("shards cannot change"), "{err}");

    assert!(store.forget(&c).await.unwrap() > 0);
    assert!(store.buckets(&c).await.unwrap().is_none());
    eventually(
        "forgotten with its buckets",
        Duration::from_secs(10),
        || async { (svc.issue("grows", "g-0").await.0 == 404).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn on_a_cluster_the_buckets_sit_on_different_primaries() {
    let redis = RedisServer::start().await;
    if !redis.is_cluster() {
        eprintln!(
            "single Redis: placement is a cluster's question (STAMPEDE_TEST_REDIS_CLUSTER=1)"
        );
        return;
    }
    let store = common::store(&redis).await;
    let c = id("spread");
    store.ensure_sharded(&c, 99, None, false, 3).await.unwrap();
    let mut primaries = HashSet::new();
    for b in store.buckets(&c).await.unwrap().unwrap() {
        primaries.insert(redis.primary_of(&key(b.as_str(), "meta")).await);
    }
    assert_eq!(primaries.len(), 3, "one bucket per primary");
}

/// A transfer cut between take and give (its process died) does not leave its seqs out of
/// the sale: when the buckets run dry, the transfer is given and sold too.
#[tokio::test]
async fn stock_a_transfer_left_in_transit_is_still_sold() {
    let redis = RedisServer::start().await;
    let store = common::store(&redis).await;
    let c = id("stranded");
    store.ensure_sharded(&c, 12, None, false, 2).await.unwrap();
    let buckets = store.buckets(&c).await.unwrap().unwrap();
    let ranges = store
        .transfer_take(&buckets[0], &buckets[1], "t-died", 4)
        .await;
    assert_eq!(ranges.unwrap(), "3:4");
    let mut issued = 0;
    for bucket in 0..2 {
        for u in users_of(bucket, 2, 12, &format!("s{bucket}")) {
            let user = stampede_core::ids::UserId::parse(&u).unwrap();
            issued += u64::from(store.issue(&c, &user).await.unwrap().label() == "issued");
        }
    }
    assert_eq!(issued, 12, "the 4 in transit were sold too");
    let ledger = balanced(&store, &c).await;
    assert!(ledger.in_transit.is_empty(), "{ledger:?}");
}

/// Processes that learned a campaign's buckets before it was forgotten and created again
/// with another count do not route by the old count: the bucket they ask refuses (it knows
/// its siblings), they learn the buckets anew, and each user still gets one coupon, which
/// a lookup finds.
#[tokio::test]
async fn a_campaign_created_again_with_another_bucket_count_is_routed_anew() {
    let redis = RedisServer::start().await;
    let (issuer, looker) = (common::store(&redis).await, common::store(&redis).await);
    let c = id("regrown");
    issuer
        .ensure_sharded(&c, 100, None, false, 2)
        .await
        .unwrap();
    let user = |u: &str| stampede_core::ids::UserId::parse(u).unwrap();
    assert_eq!(
        issuer.issue(&c, &user("warm")).await.unwrap().label(),
        "issued"
    );
    assert!(looker.lookup(&c, &user("warm")).await.unwrap().is_some());
    issuer.forget(&c).await.unwrap();
    let fresh = common::store(&redis).await;
    fresh.ensure_sharded(&c, 100, None, false, 3).await.unwrap();

    // A user the old count sends to a bucket that exists again but is not theirs now.
    let moved = (0..)
        .map(|i| format!("moved-{i}"))
        .find(|u| bucket_index(u, 2) != bucket_index(u, 3))
        .unwrap();
    let first = fresh.issue(&c, &user(&moved)).await.unwrap();
    assert_eq!(first.label(), "issued");
    let held = looker.lookup(&c, &user(&moved)).await.unwrap();
    assert!(held.is_some(), "the stale lookup asked another bucket");
    let again = issuer.issue(&c, &user(&moved)).await.unwrap();
    assert_eq!(again.label(), "already", "a second coupon");
    let ledger = balanced(&fresh, &c).await;
    assert_eq!(ledger.buckets.len(), 3, "{ledger:?}");
}

/// A provisioning cut short after its buckets, before the campaign's own meta, leaves
/// buckets with shares of its own: provisioned again with another count, they are set to
/// the new shares (they issued nothing), not kept beside new ones over the same seqs; one
/// that issued is refused. A bucket missing under an existing campaign (a forget cut
/// short) is refused too, not made anew over shares that moved.
#[tokio::test]
async fn buckets_left_by_a_provisioning_cut_short_never_overlap() {
    let redis = RedisServer::start().await;
    let store = common::store(&redis).await;
    let mut conn = redis.conn().await;
    let del = |k: String| redis::cmd("DEL").arg(k).clone();
    let c = id("cut");
    store.ensure_sharded(&c, 100, None, false, 2).await.unwrap();
    let _: () = del(key("cut", "meta"))
        .query_async(&mut conn)
        .await
        .unwrap();
    store.ensure_sharded(&c, 100, None, false, 4).await.unwrap();
    balanced(&store, &c).await;
    let svc = Service::start(common::config(&redis.url())).await;
    let users: Vec<String> = (0..200).map(|i| format!("cut-{i}")).collect();
    let answers = stampede(&svc, "cut", &users).await;
    assert_eq!(seqs_of(&answers), (1..=100).collect::<BTreeSet<u64>>());

    let d = id("cut-after-one");
    store.ensure_sharded(&d, 100, None, false, 2).await.unwrap();
    let buckets = store.buckets(&d).await.unwrap().unwrap();
    let _: () = del(key(d.as_str(), "meta"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(key(buckets[0].as_str(), "meta"))
        .arg(&["issued", "1"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = store.ensure_sharded(&d, 100, None, false, 4).await;
    assert!(format!("{err:?}").contains("cut short"), "{err:?}");

    let e = id("half-forgotten");
    store.ensure_sharded(&e, 100, None, false, 2).await.unwrap();
    let buckets = store.buckets(&e).await.unwrap().unwrap();
    let _: () = del(key(buckets[1].as_str(), "meta"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = store.ensure_sharded(&e, 100, None, false, 2).await;
    assert!(format!("{err:?}").contains("missing"), "{err:?}");
    store.forget(&e).await.unwrap();
    store.ensure_sharded(&e, 100, None, false, 2).await.unwrap();
    balanced(&store, &e).await;
}

/// A bucket whose counter went back suspends the campaign, and the gauge the alert watches
/// says so under the campaign's id: the rule selects the campaign's id, and a series of the
/// bucket's own would never match it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_bucket_is_gauged_as_its_campaign() {
    let (redis, svc, store) = setup_with(|c| c.epoch_check = Duration::from_millis(100)).await;
    let c = id("gauged");
    store.ensure_sharded(&c, 30, None, false, 2).await.unwrap();
    let users = users_of(0, 2, 3, "g");
    for u in &users[..2] {
        assert_eq!(svc.issue("gauged", u).await.0, 201, "{u}");
    }
    // Redis loses the users' bucket's counter (the first; on a cluster buckets are numbered
    // by where their slots fall): the issuer that handed its seqs out sees it go back.
    let bucket = store.buckets(&c).await.unwrap().unwrap()[0].clone();
    let _: () = redis::cmd("HSET")
        .arg(key(bucket.as_str(), "meta"))
        .arg("issued")
        .arg(0)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let (status, body) = svc.issue("gauged", &users[2]).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("suspended")));
    let gauge = r#"stampede_campaign_suspended{campaign="gauged"}"#;
    eventually(
        "the campaign's gauge says it",
        Duration::from_secs(10),
        || async { (svc.metric(gauge).await == 1.0).then_some(()) },
    )
    .await;
    let text = svc.metrics().await;
    assert!(
        !text.contains("campaign=\"gauged~"),
        "a bucket's own series: {text}"
    );
}

/// Restocks of a sharded campaign at the same time each add their share: none is lost
/// because another read the same stock before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_restocks_of_a_sharded_campaign_all_count() {
    let (_redis, _svc, store) = setup().await;
    let c = id("restocked-together");
    store.ensure_sharded(&c, 9, None, false, 3).await.unwrap();
    let restock = |n| store.admin(&c, AdminAction::Restock(n));
    let (a, b, d, e) = tokio::join!(restock(1), restock(5), restock(2), restock(4));
    for r in [a, b, d, e] {
        r.unwrap();
    }
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!(snap.total, 21, "9 and restocks of 1, 5, 2 and 4");
    assert_eq!(balanced(&store, &c).await.stock, 21);
}
