//! The API-server edge of reconcile: server-side apply with the operator's one field
//! manager (children, alert rules, status) and the reads of what the children report.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, Preconditions,
};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::build::{Children, issuer_name, writer_name};
use crate::crd::{CouponCampaign, CouponCampaignStatus, Reason};
use crate::status::{Alerts, Problem, Workloads};
use crate::validate::Plan;
use crate::{Error, alerts};

/// The one field manager for everything the operator applies.
pub(crate) const MANAGER: &str = "stampede-operator";
const PROMETHEUS_RULE_CRD: &str = "prometheusrules.monitoring.coreos.com";

/// Writes a campaign's status (server-side apply on the status subresource), unless it
/// already reads so.
pub(crate) async fn write_status(
    client: &Client,
    cc: &CouponCampaign,
    status: CouponCampaignStatus,
) -> Result<(), Error> {
    if cc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api =
        Api::<CouponCampaign>::namespaced(client.clone(), &cc.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "stampede.dev/v1alpha1",
        "kind": "CouponCampaign",
        "status": status,
    });
    api.patch_status(
        &cc.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Server-side applies one namespaced object.
pub(crate) async fn ssa<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    Ok(api
        .patch(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Server-side applies every child of a campaign (and removes its NetworkPolicies when
/// they are off).
pub(crate) async fn apply_children(
    client: &Client,
    plan: &Plan,
    owner: &OwnerReference,
    c: &Children,
) -> Result<(), Error> {
    let ns = &plan.namespace;
    if let Some(secret) = &c.connections {
        ssa(client, ns, secret).await?;
    }
    ssa(client, ns, &c.issuer).await?;
    ssa(client, ns, &c.service).await?;
    ssa(client, ns, &c.hpa).await?;
    ssa(client, ns, &c.pdb).await?;
    ssa(client, ns, &c.writer).await?;
    for p in &c.network_policies {
        ssa(client, ns, p).await?;
    }
    if c.network_policies.is_empty() {
        remove_network_policies(client, plan, owner).await?;
    }
    Ok(())
}

/// Deletes the campaign's NetworkPolicies once policies are off: left in place they would
/// go on admitting metrics only from the monitoring namespace they were made for (a wrong
/// one is a common reason to turn them off). Only policies this campaign controls go.
async fn remove_network_policies(
    client: &Client,
    plan: &Plan,
    owner: &OwnerReference,
) -> Result<(), Error> {
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), &plan.namespace);
    for name in [issuer_name(plan), writer_name(plan)] {
        let Some(policy) = api.get_opt(&name).await? else {
            continue;
        };
        if owned_by(policy.owner_references(), owner) {
            let only_this_one = Preconditions {
                uid: policy.uid(),
                resource_version: None,
            };
            let params = DeleteParams {
                preconditions: Some(only_this_one),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => tracing::info!(policy = %name, "network policies are off: removed"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Whether an object with `refs` is the campaign's (`owner`): its own, or left by a
/// campaign of the same name deleted before and not yet garbage-collected (the apply
/// takes it over: the owner is swapped).
pub(crate) fn owned_by(refs: &[OwnerReference], owner: &OwnerReference) -> bool {
    refs.iter()
        .any(|o| o.uid == owner.uid || (o.kind == owner.kind && o.name == owner.name))
}

/// Applies the PrometheusRule when its CRD is installed.
pub(crate) async fn apply_alerts(client: &Client, plan: &Plan, owner: &OwnerReference) -> Alerts {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    match crds.get_opt(PROMETHEUS_RULE_CRD).await {
        Ok(None) => return Alerts::CrdMissing,
        Ok(Some(_)) => {}
        Err(e) => return Alerts::Failed(format!("checking for {PROMETHEUS_RULE_CRD}: {e}")),
    }
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "prometheusrules");
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &plan.namespace, &ar);
    let rule = alerts::prometheus_rule(plan, owner);
    let name = format!("{}-alerts", plan.name);
    // A rule of that name that is not the campaign's (a team's own) is left alone: applied
    // over, its groups would be replaced and it would be deleted with the campaign.
    match api.get_opt(&name).await {
        Ok(Some(found)) if !owned_by(found.owner_references(), owner) => {
            return Alerts::Failed(format!(
                "PrometheusRule {name} exists and is not this campaign's: rename or remove it"
            ));
        }
        Err(e) => return Alerts::Failed(format!("reading PrometheusRule {name}: {e}")),
        Ok(_) => {}
    }
    match api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&rule),
        )
        .await
    {
        Ok(_) => Alerts::Configured,
        Err(e) => Alerts::Failed(format!("applying PrometheusRule {name}: {e}")),
    }
}

/// A Deployment's available pods, how many of those run its current spec (at least), how
/// many pods of earlier specs are left, and the pods it wants (`wanted_default` when it does
/// not exist yet).
fn pod_counts(d: Option<Deployment>, wanted_default: i32) -> (i32, i32, i32, i32) {
    let d = d.unwrap_or_default();
    let wanted = d.spec.replicas.unwrap_or(wanted_default).max(1);
    let s = d.status.unwrap_or_default();
    let available = s.available_replicas.unwrap_or(0);
    let replicas = s.replicas.unwrap_or(0);
    // Until the controller has seen the current spec its counts are of the last one.
    if s.observed_generation < d.metadata.generation {
        return (available, 0, replicas, wanted);
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let old = (replicas - updated).max(0);
    // Whatever the old pods do, at least this many available ones are updated.
    (available, (available - old).clamp(0, updated), old, wanted)
}

/// Available vs wanted pods of the issuer and writer Deployments.
pub(crate) async fn workloads(client: &Client, plan: &Plan) -> Result<Workloads, Problem> {
    let api = Api::<Deployment>::namespaced(client.clone(), &plan.namespace);
    let get = |name: String| {
        let api = api.clone();
        async move { api.get_opt(&name).await }
    };
    let (issuer, writer) = futures::try_join!(get(issuer_name(plan)), get(writer_name(plan)))
        .map_err(|e| Problem::new(Reason::WorkloadsUnreadable, e.to_string()))?;
    let (issuer_available, issuer_updated, issuer_old, issuer_wanted) = pod_counts(issuer, 1);
    let (writer_available, writer_updated, writer_old, writer_wanted) =
        pod_counts(writer, plan.writer.replicas);
    Ok(Workloads {
        issuer_available,
        issuer_wanted,
        issuer_min: plan.issuer.min_replicas,
        writer_available,
        writer_wanted,
        issuer_updated,
        writer_updated,
        earlier_pods: issuer_old + writer_old,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: serde_json::Value) -> Option<Deployment> {
        let d = serde_json::json!({
            "metadata": { "name": "d", "generation": generation },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": status,
        });
        Some(serde_json::from_value(d).unwrap())
    }

    #[test]
    fn pods_of_the_current_spec_are_counted_apart_from_those_a_rollout_leaves() {
        let done = serde_json::json!({ "observedGeneration": 3, "replicas": 2,
            "updatedReplicas": 2, "availableReplicas": 2 });
        assert_eq!(pod_counts(deployment(3, done.clone()), 1), (2, 2, 0, 2));
        // The spec changed and the controller has not seen it: the counts are the old spec's.
        assert_eq!(pod_counts(deployment(4, done), 1), (2, 0, 2, 2));
        // maxUnavailable 0: two old pods serve, the surge pod of the new spec cannot start.
        let stuck = serde_json::json!({ "observedGeneration": 4, "replicas": 3,
            "updatedReplicas": 1, "availableReplicas": 2 });
        assert_eq!(pod_counts(deployment(4, stuck), 1), (2, 0, 2, 2));
        // Half way: one new pod available, one old left.
        let half = serde_json::json!({ "observedGeneration": 4, "replicas": 2,
            "updatedReplicas": 1, "availableReplicas": 2 });
        assert_eq!(pod_counts(deployment(4, half), 1), (2, 1, 1, 2));
        assert_eq!(pod_counts(None, 1), (0, 0, 0, 1));
    }
}
