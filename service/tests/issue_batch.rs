//! Group commit of the issue script on a real Redis: issuances of one campaign that arrive
//! while another is with Redis share one script call, and the batch decides each of them
//! as a call of its own would (once per user, never past the stock, a waiting room's
//! admissions checked and ended one by one).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::held::queued_behind;
use common::{RedisServer, id, issuance_counts, key, kit::sample, room::room};
use futures::future::join_all;
use stampede_core::batches::Batches;
use stampede_core::coupon::Decision;
use stampede_core::ids::UserId;
use stampede_core::store::conn::RedisConn;
use stampede_core::store::{HandedOut, Store, StoreConfig};
use stampede_service::metrics::Metrics;

/// A store with one connection (so one batch in flight per campaign) and its metrics.
async fn one_turn_store(redis: &RedisServer) -> (Store, Metrics) {
    let metrics = Metrics::new();
    let config = StoreConfig {
        url: redis.url(),
        connections: 1,
        timeout: Duration::from_secs(2),
    };
    let store = Store::connect(&config, metrics.redis.clone())
        .await
        .unwrap();
    (store, metrics)
}

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

/// (script calls, issuances they decided), from the batch size histogram.
fn batches(metrics: &Metrics) -> (f64, f64) {
    let text = metrics.render();
    (
        sample(&text, "stampede_redis_issue_batch_size_count"),
        sample(&text, "stampede_redis_issue_batch_size_sum"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuances_share_script_calls_and_each_is_decided_once() {
    const STOCK: u64 = 50;
    let redis = RedisServer::start().await;
    let (store, metrics) = one_turn_store(&redis).await;
    let c = id("batched");
    store.ensure_campaign(&c, STOCK, None).await.unwrap();

    // 100 users ask four times each, all at once: 400 asks for 50 coupons.
    let asks: Vec<UserId> = (0..400).map(|i| user(&format!("u{}", i % 100))).collect();
    let answers = join_all(asks.iter().map(|u| store.issue(&c, u))).await;
    let mut by_user: HashMap<&str, Vec<Decision>> = HashMap::new();
    for (u, d) in asks.iter().zip(answers) {
        by_user.entry(u.as_str()).or_default().push(d.unwrap());
    }

    let mut seqs = BTreeSet::new();
    for (u, decisions) in by_user {
        let issued: Vec<_> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Issued(r) => Some(r),
                _ => None,
            })
            .collect();
        match issued[..] {
            [won] => {
                assert!(seqs.insert(won.seq), "seq {} issued twice", won.seq);
                for d in &decisions {
                    assert!(
                        matches!(d, Decision::Issued(r) | Decision::Already(r) if r == won),
                        "{u}: {decisions:?}"
                    );
                }
            }
            [] => assert!(
                decisions.iter().all(|d| *d == Decision::SoldOut(STOCK)),
                "{u}: {decisions:?}"
            ),
            _ => panic!("{u} got more than one coupon: {decisions:?}"),
        }
    }
    assert_eq!(seqs, (1..=STOCK).collect::<BTreeSet<_>>());
    assert_eq!(
        issuance_counts(&redis, "batched").await,
        (STOCK, STOCK, STOCK)
    );

    let (calls, decided) = batches(&metrics);
    assert_eq!(decided, 400.0, "every ask went through a batch");
    // Unbatched, every ask is a call of its own (400). How many calls 400 asks share moves
    // with the scheduling (join_all polls them in slices; each batch leaves with whatever
    // queued while the one before it was out): 3 or 16 on this machine, run to run.
    assert!(
        calls <= 40.0,
        "400 asks at once took {calls} script calls: they were not batched"
    );
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Writes admissions (user, expiry ms) into the "roomy" campaign's room, as queue.lua does.
async fn admit(conn: &mut RedisConn, admissions: &[(&str, i64)]) {
    for (u, expiry) in admissions {
        let _: () = redis::cmd("ZADD")
            .arg(key("roomy", "wr:active"))
            .arg(expiry)
            .arg(u)
            .query_async(conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_issues_only_to_the_live_admissions_its_users_name() {
    let redis = RedisServer::start().await;
    let (store, metrics) = one_turn_store(&redis).await;
    let c = id("roomy");
    store
        .ensure_campaign_with_room(&c, 10, None, (false, 1), &room(100, 100))
        .await
        .unwrap();
    let live = now_ms() + 60_000;
    let mut conn = redis.conn().await;
    admit(&mut conn, &[("in-0", live), ("in-1", live), ("in-2", live)]).await;
    admit(
        &mut conn,
        &[("wrong-token", live), ("expired", now_ms() - 1_000)],
    )
    .await;

    // What each names as its admission, and what it must get, all in one go.
    let asks = [
        ("in-0", Some(live), "issued"),
        ("in-1", Some(live), "issued"),
        ("never-admitted", Some(live), "admission_required"),
        ("in-2", Some(live), "issued"),
        ("wrong-token", Some(live + 1), "admission_required"),
        ("expired", Some(now_ms() - 1_000), "admission_required"),
        ("in-1", None, "already"),
        ("in-2", Some(live), "already"),
    ];
    let users: Vec<UserId> = asks.iter().map(|(u, _, _)| user(u)).collect();
    let ask = |i: usize| store.issue_routed(&c, &users[i], asks[i].1, |_| HandedOut::default());
    // The first waits in Redis while the other seven queue behind it: one batch of seven.
    let answers = queued_behind(&redis, ask(0), (1..asks.len()).map(ask).collect()).await;
    let got: Vec<_> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().decision.label())
        .collect();
    let want: Vec<_> = asks.iter().map(|(_, _, w)| *w).collect();
    // A repeat in the batch after the first is answered as a holder.
    assert_eq!(got, want);
    assert_eq!(
        batches(&metrics),
        (2.0, asks.len() as f64),
        "(script calls, issuances): the first alone, then the other seven together"
    );

    // The coupons ended their admissions; the refused ones keep theirs.
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(key("roomy", "wr:active"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["expired", "wrong-token"]);
    assert_eq!(issuance_counts(&redis, "roomy").await, (3, 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gave_up_waiting_is_left_out_of_its_batch() {
    let redis = RedisServer::start().await;
    let (store, metrics) = one_turn_store(&redis).await;
    let c = id("patient");
    store.ensure_campaign(&c, 10, None).await.unwrap();
    redis.pause_writes(10_000).await;

    // The first takes the only turn and waits in Redis; the next two wait for the turn.
    let first_user = user("first");
    let first = store.issue(&c, &first_user);
    tokio::pin!(first);
    assert!(futures::poll!(&mut first).is_pending());
    let quitter = user("gave-up");
    let gave_up = tokio::time::timeout(Duration::from_millis(50), store.issue(&c, &quitter)).await;
    assert!(gave_up.is_err(), "it waited for the turn");
    let stayed_user = user("stayed");
    let stayed = store.issue(&c, &stayed_user);
    tokio::pin!(stayed);
    assert!(futures::poll!(&mut stayed).is_pending());

    redis.thaw().await;
    assert_eq!(first.await.unwrap().label(), "issued");
    assert_eq!(stayed.await.unwrap().label(), "issued");
    let holders: Vec<String> = redis::cmd("HKEYS")
        .arg(key("patient", "holders"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(
        holders.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["first".to_owned(), "stayed".to_owned()])
    );
    assert_eq!(
        batches(&metrics),
        (2.0, 2.0),
        "the quitter's ask never went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_answer_fails_its_own_ask_and_not_the_batch() {
    let redis = RedisServer::start().await;
    let (store, metrics) = one_turn_store(&redis).await;
    let c = id("mended");
    store.ensure_campaign(&c, 10, None).await.unwrap();
    // A holder record written by hand, not in the script's "seq:issuedMs:code" form.
    let _: () = redis::cmd("HSET")
        .arg(key("mended", "holders"))
        .arg(&["scribbled", "not-a-record"])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    redis.pause_writes(10_000).await;

    // The first takes the only turn; the other two wait and go out as one batch.
    let (first_user, scribbled_user, fresh_user) =
        (user("first"), user("scribbled"), user("fresh"));
    let first = store.issue(&c, &first_user);
    tokio::pin!(first);
    assert!(futures::poll!(&mut first).is_pending());
    let scribbled = store.issue(&c, &scribbled_user);
    tokio::pin!(scribbled);
    assert!(futures::poll!(&mut scribbled).is_pending());
    let fresh = store.issue(&c, &fresh_user);
    tokio::pin!(fresh);
    assert!(futures::poll!(&mut fresh).is_pending());

    redis.thaw().await;
    assert_eq!(first.await.unwrap().label(), "issued");
    let err = scribbled.await.expect_err("an unreadable holder record");
    assert!(err.to_string().contains("not-a-record"), "{err}");
    assert_eq!(fresh.await.unwrap().label(), "issued", "decided beside it");
    assert_eq!(
        batches(&metrics),
        (2.0, 3.0),
        "the two waiting asks were one batch"
    );
    assert_eq!(issuance_counts(&redis, "mended").await.0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outbox_batches_a_call_writes_its_coupons_as_one_entry() {
    const STOCK: u64 = 200;
    let redis = RedisServer::start().await;
    let (store, metrics) = one_turn_store(&redis).await;
    let store = store.writing_outbox_batches(Batches::Always);
    let c = id("bundled");
    store.ensure_campaign(&c, STOCK, None).await.unwrap();

    let asks: Vec<UserId> = (0..STOCK).map(|i| user(&format!("u{i}"))).collect();
    let answers = join_all(asks.iter().map(|u| store.issue(&c, u))).await;
    let mut held = HashMap::new();
    for (u, d) in asks.iter().zip(answers) {
        match d.unwrap() {
            Decision::Issued(r) => held.insert(u.as_str().to_owned(), r),
            other => panic!("{u}: {other:?}"),
        };
    }

    let entries = common::outbox_entries(&redis, "bundled").await;
    let coupons: Vec<_> = entries.concat();
    assert_eq!(coupons.len() as u64, STOCK, "every coupon in the outbox");
    let mut seqs = BTreeSet::new();
    for i in &coupons {
        let r = &held[&i.user_id];
        assert_eq!(
            (i.seq, &i.coupon_code, i.issued_at_ms),
            (r.seq, &r.code, r.issued_ms),
            "{}: the outbox carries the holder record",
            i.user_id
        );
        assert!(seqs.insert(i.seq), "seq {} twice in the outbox", i.seq);
    }
    let (calls, _) = batches(&metrics);
    assert!(
        entries.len() < coupons.len(),
        "{} entries for {} coupons: calls of several coupons wrote one each",
        entries.len(),
        coupons.len()
    );
    assert!(
        entries.len() as f64 <= calls,
        "{} entries from {calls} script calls",
        entries.len()
    );
}
