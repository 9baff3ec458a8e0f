//! The validate stage's edge: a spec that cannot be carried out gets the Failed phase, an
//! `InvalidSpec` condition and (once per generation) a warning event.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::runtime::events::EventType;
use stampede_core::clock::now_rfc3339;

use crate::Error;
use crate::context::Context;
use crate::crd::{CouponCampaign, Phase, Reason};
use crate::events::publish;
use crate::kubeapi::write_status;
use crate::status;
use crate::validate::{Plan, validate};

/// The campaign's [`Plan`], or `InvalidSpec` after saying so on the campaign.
pub(super) async fn validated(cc: &CouponCampaign, ctx: &Context) -> Result<Plan, Error> {
    let m = match validate(cc, &ctx.defaults) {
        Err(Error::InvalidSpec(m)) => m,
        other => return other,
    };
    let prev = cc.status.as_ref();
    let generation = cc.meta().generation;
    let was_failed =
        prev.is_some_and(|s| s.observed_generation == generation && s.phase == Some(Phase::Failed));
    if !was_failed {
        publish(ctx, cc, EventType::Warning, Reason::InvalidSpec, m.clone()).await;
    }
    let failed = status::failed(prev, generation, &m, &now_rfc3339());
    write_status(&ctx.client, cc, failed).await?;
    Err(Error::InvalidSpec(m))
}

/// The owner reference every child carries.
pub(super) fn owner(cc: &CouponCampaign) -> Result<OwnerReference, Error> {
    // `controller_owner_ref` is None only for an object without a uid, which the API
    // server never hands out.
    cc.controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("object has no uid".into()))
}
