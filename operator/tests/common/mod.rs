//! Harness for operator tests: a private control plane (etcd + kube-apiserver from
//! `scripts/control-plane`, token auth, RBAC on) per test, the CRD installed from code, the
//! operator run in-process, and the stack's real Redis, Kafka and PostgreSQL.
#![allow(dead_code)]

mod control_plane;
pub mod fixtures;
pub mod node;
mod node_diagnostics;
pub mod proxy;
mod stack;

pub use control_plane::*;
pub use fixtures::*;
pub use stack::*;

#[path = "../../../service/tests/common/kit.rs"]
mod kit;
pub use kit::*;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use stampede_operator::crd::{CouponCampaign, CouponCampaignStatus};
use stampede_operator::run::{Config, run_on};
use stampede_operator::validate::Defaults;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A control plane with the CouponCampaign CRD and a namespace for the test.
pub struct Cluster {
    /// The control plane (shared by the views of other namespaces, see [`Cluster::tenant`]).
    pub cp: std::sync::Arc<ControlPlane>,
    /// Admin client.
    pub client: Client,
    /// The test's namespace.
    pub ns: String,
}

impl Cluster {
    /// Starts the control plane, installs the CRD, creates a namespace.
    pub async fn start() -> Self {
        let cp = ControlPlane::start();
        let client = cp.client().await;
        install_crd(&client, &CouponCampaign::crd()).await;
        let ns = unique("t");
        create_namespace(&client, &ns).await;
        // The CRD's endpoint can lag "Established" briefly.
        let api = Api::<CouponCampaign>::namespaced(client.clone(), &ns);
        eventually(
            "CouponCampaign endpoint served",
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { api.list(&ListParams::default()).await.ok() }
            },
        )
        .await;
        Self {
            cp: std::sync::Arc::new(cp),
            client,
            ns,
        }
    }

    /// The same control plane seen from a new namespace of its own (another tenant).
    pub async fn tenant(&self) -> Self {
        let ns = unique("t");
        create_namespace(&self.client, &ns).await;
        Self {
            cp: self.cp.clone(),
            client: self.client.clone(),
            ns,
        }
    }

    /// The id campaign `name` of this namespace has in Redis, Kafka and PostgreSQL.
    pub fn id(&self, name: &str) -> String {
        format!("{}.{name}", self.ns)
    }

    /// The campaigns API in the test namespace.
    pub fn campaigns(&self) -> Api<CouponCampaign> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The Deployments API in the test namespace.
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Starts the operator in-process against this cluster.
    pub fn operator(&self) -> Operator {
        Operator::start(&self.cp.kubeconfig)
    }

    /// Creates a campaign from YAML (name and namespace overridden), untyped, so specs
    /// our own types would refuse still reach the API server.
    pub async fn create(&self, name: &str, yaml: &str) -> Result<DynamicObject, kube::Error> {
        let mut obj: serde_json::Value = serde_yaml::from_str(yaml).expect("campaign YAML parses");
        obj["metadata"] = json!({ "name": name, "namespace": self.ns });
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        let ar = ApiResource::erase::<CouponCampaign>(&());
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.ns, &ar)
            .create(&PostParams::default(), &obj)
            .await
    }

    /// Merge-patches a campaign's spec, as `kubectl patch --type merge` does.
    pub async fn patch_spec(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<CouponCampaign, kube::Error> {
        self.campaigns()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
    }

    /// Waits until the campaign's status satisfies `pred`, returning it.
    pub async fn status_until(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&CouponCampaignStatus) -> bool,
    ) -> CouponCampaignStatus {
        let api = self.campaigns();
        let pred = &pred;
        eventually(&format!("{name}: {what}"), Duration::from_secs(60), || {
            let api = api.clone();
            async move {
                let s = api.get(name).await.ok()?.status?;
                pred(&s).then_some(s)
            }
        })
        .await
    }

    /// Plays the kubelet and the deployment controller (this control plane runs neither):
    /// reports every wanted pod of a Deployment available.
    pub async fn mark_available(&self, deployment: &str) {
        let d = self.deployments().get(deployment).await.unwrap();
        let n = d.spec.replicas.unwrap_or(1);
        let status = json!({ "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
        }});
        self.deployments()
            .patch_status(deployment, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }

    /// Waits for a campaign's issuer and writer Deployments and reports their pods
    /// available (see [`Cluster::mark_available`]).
    pub async fn mark_campaign_available(&self, name: &str) {
        for d in [format!("{name}-issuer"), format!("{name}-writer")] {
            eventually(&format!("Deployment {d}"), Duration::from_secs(60), || {
                let (api, d) = (self.deployments(), d.clone());
                async move { api.get_opt(&d).await.ok().flatten() }
            })
            .await;
            self.mark_available(&d).await;
        }
    }

    /// Reasons of the events recorded for `name`, in the test namespace.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let api =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(self.client.clone(), &self.ns);
        let list = api.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits (10 s) until an event of each of `reasons` is recorded for `name`: the
    /// operator records events after the status write a test usually waits for.
    pub async fn events_until(&self, name: &str, reasons: &[&str]) {
        let limit = Duration::from_secs(10);
        let what = format!("events {reasons:?} for {name}");
        eventually(&what, limit, || async {
            let seen = self.event_reasons(name).await;
            reasons
                .iter()
                .all(|r| seen.iter().any(|s| s == r))
                .then_some(())
        })
        .await;
    }
}

/// The condition `type_` of a status.
pub fn condition<'a>(
    s: &'a CouponCampaignStatus,
    type_: &str,
) -> Option<&'a stampede_operator::crd::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// True when condition `type_` has `status`.
pub fn has(s: &CouponCampaignStatus, type_: &str, status: &str) -> bool {
    condition(s, type_).is_some_and(|c| c.status == status)
}

/// The operator, running in-process until stopped or killed.
pub struct Operator {
    token: CancellationToken,
    handle: JoinHandle<Result<(), stampede_operator::Error>>,
    /// Where its /metrics and /healthz listen.
    pub addr: std::net::SocketAddr,
}

impl Operator {
    /// Starts one against `kubeconfig`, resyncing every 2 s.
    pub fn start(kubeconfig: &Path) -> Self {
        Self::start_with(kubeconfig, stack_defaults())
    }

    /// [`Operator::start`] with other defaults for campaigns.
    pub fn start_with(kubeconfig: &Path, defaults: Defaults) -> Self {
        Self::start_draining(kubeconfig, defaults, Duration::from_secs(60))
    }

    /// [`Operator::start_with`] with another drain timeout (how long cleanup is retried).
    pub fn start_draining(kubeconfig: &Path, defaults: Defaults, drain_timeout: Duration) -> Self {
        let config = Config {
            kubeconfig: Some(kubeconfig.to_owned()),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            defaults,
            resync: Duration::from_secs(2),
            drain_timeout,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let t = token.clone();
        // Every line it logs names its control plane, so a failing test prints its own.
        let cp = kubeconfig.parent().and_then(Path::file_name);
        let span = operator_span(&cp.unwrap_or_default().to_string_lossy());
        let handle = tokio::spawn(
            async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                run_on(config, listener, t).await
            }
            .instrument(span),
        );
        Self {
            token,
            handle,
            addr,
        }
    }

    /// The body of GET `path` on its metrics listener.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Graceful stop; panics if the operator failed.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("operator stops within 30 s")
            .expect("operator task")
            .expect("operator ran without error");
    }

    /// True while it runs (it neither failed nor was stopped).
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Stops it dead, wherever it is (a crash mid-reconcile).
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}
