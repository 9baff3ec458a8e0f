//! Cleanup when a backend stays away: retried while deletion is young, given up (Warning
//! event, finalizer released) once the drain timeout has passed.

use http::Method;
use kube::runtime::controller::Action;
use stampede_core::ids::CampaignId;

use super::apiserver::ApiServer;
use super::pipeline::{provisioned, ready, reconcile_once};
use crate::Error;
use crate::backends::Stock;
use crate::backends::fake::FakeBackends;
use crate::validate::tests::from_yaml;

/// `spring-sale` deleted at `deleted_at` under `policy`, with `extra` (spec lines, then
/// anything after the spec) appended.
fn deleted(deleted_at: &str, policy: &str, extra: &str) -> crate::crd::CouponCampaign {
    from_yaml(&format!(
        "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata:
  name: spring-sale
  namespace: shop
  uid: 0a1b2c3d
  generation: 1
  deletionTimestamp: '{deleted_at}'
  finalizers: [stampede.dev/cleanup]
spec:
  stock: 100
  deletionPolicy: {policy}
{extra}"
    ))
}

/// One reconcile of `spring-sale` (deleted at `deleted_at`, under `policy`, with `extra`
/// appended to its spec) while Redis is unreachable.
async fn deleting_without_redis(
    deleted_at: &str,
    policy: &str,
    extra: &str,
) -> (FakeBackends, ApiServer, Result<Action, Error>) {
    let fake = provisioned().await;
    fake.state().redis_down = true;
    let cc = deleted(deleted_at, policy, extra);
    let (result, api, _) = reconcile_once(cc, ready(), &fake).await;
    (fake, api, result)
}

fn finalizer_released(api: &ApiServer) -> bool {
    api.find(Method::PATCH, "couponcampaigns/spring-sale")
        .iter()
        .any(|c| c.body.to_string().contains("remove"))
}

#[tokio::test]
async fn a_young_deletion_without_redis_is_retried_and_keeps_the_finalizer() {
    let just_now = stampede_core::clock::now_rfc3339();
    let (_, api, result) = deleting_without_redis(&just_now, "Delete", "").await;
    assert!(result.is_err(), "{result:?}");
    assert!(!finalizer_released(&api));
    assert!(api.event_reasons().is_empty(), "{:?}", api.event_reasons());
}

#[tokio::test]
async fn redis_gone_past_the_drain_timeout_releases_the_finalizer_with_a_warning() {
    let (fake, api, result) = deleting_without_redis("2026-01-01T00:00:00Z", "Delete", "").await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(finalizer_released(&api));
    assert_eq!(api.event_reasons(), ["CleanupAbandoned"]);
    let note = api
        .find(Method::POST, "/events")
        .iter()
        .map(|c| c.body["note"].to_string())
        .collect::<String>();
    assert!(note.contains("{stampede:shop.spring-sale}:*"), "{note}");
    assert!(note.contains("stampede.shop.spring-sale"), "{note}");
    // Nothing was deleted: the data is what the event says was left behind.
    fake.state().redis_down = false;
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    assert!(fake.snapshot(&id).await.unwrap().is_some());
    assert_eq!(fake.state().topics["shop.spring-sale"], 6);
}

#[tokio::test]
async fn a_missing_secret_past_the_drain_timeout_releases_the_finalizer() {
    let secret = "  redis: {secretRef: {name: backends, key: redis-url}}\n";
    let (_, api, result) = deleting_without_redis("2026-01-01T00:00:00Z", "Delete", secret).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(finalizer_released(&api));
    assert_eq!(api.event_reasons(), ["CleanupAbandoned"]);
}

/// One reconcile of a provisioned `spring-sale` deleted now under `Delete`, whose spec has
/// since become one validation refuses (a queue load test without a waiting room), with
/// `status` as recorded.
async fn deleting_an_invalid_spec(
    status: &str,
) -> (FakeBackends, ApiServer, Result<Action, Error>) {
    let fake = provisioned().await;
    let now = stampede_core::clock::now_rfc3339();
    let cc = deleted(
        &now,
        "Delete",
        &format!("  loadTests: [{{name: q, profile: queue}}]\n{status}"),
    );
    assert!(crate::validate::validate(&cc, &crate::validate::tests::defaults()).is_err());
    let (result, api, _) = reconcile_once(cc, ready(), &fake).await;
    (fake, api, result)
}

#[tokio::test]
async fn a_provisioned_campaign_whose_spec_no_longer_validates_is_still_cleaned_up() {
    let provisioned = "status: {campaignId: shop.spring-sale}";
    let (fake, api, result) = deleting_an_invalid_spec(provisioned).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(finalizer_released(&api));
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    assert!(
        fake.snapshot(&id).await.unwrap().is_none(),
        "deletionPolicy: Delete removes its keys"
    );
    assert!(!fake.state().topics.contains_key("shop.spring-sale"));
}

#[tokio::test]
async fn a_spec_that_never_validated_is_let_go_without_touching_anything() {
    let (fake, api, result) = deleting_an_invalid_spec("").await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(finalizer_released(&api));
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    assert!(fake.snapshot(&id).await.unwrap().is_some());
}

/// One reconcile of a provisioned `spring-sale` deleted at `deleted_at` under `Delete`,
/// with 10 coupons issued, the outbox empty (Kafka has them all) and `rows` of them in
/// PostgreSQL.
async fn deleting_with_rows(deleted_at: &str, rows: i64) -> (FakeBackends, ApiServer, Action) {
    let fake = provisioned().await;
    {
        let mut s = fake.state();
        let snap = s.campaigns.get_mut("shop.spring-sale").unwrap();
        (snap.issued, snap.outbox_len) = (10, 0);
        s.persisted = Some(rows);
    }
    let cc = deleted(deleted_at, "Delete", "");
    let (result, api, _) = reconcile_once(cc, ready(), &fake).await;
    let action = match result {
        Ok(a) => a,
        Err(Error::OutboxNotDrained { pending, unwritten }) => {
            assert_eq!((pending, unwritten), (0, 10 - rows as u64));
            Action::requeue(std::time::Duration::ZERO)
        }
        Err(e) => panic!("{e}"),
    };
    (fake, api, action)
}

/// Whether the campaign's Redis keys and topics are still there.
async fn data_kept(fake: &FakeBackends) -> (bool, bool) {
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    let keys = fake.snapshot(&id).await.unwrap().is_some();
    (keys, fake.state().topics.contains_key("shop.spring-sale"))
}

#[tokio::test]
async fn delete_waits_until_postgresql_has_every_issuance_not_only_kafka() {
    let now = stampede_core::clock::now_rfc3339();
    let (fake, api, action) = deleting_with_rows(&now, 7).await;
    assert_ne!(action, Action::await_change(), "retried");
    assert!(!finalizer_released(&api));
    assert_eq!(
        data_kept(&fake).await,
        (true, true),
        "the topic holds 3 unwritten"
    );
    let (fake, api, action) = deleting_with_rows(&now, 10).await;
    assert_eq!(action, Action::await_change());
    assert!(finalizer_released(&api));
    assert_eq!(
        data_kept(&fake).await,
        (false, false),
        "all written: deleted"
    );
}

#[tokio::test]
async fn past_the_drain_timeout_delete_keeps_what_postgresql_lacks() {
    let (fake, api, action) = deleting_with_rows("2026-01-01T00:00:00Z", 7).await;
    assert_eq!(action, Action::await_change());
    assert!(finalizer_released(&api));
    assert!(api.event_reasons().contains(&"DrainTimedOut".to_owned()));
    assert_eq!(data_kept(&fake).await, (true, true), "nothing deleted");
}

#[tokio::test]
async fn a_test_taken_out_of_the_spec_mid_run_leaves_no_shadow_behind() {
    use crate::backends::Shape;
    let fake = provisioned().await;
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    let mid = id.shadow("mid");
    fake.ensure_campaign(&mid, 100, None, Shape::default())
        .await
        .unwrap();
    // `mid` ran, was taken out of the spec, and no reconcile removed it before deletion.
    let status = "status:\n  loadTests: [{name: mid, profile: smoke, run: '1', phase: Running, \
                  segments: 1, segmentsDone: 0}]";
    let now = stampede_core::clock::now_rfc3339();
    let (result, api, _) = reconcile_once(deleted(&now, "Retain", status), ready(), &fake).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(finalizer_released(&api));
    assert!(
        fake.snapshot(&mid).await.unwrap().is_none(),
        "mid's shadow forgotten"
    );
    assert!(
        fake.snapshot(&id).await.unwrap().is_some(),
        "Retain keeps the campaign"
    );
}
