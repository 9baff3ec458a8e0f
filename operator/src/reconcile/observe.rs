//! The observe stage: what the workloads report, where each load test's run stands, and
//! whether the gate holds the campaign closed (setting or clearing the gate's own flag).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use stampede_core::campaign::ProvisionOutcome;

use super::provision::Provisioned;
use crate::Error;
use crate::context::Context;
use crate::crd::CouponCampaign;
use crate::kubeapi::workloads;
use crate::loadtest::{Runs, RunsNow, gate, hold_for_gate, reconcile_runs};
use crate::status::{Alerts, Gate, Observed, Workloads};
use crate::validate::Plan;

/// Everything the status is computed from.
pub(super) async fn observe(
    ctx: &Context,
    cc: &CouponCampaign,
    plan: &Plan,
    owner: &OwnerReference,
    provisioned: &mut Provisioned,
    alerts: Alerts,
) -> Result<Observed, Error> {
    let workloads = workloads(&ctx.client, plan).await;
    let base_ready = provisioned.redis.is_ok()
        && provisioned
            .kafka
            .as_ref()
            .is_ok_and(|t| !t.decrease_refused)
        && workloads.as_ref().is_ok_and(Workloads::ready);
    let prev_runs = cc
        .status
        .as_ref()
        .map(|p| p.load_tests.as_slice())
        .unwrap_or_default();
    let (load_tests, stopped_runs, gate) = match (&provisioned.stock, &mut provisioned.redis) {
        (Some(stock), Ok(redis)) => {
            let runs = Runs {
                client: &ctx.client,
                stock: stock.as_ref(),
                plan,
                owner,
                image: &ctx.defaults.k6_image,
                spec_unseen: cc.status.as_ref().and_then(|s| s.observed_generation)
                    != cc.metadata.generation,
            };
            let RunsNow { statuses, stopped } =
                reconcile_runs(&runs, prev_runs, base_ready).await?;
            let gate = gate(&plan.load_tests, &statuses, redis.snapshot.issued);
            let created = matches!(redis.provision, ProvisionOutcome::Created { .. });
            let snapshot = &mut redis.snapshot;
            hold_for_gate(ctx, cc, stock.as_ref(), plan, snapshot, &gate, created).await?;
            (statuses, stopped, gate)
        }
        _ => (prev_runs.to_vec(), Vec::new(), Gate::Open),
    };
    Ok(Observed {
        generation: cc.metadata.generation,
        campaign_id: plan.campaign.to_string(),
        redis: provisioned
            .redis
            .as_ref()
            .map(|r| r.snapshot.clone())
            .map_err(Clone::clone),
        kafka: provisioned.kafka.clone(),
        workloads,
        alerts,
        persisted: provisioned.persisted,
        load_tests,
        stopped_runs,
        gate,
    })
}
