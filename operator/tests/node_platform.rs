//! The platform on the real local node (`scripts/cluster`): the node's network stays on
//! this machine, DNS and the metrics API work, and the Helm release runs the operator as
//! a pod with the chart's ServiceAccount, image and hardening.

mod common;

use std::process::Command;
use std::time::Duration;

use common::node::*;
use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_is_ready_its_ranges_are_unreachable_and_dns_and_metrics_answer() {
    let t = NodeTest::start("plat").await;
    // Before anything could leak: the pod and Service ranges end here.
    the_pod_and_service_ranges_are_unreachable();
    the_node_is_ready(&t).await;
    // CoreDNS (a pod) answers for Service names.
    coredns_resolves_the_operator_service();

    // metrics-server reads the kubelet: real CPU and memory of the node.
    let metrics = eventually("node metrics", Duration::from_secs(90), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        try_kubectl(&[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/nodes/stampede-node",
        ])
        .ok()
    })
    .await;
    let m: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert!(m["usage"]["cpu"].as_str().is_some(), "{m}");
    assert!(m["usage"]["memory"].as_str().is_some(), "{m}");
}

fn the_pod_and_service_ranges_are_unreachable() {
    let routes = Command::new("ip")
        .args(["route", "show", "type", "unreachable"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    for range in ["10.244.0.0/16", "10.96.0.0/16"] {
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with(&format!("unreachable {range}"))),
            "no unreachable route for {range}: {routes}"
        );
    }
}

/// Ready, with the node's address, kubelet version and containerd.
async fn the_node_is_ready(t: &NodeTest) {
    let node = Api::<Node>::all(t.client.clone())
        .get("stampede-node")
        .await
        .unwrap();
    let status = node.status.unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "10.244.0.1"),
        "{addresses:?}"
    );
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, "v1.37.1");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
}

fn coredns_resolves_the_operator_service() {
    let dns_ip = kubectl(&[
        "-n",
        "kube-system",
        "get",
        "pod",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let answer = Command::new("dig")
        .args([
            "+short",
            "+time=2",
            &format!("@{dns_ip}"),
            &format!("stampede-operator.{RELEASE_NS}.svc.cluster.local"),
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer.stdout).trim().to_owned();
    assert!(
        answer.starts_with("10.96."),
        "the operator Service resolves: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_release_runs_the_operator_as_the_charts_service_account() {
    let mut t = NodeTest::start("helm").await;
    let pod = operator_pod(&t.client).await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("stampede-operator"),
        "the chart's ServiceAccount"
    );
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(concat!(
            "ghcr.io/stampede-dev/stampede-operator:",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    // The image was imported, not pulled: the kubelet ran it from the node's store.
    let status = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(status.ready, "{status:?}");
    assert!(status.image_id.starts_with("sha256:") || status.image_id.contains("@sha256:"));
    // With the chart's RBAC it provisions a campaign, and counts that on the metrics its
    // Service serves to the cluster.
    let name = t.campaign_name("helm");
    t.apply(&name, &minimal_campaign(5));
    t.status_until(&name, "provisioned", Duration::from_secs(120), |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "RedisProvisioned" && c.status == "True")
    })
    .await;
    let path =
        format!("/api/v1/namespaces/{RELEASE_NS}/services/stampede-operator:metrics/proxy/metrics");
    eventually("a counted reconcile", Duration::from_secs(30), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = try_kubectl(&["get", "--raw", &path]).ok()?;
        m.contains(r#"stampede_operator_reconciles_total{kind="apply",result="ok"}"#)
            .then_some(())
    })
    .await;
}
