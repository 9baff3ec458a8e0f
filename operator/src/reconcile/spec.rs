//! The validate stage's edge: a spec that cannot be carried out gets the Failed phase, an
//! `InvalidSpec` condition and (once per generation) a warning event.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
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
    match validate(cc, &ctx.defaults) {
        Err(Error::InvalidSpec(m)) => Err(refused(cc, ctx, m).await),
        other => other,
    }
}

/// Refuses a campaign whose connection Secret's name is taken by a Secret that is not its
/// own: applied over, it would be merged with the campaign's credentials and, as the
/// campaign's child, deleted with it.
pub(super) async fn secret_name_free(
    cc: &CouponCampaign,
    ctx: &Context,
    secret: &Secret,
    owner: &OwnerReference,
) -> Result<(), Error> {
    let (name, ns) = (secret.name_any(), cc.namespace().unwrap_or_default());
    let found = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let foreign = found.is_some_and(|s| {
        !(s.metadata.owner_references.iter().flatten()).any(|o| o.uid == owner.uid)
    });
    if !foreign {
        return Ok(());
    }
    let m = format!(
        "Secret {name} exists and is not this campaign's: the operator keeps the campaign's \
         connections in a Secret of that name; rename or remove that Secret"
    );
    Err(refused(cc, ctx, m).await)
}

/// Says on the campaign why it cannot be carried out (the Failed phase, an `InvalidSpec`
/// condition and, once per generation, a warning event): the error to return.
async fn refused(cc: &CouponCampaign, ctx: &Context, m: String) -> Error {
    let prev = cc.status.as_ref();
    let generation = cc.meta().generation;
    let was_failed =
        prev.is_some_and(|s| s.observed_generation == generation && s.phase == Some(Phase::Failed));
    if !was_failed {
        publish(ctx, cc, EventType::Warning, Reason::InvalidSpec, m.clone()).await;
    }
    let failed = status::failed(prev, generation, &m, &now_rfc3339());
    if let Err(e) = write_status(&ctx.client, cc, failed).await {
        return e;
    }
    Error::InvalidSpec(m)
}

/// The owner reference every child carries.
pub(super) fn owner(cc: &CouponCampaign) -> Result<OwnerReference, Error> {
    // `controller_owner_ref` is None only for an object without a uid, which the API
    // server never hands out.
    cc.controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("object has no uid".into()))
}
