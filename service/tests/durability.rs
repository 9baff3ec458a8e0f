//! `--durability replica`: a coupon is acknowledged only once a Redis replica holds it, so
//! losing the primary loses nothing acknowledged; with `local` (the default) a primary that
//! dies while its replica lags takes acknowledged coupons with it. Real redis-server
//! primary and replica processes; the replica is frozen (SIGSTOP) and cut off to make it lag.

mod common;

use std::time::Duration;

use common::{RedisServer, Service, config, connect_store, eventually, id, single_node_only};
use stampede_core::store::StoreConfig;
use stampede_core::store::fence::FenceConfig;

/// A primary with one linked replica, a campaign of `stock` on it, and `serve` in front.
async fn setup(
    durability: Option<FenceConfig>,
    campaign: &str,
) -> (RedisServer, RedisServer, Service) {
    let primary = RedisServer::start().await;
    let replica = RedisServer::replica_of(&primary).await;
    let store_config = StoreConfig {
        url: primary.url(),
        connections: 1,
        timeout: Duration::from_secs(1),
    };
    let store = connect_store(&store_config).await;
    store
        .ensure_campaign(&id(campaign), 100, None)
        .await
        .unwrap();
    let mut c = config(&primary.url());
    c.durability = durability;
    (primary, replica, Service::start(c).await)
}

/// The users among `users` whose coupon the (now promoted) replica holds.
async fn held_by(replica: &RedisServer, campaign: &str, users: &[String]) -> Vec<String> {
    let mut conn = replica.conn().await;
    let holders = common::key(campaign, "holders");
    let mut held = Vec::new();
    for u in users {
        let rec: Option<String> = redis::cmd("HGET")
            .arg(&holders)
            .arg(u)
            .query_async(&mut conn)
            .await
            .unwrap();
        if rec.is_some() {
            held.push(u.clone());
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_durability_nothing_acknowledged_is_lost_with_the_primary() {
    if single_node_only(
        "a replica of one primary, cut off by hand (the cluster's own failover: redis_cluster_failover.rs)",
    ) {
        return;
    }
    let fence = FenceConfig {
        replicas: 1,
        timeout: Duration::from_millis(300),
    };
    let (mut primary, replica, svc) = setup(Some(fence), "durable").await;
    let mut acknowledged: Vec<String> = Vec::new();
    for i in 0..20 {
        let user = format!("u-{i}");
        assert_eq!(svc.issue("durable", &user).await.0, 201, "{user}");
        acknowledged.push(user);
    }

    // A replica that does not acknowledge: the coupon is not handed out (503, retry).
    primary.cut_off(&replica).await;
    let (status, body) = svc.issue("durable", "stalled").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    // Nor is it shown by a lookup while no replica holds it.
    let (status, body) = svc.get("/v1/campaigns/durable/users/stalled/coupon").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    replica.signal("CONT");
    let (status, body) = eventually(
        "the retry once the replica is back",
        Duration::from_secs(10),
        || async {
            let (status, body) = svc.issue("durable", "stalled").await;
            (status == 200).then_some((status, body))
        },
    )
    .await;
    assert_eq!(
        (status, body["seq"].as_u64()),
        (200, Some(21)),
        "the same coupon: {body}"
    );
    let (status, body) = svc.get("/v1/campaigns/durable/users/stalled/coupon").await;
    assert_eq!((status, body["seq"].as_u64()), (200, Some(21)), "{body}");
    acknowledged.push("stalled".into());

    // The primary dies (SIGKILL); the replica, promoted, holds every acknowledged coupon.
    primary.stop();
    assert_eq!(
        held_by(&replica, "durable", &acknowledged).await,
        acknowledged
    );
    svc.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_durability_a_lagging_replica_loses_acknowledged_coupons() {
    if single_node_only(
        "a replica of one primary, cut off by hand (the cluster's own failover: redis_cluster_failover.rs)",
    ) {
        return;
    }
    let (mut primary, replica, svc) = setup(None, "local").await;
    primary.cut_off(&replica).await;
    let users: Vec<String> = (0..5).map(|i| format!("u-{i}")).collect();
    for user in &users {
        assert_eq!(
            svc.issue("local", user).await.0,
            201,
            "acknowledged at once: {user}"
        );
    }
    primary.stop();
    replica.signal("CONT");
    assert!(
        held_by(&replica, "local", &users).await.is_empty(),
        "the frozen replica never received them: acknowledged, then lost with the primary"
    );
    svc.shutdown.cancel();
}
