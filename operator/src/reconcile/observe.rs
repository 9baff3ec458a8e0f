//! The observe stage: what the workloads report, where each load test's run stands, and
//! whether the gate holds the campaign closed (setting or clearing the gate's own flag).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use stampede_core::campaign::ProvisionOutcome;

use super::provision::{Provisioned, RedisOutcome};
use crate::Error;
use crate::context::Context;
use crate::crd::{CouponCampaign, LoadTestStatus};
use crate::kubeapi::workloads;
use crate::loadtest::{Runs, RunsNow, gate, hold_for_gate, reconcile_runs, run_id};
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
            runs_and_gate(ctx, cc, &runs, redis, (prev_runs, base_ready)).await?
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

/// The recorded runs that are the runs the spec asks for now (a verdict of an older run
/// does not count).
fn current_runs(plan: &Plan, recorded: &[LoadTestStatus]) -> Vec<LoadTestStatus> {
    let current = |r: &&LoadTestStatus| {
        (plan.load_tests.iter()).any(|t| t.name == r.name && run_id(plan, t) == r.run)
    };
    recorded.iter().filter(current).cloned().collect()
}

/// Brings the load tests' runs forward and holds or lets go the gate by their verdicts:
/// the runs now, those stopped, and the gate.
async fn runs_and_gate(
    ctx: &Context,
    cc: &CouponCampaign,
    runs: &Runs<'_>,
    redis: &mut RedisOutcome,
    (prev_runs, base_ready): (&[LoadTestStatus], bool),
) -> Result<(Vec<LoadTestStatus>, Vec<LoadTestStatus>, Gate), Error> {
    let (plan, stock) = (runs.plan, runs.stock);
    let created = matches!(redis.provision, ProvisionOutcome::Created { .. });
    let snapshot = &mut redis.snapshot;
    let RunsNow { statuses, stopped } = match reconcile_runs(runs, prev_runs, base_ready).await {
        Ok(now) => now,
        Err(e) => {
            // The runs could not be brought forward (a Job refused by a quota or a policy,
            // the API server away): the gate holds by the verdicts of the runs the spec asks
            // for now, so a gated test that never ran keeps a campaign that has issued
            // nothing closed, as it would had its Jobs been made.
            let current = current_runs(plan, prev_runs);
            let held = gate(&plan.load_tests, &current, snapshot.issued);
            hold_for_gate(ctx, cc, stock, plan, snapshot, &held, created).await?;
            return Err(e);
        }
    };
    let gate = gate(&plan.load_tests, &statuses, snapshot.issued);
    hold_for_gate(ctx, cc, stock, plan, snapshot, &gate, created).await?;
    Ok((statuses, stopped, gate))
}
