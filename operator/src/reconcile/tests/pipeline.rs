//! The reconcile pipeline, branch by branch, without an API server or backing services:
//! a campaign from inline YAML, the fake API server answering the client, the fake
//! backends standing in for Redis, Kafka and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::Value;
use stampede_core::campaign::AdminAction;
use stampede_core::ids::CampaignId;

use super::apiserver::{ApiServer, Cluster};
use crate::Error;
use crate::backends::fake::FakeBackends;
use crate::backends::{Shape, Stock};
use crate::context::{Context, Timings};
use crate::crd::{ConditionType, CouponCampaign, Reason};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::validate::tests::{defaults, from_yaml};

pub(super) const CAMPAIGN: &str = "
apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata:
  name: spring-sale
  namespace: shop
  uid: 0a1b2c3d
  generation: 1
  finalizers: [stampede.dev/cleanup]
spec:
  stock: 100
";

/// One reconcile of `yaml` (appended to [`CAMPAIGN`]'s spec) against a fake cluster.
pub(super) async fn reconciled(
    extra_spec: &str,
    cluster: Cluster,
    fake: &FakeBackends,
) -> (Result<Action, Error>, ApiServer, Arc<Context>) {
    reconcile_once(from_yaml(&format!("{CAMPAIGN}{extra_spec}")), cluster, fake).await
}

/// One reconcile of `cc` against a fake API server serving `cluster` and `fake` backends.
pub(super) async fn reconcile_once(
    cc: CouponCampaign,
    cluster: Cluster,
    fake: &FakeBackends,
) -> (Result<Action, Error>, ApiServer, Arc<Context>) {
    let (client, api) = ApiServer::start(&cc, cluster);
    let timings = Timings {
        resync: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(60),
    };
    let backends = Arc::new(fake.clone());
    let ctx = Arc::new(Context::new(
        client,
        defaults(),
        backends,
        Metrics::new(),
        timings,
    ));
    let result = reconcile(Arc::new(cc), ctx.clone()).await;
    (result, api, ctx)
}

/// Fake backends holding `spring-sale` provisioned: stock 100, topics of 6 partitions.
pub(super) async fn provisioned() -> FakeBackends {
    let fake = FakeBackends::default();
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    fake.ensure_campaign(&id, 100, None, Shape::default())
        .await
        .unwrap();
    fake.state().topics.insert("shop.spring-sale".into(), 6);
    fake
}

/// `(status, reason)` of a condition in a written status.
pub(super) fn condition(status: &Value, t: ConditionType) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t.as_str())
        .unwrap_or_else(|| panic!("no {t} condition in {status}"));
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    (s("status"), s("reason"))
}

pub(super) fn is(status: &str, reason: Reason) -> (String, String) {
    (status.to_owned(), reason.as_str().to_owned())
}

pub(super) fn ready() -> Cluster {
    Cluster {
        available: true,
        ..Cluster::default()
    }
}

#[tokio::test]
async fn a_healthy_campaign_becomes_ready_and_open() {
    let fake = FakeBackends::default();
    let (result, api, _) = reconciled("", ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    for child in ["deployments", "services", "horizontalpodautoscalers"] {
        let applied = api.find(Method::PATCH, &format!("{child}/spring-sale-issuer"));
        assert_eq!(applied.len(), 1, "{child}");
    }
    assert_eq!(
        api.find(Method::PATCH, "deployments/spring-sale-writer")
            .len(),
        1
    );
    let status = api.status();
    assert_eq!(status["phase"], "Open");
    assert_eq!(
        condition(&status, ConditionType::Ready),
        is("True", Reason::Ready)
    );
    assert_eq!(
        condition(&status, ConditionType::AlertsConfigured),
        is("False", Reason::PrometheusRuleCRDMissing)
    );
    assert_eq!(
        api.event_reasons(),
        ["StockProvisioned", "TopicsCreated", "Ready"]
    );
    assert_eq!(fake.state().topics["shop.spring-sale"], 6);
    let c = &fake.state().campaigns["shop.spring-sale"];
    assert!(
        !c.closed && !c.gate_closed,
        "an ungated campaign is created open"
    );
}

#[tokio::test]
async fn an_invalid_spec_fails_the_campaign_and_touches_nothing() {
    let fake = FakeBackends::default();
    let (result, api, ctx) = reconciled("  kafka: {partitions: 0}\n", ready(), &fake).await;
    let Err(e @ Error::InvalidSpec(m)) = &result else {
        panic!("expected InvalidSpec, got {result:?}");
    };
    assert!(m.contains("spec.kafka.partitions"), "{m}");
    assert_eq!(api.event_reasons(), ["InvalidSpec"]);
    let status = api.status();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        condition(&status, ConditionType::Ready),
        is("False", Reason::InvalidSpec)
    );
    assert!(api.find(Method::PATCH, "spring-sale-issuer").is_empty());
    assert!(fake.state().campaigns.is_empty() && fake.state().topics.is_empty());
    let cc = Arc::new(from_yaml(CAMPAIGN));
    assert_eq!(error_policy(cc, e, ctx), Action::await_change());
}

#[tokio::test]
async fn unreachable_redis_is_a_condition_and_retried_with_backoff() {
    let fake = FakeBackends::default();
    fake.state().redis_down = true;
    let (result, api, ctx) = reconciled("", ready(), &fake).await;
    let Err(e @ Error::Incomplete(m)) = &result else {
        panic!("expected Incomplete, got {result:?}");
    };
    assert!(m.starts_with("RedisUnavailable"), "{m}");
    let status = api.status();
    assert_eq!(status["phase"], "Provisioning");
    assert_eq!(
        condition(&status, ConditionType::RedisProvisioned),
        is("False", Reason::RedisUnavailable)
    );
    assert_eq!(
        condition(&status, ConditionType::KafkaProvisioned),
        is("True", Reason::Provisioned)
    );
    assert_eq!(
        condition(&status, ConditionType::Ready),
        is("False", Reason::RedisUnavailable)
    );
    assert_eq!(api.event_reasons(), ["RedisUnavailable", "TopicsCreated"]);
    let cc = Arc::new(from_yaml(CAMPAIGN));
    assert_eq!(
        error_policy(cc, e, ctx),
        Action::requeue(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_partition_decrease_is_refused_and_the_topic_kept() {
    let fake = FakeBackends::default();
    fake.state().topics.insert("shop.spring-sale".into(), 12);
    let (result, api, _) = reconciled("", ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    let status = api.status();
    let refused = is("False", Reason::PartitionDecreaseRefused);
    assert_eq!(condition(&status, ConditionType::KafkaProvisioned), refused);
    assert_eq!(condition(&status, ConditionType::Ready), refused);
    assert_eq!(status["kafka"]["partitions"], 12);
    assert_eq!(fake.state().topics["shop.spring-sale"], 12);
    assert!(fake.state().campaigns.contains_key("shop.spring-sale"));
    let events = api.event_reasons();
    assert!(
        events.contains(&"PartitionDecreaseRefused".to_owned()),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_gate_holds_the_campaign_closed_while_its_test_runs() {
    let fake = FakeBackends::default();
    let tests = "  loadTests:\n  - {name: preflight, profile: smoke, gate: true}\n";
    let (result, api, _) = reconciled(tests, ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    let state = fake.state();
    // Created closed by the gate: no admin call, so no gap in which it was open.
    assert!(state.admin.is_empty(), "{:?}", state.admin);
    let c = &state.campaigns["shop.spring-sale"];
    assert!(c.gate_closed && !c.closed, "{c:?}");
    assert!(
        state
            .campaigns
            .contains_key("shop.spring-sale.lt-preflight")
    );
    assert_eq!(
        api.find(Method::PATCH, "configmaps/spring-sale-k6").len(),
        1
    );
    let jobs = api.find(Method::PATCH, "-0");
    assert!(
        jobs.iter()
            .any(|c| c.path.contains("/jobs/spring-sale-preflight-"))
    );
    let status = api.status();
    assert_eq!(status["phase"], "Testing");
    assert_eq!(status["closedBy"], serde_json::json!(["Gate"]));
    assert_eq!(
        condition(&status, ConditionType::LoadTestsPassed),
        is("False", Reason::Running)
    );
    assert_eq!(status["loadTests"][0]["phase"], "Pending");
    let events = api.event_reasons();
    assert!(events.contains(&"GateClosed".to_owned()), "{events:?}");
    assert!(events.contains(&"LoadTestStarted".to_owned()), "{events:?}");
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_and_nothing_is_provisioned() {
    let fake = FakeBackends::default();
    let secret = "  redis: {secretRef: {name: backends, key: redis-url}}\n";
    let (result, api, _) = reconciled(secret, ready(), &fake).await;
    let Err(Error::Incomplete(m)) = &result else {
        panic!("expected Incomplete, got {result:?}");
    };
    assert!(m.starts_with("SecretUnavailable"), "{m}");
    assert_eq!(api.find(Method::GET, "/secrets/backends").len(), 1);
    let status = api.status();
    let unavailable = is("False", Reason::SecretUnavailable);
    assert_eq!(
        condition(&status, ConditionType::RedisProvisioned),
        unavailable
    );
    assert_eq!(
        condition(&status, ConditionType::KafkaProvisioned),
        unavailable
    );
    assert!(fake.state().campaigns.is_empty() && fake.state().topics.is_empty());
}

#[tokio::test]
async fn an_rbac_refusal_is_reported_on_the_campaign() {
    let fake = FakeBackends::default();
    let cluster = Cluster {
        forbidden: Some("deployments"),
        ..ready()
    };
    let (result, api, _) = reconciled("", cluster, &fake).await;
    let Err(Error::Kube(kube::Error::Api(status))) = &result else {
        panic!("expected a 403, got {result:?}");
    };
    assert!(status.is_forbidden(), "{status:?}");
    assert_eq!(api.event_reasons(), ["Forbidden"]);
    let written = api.status();
    assert_eq!(
        condition(&written, ConditionType::Ready),
        is("False", Reason::Forbidden)
    );
    let message = written["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot patch resource \"deployments\""),
        "{message}"
    );
    assert!(fake.state().campaigns.is_empty(), "nothing provisioned");
}

/// A campaign being deleted, with its stock and topics in the fake.
async fn deleting(policy: &str) -> (FakeBackends, ApiServer, Result<Action, Error>) {
    let fake = provisioned().await;
    let deleting = CAMPAIGN.replace(
        "  generation: 1\n",
        "  generation: 1\n  deletionTimestamp: '2026-01-01T00:00:00Z'\n",
    );
    let cc = from_yaml(&format!("{deleting}  deletionPolicy: {policy}\n"));
    let (result, api, _) = reconcile_once(cc, ready(), &fake).await;
    (fake, api, result)
}

#[tokio::test]
async fn deletion_closes_and_deletes_then_releases_the_finalizer() {
    let (fake, api, result) = deleting("Delete").await;
    assert_eq!(result.unwrap(), Action::await_change());
    let state = fake.state();
    assert_eq!(
        state.admin,
        [("shop.spring-sale".to_owned(), AdminAction::Close)]
    );
    assert!(state.campaigns.is_empty() && state.topics.is_empty());
    assert_eq!(api.event_reasons(), ["Closed", "Deleted"]);
    let released = api.find(Method::PATCH, "couponcampaigns/spring-sale");
    assert_eq!(released.len(), 1);
    assert!(
        released[0].body.to_string().contains("remove"),
        "{:?}",
        released[0].body
    );
    assert!(api.find(Method::PATCH, "/status").is_empty());
}

#[tokio::test]
async fn deletion_under_retain_closes_and_keeps_the_data() {
    let (fake, api, result) = deleting("Retain").await;
    assert_eq!(result.unwrap(), Action::await_change());
    let state = fake.state();
    assert!(state.campaigns["shop.spring-sale"].closed);
    assert_eq!(state.topics["shop.spring-sale"], 6);
    assert_eq!(api.event_reasons(), ["Closed"]);
    assert_eq!(
        api.find(Method::PATCH, "couponcampaigns/spring-sale").len(),
        1
    );
}
