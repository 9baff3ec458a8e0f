//! Reconcile: fetch → validate → build → apply children (server-side apply, one field
//! manager) → provision Redis and Kafka → load tests → status. Cleanup (`cleanup.rs`) runs
//! under the finalizer; the API-server edge is `kubeapi.rs`, events are `events.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use stampede_service::clock::now_rfc3339;
use tracing::warn;

use crate::Error;
use crate::build::children;
use crate::cleanup::cleanup;
use crate::crd::{CouponCampaign, CouponCampaignStatus, FINALIZER};
use crate::events::{report_forbidden, report_provisioning, report_runs};
use crate::kubeapi::{MANAGER, apply_alerts, apply_children, workloads, write_status};
use crate::metrics::Metrics;
use crate::provision::{Backends, connections, provision_kafka, provision_redis};
use crate::runs::{self, hold_for_gate, reconcile_runs};
use crate::status::{self, Gate, Observed, Problem, Workloads};
use crate::validate::{Defaults, validate};

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Defaults for what campaigns leave out.
    pub defaults: Defaults,
    /// Redis and PostgreSQL clients.
    pub backends: Backends,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// How often a healthy campaign's status is refreshed.
    pub resync: Duration,
    /// How long `deletionPolicy: Delete` waits for the outbox to drain.
    pub drain_timeout: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context over `client`.
    pub fn new(
        client: Client,
        defaults: Defaults,
        metrics: Metrics,
        resync: Duration,
        drain_timeout: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            backends: Backends::default(),
            metrics,
            resync,
            drain_timeout,
            failures: Mutex::default(),
        }
    }

    pub(crate) async fn event(
        &self,
        cc: &CouponCampaign,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An event that cannot be written must not fail the reconcile.
        if let Err(e) = self.recorder.publish(&ev, &cc.object_ref(&())).await {
            warn!(error = %e, reason, "publishing event failed");
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(cc: &CouponCampaign) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}

/// Reconciles one campaign (the controller's entry point).
pub async fn reconcile(cc: Arc<CouponCampaign>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let kind = if cc.meta().deletion_timestamp.is_some() {
        "cleanup"
    } else {
        "apply"
    };
    let k = key(&cc);
    let api =
        Api::<CouponCampaign>::namespaced(ctx.client.clone(), &cc.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, cc, |event| async {
        match event {
            Event::Apply(cc) => apply(&cc, &ctx).await,
            Event::Cleanup(cc) => cleanup(&cc, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics
        .reconciled(kind, started.elapsed(), result.as_ref().err());
    if result.is_ok() {
        ctx.failures().remove(&k);
    }
    result
}

/// Backoff after a failed reconcile: a spec error waits for a change, a draining outbox is
/// polled, anything else retries exponentially per object (1 s doubling to 5 min).
pub fn error_policy(cc: Arc<CouponCampaign>, error: &Error, ctx: Arc<Context>) -> Action {
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
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

async fn apply(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    let result = apply_pipeline(cc, ctx).await;
    if let Err(Error::Kube(kube::Error::Api(status))) = &result
        && status.is_forbidden()
    {
        report_forbidden(ctx, cc, &status.message).await;
    }
    result
}

async fn apply_pipeline(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    let prev = cc.status.as_ref();
    let generation = cc.meta().generation;
    let plan = match validate(cc, &ctx.defaults) {
        Ok(p) => p,
        Err(Error::InvalidSpec(m)) => {
            let was_failed = prev.is_some_and(|s| {
                s.observed_generation == generation && s.phase == Some(crate::crd::Phase::Failed)
            });
            if !was_failed {
                ctx.event(cc, EventType::Warning, "InvalidSpec", m.clone())
                    .await;
            }
            write_status(
                &ctx.client,
                cc,
                status::failed(prev, generation, &m, &now_rfc3339()),
            )
            .await?;
            return Err(Error::InvalidSpec(m));
        }
        Err(e) => return Err(e),
    };
    // `controller_owner_ref` is None only for an object without a uid, which the API
    // server never hands out.
    let owner = cc
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("object has no uid".into()))?;
    let built = children(&plan, &owner);
    apply_children(&ctx.client, &plan, &built).await?;
    let alerts = apply_alerts(&ctx.client, &plan, &owner).await;

    let conns = match connections(&ctx.client, &plan).await {
        Ok(c) => Ok(c),
        Err(Error::Secret(m)) => Err(Problem::new("SecretUnavailable", m)),
        Err(e) => return Err(e),
    };
    let kafka = match &conns {
        Ok(c) => provision_kafka(&c.kafka, &plan).await,
        Err(p) => Err(p.clone()),
    };
    let redis = match &conns {
        // Topics first: a campaign must not open without the topic its outbox drains to.
        Ok(_) if kafka.is_err() => Err(Problem::new(
            "WaitingForKafka",
            "the campaign topic must exist first",
        )),
        Ok(c) => match ctx.backends.store(&c.redis) {
            Ok(store) => provision_redis(&store, &plan).await,
            Err(e) => Err(Problem::new("RedisUnavailable", e.to_string())),
        },
        Err(p) => Err(p.clone()),
    };
    let persisted = match &conns {
        Ok(c) => {
            ctx.backends
                .persisted(&c.database, plan.campaign.as_str())
                .await
        }
        Err(_) => None,
    };
    let workloads = workloads(&ctx.client, &plan).await;
    let base_ready = redis.is_ok()
        && kafka.as_ref().is_ok_and(|t| !t.decrease_refused)
        && workloads.as_ref().is_ok_and(Workloads::ready);

    let prev_runs = prev.map(|p| p.load_tests.as_slice()).unwrap_or_default();
    let mut redis = redis;
    let (load_tests, gate) = match (&conns, &mut redis) {
        (Ok(c), Ok(r)) => {
            let store = ctx.backends.store(&c.redis)?;
            let image = &ctx.defaults.k6_image;
            let runs = reconcile_runs(
                &ctx.client,
                &store,
                &plan,
                &owner,
                image,
                prev_runs,
                base_ready,
            )
            .await?;
            let gate = runs::gate(&plan.load_tests, &runs, r.snapshot.issued);
            hold_for_gate(ctx, cc, prev, &store, &plan, r, &gate).await?;
            (runs, gate)
        }
        _ => (prev_runs.to_vec(), Gate::Open),
    };

    report_provisioning(ctx, cc, prev, &redis, &kafka).await;
    report_runs(ctx, cc, prev_runs, &load_tests).await;
    let running = load_tests.iter().any(|r| r.verdict.is_none());
    let obs = Observed {
        generation,
        redis: redis
            .as_ref()
            .map(|r| r.snapshot.clone())
            .map_err(Clone::clone),
        kafka: kafka.clone(),
        workloads,
        alerts,
        persisted,
        load_tests,
        gate,
    };
    let new = status::compute(prev, &obs, &now_rfc3339());
    let became_ready = is_ready(Some(&new)) && !is_ready(prev);
    write_status(&ctx.client, cc, new).await?;
    if became_ready {
        ctx.event(
            cc,
            EventType::Normal,
            "Ready",
            "stock, topics and workloads are in place".into(),
        )
        .await;
    }

    // Unreachable backends retry with backoff; everything else re-reads on the resync.
    if let Some(p) = [&obs.redis.as_ref().err(), &obs.kafka.as_ref().err()]
        .into_iter()
        .flatten()
        .find(|p| p.reason.ends_with("Unavailable"))
    {
        return Err(Error::Incomplete(format!("{}: {}", p.reason, p.message)));
    }
    let next = obs
        .redis
        .as_ref()
        .ok()
        .and_then(|s| status::until_window_edge(&s.window, s.now_ms))
        // Land just past the edge so the phase has flipped.
        .map(|d| d + Duration::from_millis(200))
        .map_or(ctx.resync, |d| d.min(ctx.resync));
    // Runner pods are not watched: poll while a run is under way.
    let next = if running { next.min(RUN_POLL) } else { next };
    Ok(Action::requeue(next))
}

/// How often an unfinished load-test run is looked at.
const RUN_POLL: Duration = Duration::from_secs(5);

fn is_ready(s: Option<&CouponCampaignStatus>) -> bool {
    s.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
