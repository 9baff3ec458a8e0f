//! Stampede operator: turns a `CouponCampaign` into provisioned Redis stock, Kafka topics,
//! an HPA-scaled issuer and a writer, and keeps its status true.
//!
//! Reconcile is a pipeline: [`validate`] and [`build`] / [`alerts`] / [`status`] are pure;
//! [`provision`] and [`reconcile`] are the edges that talk to the API server, Redis, Kafka
//! and PostgreSQL.

pub mod alerts;
pub mod build;
mod cleanup;
pub mod cli;
pub mod crd;
mod error;
mod events;
pub mod kubeapi;
pub mod loadtest;
pub mod local;
pub mod metrics;
pub mod provision;
pub mod reconcile;
pub mod run;
pub mod runs;
pub mod status;
pub mod validate;

pub use error::Error;

use kube::CustomResourceExt;

/// The CRD as YAML (what `stampede-operator crd` prints and `crds/` holds).
pub fn crd_yaml() -> String {
    let crd = crd::CouponCampaign::crd();
    // Serialising a CRD (plain data) to YAML cannot fail.
    serde_yaml::to_string(&crd).expect("CRD serialises to YAML")
}
