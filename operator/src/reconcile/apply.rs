//! The apply stage: server-side apply of the built children, then the alert rules (when
//! the PrometheusRule CRD is installed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::Error;
use crate::build::Children;
use crate::context::Context;
use crate::kubeapi::{apply_alerts, apply_children};
use crate::status::Alerts;
use crate::validate::Plan;

/// Applies every child; the alert rules' outcome is reported, never fatal.
pub(super) async fn apply(
    ctx: &Context,
    plan: &Plan,
    owner: &OwnerReference,
    children: &Children,
) -> Result<Alerts, Error> {
    apply_children(&ctx.client, plan, owner, children).await?;
    Ok(apply_alerts(&ctx.client, plan, owner).await)
}
