//! Harness for the suites on the real local node (`scripts/cluster`): a kubelet on
//! containerd runs every pod, the operator is the Helm release's pod, and campaigns go
//! through real issuer, writer and k6 runner pods. One node per machine, so the suites run
//! one test at a time (`--test-threads 1`); each test has its own namespace and campaigns.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use stampede_operator::crd::{CouponCampaign, CouponCampaignStatus, Phase};
use stampede_operator::run::client;

use super::node_diagnostics::diagnose;
use super::{Forget, create_namespace, eventually, repo, unique};

/// The namespace of the Helm release (README).
pub const RELEASE_NS: &str = "stampede-system";

/// Runs a command from the repository, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join(program))
        .args(args)
        .current_dir(repo())
        .env("KUBECONFIG", kubeconfig_path())
        .env("PATH", path_with_kubectl())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state_dir() -> PathBuf {
    let home = std::env::var("STAMPEDE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/stampede"));
    home.join("cluster/state")
}

fn kubeconfig_path() -> PathBuf {
    state_dir().join("cp/kubeconfig")
}

/// PATH with the cluster's kubectl first (what `scripts/cluster env` exports).
fn path_with_kubectl() -> String {
    let env = Command::new(repo().join("scripts/cluster"))
        .arg("env")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let bin = env
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PATH="))
        .and_then(|p| p.split(':').next())
        .unwrap_or("")
        .trim_matches(|c| c == '\'' || c == '"')
        .to_owned();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

/// Brings the node up (idempotent: `make node-test` already did) and installs the chart
/// with the README's commands, once per test process; returns the admin kubeconfig.
pub fn node() -> PathBuf {
    static UP: OnceLock<PathBuf> = OnceLock::new();
    UP.get_or_init(|| {
        sh("scripts/cluster", &["up"]);
        sh("scripts/helm-install-local", &[]);
        kubeconfig_path()
    })
    .clone()
}

/// `kubectl ARGS` against the node (the cluster's own kubectl); its stdout, or its
/// stderr as the error.
pub fn try_kubectl(args: &[&str]) -> Result<String, String> {
    node();
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .env("PATH", path_with_kubectl())
        .output()
        .expect("kubectl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl ARGS`, panicking when it fails.
pub fn kubectl(args: &[&str]) -> String {
    try_kubectl(args).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// The node's admin client and a fresh namespace for one test (deleted on drop).
pub struct NodeTest {
    /// Admin client.
    pub client: Client,
    /// This test's namespace.
    pub ns: String,
    /// Campaigns whose Redis keys and topics go once the namespace is gone.
    forget: Vec<Forget>,
}

impl NodeTest {
    /// The node (started if needed) and a new namespace.
    pub async fn start(prefix: &str) -> Self {
        let kc = node();
        let client = client(Some(&kc)).await.expect("client for the node");
        let ns = unique(prefix);
        create_namespace(&client, &ns).await;
        // Real issuer pods verify tokens: the Secret spec.auth names by default.
        super::fixtures::create_auth_secret(&client, &ns).await;
        Self {
            client,
            ns,
            forget: Vec::new(),
        }
    }

    /// A campaign name unique to this test; its data is removed after the test.
    pub fn campaign_name(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.forget.push(Forget(self.id(&name)));
        name
    }

    /// The id campaign `name` of this namespace has in Redis, Kafka and PostgreSQL.
    pub fn id(&self, name: &str) -> String {
        format!("{}.{name}", self.ns)
    }

    /// Campaigns in this namespace.
    pub fn campaigns(&self) -> Api<CouponCampaign> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Pods in this namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Applies campaign YAML (name and namespace set here) with kubectl, as a user does.
    pub fn apply(&self, name: &str, yaml: &str) {
        let mut obj: serde_json::Value = serde_yaml::from_str(yaml).expect("campaign YAML");
        obj["metadata"] = json!({ "name": name, "namespace": self.ns });
        let file = std::env::temp_dir().join(format!("{name}.json"));
        std::fs::write(&file, obj.to_string()).unwrap();
        kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// Waits (up to `limit`) until the campaign's status satisfies `pred`.
    pub async fn status_until(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&CouponCampaignStatus) -> bool,
    ) -> CouponCampaignStatus {
        let api = self.campaigns();
        let pred = &pred;
        eventually(&format!("{name}: {what}"), limit, || {
            let api = api.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let s = bounded(api.get(name)).await?.status?;
                pred(&s).then_some(s)
            }
        })
        .await
    }

    /// Running pods of a campaign's component (issuer, writer, load-test), all Ready.
    pub async fn ready_pods(&self, campaign: &str, component: &str, at_least: usize) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={campaign},app.kubernetes.io/component={component}"
        ));
        eventually(
            &format!("{at_least} Ready {component} pods of {campaign}"),
            Duration::from_secs(180),
            || {
                let (api, lp) = (self.pods(), lp.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let pods = bounded(api.list(&lp)).await?.items;
                    let ready: Vec<Pod> = pods.into_iter().filter(pod_ready).collect();
                    (ready.len() >= at_least).then_some(ready)
                }
            },
        )
        .await
    }
}

impl NodeTest {
    /// On a Redis Cluster (`make node-test-cluster`) the operator's Redis is the stack's: every
    /// node at the node address, with the address the nodes announce.
    pub async fn pods_use_the_stacks_redis(&self) {
        let host = std::env::var("STAMPEDE_REDIS_URL").unwrap_or_default();
        if !host.starts_with("redis+cluster://") {
            return;
        }
        let api =
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), RELEASE_NS);
        let data = api.get("stampede-redis").await.unwrap().data.unwrap();
        let url = String::from_utf8(data["redis-url"].0.clone()).unwrap();
        let every_node = url.matches("10.244.0.1:").count() == host.matches("127.0.0.1:").count();
        assert!(
            every_node && url.ends_with("?announced=127.0.0.1"),
            "pods' Redis"
        );
    }

    /// The termination message (the k6 summary) of a campaign's first load-test runner pod.
    pub fn runner_message(&self, campaign: &str) -> String {
        let selector =
            format!("app.kubernetes.io/instance={campaign},app.kubernetes.io/component=load-test");
        let message = "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}";
        kubectl(&[
            "-n", &self.ns, "get", "pods", "-l", &selector, "-o", message,
        ])
    }

    /// `scripts/k6-stampede --profile PROFILE ARGS…` against `campaign` from inside the
    /// cluster, in the background: the script's output and the directory it wrote to.
    pub fn stampede(&self, campaign: &str, profile: &str, args: &[&str]) -> Stampede {
        let out = std::env::temp_dir().join(unique("stampede"));
        let head = [
            "--namespace",
            &self.ns,
            "--campaign",
            campaign,
            "--profile",
            profile,
        ];
        let mut all: Vec<String> = head.iter().chain(args).map(|a| a.to_string()).collect();
        all.extend(["--out".to_owned(), out.to_str().unwrap().to_owned()]);
        tokio::task::spawn_blocking(move || {
            let report = sh(
                "scripts/k6-stampede",
                &all.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            assert!(report.contains("k6 exit"), "{report}");
            (report, out)
        })
    }
}

/// A stampede under way: the script's output and its `--out` directory once done.
pub type Stampede = tokio::task::JoinHandle<(String, PathBuf)>;

impl Drop for NodeTest {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", diagnose(&self.ns, &state_dir()));
        }
        // The namespace goes with its campaigns (finalizers run in the operator pod); then
        // the `forget` field drops, removing what `Retain` kept.
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.ns, "--timeout=120s"])
            .env("KUBECONFIG", kubeconfig_path())
            .env("PATH", path_with_kubectl())
            .output();
    }
}

/// One API call of a poll, given up after 15 s: a connection that went quiet (an
/// apiserver restart, a dropped socket) is retried by the next poll instead of holding
/// this one past its limit.
async fn bounded<T, E>(call: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .ok()?
        .ok()
}

/// A pod that runs with every container Ready.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes a pod and waits until it is gone.
pub async fn delete_pod(api: &Api<Pod>, name: &str) {
    api.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(&format!("pod {name} gone"), Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bounded(api.get_opt(name)).await?.is_none().then_some(())
        }
    })
    .await;
}

/// The operator's pod (the Helm release's), once Ready.
pub async fn operator_pod(client: &Client) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), RELEASE_NS);
    eventually("a Ready operator pod", Duration::from_secs(120), || {
        let api = api.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let lp = ListParams::default().labels("app.kubernetes.io/component=operator");
            bounded(api.list(&lp))
                .await?
                .items
                .into_iter()
                .find(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        }
    })
    .await
}

/// A container's id without the runtime prefix (`containerd://…`).
pub fn container_id(p: &Pod) -> String {
    let s = p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap();
    let id = s[0].container_id.as_deref().unwrap();
    id.rsplit("://").next().unwrap().to_owned()
}

/// A pod's uid.
pub fn pod_uid(p: &Pod) -> String {
    p.uid().unwrap()
}

/// When the Ready condition, which must be True, last changed.
pub fn ready_since(s: &CouponCampaignStatus) -> String {
    let ready = super::condition(s, "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "True", "{ready:?}");
    ready.last_transition_time.clone()
}

/// SoldOut with every coupon persisted, and a clean audit; the status that showed it.
pub async fn sold_out_persisted_and_audited(
    t: &NodeTest,
    name: &str,
    stock: i64,
) -> CouponCampaignStatus {
    let name = name.to_owned();
    let s = t
        .status_until(
            &name,
            "SoldOut with every coupon persisted",
            Duration::from_secs(180),
            |s| {
                let st = s.stock.as_ref();
                s.phase == Some(Phase::SoldOut) && st.and_then(|x| x.persisted) == Some(stock)
            },
        )
        .await;
    let st = s.stock.as_ref().unwrap();
    assert_eq!((st.issued, st.remaining), (stock, 0));
    let table = kubectl(&["-n", &t.ns, "get", "cc", &name, "--no-headers"]);
    assert!(table.contains("SoldOut"), "{table}");

    // The audit (Redis holders against PostgreSQL rows) is clean.
    let id = t.id(&name);
    let audit = Command::new(service_bin())
        .args(["audit", "--campaign", id.as_str(), "--grace-secs", "0"])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "audit: {}",
        String::from_utf8_lossy(&audit.stdout)
    );
    s
}

/// The build of `stampede-service` the node's images hold (`make build`'s profile,
/// STAMPEDE_CARGO_PROFILE; cargo builds `dev` into `debug/`); its `audit` is run against the stack.
pub fn service_bin() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"));
    let profile = std::env::var("STAMPEDE_CARGO_PROFILE").unwrap_or_else(|_| "release".into());
    let dir = if profile == "dev" { "debug" } else { &profile };
    target.join(dir).join("stampede-service")
}
