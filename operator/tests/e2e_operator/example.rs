//! The steps of the example-campaign test: each checks one thing the example must get
//! (provisioning before pods, owned children, stock and topics, Ready and testing, the
//! printer columns, the PrometheusRule).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::json;
use stampede_operator::crd::{CouponCampaign, CouponCampaignStatus, FINALIZER, Phase};

use crate::common::*;

/// Before any pod is available: provisioned, not Ready, and it says why.
pub async fn provisioned_and_waiting_for_pods(c: &Cluster, name: &str) {
    let s = c
        .status_until(name, "provisioned, waiting for pods", |s| {
            has(s, "RedisProvisioned", "True") && has(s, "KafkaProvisioned", "True")
        })
        .await;
    assert_eq!(s.phase, Some(Phase::Provisioning));
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForPods")
    );
    assert_eq!(
        condition(&s, "AlertsConfigured").unwrap().reason,
        "PrometheusRuleCRDMissing",
        "no monitoring CRD installed yet"
    );
}

/// Every child exists, owned by the campaign; the HPA has the example's bounds.
pub async fn every_child_is_owned(
    c: &Cluster,
    name: &str,
    example: &serde_yaml::Value,
) -> CouponCampaign {
    let cc = c.campaigns().get(name).await.unwrap();
    assert_eq!(cc.finalizers(), [FINALIZER.to_owned()]);
    let uid = cc.uid().unwrap();
    let issuer = format!("{name}-issuer");
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(c.client.clone(), &c.ns)
        .get(&issuer)
        .await
        .unwrap();
    let owners = [
        c.deployments().get(&issuer).await.unwrap().metadata,
        c.deployments()
            .get(&format!("{name}-writer"))
            .await
            .unwrap()
            .metadata,
        Api::<Service>::namespaced(c.client.clone(), &c.ns)
            .get(&issuer)
            .await
            .unwrap()
            .metadata,
        hpa.metadata.clone(),
        Api::<PodDisruptionBudget>::namespaced(c.client.clone(), &c.ns)
            .get(&issuer)
            .await
            .unwrap()
            .metadata,
    ];
    for m in &owners {
        let o = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.uid.as_str(), o.controller),
            (uid.as_str(), Some(true)),
            "{:?}",
            m.name
        );
    }
    let spec = hpa.spec;
    let replicas = |k: &str| example["spec"]["issuer"][k].as_i64().unwrap() as i32;
    assert_eq!(
        (spec.min_replicas, spec.max_replicas),
        (Some(replicas("minReplicas")), replicas("maxReplicas"))
    );
    cc
}

/// Redis stock and Kafka partitions of campaign `id` as the spec says; returns the stock.
pub async fn stock_and_topics_as_the_spec_says(id: &str, example: &serde_yaml::Value) -> u64 {
    let stock = example["spec"]["stock"].as_u64().unwrap();
    let snap = snapshot(id).await.expect("campaign provisioned in Redis");
    assert_eq!((snap.total, snap.issued), (stock, 0));
    assert!(
        snap.window.opens_ms.is_some(),
        "the example's window is provisioned"
    );
    assert_eq!(partitions(&format!("stampede.{id}")).await, 6);
    assert_eq!(partitions(&format!("stampede-dlq.{id}")).await, 1);
    stock
}

/// Pods become available (the test plays the kubelet): Ready, and the example's load
/// tests start; its gated preflight holds the phase at Testing.
pub async fn ready_and_testing(c: &Cluster, name: &str) -> CouponCampaignStatus {
    c.mark_campaign_available(name).await;
    let s = c
        .status_until(name, "Ready and testing", |s| {
            has(s, "Ready", "True") && s.load_tests.iter().all(|r| r.started_at.is_some())
        })
        .await;
    assert_eq!(s.phase, Some(Phase::Testing));
    assert_eq!(s.load_tests.len(), 2);
    let runners = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(c.client.clone(), &c.ns)
        .list(&ListParams::default().labels(stampede_operator::loadtest::RUN_LABEL))
        .await
        .unwrap();
    assert_eq!(runners.items.len(), 3, "preflight: 1 runner, peak: 2");
    s
}

/// What `kubectl get cc` prints: the API server's table from the printer columns.
pub async fn kubectl_get_prints_the_columns(c: &Cluster, name: &str, stock: u64) {
    let req = http::Request::get(format!(
        "/apis/stampede.dev/v1alpha1/namespaces/{}/couponcampaigns/{name}",
        c.ns
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap();
    let table: serde_json::Value =
        serde_json::from_str(&c.client.request_text(req).await.unwrap()).unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Phase",
            "Stock",
            "Remaining",
            "Issued",
            "Tests",
            "Opens",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[1], "Testing");
    assert_eq!(
        (cells[2].as_u64(), cells[3].as_u64(), cells[4].as_u64()),
        (Some(stock), Some(stock), Some(0))
    );
    assert_eq!(cells[5], "False", "the gated preflight has not passed yet");
}

/// With the monitoring CRD installed, a spec change brings a PrometheusRule.
pub async fn a_spec_change_brings_the_prometheus_rule(c: &Cluster, name: &str) {
    let rule_crd = prometheus_rule_crd();
    install_crd(&c.client, &rule_crd).await;
    let patched = c
        .patch_spec(name, json!({ "alerts": { "p95LatencyMs": 80 } }))
        .await
        .unwrap();
    let generation = patched.metadata.generation;
    c.status_until(name, "AlertsConfigured for the new generation", |s| {
        has(s, "AlertsConfigured", "True") && s.observed_generation == generation
    })
    .await;
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule");
    let rules = Api::<DynamicObject>::namespaced_with(
        c.client.clone(),
        &c.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "prometheusrules"),
    );
    let rule = rules.get(&format!("{name}-alerts")).await.unwrap();
    let exprs = rule.data["spec"]["groups"][0]["rules"].to_string();
    assert!(
        exprs.contains("> 0.08"),
        "the new threshold is in the rule: {exprs}"
    );
}
