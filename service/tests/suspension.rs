//! A campaign suspends itself when Redis may have lost acknowledged writes, on a real
//! redis-server: at once on the hot path when the issued counter is below seqs the issuer
//! already handed out, and within an epoch check when Redis restarted empty. Only
//! `campaign unsuspend` lifts it, and re-provisioning does not. A seq recorded after the
//! suspension is still reported.

mod common;

use std::time::Duration;

use common::{eventually, id, setup_with};
use redis::AsyncCommands;
use stampede_core::campaign::{AdminAction, CampaignState};
use stampede_core::coupon::Decision;
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::store::{HandedOut, Store};
use stampede_service::epoch::{self, AckedSeqs};
use stampede_service::metrics::{IssuanceMetrics, Metrics};
use tokio_util::sync::CancellationToken;

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Issues seqs 1 to 3 of `c` (users u0, u1, u2); returns the campaign's incarnation.
async fn issue_to_three(store: &Store, c: &CampaignId) -> String {
    let mut incarnation = String::new();
    for i in 0..3 {
        let u = user(&format!("u{i}"));
        let (d, inc) = store
            .issue_after(c, &u, &HandedOut::default())
            .await
            .unwrap();
        assert_eq!(d.label(), "issued");
        incarnation = inc;
    }
    assert!(!incarnation.is_empty());
    incarnation
}

#[tokio::test]
async fn a_counter_below_what_was_handed_out_suspends_until_an_admin_lifts_it() {
    let (_redis, svc, store) = setup_with(|_| {}).await;
    let c = id("regress");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let incarnation = issue_to_three(&store, &c).await;
    // An issuer that handed out seq 5 finds the counter at 3: Redis lost seqs 4 and 5.
    let handed = HandedOut {
        incarnation: incarnation.into(),
        high: 5,
    };
    let (d, _) = store.issue_after(&c, &user("next"), &handed).await.unwrap();
    assert_eq!(d, Decision::Suspended);
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!(snap.state(), CampaignState::Suspended);
    let s = snap.suspension.unwrap();
    assert_eq!((s.issued_then, snap.acked_high, snap.issued), (3, 5, 3));
    assert_eq!(store.suspended_campaigns().await.unwrap(), vec!["regress"]);
    // Issuers that know nothing are held too; holders still get their coupon.
    assert_eq!(
        store.issue(&c, &user("other")).await.unwrap(),
        Decision::Suspended
    );
    assert_eq!(
        store.issue(&c, &user("u0")).await.unwrap().label(),
        "already"
    );
    let (status, body) = svc.issue("regress", "other").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("suspended")),
        "{body}"
    );
    // Pause and resume (what the operator does for spec.paused) leave it suspended.
    store.admin(&c, AdminAction::Pause).await.unwrap();
    store.admin(&c, AdminAction::Resume).await.unwrap();
    store.ensure_campaign(&c, 200, None).await.unwrap();
    assert_eq!(
        store.issue(&c, &user("other")).await.unwrap(),
        Decision::Suspended
    );

    store.admin(&c, AdminAction::Unsuspend).await.unwrap();
    assert!(store.suspended_campaigns().await.unwrap().is_empty());
    // The same issuer, still remembering seq 5, does not suspend it again; and no seq it
    // handed out before the loss is handed out again: the counter moved past 5.
    let (d, _) = store.issue_after(&c, &user("next"), &handed).await.unwrap();
    match d {
        Decision::Issued(r) => assert_eq!(r.seq, 6, "seqs 4 and 5 were given before the loss"),
        d => panic!("{d:?}"),
    }
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!(snap.issued, 6);
}

/// A detector reporting, for an event already lifted, seqs above what that covered (it was
/// stuck through the audit) suspends the campaign again: the audit never saw them.
#[tokio::test]
async fn a_late_report_above_what_was_lifted_suspends_again() {
    let (_redis, _svc, store) = setup_with(|_| {}).await;
    let c = id("late");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let incarnation = issue_to_three(&store, &c).await;
    let suspend = |high| {
        let handed = HandedOut {
            incarnation: incarnation.as_str().into(),
            high,
        };
        let (store, c) = (store.clone(), c.clone());
        async move { store.suspend(&c, "E", &handed, false).await.unwrap() }
    };
    assert!(suspend(5).await);
    store.admin(&c, AdminAction::Unsuspend).await.unwrap();
    assert!(!suspend(5).await, "nothing new");
    assert!(suspend(9).await, "6..9 unaudited");
    let s = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!((s.state(), s.acked_high), (CampaignState::Suspended, 9));
}

#[tokio::test]
async fn a_campaign_created_again_under_the_same_id_starts_afresh() {
    // The load-test gate forgets and re-creates its shadow campaign for every run; the
    // issuer that served the last run must not take the new counter for a lost one.
    let (_redis, svc, store) = setup_with(|_| {}).await;
    let c = id("again");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    for i in 0..5 {
        assert_eq!(svc.issue("again", &format!("u{i}")).await.0, 201);
    }
    // A Redis restart suspended it (every registered campaign), and it was deleted as such.
    let handed = HandedOut::default();
    assert!(store.suspend(&c, "E", &handed, false).await.unwrap());
    store.forget(&c).await.unwrap();
    let left = store.suspended_campaigns().await.unwrap();
    assert!(left.is_empty(), "forgotten, so not suspended: {left:?}");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let (status, body) = svc.issue("again", "first-of-the-new-one").await;
    assert_eq!((status, body["seq"].as_u64()), (201, Some(1)), "{body}");
    assert!(store.suspended_campaigns().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_redis_that_restarted_empty_is_noticed_and_the_campaign_comes_back_suspended() {
    let (mut redis, svc, store) = setup_with(|c| c.epoch_check = Duration::from_millis(100)).await;
    let c = id("restart");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    eventually("the epoch is recorded", Duration::from_secs(10), || {
        recorded_epoch(&redis, "restart")
    })
    .await;
    for i in 0..4 {
        assert_eq!(svc.issue("restart", &format!("u{i}")).await.0, 201);
    }

    redis.restart_empty().await;
    eventually("the issuer notices", Duration::from_secs(10), || async {
        (svc.metric("stampede_redis_epoch_changes_total").await == 1.0).then_some(())
    })
    .await;
    // Before anyone provisions it again: suspended (503), not unknown (404).
    let (status, body) = svc.issue("restart", "early").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("suspended")),
        "{body}"
    );
    // Re-provisioning (the operator finding the campaign gone) keeps the suspension. (The
    // test's own connection broke with the restart: its first call may fail.)
    eventually("re-provisioned", Duration::from_secs(10), || async {
        store.ensure_campaign(&c, 100, None).await.ok()
    })
    .await;
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_eq!(snap.state(), CampaignState::Suspended, "{snap:?}");
    assert_eq!((snap.issued, snap.acked_high), (0, 4));
    let (status, body) = svc.issue("restart", "new").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("suspended")),
        "{body}"
    );
    eventually("the gauge shows it", Duration::from_secs(10), || async {
        let v = svc
            .metric(r#"stampede_campaign_suspended{campaign="restart"}"#)
            .await;
        (v == 1.0).then_some(())
    })
    .await;
    svc.shutdown.cancel();
}

/// An answer Redis gave just before it failed over can be recorded by the issuer after it
/// reported its high to the suspended campaign (the request was between the answer and its
/// record), and that user holds the coupon: the next epoch check reports it, so the audit
/// counts it too. (The recorded epoch is overwritten to stand for the failover: the served
/// issuer checks once an hour, so only this watch notices.)
#[tokio::test]
async fn a_seq_recorded_after_the_suspension_is_reported_at_the_next_check() {
    let (redis, _svc, store) = setup_with(|c| c.epoch_check = Duration::from_secs(3600)).await;
    let c = id("late");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let incarnation = issue_to_three(&store, &c).await;
    let acked = AckedSeqs::default();
    acked.record("late", &incarnation, 3);
    let stop = CancellationToken::new();
    let metrics = Metrics::new().issuance;
    let every = Duration::from_millis(50);
    let watch = tokio::spawn(epoch::watch(
        store.clone(),
        acked.clone(),
        metrics,
        every,
        stop.clone(),
    ));
    eventually("the epoch is recorded", Duration::from_secs(10), || {
        recorded_epoch(&redis, "late")
    })
    .await;
    let _: () = redis
        .conn()
        .await
        .set(epoch_key(&redis, "late"), "another-run/another-replid")
        .await
        .unwrap();
    eventually(
        "suspended, high 3 reported",
        Duration::from_secs(10),
        || async {
            let snap = store.snapshot(&c).await.unwrap().unwrap();
            (snap.state() == CampaignState::Suspended && snap.acked_high == 3).then_some(())
        },
    )
    .await;
    acked.record("late", &incarnation, 7);
    eventually("the late seq reported", Duration::from_secs(10), || async {
        let snap = store.snapshot(&c).await.unwrap().unwrap();
        (snap.acked_high == 7).then_some(())
    })
    .await;
    stop.cancel();
    watch.await.unwrap();
}

/// The key `campaign`'s epoch is recorded under: a single Redis has one epoch; on a cluster
/// each campaign keeps its shard's.
fn epoch_key(redis: &common::RedisServer, campaign: &str) -> String {
    if redis.is_cluster() {
        common::key(campaign, "epoch")
    } else {
        "stampede:epoch".to_owned()
    }
}

/// The epoch recorded for `campaign` on the Redis behind `redis`.
async fn recorded_epoch(redis: &common::RedisServer, campaign: &str) -> Option<String> {
    redis
        .conn()
        .await
        .get(epoch_key(redis, campaign))
        .await
        .unwrap()
}

/// A primary takes a new replication id, its data intact, when a first replica attaches
/// (it creates its backlog) and when it frees the backlog after the last one left: neither
/// suspends anything. (The shared stack's Redis suspended every campaign an hour after a
/// replica had come and gone, before the epoch check told these apart from a promotion.)
#[tokio::test]
async fn a_replica_attaching_and_leaving_suspends_nothing() {
    if common::single_node_only("a replica attached to one primary by hand") {
        return;
    }
    let (redis, svc, store) = setup_with(|c| c.epoch_check = Duration::from_millis(100)).await;
    let c = id("replicated");
    store.ensure_campaign(&c, 100, None).await.unwrap();
    let first = eventually("the epoch is recorded", Duration::from_secs(10), || {
        recorded_epoch(&redis, "replicated")
    })
    .await;
    assert_eq!(svc.issue("replicated", "u0").await.0, 201);
    let mut conn = redis.conn().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-backlog-ttl")
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let mut replica = common::RedisServer::replica_of(&redis).await;
    let attached = eventually(
        "the backlog's epoch recorded",
        Duration::from_secs(10),
        || async {
            recorded_epoch(&redis, "replicated")
                .await
                .filter(|e| *e != first)
        },
    )
    .await;
    replica.stop();
    eventually(
        "the freed backlog's epoch recorded",
        Duration::from_secs(15),
        || async {
            recorded_epoch(&redis, "replicated")
                .await
                .filter(|e| *e != attached && *e != first)
        },
    )
    .await;
    let checks = svc.metric("stampede_redis_epoch_checks_total").await;
    eventually("two more checks", Duration::from_secs(10), || async {
        let now = svc.metric("stampede_redis_epoch_checks_total").await;
        (now >= checks + 2.0).then_some(())
    })
    .await;
    assert_eq!(svc.metric("stampede_redis_epoch_changes_total").await, 0.0);
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert_ne!(snap.state(), CampaignState::Suspended, "{snap:?}");
    assert_eq!(svc.issue("replicated", "u1").await.0, 201, "still issuing");
    svc.shutdown.cancel();
}

/// Redis restarted with its data while no issuer ran (the stack brought up again, a quiet
/// weekend): the first to provision a campaign afterwards notices, suspends the campaigns
/// that lived on the Redis before and records the new epoch, so an issuer starting later
/// does not suspend the new campaign with them: all of it lives on this Redis.
#[tokio::test]
async fn a_campaign_provisioned_after_an_unnoticed_restart_is_not_suspended_with_the_old_ones() {
    let (redis, _svc, store) = setup_with(|c| c.epoch_check = Duration::from_secs(3600)).await;
    let old = id("before-restart");
    store.ensure_campaign(&old, 100, None).await.unwrap();
    issue_to_three(&store, &old).await;
    // An issuer that ran while the campaign was issued (on a cluster the served one, which
    // checks once an hour, checked before the campaign existed), then stopped.
    let (_, stop) = watch_from_scratch(&store);
    let real = eventually("the epoch is recorded", Duration::from_secs(10), || {
        recorded_epoch(&redis, "before-restart")
    })
    .await;
    stop.cancel();
    // Nobody is watching when Redis "restarts": the epoch recorded names another Redis.
    let _: () = redis
        .conn()
        .await
        .set(
            epoch_key(&redis, "before-restart"),
            "another-run/another-replid",
        )
        .await
        .unwrap();

    // The operator provisions the new campaign and reconciles the old one.
    let new = id("after-restart");
    store.ensure_campaign(&new, 100, None).await.unwrap();
    store.ensure_campaign(&old, 100, None).await.unwrap();
    let state = |c: CampaignId| {
        let store = store.clone();
        async move { store.snapshot(&c).await.unwrap().unwrap().state() }
    };
    assert_eq!(state(old.clone()).await, CampaignState::Suspended);
    assert_ne!(state(new.clone()).await, CampaignState::Suspended);
    assert_eq!(recorded_epoch(&redis, "before-restart").await, Some(real));
    assert_eq!(
        store.suspended_campaigns().await.unwrap(),
        vec!["before-restart"]
    );

    // An issuer that starts now finds the epoch as it is and suspends nothing more.
    let (metrics, stop) = watch_from_scratch(&store);
    eventually("three checks", Duration::from_secs(10), || async {
        (metrics.epoch_checks.get() >= 3).then_some(())
    })
    .await;
    assert_eq!(metrics.epoch_changes.get(), 0);
    assert_ne!(state(new.clone()).await, CampaignState::Suspended);
    assert_eq!(
        store.issue(&new, &user("first")).await.unwrap().label(),
        "issued"
    );
    stop.cancel();
}

/// An epoch watch of a process that has seen nothing yet, checking every 50 ms until the
/// token is cancelled; its metrics.
fn watch_from_scratch(store: &Store) -> (IssuanceMetrics, CancellationToken) {
    let metrics = Metrics::new().issuance;
    let stop = CancellationToken::new();
    let every = Duration::from_millis(50);
    let watch = epoch::watch(
        store.clone(),
        AckedSeqs::default(),
        metrics.clone(),
        every,
        stop.clone(),
    );
    tokio::spawn(watch);
    (metrics, stop)
}
