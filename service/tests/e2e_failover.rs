//! A Redis failover mid-stampede, on real redis-server processes: a primary with a linked
//! replica behind a proxy that moves to the replica when it is promoted (as a Service or
//! Sentinel endpoint would). With `local` durability the replica lagged (frozen and cut
//! off), so coupons acknowledged on the primary are gone: the issuer notices the new
//! epoch within seconds, the campaign suspends itself, the alert's gauge says so, and the
//! audit names the lost seqs. With `replica` durability the same failover loses nothing
//! acknowledged, and the audit of the (still suspended) campaign finds nothing lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::switch::SwitchProxy;
use common::{RedisServer, Service, config, connect_store, eventually, id, stack};
use redis::AsyncCommands;
use stampede_core::campaign::AdminAction;
use stampede_core::db;
use stampede_core::store::fence::FenceConfig;
use stampede_core::store::{Store, StoreConfig};
use stampede_service::audit::audit;
use tokio_util::sync::CancellationToken;

const CAMPAIGN: &str = "failover";

/// What the stampede's users were told: user → seq of every coupon acknowledged, and the
/// error codes of 503 answers.
#[derive(Default)]
struct Answers {
    acked: HashMap<String, u64>,
    suspended: usize,
}

/// `tasks` users in a loop against `svc` until `stop` (each request a new user).
fn stampede(svc: &Arc<Service>, tasks: usize, stop: &CancellationToken) -> Arc<Mutex<Answers>> {
    let answers = Arc::new(Mutex::new(Answers::default()));
    for t in 0..tasks {
        let (svc, stop, answers) = (svc.clone(), stop.clone(), answers.clone());
        tokio::spawn(async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let user = format!("u-{t}-{i}");
                let (status, body) = svc.issue(CAMPAIGN, &user).await;
                let mut a = answers.lock().unwrap();
                match (status, body["error"].as_str()) {
                    (201, _) => {
                        a.acked.insert(user, body["seq"].as_u64().unwrap());
                    }
                    (503, Some("suspended")) => a.suspended += 1,
                    _ => {}
                }
            }
        });
    }
    answers
}

fn acked_count(answers: &Mutex<Answers>) -> usize {
    answers.lock().unwrap().acked.len()
}

/// A primary with a linked replica, a proxy in front of the primary, a campaign, and the
/// service through the proxy with its epoch recorded.
async fn behind_proxy(
    durability: Option<FenceConfig>,
) -> (RedisServer, RedisServer, SwitchProxy, Arc<Service>) {
    let primary = RedisServer::start().await;
    let replica = RedisServer::replica_of(&primary).await;
    let proxy = SwitchProxy::start(([127, 0, 0, 1], primary.port).into()).await;
    let store = connect_store(&StoreConfig {
        url: proxy.url(),
        connections: 1,
        timeout: Duration::from_secs(1),
    })
    .await;
    store
        .ensure_campaign(&id(CAMPAIGN), 100_000, None)
        .await
        .unwrap();
    let mut c = config(&proxy.url());
    c.durability = durability;
    c.epoch_check = Duration::from_millis(100);
    let svc = Arc::new(Service::start(c).await);
    let conn = primary.conn().await;
    eventually("the epoch recorded", Duration::from_secs(10), || async {
        let epoch: Option<String> = conn.clone().get("stampede:epoch").await.unwrap();
        epoch
    })
    .await;
    drop(conn);
    (primary, replica, proxy, svc)
}

/// Waits until `n` coupons were acknowledged.
async fn until_acked(answers: &Mutex<Answers>, n: usize) {
    let what = format!("{n} coupons acknowledged");
    eventually(&what, Duration::from_secs(30), || async {
        (acked_count(answers) >= n).then_some(())
    })
    .await
}

/// A stampede through a failover to the replica; `lagging` freezes and cuts off the
/// replica first (nothing written from then on reaches it).
async fn stampede_through_failover(durability: Option<FenceConfig>, lagging: bool) -> Failover {
    let (mut primary, replica, proxy, svc) = behind_proxy(durability).await;
    let stop = CancellationToken::new();
    let answers = stampede(&svc, 8, &stop);
    until_acked(&answers, 200).await;
    if lagging {
        primary.cut_off(&replica).await;
    }
    until_acked(&answers, acked_count(&answers) + 200).await;

    // The primary dies; the replica is promoted and the endpoint moves to it.
    primary.stop();
    if lagging {
        replica.signal("CONT");
    }
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query_async(&mut replica.conn().await)
        .await
        .unwrap();
    proxy.point_at(([127, 0, 0, 1], replica.port).into());
    eventually(
        "the campaign suspends itself",
        Duration::from_secs(10),
        || async { (answers.lock().unwrap().suspended > 0).then_some(()) },
    )
    .await;
    stop.cancel();
    let store = common::store(&replica).await;
    Failover {
        answers,
        store,
        svc,
        _replica: replica,
        _proxy: proxy,
    }
}

/// What a stampede through a failover leaves: the answers, a store on the promoted replica
/// and the service (still behind the proxy).
struct Failover {
    answers: Arc<Mutex<Answers>>,
    store: Store,
    svc: Arc<Service>,
    _replica: RedisServer,
    _proxy: SwitchProxy,
}

/// The users among `acked` whose coupon the promoted replica does not hold.
async fn forgotten(store: &Store, acked: &HashMap<String, u64>) -> HashMap<String, u64> {
    let holders = store.holders(&id(CAMPAIGN)).await.unwrap();
    acked
        .iter()
        .filter(|(u, _)| !holders.contains_key(*u))
        .map(|(u, s)| (u.clone(), *s))
        .collect()
}

async fn audit_database() -> sqlx::PgPool {
    let url = stack::fresh_database(&stack::stack_database()).await;
    let pool = db::connect(&url, 2).await.unwrap();
    db::migrate(&pool).await.unwrap();
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_durability_a_failover_loses_coupons_and_the_campaign_suspends_itself() {
    if common::single_node_only(
        "a proxy moved to a promoted replica (a cluster fails over by itself: e2e_cluster_failover.rs)",
    ) {
        return;
    }
    let failover = stampede_through_failover(None, true).await;
    let acked = failover.answers.lock().unwrap().acked.clone();
    let lost = forgotten(&failover.store, &acked).await;
    assert!(
        lost.len() >= 100,
        "the lagging replica lost acknowledged coupons: {} of {}",
        lost.len(),
        acked.len()
    );
    let issued = suspended_without_reuse(&failover, &acked, &lost).await;
    audit_names_the_lost(&failover, &acked, &lost, issued).await;
    lifted_for_good(&failover).await;
    failover.svc.shutdown.cancel();
}

/// The campaign is suspended, no lost seq was handed out again, nothing new is issued,
/// holders get their coupon back, and the metrics say so. Returns the issued counter.
async fn suspended_without_reuse(
    f: &Failover,
    acked: &HashMap<String, u64>,
    lost: &HashMap<String, u64>,
) -> u64 {
    // An answer Redis gave just before it failed over can be recorded after the suspension
    // (the request was between the answer and its record); the epoch watch reports it then.
    // Its user may learn of it after `acked` was taken: the answers so far are compared.
    let snap = eventually(
        "the issuer reported its high",
        Duration::from_secs(10),
        || async {
            let highest_acked = f.answers.lock().unwrap().acked.values().copied().max();
            let snap = f.store.snapshot(&id(CAMPAIGN)).await.unwrap().unwrap();
            (Some(snap.acked_high) == highest_acked).then_some(snap)
        },
    )
    .await;
    let suspension = snap.suspension.expect("suspended");
    // The issuer that handed out higher seqs suspended the campaign on its first issue
    // after the failover: not one seq was handed out twice.
    assert_eq!(suspension.issued_then, snap.issued, "{suspension:?}");
    assert!(
        lost.values().all(|s| *s > snap.issued),
        "a lost seq was reused"
    );
    for i in 0..20 {
        let (status, body) = f.svc.issue(CAMPAIGN, &format!("late-{i}")).await;
        assert_eq!((status, body["error"].as_str()), (503, Some("suspended")));
    }
    let held = acked.keys().find(|u| !lost.contains_key(*u)).unwrap();
    assert_eq!(f.svc.issue(CAMPAIGN, held).await.0, 200, "{held}");
    let again = f.store.snapshot(&id(CAMPAIGN)).await.unwrap().unwrap();
    assert_eq!(again.issued, snap.issued);
    let gauge = r#"stampede_campaign_suspended{campaign="failover"}"#;
    assert_eq!(f.svc.metric(gauge).await, 1.0);
    assert_eq!(
        f.svc.metric("stampede_redis_epoch_changes_total").await,
        1.0
    );
    snap.issued
}

/// The audit names the lost coupons by seq. (It may name more: a coupon the primary
/// issued whose answer died with it was never acknowledged.)
async fn audit_names_the_lost(
    f: &Failover,
    acked: &HashMap<String, u64>,
    lost: &HashMap<String, u64>,
    issued: u64,
) {
    let pool = audit_database().await;
    let report = audit(&f.store, &pool, &id(CAMPAIGN), Duration::ZERO, false)
        .await
        .unwrap();
    let r = &report.seqs;
    eprintln!(
        "acknowledged {}, lost with the primary {}, counter {issued}; audit: acked high {} \
         lost {} counter behind {} issued twice {}",
        acked.len(),
        lost.len(),
        r.acked_high,
        r.lost,
        r.counter_behind,
        r.issued_twice
    );
    assert!(r.lost >= lost.len() as u64, "{report:?}");
    assert_eq!(r.counter_behind, r.acked_high - issued);
    let last_listed = *r.lost_seqs.last().unwrap();
    let lost_seqs: HashSet<u64> = lost.values().copied().collect();
    let acked_seqs: HashSet<u64> = acked.values().copied().collect();
    for s in &r.lost_seqs {
        assert!(
            lost_seqs.contains(s) || !acked_seqs.contains(s),
            "{s} is held"
        );
    }
    for s in lost_seqs.iter().filter(|s| **s <= last_listed) {
        assert!(
            r.lost_seqs.contains(s),
            "lost seq {s} named: {:?}",
            r.lost_seqs
        );
    }
    assert!(report.suspended && !report.clean, "{report:?}");
}

/// An admin lifts the suspension; issuing resumes and the issuer, which still remembers
/// the seqs it handed out before the failover, does not suspend it again.
async fn lifted_for_good(f: &Failover) {
    f.store
        .admin(&id(CAMPAIGN), AdminAction::Unsuspend)
        .await
        .unwrap();
    // Across two epoch checks made after the lift, too.
    let checks = "stampede_redis_epoch_checks_total";
    let before = f.svc.metric(checks).await;
    eventually("two more epoch checks", Duration::from_secs(10), || async {
        (f.svc.metric(checks).await >= before + 2.0).then_some(())
    })
    .await;
    for i in 0..5 {
        assert_eq!(f.svc.issue(CAMPAIGN, &format!("after-{i}")).await.0, 201);
    }
    let snap = f.store.snapshot(&id(CAMPAIGN)).await.unwrap().unwrap();
    assert!(snap.suspension.is_none(), "{snap:?}");
    eventually("the gauge clears", Duration::from_secs(5), || async {
        let text = f.svc.metrics().await;
        let gauge = r#"stampede_campaign_suspended{campaign="failover"} 0"#;
        text.contains(gauge).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_durability_the_same_failover_loses_nothing_acknowledged() {
    if common::single_node_only(
        "a proxy moved to a promoted replica (a cluster fails over by itself: e2e_cluster_failover.rs)",
    ) {
        return;
    }
    let fence = FenceConfig {
        replicas: 1,
        timeout: Duration::from_millis(500),
    };
    let failover = stampede_through_failover(Some(fence), false).await;
    let (store, svc) = (&failover.store, &failover.svc);
    let acked = failover.answers.lock().unwrap().acked.clone();
    assert!(acked.len() >= 400, "{}", acked.len());
    assert!(
        forgotten(store, &acked).await.is_empty(),
        "every acknowledged coupon is on the promoted replica"
    );
    // Suspended all the same (a failover is noticed whatever the durability), and the
    // audit shows nothing lost, so lifting it is safe.
    let pool = audit_database().await;
    let report = audit(store, &pool, &id(CAMPAIGN), Duration::ZERO, false)
        .await
        .unwrap();
    assert!(report.suspended, "{report:?}");
    assert_eq!(
        (
            report.seqs.lost,
            report.seqs.counter_behind,
            report.seqs.issued_twice
        ),
        (0, 0, 0),
        "{report:?}"
    );
    svc.shutdown.cancel();
}
