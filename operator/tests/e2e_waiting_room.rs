//! `spec.waitingRoom` through the operator on a real control plane and the stack's Redis (its
//! cluster with `make test-cluster`): the room reaches Redis, the queue's counters reach the
//! status, a change and a removal are applied, and the API server refuses a room out of
//! bounds or on a sharded campaign.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use stampede_core::ids::{CampaignId, UserId};
use stampede_operator::crd::Phase;

const ROOM: &str =
    "waitingRoom: {maxActive: 3, admitPerSecond: 1000, sessionTtl: 60s, queueTtl: 60s}, ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reaches_redis_and_its_counters_the_status() {
    let c = Cluster::start().await;
    let name = unique("room");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    let yaml = minimal_campaign(5).replace("spec: {", &format!("spec: {{{ROOM}"));
    c.create(&name, &yaml).await.unwrap();
    c.mark_campaign_available(&name).await;
    c.status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    let store = store().await;
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    let room = store
        .waiting_room(&id)
        .await
        .unwrap()
        .expect("a room in Redis");
    assert!(room.enabled && room.max_active == 3 && room.session_ttl.as_secs() == 60);

    // Ten users join: three are admitted (maxActive), seven wait.
    for i in 0..10 {
        let user = UserId::parse(&format!("u{i}")).unwrap();
        store.queue_join(&id, &user, i).await.unwrap();
    }
    let s = c
        .status_until(&name, "the room's counters", |s| {
            s.waiting_room.as_ref().is_some_and(|w| w.queued == 7)
        })
        .await;
    let w = s.waiting_room.unwrap();
    assert_eq!((w.active, w.admitted), (3, 3), "{w:?}");

    c.patch_spec(&name, json!({ "waitingRoom": { "maxActive": 5 } }))
        .await
        .unwrap();
    eventually("maxActive 5 in Redis", Duration::from_secs(30), || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let room = store.waiting_room(&id).await.ok()??;
            (room.max_active == 5).then_some(())
        }
    })
    .await;
    c.patch_spec(&name, json!({ "waitingRoom": null }))
        .await
        .unwrap();
    let s = c
        .status_until(&name, "the room turned off", |s| s.waiting_room.is_none())
        .await;
    assert_eq!(s.phase, Some(Phase::Open));
    let room = store.waiting_room(&id).await.unwrap().unwrap();
    assert!(
        !room.enabled,
        "taken out of the spec: off, its settings kept"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_room_out_of_bounds() {
    let c = Cluster::start().await;
    let refused = |room: &str| {
        let name = unique("badroom");
        let yaml = minimal_campaign(5).replace("spec: {", &format!("spec: {{{room}"));
        (name, yaml)
    };
    for (room, says) in [
        (
            "shards: 2, waitingRoom: {}, ",
            "a waitingRoom needs shards: 1",
        ),
        (
            "waitingRoom: {sessionTtl: 2s}, ",
            "sessionTtl must be between 5s and 1h",
        ),
        (
            "waitingRoom: {queueTtl: 2h}, ",
            "queueTtl must be between 5s and 1h",
        ),
        ("waitingRoom: {maxActive: 0}, ", "maxActive"),
        ("waitingRoom: {admitPerSecond: 100001}, ", "admitPerSecond"),
    ] {
        let (name, yaml) = refused(room);
        let err = c.create(&name, &yaml).await.unwrap_err().to_string();
        assert!(err.contains(says), "{room}: {err}");
    }
    let (name, yaml) = refused("shards: 2, waitingRoom: {enabled: false}, ");
    c.create(&name, &yaml)
        .await
        .expect("a room turned off may stay");
}

/// `stampede-operator loadtest` rehearses a campaign's load test locally: its shadow gets
/// the campaign's room, as the operator's runs do (without one every `queue` request of
/// the README's preflight is a 404 and the run fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_runners_shadow_has_the_campaigns_room() {
    let name = unique("localroom");
    let yaml = minimal_campaign(5).replace("{name: x}", &format!("{{name: {name}}}"));
    let yaml = yaml.replace(
        "spec: {",
        &format!("spec: {{{ROOM}loadTests: [{{name: q, profile: queue}}], "),
    );
    let file = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let plan = stampede_operator::validate::from_file(&file, &stack_defaults().redis_url);
    let _ = std::fs::remove_file(&file);
    let plan = plan.unwrap();
    let shadow = plan.campaign.shadow("q");
    let _forget = Forget(shadow.to_string());
    let store = store().await;
    stampede_operator::loadtest::local::provision_shadow(&store, &plan, &shadow)
        .await
        .unwrap();
    let room = store.waiting_room(&shadow).await.unwrap();
    let room = room.expect("the shadow has a room");
    assert!(room.enabled && room.max_active == 3, "{room:?}");
}
