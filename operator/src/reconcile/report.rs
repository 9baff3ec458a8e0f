//! The status stage: events for what changed, the status computed from what was observed
//! and written (when it changed), and when to look again.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use stampede_core::clock::now_rfc3339;

use super::provision::Provisioned;
use crate::Error;
use crate::context::Context;
use crate::crd::{ConditionStatus, ConditionType, CouponCampaign, CouponCampaignStatus, Reason};
use crate::events::{publish, report_kafka, report_redis, suspension_event};
use crate::kubeapi::write_status;
use crate::loadtest::report_runs;
use crate::status::{self, Observed};

/// How often an unfinished load-test run is looked at.
const RUN_POLL: Duration = Duration::from_secs(5);

/// Reports and writes the status; unreachable backends end in an error (retried with
/// backoff), anything else requeues for the next resync, window edge or run poll.
pub(super) async fn report(
    ctx: &Context,
    cc: &CouponCampaign,
    provisioned: &Provisioned,
    obs: Observed,
) -> Result<Action, Error> {
    let prev = cc.status.as_ref();
    let redis = provisioned
        .redis
        .as_ref()
        .map(|r| (&r.provision, r.pause_change));
    report_redis(ctx, cc, prev, redis).await;
    report_kafka(ctx, cc, prev, &provisioned.kafka).await;
    report_runs(ctx, cc, prev, &obs.load_tests, &obs.stopped_runs).await;
    let new = status::compute(prev, &obs, &now_rfc3339());
    let became_ready = is_ready(Some(&new)) && !is_ready(prev);
    let suspension = suspension_event(
        prev.and_then(|p| p.phase),
        new.phase,
        obs.redis.as_ref().ok(),
    );
    write_status(&ctx.client, cc, new).await?;
    if let Some((type_, reason, note)) = suspension {
        publish(ctx, cc, type_, reason, note).await;
    }
    if became_ready {
        let note = "stock, topics and workloads are in place".into();
        publish(ctx, cc, EventType::Normal, Reason::Ready, note).await;
    }
    if let Some(p) = [obs.redis.as_ref().err(), obs.kafka.as_ref().err()]
        .into_iter()
        .flatten()
        .find(|p| p.reason.is_unavailable())
    {
        return Err(Error::Incomplete(format!("{}: {}", p.reason, p.message)));
    }
    Ok(Action::requeue(next(ctx, &obs)))
}

/// The resync, or sooner: just past the window's next edge, or the run poll while a
/// load-test run is under way (runner pods are not watched).
fn next(ctx: &Context, obs: &Observed) -> Duration {
    let next = obs
        .redis
        .as_ref()
        .ok()
        .and_then(|s| status::until_window_edge(&s.window, s.now_ms))
        // Land just past the edge so the phase has flipped.
        .map(|d| d + Duration::from_millis(200))
        .map_or(ctx.resync, |d| d.min(ctx.resync));
    let running = obs.load_tests.iter().any(|r| r.verdict.is_none());
    if running { next.min(RUN_POLL) } else { next }
}

fn is_ready(s: Option<&CouponCampaignStatus>) -> bool {
    s.is_some_and(|s| s.is(ConditionType::Ready, ConditionStatus::True))
}
