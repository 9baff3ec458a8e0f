//! A sharded campaign through a primary failover on a real Redis Cluster (three primaries,
//! each with a replica; one bucket on each): the primary of one bucket is killed mid-
//! stampede. The other buckets keep issuing (and draw stock from each other as they run
//! dry), the failed bucket suspends itself once its replica is promoted, an admin lifts
//! the suspension, and the crowd sells the campaign out. With `--durability replica`:
//! every coupon acknowledged is held, seqs are unique within 1..=stock, exactly the stock
//! is issued, and the ledger balances.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::crowd::{Shared, count, stampede, until_count};
use common::{RedisServer, Service, config, eventually, id, key};
use redis::AsyncCommands;
use stampede_core::campaign::AdminAction;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use stampede_core::store::fence::FenceConfig;
use tokio_util::sync::CancellationToken;

const STOCK: u64 = 3_000;
const WAIT: Duration = Duration::from_secs(30);

/// A cluster of three primaries with a replica each, the sharded campaign (a bucket on
/// each primary), and the service with `--durability replica` and a 100 ms epoch check.
async fn sharded_campaign() -> (RedisServer, Store, Arc<Service>, Vec<CampaignId>) {
    let cluster = RedisServer::start_cluster(3, 1).await;
    let store = common::store(&cluster).await;
    let c = id("hot");
    store
        .ensure_sharded(&c, STOCK, None, false, 3)
        .await
        .unwrap();
    let buckets = store.buckets(&c).await.unwrap().unwrap();
    let mut cfg = config(&cluster.url());
    cfg.durability = Some(FenceConfig {
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    cfg.epoch_check = Duration::from_millis(100);
    let svc = Arc::new(Service::start(cfg).await);
    for b in &buckets {
        let (conn, k) = (cluster.conn().await, key(b.as_str(), "epoch"));
        eventually("every bucket's epoch recorded", WAIT, || {
            let (mut conn, k) = (conn.clone(), k.clone());
            async move { conn.get::<_, Option<String>>(k).await.ok()? }
        })
        .await;
    }
    (cluster, store, svc, buckets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_campaign_keeps_every_invariant_through_a_failover() {
    let (mut cluster, store, svc, buckets) = sharded_campaign().await;
    let c = id("hot");
    let stop = CancellationToken::new();
    let answers = stampede(&svc, "hot", 6, &stop);
    until_count(&answers, "201", 300, WAIT).await;

    let victim = cluster.primary_of(&key(buckets[0].as_str(), "meta")).await;
    cluster.signal_node(victim, "KILL");
    let issued_then = count(&answers, "201");
    until_count(&answers, "201", issued_then + 300, WAIT).await; // the other buckets
    until_count(&answers, "503 suspended", 1, WAIT).await; // the failed one, once promoted
    // The killed node comes back as the promoted one's replica (the fence needs one), the
    // audit found nothing lost, an admin lifts the suspension.
    cluster.restart_node(victim).await;
    store.admin(&c, AdminAction::Unsuspend).await.unwrap();
    until_sold_out(&store, &c, &answers).await;
    stop.cancel();
    every_invariant_holds(&store, &c, &answers).await;
}

/// Waits until the crowd sold the campaign out; says where things stand if it does not.
async fn until_sold_out(store: &Store, c: &CampaignId, answers: &Shared) {
    let sold_out = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(Some(snap)) = store.snapshot(c).await
                && snap.issued == STOCK
                && count(answers, "410 sold_out") > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    if sold_out.await.is_err() {
        let outcomes = answers.lock().unwrap().outcomes.clone();
        let buckets = store.shard_ledger(c).await.map(|l| l.map(|l| l.buckets));
        panic!("not sold out: {outcomes:?}\n{buckets:?}");
    }
}

/// Every coupon acknowledged is held, seqs are unique within 1..=stock, exactly the stock
/// was issued, and the ledger balances with nothing in transit.
async fn every_invariant_holds(store: &Store, c: &CampaignId, answers: &Shared) {
    let acked = answers.lock().unwrap().acked.clone();
    let seqs: HashSet<u64> = acked.values().copied().collect();
    assert_eq!(seqs.len(), acked.len(), "no seq acknowledged to two users");
    assert!(
        seqs.iter().all(|s| (1..=STOCK).contains(s)),
        "seqs within the stock"
    );
    let holders = store.holders(c).await.unwrap();
    let lost: Vec<&String> = acked.keys().filter(|u| !holders.contains_key(*u)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged, then lost with the primary: {lost:?}"
    );
    assert_eq!(holders.len() as u64, STOCK, "exactly the stock");
    let ledger = store.shard_ledger(c).await.unwrap().unwrap();
    assert!(ledger.problems.is_empty(), "{:?}", ledger.problems);
    assert!(ledger.in_transit.is_empty(), "{:?}", ledger.in_transit);
}
