//! Build: the child objects of one campaign, as pure functions of its [`Plan`], one file
//! per kind. Reconcile server-side-applies exactly what these return.

mod auth;
#[cfg(test)]
mod backend_tests;
mod connections;
mod hpa;
mod issuer;
mod netpol;
mod pdb;
mod pod;
mod service;
#[cfg(test)]
mod tests;
mod writer;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::validate::{Plan, labels};

pub(crate) use auth::runner_auth_env;
pub(crate) use connections::connection_secret;
pub(crate) use hpa::issuer_hpa;
pub(crate) use issuer::issuer_deployment;
pub(crate) use pdb::issuer_pdb;
pub(crate) use service::issuer_service;
pub(crate) use writer::writer_deployment;

/// The issuer's public port (the HTTP API only).
pub(crate) const ISSUER_PORT: i32 = 8080;
/// The issuer's operations port (/metrics, /healthz, /readyz), kept off the public one.
pub(crate) const ISSUER_METRICS_PORT: i32 = 9464;
/// The writer's metrics/health port.
pub(crate) const WRITER_PORT: i32 = 9466;

/// Name of the issuer Deployment, Service, HPA and PDB.
pub(crate) fn issuer_name(plan: &Plan) -> String {
    format!("{}-issuer", plan.name)
}

/// Name of the writer Deployment.
pub(crate) fn writer_name(plan: &Plan) -> String {
    format!("{}-writer", plan.name)
}

/// Every child object of a campaign.
/// No `Debug`: `connections` holds credentials, which must never reach a log line.
#[derive(Clone)]
pub(crate) struct Children {
    /// Issuer Deployment (replicas left to the HPA).
    pub issuer: Deployment,
    /// ClusterIP Service in front of the issuers.
    pub service: Service,
    /// autoscaling/v2 HPA on CPU.
    pub hpa: HorizontalPodAutoscaler,
    /// Keeps issuers up through voluntary disruptions.
    pub pdb: PodDisruptionBudget,
    /// Writer Deployment.
    pub writer: Deployment,
    /// The backend addresses the pods read through `secretKeyRef` (when any is not in a
    /// Secret of the campaign's own). Applied before the Deployments that read it.
    pub connections: Option<Secret>,
    /// Ingress rules for issuers and writers (none without `--network-policies`).
    pub network_policies: Vec<NetworkPolicy>,
}

/// Builds every child, each owned by the campaign (`owner`).
pub(crate) fn children(plan: &Plan, owner: &OwnerReference) -> Children {
    Children {
        issuer: issuer_deployment(plan, owner),
        service: issuer_service(plan, owner),
        hpa: issuer_hpa(plan, owner),
        pdb: issuer_pdb(plan, owner),
        writer: writer_deployment(plan, owner),
        connections: connection_secret(plan, owner),
        network_policies: netpol::network_policies(plan, owner),
    }
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    // Only reachable through a bug in the literals below; unit tests build every child.
    serde_json::from_value(v).expect("child object literal matches its type")
}

fn metadata(plan: &Plan, name: &str, component: &str, owner: &OwnerReference) -> Value {
    json!({
        "name": name,
        "namespace": plan.namespace,
        "labels": labels(plan, component),
        "ownerReferences": [owner],
    })
}

fn selector(plan: &Plan, component: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": plan.name,
        "app.kubernetes.io/component": component,
    })
}
