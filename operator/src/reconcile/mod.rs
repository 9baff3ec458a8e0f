//! Reconcile, top to bottom: finalizer → validate → build → apply → provision → observe →
//! status. One file per stage that talks to the outside (`spec.rs`, `apply.rs`,
//! `provision.rs`, `observe.rs`, `report.rs`, and `cleanup.rs` under the finalizer); the
//! pure stages are the crate's `validate`, `build` and `status` modules.

mod apply;
mod cleanup;
mod observe;
mod provision;
mod report;
mod spec;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Resource, ResourceExt};
use tracing::warn;

use crate::Error;
use crate::build;
use crate::context::Context;
use crate::crd::{CouponCampaign, FINALIZER};
use crate::events::report_forbidden;

/// Reconciles one campaign (the controller's entry point).
pub(crate) async fn reconcile(cc: Arc<CouponCampaign>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let deleting = cc.meta().deletion_timestamp.is_some();
    let key = key(&cc);
    let api =
        Api::<CouponCampaign>::namespaced(ctx.client.clone(), &cc.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, cc, |event| async {
        match event {
            Event::Apply(cc) => forbidden_reported(&cc, &ctx, apply(&cc, &ctx).await).await,
            Event::Cleanup(cc) => cleanup::cleanup(&cc, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    let kind = if deleting { "cleanup" } else { "apply" };
    ctx.metrics
        .reconciled(kind, started.elapsed(), result.as_ref().err());
    if result.is_ok() {
        ctx.failures().remove(&key);
    }
    result
}

/// The pipeline for a campaign that is not being deleted.
async fn apply(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    // validate: the spec as a Plan; an invalid one gets the Failed status and stops here.
    let plan = spec::validated(cc, ctx).await?;
    let plan = spec::fresh_id(cc, ctx, plan, spec::Leftovers::RowsAndRedis).await?;
    let owner = spec::owner(cc)?;
    // build (pure) and apply (server-side, one field manager).
    let children = build::children(&plan, &owner);
    spec::names_free(cc, ctx, (&plan, &children), &owner).await?;
    let alerts = apply::apply(ctx, &plan, &owner, &children).await?;
    // provision: topics, then stock; what fails becomes a condition, not an error.
    let mut provisioned = provision::provision(ctx, &plan).await?;
    // observe: workloads, load-test runs and the gate.
    let observed = observe::observe(ctx, cc, &plan, &owner, &mut provisioned, alerts).await?;
    // status: events, the computed status, and when to look again.
    report::report(ctx, cc, &provisioned, observed).await
}

/// An RBAC refusal anywhere in the pipeline is reported on the campaign, then returned.
async fn forbidden_reported(
    cc: &CouponCampaign,
    ctx: &Context,
    result: Result<Action, Error>,
) -> Result<Action, Error> {
    if let Err(Error::Kube(kube::Error::Api(status))) = &result
        && status.is_forbidden()
    {
        report_forbidden(ctx, cc, &status.message).await;
    }
    result
}

/// Backoff after a failed reconcile: a spec error waits for a change, a draining outbox is
/// polled, anything else retries exponentially per object (1 s doubling to 5 min).
pub(crate) fn error_policy(cc: Arc<CouponCampaign>, error: &Error, ctx: Arc<Context>) -> Action {
    match error {
        Error::InvalidSpec(_) => return Action::await_change(),
        Error::OutboxNotDrained { .. } => return Action::requeue(Duration::from_secs(2)),
        _ => {}
    }
    let n = {
        let mut f = ctx.failures();
        let n = f.entry(key(&cc)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(n);
    warn!(campaign = %key(&cc), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay after the `n`th consecutive failure.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

fn key(cc: &CouponCampaign) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}
