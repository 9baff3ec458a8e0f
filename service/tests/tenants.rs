//! An issuer serves only its own campaign (`--campaigns <name>=<id>`) on real Redis: two
//! tenants' same-named campaigns stay apart, the shadow of its own load test is served to
//! load-test runners' tokens only, and another tenant's campaign or shadow is answered like
//! one that does not exist.

mod common;

use common::{id, load_test_token, setup_with, status_and_json};
use stampede_service::server::CampaignScope;

#[tokio::test]
async fn an_issuer_serves_its_own_campaign_and_shadows_and_nothing_else() {
    let (_redis, svc, store) = setup_with(|c| {
        c.campaigns = CampaignScope::parse(&["flash=team-a.flash".into()]).unwrap();
    })
    .await;
    for (c, stock) in [
        ("team-a.flash", 5),
        ("team-b.flash", 7),
        ("flash", 9),
        ("team-a.flash.lt-smoke", 100),
        ("team-b.flash.lt-smoke", 100),
    ] {
        store.ensure_campaign(&id(c), stock, None).await.unwrap();
    }

    // Clients name the campaign `flash`; the coupon comes out of team-a's stock.
    let (s, coupon) = svc.issue("flash", "u1").await;
    assert_eq!(s, 201, "{coupon}");
    assert_eq!(
        coupon["campaign"], "flash",
        "answers use the name clients use"
    );
    let (s, view) = svc.get("/v1/campaigns/flash").await;
    assert_eq!((s, view["stock"]["total"].as_u64()), (200, Some(5)));
    assert_eq!(view["campaign"], "flash");
    for (c, issued) in [("team-a.flash", 1), ("team-b.flash", 0), ("flash", 0)] {
        let snap = store.snapshot(&id(c)).await.unwrap().unwrap();
        assert_eq!(snap.issued, issued, "{c}");
    }

    // Its own load test's shadow is served to a runner's token, under team-a's shadow id;
    // a user's token never issues from it.
    let (s, b) = svc.issue("flash.lt-smoke", "u1").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("campaign_not_found")));
    let runner = svc
        .http
        .post(svc.url("/v1/campaigns/flash.lt-smoke/issue"))
        .bearer_auth(load_test_token("u1"))
        .json(&serde_json::json!({ "userId": "u1" }));
    let (s, shadow) = status_and_json(runner).await;
    assert_eq!(
        (s, shadow["campaign"].as_str()),
        (201, Some("flash.lt-smoke"))
    );
    let snap = store.snapshot(&id("team-a.flash.lt-smoke")).await.unwrap();
    assert_eq!(snap.unwrap().issued, 1);

    nothing_else_is_served(&svc).await;
    let snap = store.snapshot(&id("team-b.flash")).await.unwrap().unwrap();
    assert_eq!(snap.issued, 0, "team-b's stock untouched");
}

/// Anything but its own campaign and shadows is a campaign that does not exist here,
/// whatever Redis holds.
async fn nothing_else_is_served(svc: &common::Service) {
    for other in [
        "team-b.flash",
        "team-a.flash",
        "team-b.flash.lt-smoke",
        "other",
    ] {
        let (s, b) = svc.issue(other, "u2").await;
        assert_eq!(
            (s, b["error"].as_str()),
            (404, Some("campaign_not_found")),
            "{other}"
        );
        let (s, _) = svc.get(&format!("/v1/campaigns/{other}")).await;
        assert_eq!(s, 404, "{other}");
    }
    let (s, b) = svc.get("/v1/campaigns/team-b.flash/users/u2/coupon").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("campaign_not_found")));
}

/// A keyed issuer's waiting-room answers name the campaign as its clients do, never by the
/// id that holds its tenant's namespace.
#[tokio::test]
async fn waiting_room_answers_name_the_campaign_as_clients_do() {
    let (_redis, svc, store) = setup_with(|c| {
        c.campaigns = CampaignScope::parse(&["flash=team-a.flash".into()]).unwrap();
        c.waiting_room_key = Some(common::room::room_key());
    })
    .await;
    let join = || {
        let req = svc.http.post(svc.url("/v1/campaigns/flash/queue"));
        let user = serde_json::json!({ "userId": "u1" });
        status_and_json(req.bearer_auth(common::token("u1")).json(&user))
    };
    let (s, body) = join().await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("campaign_not_found"))
    );
    assert!(!body.to_string().contains("team-a"), "{body}");
    store
        .ensure_campaign(&id("team-a.flash"), 5, None)
        .await
        .unwrap();
    let (s, body) = join().await;
    assert_eq!((s, body["error"].as_str()), (404, Some("no_waiting_room")));
    assert!(!body.to_string().contains("team-a"), "{body}");
}
