//! The operator's lifecycle on a real control plane with the stack's real Redis and
//! Kafka: what the API server refuses (CEL), deletion under both policies (and with Redis
//! gone), NetworkPolicies removed when turned off. (An operator interrupted mid-reconcile:
//! `e2e_interrupt.rs`.)

mod common;

use std::time::Duration;

use common::*;
use kube::api::{DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use stampede_core::ids::{CampaignId, UserId};
use stampede_operator::crd::FINALIZER;

const BASE: &str = "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\n";

fn reject<T: std::fmt::Debug>(r: Result<T, kube::Error>, needle: &str) {
    let e = r.expect_err(&format!("should be rejected ({needle})"));
    let msg = e.to_string();
    assert!(msg.contains(needle), "{needle:?} not in {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_invalid_specs_with_the_cel_message() {
    let c = Cluster::start().await;
    invalid_fields_are_rejected(&c).await;
    // Transition rules: stock and partitions never decrease.
    decreases_are_rejected(&c).await;
    let names: Vec<String> = c
        .campaigns()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|x| x.name_any())
        .collect();
    assert_eq!(names, ["ok"]);
}

/// OpenAPI bounds and CEL rules on single fields.
async fn invalid_fields_are_rejected(c: &Cluster) {
    let base = BASE;
    reject(
        c.create("zero", &format!("{base}spec: {{stock: 0}}")).await,
        "spec.stock",
    );
    reject(
        c.create(
            "window",
            &format!("{base}spec: {{stock: 1, window: {{opensAt: '2030-01-02T00:00:00Z', closesAt: '2030-01-01T00:00:00Z'}}}}"),
        )
        .await,
        "window.closesAt must be after window.opensAt",
    );
    reject(
        c.create(
            "date",
            &format!("{base}spec: {{stock: 1, window: {{opensAt: 'next tuesday'}}}}"),
        )
        .await,
        "spec.window.opensAt",
    );
    reject(
        c.create(
            "replicas",
            &format!("{base}spec: {{stock: 1, issuer: {{minReplicas: 5, maxReplicas: 2}}}}"),
        )
        .await,
        "issuer.minReplicas must not exceed issuer.maxReplicas",
    );
    reject(
        c.create("conn", &format!("{base}spec: {{stock: 1, redis: {{url: 'redis://a', secretRef: {{name: s, key: k}}}}}}")).await,
        "set exactly one of url and secretRef",
    );
    reject(
        c.create(
            "policy",
            &format!("{base}spec: {{stock: 1, deletionPolicy: Shred}}"),
        )
        .await,
        "spec.deletionPolicy",
    );
}

/// Stock and partitions may grow but never shrink; nothing is stored for a refusal.
async fn decreases_are_rejected(c: &Cluster) {
    let base = BASE;
    c.create(
        "ok",
        &format!("{base}spec: {{stock: 10, kafka: {{partitions: 6}}}}"),
    )
    .await
    .unwrap();
    reject(
        c.patch_spec("ok", json!({ "stock": 9 })).await,
        "stock may grow (restock) but never decrease",
    );
    reject(
        c.patch_spec("ok", json!({ "kafka": { "partitions": 3 } }))
            .await,
        "kafka.partitions may grow but never decrease",
    );
    // Growing both is fine.
    c.patch_spec("ok", json!({ "stock": 11, "kafka": { "partitions": 8 } }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_runs_the_finalizer_under_both_policies() {
    let c = Cluster::start().await;
    let keep = unique("keep");
    let gone = unique("gone");
    let _f1 = Forget(c.id(&keep));
    let _f2 = Forget(c.id(&gone));
    // A load test under way when the retained campaign goes: its shadow goes with it.
    let shadow = CampaignId::parse(&c.id(&keep)).unwrap().shadow("mid");
    let _f3 = Forget(shadow.to_string());
    let op = c.operator();
    let keep_yaml = minimal_campaign(5).replace(
        "spec: {",
        "spec: {loadTests: [{name: mid, profile: smoke, duration: 60s}], ",
    );
    c.create(&keep, &keep_yaml).await.unwrap();
    let delete_yaml = minimal_campaign(5).replace("spec: {", "spec: {deletionPolicy: Delete, ");
    c.create(&gone, &delete_yaml).await.unwrap();
    let store = store().await;
    for name in [&keep, &gone] {
        c.mark_campaign_available(name).await;
        c.status_until(name, "Ready", |s| has(s, "Ready", "True"))
            .await;
        let id = CampaignId::parse(&c.id(name)).unwrap();
        store
            .issue(&id, &UserId::parse("holder").unwrap())
            .await
            .unwrap();
    }
    retain_closes_and_keeps_the_data(&c, &keep, &shadow).await;
    delete_waits_for_the_outbox_then_removes_the_data(&c, &store, &gone).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_with_redis_gone_releases_the_finalizer_after_the_drain_timeout() {
    let c = Cluster::start().await;
    let name = unique("orphan");
    let _f = Forget(c.id(&name));
    let op = Operator::start_draining(&c.cp.kubeconfig, stack_defaults(), Duration::from_secs(3));
    // Nothing listens on port 1: every Redis call of this campaign fails at once.
    let yaml = minimal_campaign(5).replace(
        "spec: {",
        "spec: {deletionPolicy: Delete, redis: {url: 'redis://127.0.0.1:1'}, ",
    );
    c.create(&name, &yaml).await.unwrap();
    eventually("finalizer added", Duration::from_secs(30), || {
        let api = c.campaigns();
        let name = name.clone();
        async move {
            let cc = api.get(&name).await.unwrap();
            cc.finalizers()
                .contains(&FINALIZER.to_owned())
                .then_some(())
        }
    })
    .await;
    c.campaigns()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    gone_from_the_api(
        &c,
        "campaign with Redis gone released",
        &name,
        Duration::from_secs(40),
    )
    .await;
    c.events_until(&name, &["CleanupAbandoned"]).await;
    op.stop().await;
}

/// Retain: closed, data and topics kept, the load test's shadow removed, finalizer released.
async fn retain_closes_and_keeps_the_data(c: &Cluster, keep: &str, shadow: &CampaignId) {
    eventually(
        "the load test's shadow provisioned",
        Duration::from_secs(30),
        || async { snapshot(shadow.as_str()).await.map(|_| ()) },
    )
    .await;
    c.campaigns()
        .delete(keep, &DeleteParams::default())
        .await
        .unwrap();
    gone_from_the_api(
        c,
        "retained campaign gone from the API",
        keep,
        Duration::from_secs(30),
    )
    .await;
    let id = c.id(keep);
    let snap = snapshot(&id).await.expect("Redis data retained");
    assert!(snap.closed, "closed by the finalizer");
    assert_eq!(snap.issued, 1);
    assert_eq!(
        partitions(&format!("stampede.{id}")).await,
        6,
        "topic retained"
    );
    assert!(
        snapshot(shadow.as_str()).await.is_none(),
        "the interrupted load test's shadow campaign removed"
    );
}

/// Delete: closed at once, but held while the outbox still has an issuance nobody
/// relayed, and while Kafka has it but PostgreSQL does not; once a writer has put it in
/// PostgreSQL, Redis keys and topics go.
async fn delete_waits_for_the_outbox_then_removes_the_data(
    c: &Cluster,
    store: &stampede_core::store::Store,
    gone: &str,
) {
    c.campaigns()
        .delete(gone, &DeleteParams::default())
        .await
        .unwrap();
    let id = c.id(gone);
    eventually("Delete campaign closed", Duration::from_secs(30), || {
        let id = id.clone();
        async move { snapshot(&id).await.filter(|s| s.closed).map(|_| ()) }
    })
    .await;
    let held = c
        .campaigns()
        .get(gone)
        .await
        .expect("held by the finalizer while the outbox drains");
    assert!(held.meta().deletion_timestamp.is_some());
    assert_eq!(snapshot(&id).await.unwrap().outbox_len, 1);
    // In Kafka is not yet in PostgreSQL: the topic must stay until the writer has it.
    let mut pipeline = StackPipeline::relay_only([id.to_string()].into());
    eventually("relayed to Kafka", Duration::from_secs(30), || {
        let id = id.clone();
        async move { (snapshot(&id).await?.outbox_len == 0).then_some(()) }
    })
    .await;
    still_held_for(c, gone, Duration::from_secs(6)).await;
    pipeline.start_writer();
    gone_from_the_api(
        c,
        "Delete campaign gone from the API",
        gone,
        Duration::from_secs(40),
    )
    .await;
    pipeline.stop().await;
    assert!(snapshot(&id).await.is_none(), "Redis keys deleted");
    assert!(!store.registry().await.unwrap().contains(&id));
    eventually("topics deleted", Duration::from_secs(30), || {
        let t = format!("stampede.{id}");
        let d = format!("stampede-dlq.{id}");
        async move { (partitions(&t).await == 0 && partitions(&d).await == 0).then_some(()) }
    })
    .await;
}

/// Checks, for `window` (three of the operator's 2 s retries), that `name` stays held by
/// its finalizer with its Redis keys.
async fn still_held_for(c: &Cluster, name: &str, window: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < window {
        let cc = c.campaigns().get_opt(name).await.unwrap();
        assert!(cc.is_some(), "deleted while PostgreSQL lacked a row");
        assert!(
            snapshot(&c.id(name)).await.is_some(),
            "keys deleted too soon"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn a_control_planes_directory_names_the_process_that_owns_it() {
    // Another test process reaps the directories whose owner is gone: a misread pid kills
    // a live test's control plane under it.
    assert_eq!(owner_pid(&dir_name()), Some(std::process::id()));
    assert_eq!(owner_pid("stampede-cp-123-cp-4567abcde-0"), Some(123));
    assert_eq!(owner_pid("stampede-other-123"), None);
}

/// Turning NetworkPolicies off (`networkPolicies.enabled: false`, no monitoring namespace)
/// removes the ones the campaign had: left, they would go on admitting metrics only from
/// the namespace they were made for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policies_turned_off_are_removed() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let c = Cluster::start().await;
    let name = unique("netpols");
    let _forget = Forget(c.id(&name));
    let policies = kube::Api::<NetworkPolicy>::namespaced(c.client.clone(), &c.ns);
    let op = c.operator();
    c.create(&name, &minimal_campaign(5)).await.unwrap();
    let names = [format!("{name}-issuer"), format!("{name}-writer")];
    for n in &names {
        eventually("the policy is applied", Duration::from_secs(60), || async {
            policies.get_opt(n).await.unwrap()
        })
        .await;
    }
    op.stop().await;
    let off = stampede_operator::validate::Defaults {
        monitoring_namespace: None,
        ..stack_defaults()
    };
    let op = Operator::start_with(&c.cp.kubeconfig, off);
    for n in &names {
        eventually("the policy is removed", Duration::from_secs(60), || async {
            policies.get_opt(n).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    op.stop().await;
}
