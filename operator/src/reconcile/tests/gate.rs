//! The gate against a close made by hand, through whole reconciles on the fake backends:
//! the gate sets and clears only its own flag, so a manual close outlives any verdict.

use serde_json::json;
use stampede_core::campaign::AdminAction;
use stampede_core::ids::CampaignId;

use super::pipeline::{ready, reconciled};
use crate::backends::fake::FakeBackends;
use crate::backends::{Shape, Stock};

/// A previous status that says the gate held the campaign: what the operator used to
/// infer "closed by the gate" from.
const HELD_BEFORE: &str = "status:
  phase: Testing
  conditions:
  - {type: LoadTestsPassed, status: 'False', reason: Running, message: running, lastTransitionTime: 't'}
";

const GATED: &str = "  loadTests:\n  - {name: preflight, profile: smoke, gate: true}\n";

/// The fake with `spring-sale` (50 coupons, nothing issued) and its flags set as given.
async fn existing(closed: bool, gate_closed: bool) -> FakeBackends {
    let fake = FakeBackends::default();
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    fake.ensure_campaign(&id, 50, None, Shape::default())
        .await
        .unwrap();
    let mut s = fake.state();
    let c = s.campaigns.get_mut("shop.spring-sale").unwrap();
    (c.closed, c.gate_closed) = (closed, gate_closed);
    drop(s);
    fake
}

fn flags(fake: &FakeBackends) -> (bool, bool) {
    let s = fake.state();
    let c = &s.campaigns["shop.spring-sale"];
    (c.closed, c.gate_closed)
}

#[tokio::test]
async fn a_close_by_hand_stays_across_reconciles_after_the_gate_held() {
    let fake = existing(true, false).await;
    for _ in 0..2 {
        let (result, api, _) = reconciled(HELD_BEFORE, ready(), &fake).await;
        assert!(result.is_ok(), "{result:?}");
        let status = api.status();
        assert_eq!(status["phase"], "Closed");
        assert_eq!(status["closedBy"], json!(["Manual"]));
    }
    assert!(fake.state().admin.is_empty(), "{:?}", fake.state().admin);
    assert_eq!(flags(&fake), (true, false));
}

#[tokio::test]
async fn the_gate_letting_go_clears_only_its_own_flag() {
    let fake = existing(true, true).await;
    let (result, api, _) = reconciled(HELD_BEFORE, ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        fake.state().admin,
        [("shop.spring-sale".to_owned(), AdminAction::GateOpen)]
    );
    assert_eq!(flags(&fake), (true, false), "still closed by hand");
    let status = api.status();
    assert_eq!(status["phase"], "Closed");
    assert_eq!(status["closedBy"], json!(["Manual"]));
    assert!(api.event_reasons().contains(&"GateOpened".to_owned()));
}

#[tokio::test]
async fn the_gate_holds_a_campaign_closed_by_hand_with_its_own_flag() {
    let fake = existing(true, false).await;
    let (result, api, _) = reconciled(GATED, ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        fake.state().admin,
        [("shop.spring-sale".to_owned(), AdminAction::GateClose)]
    );
    assert_eq!(flags(&fake), (true, true));
    assert_eq!(api.status()["closedBy"], json!(["Manual", "Gate"]));
}

#[tokio::test]
async fn restocks_and_window_changes_touch_neither_flag() {
    let fake = existing(true, true).await;
    let window = "  window: {opensAt: '2020-01-01T00:00:00Z'}\n";
    let (result, _, _) = reconciled(&format!("{window}{GATED}"), ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    let s = fake.state();
    let c = &s.campaigns["shop.spring-sale"];
    assert_eq!(c.total, 100, "restocked from 50 to the spec's 100");
    assert!(c.window.opens_ms.is_some());
    assert!(s.admin.is_empty(), "{:?}", s.admin);
    assert!(c.closed && c.gate_closed);
}

/// A gated test added to a campaign that has issued nothing, whose runner Jobs the cluster
/// refuses (a quota, a policy): the gate holds it closed all the same, and the error is
/// reported; it does not open with no run at all.
#[tokio::test]
async fn a_gated_test_whose_jobs_are_refused_still_holds_the_gate() {
    let fake = existing(false, false).await;
    let refusing = super::apiserver::Cluster {
        forbidden: Some("jobs"),
        ..ready()
    };
    let (result, _, _) = reconciled(GATED, refusing, &fake).await;
    assert!(result.is_err(), "the refusal is reported: {result:?}");
    assert_eq!(flags(&fake), (false, true), "held by the gate");
}
