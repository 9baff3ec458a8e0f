//! Stampede operator: turns a `CouponCampaign` into provisioned Redis stock, Kafka topics,
//! an HPA-scaled issuer and a writer, and keeps its status true.
//!
//! Reconcile (`reconcile/`) is a pipeline, read top to bottom: finalizer → [`validate`]
//! → `build` → apply → provision → observe → status. `validate`, `build`, `alerts` and
//! `status` are pure; the edges are `kubeapi` (the API server), `backends` (Redis, Kafka,
//! PostgreSQL, behind a trait, over `stampede_core`) and `events`. Everything about load
//! tests is [`loadtest`]. See `docs/architecture.md` for the whole picture.
#![forbid(unsafe_code)]

pub mod alerts;
mod backends;
mod build;
pub mod cli;
mod context;
pub mod crd;
mod error;
mod events;
mod kubeapi;
pub mod loadtest;
mod metrics;
mod reconcile;
pub mod rules;
pub mod run;
mod status;
pub mod validate;

pub use error::Error;

use kube::CustomResourceExt;

/// The CRD as YAML (what `stampede-operator crd` prints and `crds/` holds).
pub fn crd_yaml() -> String {
    let crd = crd::CouponCampaign::crd();
    // Serialising a CRD (plain data) to YAML cannot fail.
    serde_yaml::to_string(&crd).expect("CRD serialises to YAML")
}
