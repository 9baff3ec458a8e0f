//! The validate stage's edge: a spec that cannot be carried out gets the Failed phase, an
//! `InvalidSpec` condition and (once per generation) a warning event.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stampede_core::clock::now_rfc3339;

use crate::Error;
use crate::build::Children;
use crate::context::Context;
use crate::crd::{CouponCampaign, Phase, Reason};
use crate::events::publish;
use crate::kubeapi::write_status;
use crate::status;
use crate::validate::{Plan, validate};

/// The campaign's [`Plan`], or `InvalidSpec` after saying so on the campaign.
pub(super) async fn validated(cc: &CouponCampaign, ctx: &Context) -> Result<Plan, Error> {
    match validate(cc, &ctx.defaults) {
        Err(Error::InvalidSpec(m)) => Err(refused(cc, ctx, m, Error::InvalidSpec).await),
        other => other,
    }
}

/// Refuses a campaign one of whose children's names is taken by an object that is not its
/// own (a user's Service, Secret, …): applied over with force, it would be merged with the
/// campaign's and, as the campaign's child, deleted with it.
pub(super) async fn names_free(
    cc: &CouponCampaign,
    ctx: &Context,
    c: &Children,
    owner: &OwnerReference,
) -> Result<(), Error> {
    let ns = cc.namespace().unwrap_or_default();
    let client = &ctx.client;
    let mut taken = match &c.connections {
        Some(secret) => foreign(client, &ns, secret, owner).await?,
        None => None,
    };
    for check in [
        foreign(client, &ns, &c.issuer, owner).await?,
        foreign(client, &ns, &c.service, owner).await?,
        foreign(client, &ns, &c.hpa, owner).await?,
        foreign(client, &ns, &c.pdb, owner).await?,
        foreign(client, &ns, &c.writer, owner).await?,
    ] {
        taken = taken.or(check);
    }
    for p in &c.network_policies {
        taken = taken.or(foreign(client, &ns, p, owner).await?);
    }
    let Some(what) = taken else {
        return Ok(());
    };
    let m = format!(
        "{what} exists and is not this campaign's: the operator names one of the campaign's \
         own objects so; rename or remove it (or name the campaign otherwise)"
    );
    // Not the spec's fault: looked at again (with backoff) until the name is free.
    Err(refused(cc, ctx, m, Error::NameTaken).await)
}

/// `Kind name` of the object under `obj`'s name in `ns` when it is not `owner`'s.
async fn foreign<K>(
    client: &kube::Client,
    ns: &str,
    obj: &K,
    owner: &OwnerReference,
) -> Result<Option<String>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.name_any();
    let found = Api::<K>::namespaced(client.clone(), ns)
        .get_opt(&name)
        .await?;
    let theirs = found.is_some_and(|f| !f.owner_references().iter().any(|o| o.uid == owner.uid));
    Ok(theirs.then(|| format!("{} {name}", K::kind(&()))))
}

/// Says on the campaign why it cannot be carried out (the Failed phase, an `InvalidSpec`
/// condition and, once per generation, a warning event): the error to return, made by
/// `error` from the message.
async fn refused(
    cc: &CouponCampaign,
    ctx: &Context,
    m: String,
    error: fn(String) -> Error,
) -> Error {
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
    error(m)
}

/// The owner reference every child carries.
pub(super) fn owner(cc: &CouponCampaign) -> Result<OwnerReference, Error> {
    // `controller_owner_ref` is None only for an object without a uid, which the API
    // server never hands out.
    cc.controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("object has no uid".into()))
}
