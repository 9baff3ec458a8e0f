//! The operator on a real control plane (etcd + kube-apiserver 1.37 built from the Go
//! module proxy) with the stack's real Redis, Kafka and PostgreSQL.

mod common;
#[path = "e2e_operator/example.rs"]
mod example;

use std::time::Duration;

use common::*;
use kube::api::Api;
use serde_json::json;
use stampede_core::ids::{CampaignId, UserId};
use stampede_operator::crd::Phase;

const EXAMPLE: &str = include_str!("../../examples/campaign.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_campaign_reaches_ready_with_every_child_and_its_stock_and_topics() {
    let c = Cluster::start().await;
    common::migrate_stack_database().await;
    let name = unique("spring-sale");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    let example: serde_yaml::Value = serde_yaml::from_str(EXAMPLE).unwrap();
    c.create(&name, EXAMPLE)
        .await
        .expect("the example is accepted by the API server");
    example::provisioned_and_waiting_for_pods(&c, &name).await;
    let cc = example::every_child_is_owned(&c, &name, &example).await;
    let stock = example::stock_and_topics_as_the_spec_says(&c.id(&name), &example).await;
    let s = example::ready_and_testing(&c, &name).await;
    example::kubectl_get_prints_the_columns(&c, &name, stock).await;
    let st = s.stock.clone().unwrap();
    assert_eq!(
        (st.total, st.remaining, st.issued),
        (stock as i64, stock as i64, 0)
    );
    // The count is bounded (3 s) and left out when it lapses, as on a loaded machine; a
    // later reconcile fills it in.
    let counted = c
        .status_until(&name, "persisted counted", |s| {
            s.stock.as_ref().is_some_and(|st| st.persisted.is_some())
        })
        .await;
    let persisted = counted.stock.and_then(|st| st.persisted);
    assert_eq!(persisted, Some(0), "persisted is read from PostgreSQL");
    assert_eq!(s.kafka.as_ref().unwrap().partitions, 6);
    assert_eq!(s.observed_generation, cc.metadata.generation);
    example::a_spec_change_brings_the_prometheus_rule(&c, &name).await;
    c.events_until(&name, &["TopicsCreated", "StockProvisioned", "Ready"])
        .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_stock_up_restocks_and_the_window_and_stock_drive_the_phase() {
    let c = Cluster::start().await;
    let name = unique("restock");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    // Opens in an hour: Scheduled. (Opening a few seconds after the create raced the first
    // Ready status on a loaded machine, which then saw the window open already.)
    let in_ms = |ms| stampede_core::clock::format_ms(stampede_core::clock::now_ms() + ms);
    let yaml = format!(
        "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {{name: x}}\nspec: {{stock: 3, window: {{opensAt: '{}'}}, issuer: {{minReplicas: 1}}}}\n",
        in_ms(3_600_000)
    );
    c.create(&name, &yaml).await.unwrap();
    c.mark_campaign_available(&name).await;
    let s = c
        .status_until(&name, "Scheduled", |s| s.phase == Some(Phase::Scheduled))
        .await;
    assert!(has(&s, "Ready", "True"));
    // Moved to 10 s from now: still Scheduled once the operator has seen the move, then
    // Open without a further change (requeue at opensAt).
    let moved = c
        .patch_spec(&name, json!({ "window": { "opensAt": in_ms(10_000) } }))
        .await
        .unwrap()
        .metadata
        .generation;
    c.status_until(&name, "Scheduled at the moved window", |s| {
        s.observed_generation == moved && s.phase == Some(Phase::Scheduled)
    })
    .await;
    c.status_until(&name, "Open at opensAt", |s| s.phase == Some(Phase::Open))
        .await;
    sold_out_then_restocked(&c, &name).await;

    // spec.paused pauses issuing.
    c.patch_spec(&name, json!({ "paused": true }))
        .await
        .unwrap();
    c.status_until(&name, "Paused", |s| s.phase == Some(Phase::Paused))
        .await;
    assert!(snapshot(&c.id(&name)).await.unwrap().paused);
    c.events_until(&name, &["Restocked", "Paused"]).await;
    op.stop().await;
}

/// Three users take the whole stock (SoldOut); `kubectl patch` stock 3 → 10 restocks by
/// the difference and keeps the holders.
async fn sold_out_then_restocked(c: &Cluster, name: &str) {
    let name = name.to_owned();
    let store = store().await;
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    for u in ["u1", "u2", "u3"] {
        store.issue(&id, &UserId::parse(u).unwrap()).await.unwrap();
    }
    let s = c
        .status_until(&name, "SoldOut", |s| s.phase == Some(Phase::SoldOut))
        .await;
    assert_eq!(s.stock.unwrap().issued, 3);

    // `kubectl patch` stock 3 → 10: restocked by the difference; holders kept.
    c.patch_spec(&name, json!({ "stock": 10 })).await.unwrap();
    let s = c
        .status_until(&name, "restocked and Open", |s| {
            s.phase == Some(Phase::Open) && s.stock.as_ref().is_some_and(|st| st.total == 10)
        })
        .await;
    assert_eq!(s.stock.unwrap().remaining, 7);
    let snap = snapshot(&c.id(&name)).await.unwrap();
    assert_eq!((snap.total, snap.issued), (10, 3));
    let again = store
        .issue(&id, &UserId::parse("u1").unwrap())
        .await
        .unwrap();
    assert!(
        matches!(again, stampede_core::coupon::Decision::Already(_)),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_decrease_and_a_bad_spec_are_refused_with_conditions() {
    let c = Cluster::start().await;
    let name = unique("shrink");
    let _forget = Forget(c.id(&name));
    // The topic already has 8 partitions (an earlier campaign of that name, Retained).
    let pre = stampede_core::kafka::ensure_topics(&kafka(), &c.id(&name), 8, 1)
        .await
        .unwrap();
    assert_eq!(pre.partitions, 8);
    let op = c.operator();
    let yaml = "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\nspec: {stock: 5, kafka: {partitions: 6}, issuer: {minReplicas: 1}}\n";
    c.create(&name, yaml).await.unwrap();
    c.mark_campaign_available(&name).await;
    let s = c
        .status_until(&name, "KafkaProvisioned False", |s| {
            has(s, "KafkaProvisioned", "False")
        })
        .await;
    let k = condition(&s, "KafkaProvisioned").unwrap();
    assert_eq!(k.reason, "PartitionDecreaseRefused");
    assert!(
        k.message.contains("Set spec.kafka.partitions to 8 or more"),
        "{}",
        k.message
    );
    assert_eq!(condition(&s, "Ready").unwrap().status, "False");
    assert_eq!(s.kafka.unwrap().partitions, 8);
    assert_eq!(
        partitions(&format!("stampede.{}", c.id(&name))).await,
        8,
        "never shrunk"
    );
    // Asking for 8 clears it.
    c.patch_spec(&name, json!({ "kafka": { "partitions": 8 } }))
        .await
        .unwrap();
    c.status_until(&name, "Ready", |s| has(s, "Ready", "True"))
        .await;

    bad_spec_fails_waits_for_a_change_and_recovers(&c, &op, &name).await;
    c.events_until(&name, &["PartitionDecreaseRefused", "InvalidSpec"])
        .await;
    let (code, body) = op.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        sample(
            &body,
            r#"stampede_operator_reconciles_total{kind="apply",result="ok"}"#
        ) >= 2.0
    );
    assert!(body.contains("stampede_operator_reconcile_duration_seconds_bucket"));
    assert_eq!(op.get("/healthz").await.0, 200);
    op.stop().await;
}

/// A spec the schema lets through but the operator cannot carry out: Failed, a
/// condition and an event naming the field; fixing it recovers.
async fn bad_spec_fails_waits_for_a_change_and_recovers(c: &Cluster, op: &Operator, name: &str) {
    let name = name.to_owned();
    c.patch_spec(
        &name,
        json!({ "writer": { "resources": { "limits": { "memory": "lots" } } } }),
    )
    .await
    .unwrap();
    let s = c
        .status_until(&name, "Failed", |s| s.phase == Some(Phase::Failed))
        .await;
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready
            .message
            .contains("spec.writer.resources.limits.memory"),
        "{}",
        ready.message
    );
    // A spec error waits for a change: no retries through several resync periods.
    let invalid = r#"stampede_operator_reconcile_failures_total{error="invalid_spec"}"#;
    let failures = || async { sample(&op.get("/metrics").await.1, invalid) };
    let before = failures().await;
    assert!(before >= 1.0, "the failure is counted");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(failures().await, before, "an invalid spec is not retried");
    c.patch_spec(
        &name,
        json!({ "writer": { "resources": { "limits": { "memory": "1Gi" } } } }),
    )
    .await
    .unwrap();
    // The writer's new template rolls out: not Ready until its pods run it (this control
    // plane has no deployment controller; the test plays it once the operator applied it).
    c.status_until(&name, "rolling out", |s| {
        condition(s, "Ready").is_some_and(|r| r.reason == "RollingOut")
    })
    .await;
    c.mark_campaign_available(&name).await;
    c.status_until(&name, "Ready again", |s| has(s, "Ready", "True"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_come_from_secrets_and_a_missing_secret_is_a_condition() {
    let c = Cluster::start().await;
    let name = unique("secret");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    let yaml = minimal_campaign(7).replace(
        "spec: {",
        "spec: {redis: {secretRef: {name: backends, key: redis-url}}, ",
    );
    c.create(&name, &yaml).await.unwrap();
    let s = c
        .status_until(&name, "SecretUnavailable", |s| {
            condition(s, "Ready").is_some_and(|r| r.reason == "SecretUnavailable")
        })
        .await;
    let msg = &condition(&s, "Ready").unwrap().message;
    assert!(msg.contains("backends does not exist"), "{msg}");
    assert!(
        snapshot(&c.id(&name)).await.is_none(),
        "nothing provisioned without the Secret"
    );

    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": { "name": "backends" },
        "stringData": { "redis-url": stack_defaults().redis_url },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.client.clone(), &c.ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    c.mark_campaign_available(&name).await;
    // Backoff retries pick the Secret up without a spec change.
    c.status_until(&name, "Ready", |s| has(s, "Ready", "True"))
        .await;
    assert_eq!(snapshot(&c.id(&name)).await.unwrap().total, 7);
    // The pods read the same Secret key.
    let d = c
        .deployments()
        .get(&format!("{name}-issuer"))
        .await
        .unwrap();
    let env = serde_json::to_value(&d.spec.template.spec.unwrap().containers[0].env).unwrap();
    let redis = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "STAMPEDE_REDIS_URL")
        .unwrap();
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["name"], "backends");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_that_suspended_itself_stays_suspended_until_an_admin_lifts_it() {
    let c = Cluster::start().await;
    let name = unique("suspend");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    c.create(&name, &minimal_campaign(10)).await.unwrap();
    c.mark_campaign_available(&name).await;
    c.status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    // An issuer that handed out seq 5 finds Redis' counter at 1 (Redis lost writes): the
    // issue script suspends the campaign.
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    let store = store().await;
    let user = |u: &str| UserId::parse(u).unwrap();
    let nothing = stampede_core::store::HandedOut::default();
    let (_, incarnation) = store.issue_after(&id, &user("u1"), &nothing).await.unwrap();
    let handed = stampede_core::store::HandedOut {
        incarnation: incarnation.into(),
        high: 5,
    };
    let (d, _) = store
        .issue_after(&id, &user("after-the-loss"), &handed)
        .await
        .unwrap();
    assert_eq!(d, stampede_core::coupon::Decision::Suspended);
    c.status_until(&name, "Suspended", |s| s.phase == Some(Phase::Suspended))
        .await;
    c.events_until(&name, &["Suspended"]).await;
    // Pausing and resuming through the spec (the operator's own pause) does not lift it.
    for paused in [true, false] {
        c.patch_spec(&name, json!({ "paused": paused }))
            .await
            .unwrap();
        let generation = c.campaigns().get(&name).await.unwrap().metadata.generation;
        let s = c
            .status_until(&name, "the spec change observed", |s| {
                s.observed_generation == generation
            })
            .await;
        assert_eq!(s.phase, Some(Phase::Suspended), "paused: {paused}");
    }
    assert!(snapshot(&c.id(&name)).await.unwrap().suspension.is_some());
    // `campaign unsuspend` lifts it.
    let admin = stampede_core::campaign::AdminAction::Unsuspend;
    store.admin(&id, admin).await.unwrap();
    c.status_until(&name, "Open again", |s| s.phase == Some(Phase::Open))
        .await;
    c.events_until(&name, &["Unsuspended"]).await;
    op.stop().await;
}
