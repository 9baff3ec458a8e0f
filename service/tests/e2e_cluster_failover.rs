//! A Redis Cluster failover mid-stampede, on real redis-server processes (three primaries,
//! each with a replica): the primary serving a campaign's slot is killed (SIGKILL) and the
//! cluster promotes its replica by itself. Meanwhile that campaign answers 503
//! `unavailable`, never hangs; within seconds the promoted replica answers for the moved
//! slot, the issuer notices the new epoch and suspends the campaign, and a campaign on
//! another shard keeps issuing throughout. With `local` durability a replica that lagged
//! (frozen, its link cut) comes up without acknowledged coupons and the audit names them;
//! with `replica` durability nothing acknowledged is lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crowd::{Answers, Shared, count, stampede, until_count};
use common::{RedisServer, Service, config, eventually, id, key, stack};
use redis::AsyncCommands;
use stampede_core::campaign::AdminAction;
use stampede_core::db;
use stampede_core::store::Store;
use stampede_core::store::fence::FenceConfig;
use stampede_service::audit::{AuditReport, audit};
use tokio_util::sync::CancellationToken;

const CAMPAIGN: &str = "failover";
const STOCK: u64 = 1_000_000;
/// No answer may take longer (the service's Redis timeout is 1 s).
const ANSWER_BOUND: Duration = Duration::from_secs(3);
/// The promoted replica answers for the campaign this soon after the kill.
const RESUME_BOUND: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(30);
const FENCE: FenceConfig = FenceConfig {
    replicas: 1,
    timeout: Duration::from_millis(500),
};

/// A cluster of three primaries with `n` replicas each, the campaign, the service on it
/// (checking the epoch every 100 ms) with its epoch recorded, and a store.
struct Shards {
    cluster: RedisServer,
    svc: Arc<Service>,
    store: Store,
    /// The primary serving the campaign's slot, and its replicas.
    primary: u16,
    replicas: Vec<u16>,
}

async fn shards(durability: Option<FenceConfig>, n: usize) -> Shards {
    let cluster = RedisServer::start_cluster(3, n).await;
    let store = common::store(&cluster).await;
    provision(&store, CAMPAIGN).await;
    let mut c = config(&cluster.url());
    c.durability = durability;
    c.epoch_check = Duration::from_millis(100);
    let svc = Arc::new(Service::start(c).await);
    let conn = cluster.conn().await;
    eventually("the epoch recorded", WAIT, || async {
        let epoch: Option<String> = conn.clone().get(key(CAMPAIGN, "epoch")).await.unwrap();
        epoch
    })
    .await;
    let primary = cluster.primary_of(&key(CAMPAIGN, "meta")).await;
    let replicas = cluster.replicas_of(primary).await;
    assert_eq!(replicas.len(), n, "{primary}: {replicas:?}");
    Shards {
        cluster,
        svc,
        store,
        primary,
        replicas,
    }
}

async fn provision(store: &Store, campaign: &str) {
    let c = id(campaign);
    store.ensure_campaign(&c, STOCK, None).await.unwrap();
}

/// A campaign, provisioned, whose slot another primary than the campaign's serves.
async fn campaign_elsewhere(s: &Shards) -> String {
    for i in 0.. {
        let other = format!("elsewhere-{i}");
        if s.cluster.primary_of(&key(&other, "meta")).await != s.primary {
            provision(&s.store, &other).await;
            return other;
        }
    }
    unreachable!()
}

/// Sends `signal` to every replica of the campaign's primary.
fn signal_replicas(s: &mut Shards, signal: &str) {
    for r in s.replicas.clone() {
        s.cluster.signal_node(r, signal);
    }
}

/// Waits until the cluster moved the campaign's slot to one of the replicas; returns it.
async fn until_promoted(s: &Shards) -> u16 {
    let key = key(CAMPAIGN, "meta");
    eventually("a replica promoted", RESUME_BOUND, || async {
        let now = s.cluster.primary_of(&key).await;
        s.replicas.contains(&now).then_some(now)
    })
    .await
}

/// Waits until the issuer counted an epoch change.
async fn until_epoch_changed(svc: &Service) {
    eventually("an epoch change", WAIT, || async {
        let changes = svc.metric("stampede_redis_epoch_changes_total").await;
        (changes >= 1.0).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_stampede_fails_over_and_issuance_resumes() {
    let mut s = shards(None, 1).await;
    let other = campaign_elsewhere(&s).await;
    let stop = CancellationToken::new();
    let moved = stampede(&s.svc, CAMPAIGN, 6, &stop);
    let elsewhere = stampede(&s.svc, &other, 2, &stop);
    until_count(&moved, "201", 200, WAIT).await;
    until_count(&elsewhere, "201", 50, WAIT).await;

    let killed = Instant::now();
    s.cluster.signal_node(s.primary, "KILL");
    until_count(&moved, "503 unavailable", 1, WAIT).await;
    let elsewhere_in_gap = count(&elsewhere, "201");
    assert_eq!(until_promoted(&s).await, s.replicas[0]);
    let (promoted, at_promotion) = (killed.elapsed(), count(&moved, "201"));
    // The promoted replica answers for the slot, and the promotion is a new epoch: the
    // campaign suspends itself. (The flag is written there, so a `suspended` answer comes
    // from there; it may hand out coupons first, until the next epoch check.)
    let limit = RESUME_BOUND.saturating_sub(killed.elapsed());
    until_count(&moved, "503 suspended", 1, limit).await;
    let (suspended, at_suspension) = (killed.elapsed(), count(&moved, "201"));
    until_epoch_changed(&s.svc).await;
    let issued_on = count(&elsewhere, "201") > elsewhere_in_gap;
    assert!(issued_on, "the other shard issued on");
    lift_and_issue(&s, &moved).await;
    stop.cancel();
    eprintln!("promoted after {promoted:?}, 201s then {at_promotion}");
    eprintln!("suspended after {suspended:?}, 201s then {at_suspension}");
    the_stampedes_were_answered(&moved, &elsewhere);
    // The killed node comes back empty and rejoins as the replica of its successor (the
    // primary learns of it by gossip, a moment after the slot map agrees).
    s.cluster.restart_node(s.primary).await;
    let successor = s.replicas[0];
    eventually("the killed node a replica", WAIT, || async {
        let replicas = s.cluster.replicas_of(successor).await;
        (replicas == [s.primary]).then_some(())
    })
    .await;
    s.svc.shutdown.cancel();
}

/// An admin lifts the suspension (after the audit): new coupons come from the promoted
/// replica again.
async fn lift_and_issue(s: &Shards, moved: &Shared) {
    let lift = AdminAction::Unsuspend;
    s.store.admin(&id(CAMPAIGN), lift).await.unwrap();
    let lifted = count(moved, "201") + 20;
    until_count(moved, "201", lifted, WAIT).await;
}

/// Every request was answered within the bound; the other shard only ever answered 201.
fn the_stampedes_were_answered(moved: &Shared, elsewhere: &Shared) {
    let (m, e) = (moved.lock().unwrap(), elsewhere.lock().unwrap());
    eprintln!("moved slot: {:?}, slowest {:?}", m.outcomes, m.slowest);
    eprintln!("other shard: {:?}, slowest {:?}", e.outcomes, e.slowest);
    let slowest = m.slowest.0.max(e.slowest.0);
    assert!(slowest < ANSWER_BOUND, "{slowest:?}");
    let expected = ["201", "503 suspended", "503 unavailable"];
    let seen: Vec<&str> = m.outcomes.keys().map(String::as_str).collect();
    assert!(seen.iter().all(|o| expected.contains(o)), "{seen:?}");
    assert_eq!(e.outcomes.keys().collect::<Vec<_>>(), ["201"]);
}

/// Closes the link of every replica of the primary on `port` (a frozen replica then
/// misses everything written from now on, not only what its socket could not buffer).
async fn cut_replica_links(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let kill = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "replica"])
        .clone();
    let _: i64 = kill.query_async(&mut c).await.unwrap();
}

/// A stampede through the kill of the campaign's primary until the campaign suspends
/// itself; `lagging` freezes the replicas and cuts their links first. In between it waits
/// for `more` answers of an outcome. Returns the answers.
async fn stampede_through_failover(s: &mut Shards, lagging: bool, more: (&str, usize)) -> Answers {
    let stop = CancellationToken::new();
    let answers = stampede(&s.svc, CAMPAIGN, 6, &stop);
    until_count(&answers, "201", 200, WAIT).await;
    if lagging {
        signal_replicas(s, "STOP");
        cut_replica_links(s.primary).await;
    }
    let (outcome, n) = more;
    until_count(&answers, outcome, count(&answers, outcome) + n, WAIT).await;
    let (killed, at_kill) = (Instant::now(), count(&answers, "201"));
    s.cluster.signal_node(s.primary, "KILL");
    if lagging {
        signal_replicas(s, "CONT");
    }
    until_promoted(s).await;
    let promoted = killed.elapsed();
    until_count(&answers, "503 suspended", 1, WAIT).await;
    stop.cancel();
    let a = answers.lock().unwrap().clone();
    let suspended = killed.elapsed();
    eprintln!("201s at the kill {at_kill}; promoted {promoted:?}, suspended {suspended:?}");
    eprintln!("answers {:?}, slowest {:?}", a.outcomes, a.slowest);
    a
}

/// The seqs among `acked` whose coupon the promoted replica does not hold.
async fn forgotten(store: &Store, acked: &HashMap<String, u64>) -> HashSet<u64> {
    let holders = store.holders(&id(CAMPAIGN)).await.unwrap();
    let gone = acked.iter().filter(|(u, _)| !holders.contains_key(*u));
    gone.map(|(_, seq)| *seq).collect()
}

/// The campaign's audit, against a fresh PostgreSQL database (nothing persisted).
async fn audit_now(store: &Store) -> AuditReport {
    let url = stack::fresh_database(&stack::stack_database()).await;
    let pool = db::connect(&url, 2).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let c = id(CAMPAIGN);
    audit(store, &pool, &c, Duration::ZERO, false)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_durability_a_lagging_replica_loses_acknowledged_coupons_and_the_audit_names_them()
 {
    let mut s = shards(None, 1).await;
    let acked = stampede_through_failover(&mut s, true, ("201", 200))
        .await
        .acked;
    let lost = forgotten(&s.store, &acked).await;
    let (n, of) = (lost.len(), acked.len());
    assert!(
        n >= 100,
        "the lagging replica lost acknowledged coupons: {n} of {of}"
    );
    let snap = s.store.snapshot(&id(CAMPAIGN)).await.unwrap().unwrap();
    assert!(snap.suspension.is_some(), "suspended: {snap:?}");
    assert_eq!(snap.acked_high, *acked.values().max().unwrap());
    let reused = lost.iter().any(|seq| *seq <= snap.issued);
    assert!(!reused, "a lost seq was handed out again");
    until_epoch_changed(&s.svc).await;
    let report = audit_now(&s.store).await;
    let r = &report.seqs;
    let issued = snap.issued;
    eprintln!("acknowledged {of}, lost {n}, counter {issued}; {r:?}");
    assert!(r.lost >= n as u64, "{report:?}");
    assert_eq!(r.counter_behind, r.acked_high - snap.issued);
    assert_eq!(r.issued_twice, 0, "{report:?}");
    // The audit names the lost seqs (it lists the first 100) and no acknowledged seq that
    // is held. (It may name more: a coupon whose answer died with the primary.)
    let acked_seqs: HashSet<u64> = acked.values().copied().collect();
    let held = |seq: &u64| acked_seqs.contains(seq) && !lost.contains(seq);
    assert!(!r.lost_seqs.iter().any(held), "{:?}", r.lost_seqs);
    let last_listed = *r.lost_seqs.last().unwrap();
    let named = |seq: &&u64| **seq > last_listed || r.lost_seqs.contains(seq);
    let unnamed: Vec<_> = lost.iter().filter(|seq| !named(seq)).collect();
    assert!(unnamed.is_empty(), "lost, not named: {unnamed:?}");
    assert!(report.suspended && !report.clean, "{report:?}");
    s.svc.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_durability_nothing_acknowledged_is_lost() {
    let mut s = shards(Some(FENCE), 1).await;
    let answers = stampede_through_failover(&mut s, false, ("201", 200)).await;
    // A fence round cut off by the kill fails within its own deadline (the WAIT's 500 ms
    // and a second) instead of being re-sent to the promoted replica.
    let slowest = answers.slowest.0;
    assert!(slowest < ANSWER_BOUND, "{:?}", answers.slowest);
    assert!(answers.acked.len() >= 400, "{}", answers.acked.len());
    let lost = forgotten(&s.store, &answers.acked).await;
    assert!(
        lost.is_empty(),
        "acknowledged, not on the promoted replica: {lost:?}"
    );
    // Suspended all the same (a failover is noticed whatever the durability), and the
    // audit shows nothing lost, so lifting it is safe.
    let report = audit_now(&s.store).await;
    assert!(report.suspended, "{report:?}");
    let r = &report.seqs;
    assert_eq!(
        (r.lost, r.counter_behind, r.issued_twice),
        (0, 0, 0),
        "{report:?}"
    );
    s.svc.shutdown.cancel();
}

/// Two replicas per shard, both frozen and cut off, so every WAIT fails, until the primary
/// dies under one. The fence's connection never re-sends a round elsewhere (a cluster
/// client would otherwise run the INCR+WAIT again on the promoted replica, whose sibling
/// acknowledges it: coupons only the dead primary held were answered 201 and lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_durability_a_wait_cut_off_by_the_failover_acknowledges_nothing() {
    let mut s = shards(Some(FENCE), 2).await;
    let answers = stampede_through_failover(&mut s, true, ("503 unavailable", 12)).await;
    let mut lost: Vec<u64> = forgotten(&s.store, &answers.acked)
        .await
        .into_iter()
        .collect();
    lost.sort();
    let report = audit_now(&s.store).await;
    eprintln!("acknowledged, not on the promoted replica: {lost:?}; {report:?}");
    assert!(lost.is_empty(), "{lost:?}");
    s.svc.shutdown.cancel();
}
