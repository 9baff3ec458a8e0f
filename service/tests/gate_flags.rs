//! The load-test gate's own flag in the campaign scripts, on a private real Redis behind
//! the real service: a gated campaign is created closed by the gate in the creating call
//! and answers 409 `closed`; the gate's flag and the manual close (`campaign close`, run as
//! the real binary) are separate, each undone only by its owner; provisioning never
//! touches either.

mod common;

use common::role::service_command;
use common::{RedisServer, Service, id, issuance_counts, key, setup};
use redis::AsyncCommands;
use serde_json::{Value, json};
use stampede_core::campaign::{AdminAction, ProvisionOutcome, Window};
use stampede_core::clock::now_ms;

/// The raw flags in the campaign's meta hash: (closed, gate_closed).
async fn raw_flags(redis: &RedisServer, campaign: &str) -> (Option<String>, Option<String>) {
    let mut conn = redis.conn().await;
    let meta = key(campaign, "meta");
    (
        conn.hget(&meta, "closed").await.unwrap(),
        conn.hget(&meta, "gate_closed").await.unwrap(),
    )
}

/// Runs `stampede-service campaign <verb> --id <campaign>` against `redis`.
fn cli(redis: &RedisServer, verb: &str, campaign: &str) {
    let out = service_command()
        .args(["campaign", verb, "--id", campaign])
        .env("STAMPEDE_REDIS_URL", redis.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "campaign {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn view(svc: &Service, campaign: &str) -> Value {
    svc.get(&format!("/v1/campaigns/{campaign}")).await.1
}

#[tokio::test]
async fn a_gated_campaign_is_created_closed_by_the_gate_and_answers_closed() {
    let (redis, svc, store) = setup().await;
    let c = id("gated");
    let created = store
        .ensure_campaign_gated(&c, 5, None, true)
        .await
        .unwrap();
    assert_eq!(created, ProvisionOutcome::Created { total: 5 });
    assert_eq!(
        raw_flags(&redis, "gated").await,
        (Some("0".into()), Some("1".into()))
    );
    let (s, b) = svc.issue("gated", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("closed")));
    assert_eq!(issuance_counts(&redis, "gated").await, (0, 0, 0));
    let v = view(&svc, "gated").await;
    assert_eq!(v["state"], "closed");
    assert_eq!(v["closedBy"], json!({ "manual": false, "gate": true }));
    let snap = store.snapshot(&c).await.unwrap().unwrap();
    assert!(snap.gate_closed && !snap.closed);

    // The gate lets go: it opens and issues.
    store.admin(&c, AdminAction::GateOpen).await.unwrap();
    assert_eq!(svc.issue("gated", "u1").await.0, 201);
    assert_eq!(view(&svc, "gated").await["closedBy"]["gate"], false);

    // Ungated: created open, as always.
    store.ensure_campaign(&id("plain"), 5, None).await.unwrap();
    assert_eq!(raw_flags(&redis, "plain").await.1, Some("0".into()));
    assert_eq!(svc.issue("plain", "u1").await.0, 201);
}

#[tokio::test]
async fn the_gate_and_a_close_by_hand_are_separate_flags() {
    let (redis, svc, store) = setup().await;
    let c = id("both");
    store
        .ensure_campaign_gated(&c, 5, None, true)
        .await
        .unwrap();
    // Closed by hand during an incident, with the real CLI.
    cli(&redis, "close", "both");
    assert_eq!(
        raw_flags(&redis, "both").await,
        (Some("1".into()), Some("1".into()))
    );
    // The gate passing does not reopen what was closed by hand.
    store.admin(&c, AdminAction::GateOpen).await.unwrap();
    assert_eq!(
        raw_flags(&redis, "both").await,
        (Some("1".into()), Some("0".into()))
    );
    let (s, b) = svc.issue("both", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("closed")));
    assert_eq!(
        view(&svc, "both").await["closedBy"],
        json!({ "manual": true, "gate": false })
    );
    // And a reopen by hand does not lift the gate.
    store.admin(&c, AdminAction::GateClose).await.unwrap();
    cli(&redis, "reopen", "both");
    assert_eq!(
        raw_flags(&redis, "both").await,
        (Some("0".into()), Some("1".into()))
    );
    assert_eq!(svc.issue("both", "u1").await.0, 409);
    store.admin(&c, AdminAction::GateOpen).await.unwrap();
    assert_eq!(svc.issue("both", "u1").await.0, 201);
    let unknown = store.admin(&id("ghost"), AdminAction::GateClose).await;
    assert!(unknown.is_err(), "{unknown:?}");
}

#[tokio::test]
async fn provisioning_never_touches_either_flag() {
    let (redis, svc, store) = setup().await;
    let c = id("kept");
    store
        .ensure_campaign_gated(&c, 5, None, true)
        .await
        .unwrap();
    store.admin(&c, AdminAction::Close).await.unwrap();
    let later = Window {
        opens_ms: Some(now_ms() - 60_000),
        closes_ms: Some(now_ms() + 3_600_000),
    };
    // A restock, a window change, and a gated ensure of what exists: flags as they were.
    for gated in [false, true] {
        let stock = if gated { 9 } else { 7 };
        let out = store
            .ensure_campaign_gated(&c, stock, Some(later), gated)
            .await
            .unwrap();
        assert!(matches!(out, ProvisionOutcome::Restocked { .. }), "{out:?}");
        assert_eq!(
            raw_flags(&redis, "kept").await,
            (Some("1".into()), Some("1".into()))
        );
    }
    store.admin(&c, AdminAction::Restock(1)).await.unwrap();
    assert_eq!(
        raw_flags(&redis, "kept").await,
        (Some("1".into()), Some("1".into()))
    );
    // Lifting both leaves nothing set.
    store.admin(&c, AdminAction::Reopen).await.unwrap();
    store
        .ensure_campaign_gated(&c, 10, Some(later), true)
        .await
        .unwrap();
    assert_eq!(raw_flags(&redis, "kept").await.1, Some("1".into()));
    store.admin(&c, AdminAction::GateOpen).await.unwrap();
    assert_eq!(svc.issue("kept", "u1").await.0, 201);
}

#[tokio::test]
async fn before_its_window_a_gated_campaign_is_scheduled_and_older_data_still_issues() {
    let (redis, svc, store) = setup().await;
    let later = Window {
        opens_ms: Some(now_ms() + 3_600_000),
        closes_ms: None,
    };
    let c = id("soon");
    store
        .ensure_campaign_gated(&c, 5, Some(later), true)
        .await
        .unwrap();
    let (s, b) = svc.issue("soon", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("not_open")));
    assert_eq!(view(&svc, "soon").await["state"], "scheduled");

    // A campaign written before the gate had its own flag has no gate_closed field.
    store.ensure_campaign(&id("old"), 5, None).await.unwrap();
    let mut conn = redis.conn().await;
    let _: u64 = conn.hdel(key("old", "meta"), "gate_closed").await.unwrap();
    assert_eq!(svc.issue("old", "u1").await.0, 201);
    let snap = store.snapshot(&id("old")).await.unwrap().unwrap();
    assert!(!snap.gate_closed && snap.issued == 1);
}
