//! The Helm chart's RBAC on the real control plane: the rendered chart is applied to the
//! API server, the operator runs with the chart's ServiceAccount token (RBAC enforced)
//! and reconciles a campaign to Ready with its load-test Jobs and PrometheusRule; with one
//! verb taken from the ClusterRole it says so on the campaign instead of looping silently.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde_json::json;

const CHART_NS: &str = "stampede-system";

/// `helm template` of the chart (CRDs included), one document per object.
fn render_chart() -> Vec<serde_json::Value> {
    let out = std::env::temp_dir().join(format!("{}.yaml", unique("chart")));
    let status = std::process::Command::new(repo().join("scripts/tool-helm"))
        .arg("render")
        .arg(&out)
        .arg("--include-crds")
        .status()
        .expect("scripts/tool-helm");
    assert!(status.success(), "helm template failed");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

/// Applies every rendered object as helm would (server-side apply).
async fn apply_all(client: &Client, docs: &[serde_json::Value]) {
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
        let tm = obj.types.clone().unwrap();
        let (group, version) = tm
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &tm.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &tm.kind);
        let (ar, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{gvk:?}: {e}"));
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            Api::namespaced_with(
                client.clone(),
                obj.namespace().as_deref().unwrap_or(CHART_NS),
                &ar,
            )
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("helm").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the API server refuses the chart's {} {}: {e}",
                tm.kind,
                obj.name_any()
            )
        });
    }
}

/// A kubeconfig like the admin's, authenticated as the chart's ServiceAccount.
async fn service_account_kubeconfig(c: &Cluster, sa: &str) -> std::path::PathBuf {
    let api = Api::<ServiceAccount>::namespaced(c.client.clone(), CHART_NS);
    let req = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": { "expirationSeconds": 3600 } });
    let resp: serde_json::Value = api
        .create_subresource("token", sa, &PostParams::default(), &req)
        .await
        .expect("TokenRequest for the chart's ServiceAccount");
    let token = resp["status"]["token"].as_str().unwrap();
    let mut kc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&c.cp.kubeconfig).unwrap()).unwrap();
    for user in kc["users"].as_array_mut().unwrap() {
        user["user"] = json!({ "token": token });
    }
    let path = c.cp.kubeconfig.with_file_name(format!("{sa}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_a_missing_verb_is_reported() {
    let c = Cluster::start().await;
    // The monitoring CRD, so the PrometheusRule path runs under RBAC too.
    let rule_crd = prometheus_rule_crd();
    install_crd(&c.client, &rule_crd).await;
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": CHART_NS } })).unwrap();
    Api::<Namespace>::all(c.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let (sa, role_name) = the_chart_applied(&c).await;
    // The operator as the chart's ServiceAccount: a campaign reaches Ready, with its
    // load-test Jobs and its PrometheusRule.
    let kubeconfig = service_account_kubeconfig(&c, &sa).await;
    let op = Operator::start(&kubeconfig);
    let name = unique("rbac");
    let _forget = Forget(c.id(&name));
    ready_under_rbac(&c, &name).await;
    // Take `patch` on deployments away: a new campaign says Forbidden, naming what.
    take_patch_on_deployments_away(&c, &role_name).await;
    let denied = unique("denied");
    let _forget2 = Forget(c.id(&denied));
    forbidden_is_reported(&c, &denied).await;
    op.stop().await;
}

/// Renders and applies the chart; returns its ServiceAccount and ClusterRole names.
async fn the_chart_applied(c: &Cluster) -> (String, String) {
    let docs = render_chart();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&k), "the chart renders a {k}: {kinds:?}");
    }
    apply_all(&c.client, &docs).await;
    let sa = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .and_then(|d| d["metadata"]["name"].as_str())
        .unwrap()
        .to_owned();
    let role_name = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .and_then(|d| d["metadata"]["name"].as_str())
        .unwrap()
        .to_owned();

    (sa, role_name)
}

/// A campaign reaches Ready with alerts and a started load test, events written.
async fn ready_under_rbac(c: &Cluster, name: &str) {
    let name = name.to_owned();
    c.create(
        &name,
        "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: x}
spec:
  stock: 20
  issuer: {minReplicas: 1}
  loadTests: [{name: smoke, profile: smoke, duration: 5s}]
",
    )
    .await
    .unwrap();
    c.mark_campaign_available(&name).await;
    let s = c
        .status_until(&name, "Ready with alerts and a started load test", |s| {
            has(s, "Ready", "True")
                && has(s, "AlertsConfigured", "True")
                && s.load_tests.iter().any(|r| r.started_at.is_some())
        })
        .await;
    assert_eq!(s.load_tests.len(), 1);
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(c.client.clone(), &c.ns)
        .list(&ListParams::default().labels(stampede_operator::loadtest::RUN_LABEL))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    // Events are written under RBAC.
    c.events_until(&name, &["Ready"]).await;
}

/// Removes `patch` on deployments from the chart's ClusterRole.
async fn take_patch_on_deployments_away(c: &Cluster, role_name: &str) {
    let roles = Api::<ClusterRole>::all(c.client.clone());
    let mut role = roles.get(role_name).await.unwrap();
    let mut removed = false;
    for rule in role.rules.iter_mut().flatten() {
        if rule
            .resources
            .as_ref()
            .is_some_and(|r| r.iter().any(|x| x == "deployments"))
        {
            let before = rule.verbs.len();
            rule.verbs.retain(|v| v != "patch");
            removed |= rule.verbs.len() < before;
        }
    }
    assert!(
        removed,
        "the chart's ClusterRole grants patch on deployments"
    );
    role.metadata.managed_fields = None;
    roles
        .replace(role_name, &PostParams::default(), &role)
        .await
        .unwrap();
}

/// A new campaign says Forbidden (condition and event), naming the verb and resource.
async fn forbidden_is_reported(c: &Cluster, denied: &str) {
    let denied = denied.to_owned();
    c.create(&denied, "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\nspec: {stock: 5}\n")
        .await
        .unwrap();
    let s = c
        .status_until(&denied, "Forbidden", |s| {
            condition(s, "Ready").is_some_and(|r| r.reason == "Forbidden")
        })
        .await;
    let msg = &condition(&s, "Ready").unwrap().message;
    assert!(
        msg.contains("deployments") && msg.contains("patch"),
        "{msg}"
    );
    c.events_until(&denied, &["Forbidden"]).await;
}
