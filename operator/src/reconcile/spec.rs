//! The validate stage's edge: a spec that cannot be carried out gets the Failed phase, an
//! `InvalidSpec` condition and (once per generation) a warning event.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stampede_core::clock::now_rfc3339;
use stampede_core::ids::CampaignId;

use crate::Error;
use crate::backends::{Stock, connections};
use crate::build::Children;
use crate::context::Context;
use crate::crd::{CouponCampaign, Phase, Reason};
use crate::events::{EventReason, publish};
use crate::kubeapi::{owned_by, write_status};
use crate::status;
use crate::validate::{MAX_AGAIN, Plan, again, validate};

/// The campaign's [`Plan`], or `InvalidSpec` after saying so on the campaign.
pub(super) async fn validated(cc: &CouponCampaign, ctx: &Context) -> Result<Plan, Error> {
    match validate(cc, &ctx.defaults) {
        Err(Error::InvalidSpec(m)) => Err(refused(cc, ctx, m, Error::InvalidSpec).await),
        other => other,
    }
}

/// Where [`fresh_id`] looks for what a campaign deleted before left under an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leftovers {
    /// Rows in PostgreSQL issued before this campaign was created, and a closed campaign in
    /// Redis (deletion closes; `Retain`, or a `Delete` whose drain timed out, keeps it):
    /// before anything is provisioned under the id, nothing of this campaign's is closed.
    RowsAndRedis,
    /// Rows only: cleanup, which may itself have closed this campaign's own data.
    Rows,
}

/// A campaign created again under the name of one deleted before (`deletionPolicy:
/// Delete` keeps its rows in PostgreSQL, `Retain` its Redis data too) would share its id:
/// its rows would be refused as the old ones' (one coupon per user, one user per seq) and
/// it would take over the old, closed campaign. Until its id is pinned in its status, it
/// takes the first of `<id>`, `<id>.2`, … that `look` finds nothing left under. Best
/// effort: when it cannot tell for `<id>` it keeps it, and says so; once it said `<id>` is
/// taken, it never settles on it (and looks again later).
pub(super) async fn fresh_id(
    cc: &CouponCampaign,
    ctx: &Context,
    mut plan: Plan,
    look: Leftovers,
) -> Result<Plan, Error> {
    let pinned = cc.status.as_ref().is_some_and(|s| s.campaign_id.is_some());
    let legacy = plan.campaign.as_str() == cc.name_any();
    let created = cc.metadata.creation_timestamp.as_ref();
    let (false, false, Some(created)) = (pinned, legacy, created) else {
        return Ok(plan);
    };
    let conns = match connections(&ctx.client, &plan).await {
        Ok(c) => c,
        // Nothing is provisioned nor pinned without it (provision reports the Secret).
        Err(Error::Secret(_)) => return Ok(plan),
        Err(e) => return Err(e),
    };
    let redis = (look == Leftovers::RowsAndRedis).then(|| ctx.backends.stock(&conns.redis));
    let stock = redis.and_then(Result::ok);
    let base = plan.campaign.clone();
    let ids = std::iter::once(base.clone()).chain((2..=MAX_AGAIN).filter_map(|n| again(&base, n)));
    let created_ms = created.0.as_millisecond();
    for id in ids {
        let taken = left_under(
            ctx,
            &conns.database,
            stock.as_deref(),
            look,
            (&id, created_ms),
        );
        match taken.await {
            Some(true) => continue,
            Some(false) if id == base => {}
            Some(false) => {
                let m = format!(
                    "a campaign deleted before left its rows in PostgreSQL, or its closed \
                     campaign in Redis, under the id {base}: this one is {id}"
                );
                publish(ctx, cc, EventType::Normal, EventReason::FreshId, m).await;
                plan.campaign = id;
            }
            None if id == base => tracing::warn!(
                campaign = %base,
                "PostgreSQL or Redis unreadable: cannot tell whether a campaign deleted before left data under this id; using it"
            ),
            // The plain id is known taken: never settle on it; look again later.
            None => {
                return Err(Error::Incomplete(format!(
                    "a deleted campaign left data under {base}, and {id} could not be looked up"
                )));
            }
        }
        return Ok(plan);
    }
    let m =
        format!("every id from {base} to {base}.{MAX_AGAIN} has rows of campaigns deleted before");
    Err(refused(cc, ctx, m, Error::InvalidSpec).await)
}

/// Whether a campaign deleted before left data under `id` (rows issued before `created_ms`,
/// or, looking in Redis too, a closed campaign); `None` when it cannot tell.
async fn left_under(
    ctx: &Context,
    database: &str,
    stock: Option<&dyn Stock>,
    look: Leftovers,
    (id, created_ms): (&CampaignId, i64),
) -> Option<bool> {
    let rows = ctx.backends.rows_before(database, id.as_str(), created_ms);
    let closed = match (stock, look) {
        (_, Leftovers::Rows) => Some(false),
        (Some(s), _) => s
            .snapshot(id)
            .await
            .ok()
            .map(|s| s.is_some_and(|s| s.closed)),
        (None, _) => None,
    };
    match (rows.await, closed) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// Refuses a campaign one of whose children's names is taken by an object that is not its
/// own (a user's Service, Secret, …): applied over with force, it would be merged with the
/// campaign's and, as the campaign's child, deleted with it.
pub(super) async fn names_free(
    cc: &CouponCampaign,
    ctx: &Context,
    (plan, c): (&Plan, &Children),
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
    if !plan.load_tests.is_empty() {
        let mut scripts = ConfigMap::default();
        scripts.metadata.name = Some(crate::loadtest::config_map_name(plan));
        taken = taken.or(foreign(client, &ns, &scripts, owner).await?);
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
    let theirs = found.is_some_and(|f| !owned_by(f.owner_references(), owner));
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
