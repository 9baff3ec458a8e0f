//! Reconcile: fetch → validate → build → apply children (server-side apply, one field
//! manager) → provision Redis and Kafka → status. Cleanup runs under the finalizer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use stampede_service::campaign::{AdminAction, ProvisionOutcome};
use stampede_service::kafka::{KafkaConfig, delete_topics};
use tracing::{info, warn};

use crate::build::{Children, children, issuer_name, writer_name};
use crate::crd::LoadTestStatus;
use crate::crd::{CouponCampaign, CouponCampaignStatus, DeletionPolicy, FINALIZER};
use crate::metrics::Metrics;
use crate::provision::{Backends, connections, provision_kafka, provision_redis};
use crate::runs::{self, reconcile_runs};
use crate::status::{self, Alerts, Gate, Observed, Problem, Workloads};
use crate::validate::{Defaults, Plan, validate};
use crate::{Error, alerts};

/// The one field manager for everything the operator applies.
pub const MANAGER: &str = "stampede-operator";
const PROMETHEUS_RULE_CRD: &str = "prometheusrules.monitoring.coreos.com";

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

    async fn event(&self, cc: &CouponCampaign, type_: EventType, reason: &str, note: String) {
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

fn now_rfc3339() -> String {
    stampede_service::clock::format_ms(stampede_service::clock::now_ms())
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

/// RBAC refusals say so on the campaign (condition and event), not only in the log: a
/// ClusterRole missing a verb must not look like a campaign that is merely slow.
async fn report_forbidden(ctx: &Context, cc: &CouponCampaign, message: &str) {
    let prev = cc.status.as_ref();
    let note = format!("the operator's ServiceAccount is not allowed to do this: {message}");
    let again = prev.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Forbidden" && c.message == note)
    });
    if !again {
        ctx.event(cc, EventType::Warning, "Forbidden", note.clone())
            .await;
    }
    let status = status::forbidden(prev, cc.meta().generation, &note, &now_rfc3339());
    // If writing status is forbidden too, the event and the log are all there is.
    if let Err(e) = write_status(ctx, cc, status).await {
        warn!(error = %e, "writing the Forbidden condition failed");
    }
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
                ctx,
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

    report(ctx, cc, prev, &redis, &kafka).await;
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
    write_status(ctx, cc, new).await?;
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

/// Keeps the real campaign closed while the gate holds, and reopens it once the gate that
/// held it lets go.
async fn hold_for_gate(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    store: &stampede_service::store::Store,
    plan: &Plan,
    r: &mut crate::provision::RedisOutcome,
    gate: &Gate,
) -> Result<(), Error> {
    let held_before = prev.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "LoadTestsPassed" && c.status == "False")
    });
    let action = match gate {
        Gate::Open if r.snapshot.closed && held_before => AdminAction::Reopen,
        Gate::Testing | Gate::Failed(_) if !r.snapshot.closed => AdminAction::Close,
        _ => return Ok(()),
    };
    store.admin(&plan.campaign, action).await?;
    if let Some(s) = store.snapshot(&plan.campaign).await? {
        r.snapshot = s;
    }
    let (reason, note) = match (action, gate) {
        (AdminAction::Reopen, _) => (
            "GateOpened",
            "gated load tests passed; the campaign may open".to_owned(),
        ),
        (_, Gate::Failed(why)) => ("GateClosed", format!("held closed: {why}")),
        _ => (
            "GateClosed",
            "held closed until the gated load tests pass".to_owned(),
        ),
    };
    ctx.event(cc, EventType::Normal, reason, note).await;
    Ok(())
}

/// Events for load-test runs that started or finished.
async fn report_runs(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: &[LoadTestStatus],
    now: &[LoadTestStatus],
) {
    for r in now {
        let before = prev.iter().find(|p| p.name == r.name && p.run == r.run);
        if before.is_none() && r.started_at.is_some() {
            let note = format!(
                "load test {} started: run {}, {} segment(s)",
                r.name, r.run, r.segments
            );
            ctx.event(cc, EventType::Normal, "LoadTestStarted", note)
                .await;
        }
        let newly = r.verdict.is_some() && before.is_none_or(|p| p.verdict.is_none());
        match r.verdict.as_deref() {
            Some(v) if newly && v == crate::loadtest::PASSED => {
                let note = format!(
                    "load test {} passed: {} rps, p95 {} ms, error rate {}",
                    r.name,
                    r.rps.unwrap_or_default(),
                    r.p95_ms.unwrap_or_default(),
                    r.error_rate.unwrap_or_default()
                );
                ctx.event(cc, EventType::Normal, "LoadTestPassed", note)
                    .await;
            }
            Some(v) if newly => {
                let note = format!(
                    "load test {} {v}: {}",
                    r.name,
                    r.reason.as_deref().unwrap_or("")
                );
                ctx.event(cc, EventType::Warning, "LoadTestFailed", note)
                    .await;
            }
            _ => {}
        }
    }
}

fn is_ready(s: Option<&CouponCampaignStatus>) -> bool {
    s.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Events for what provisioning changed or refused.
async fn report(
    ctx: &Context,
    cc: &CouponCampaign,
    prev: Option<&CouponCampaignStatus>,
    redis: &Result<crate::provision::RedisOutcome, Problem>,
    kafka: &Result<stampede_service::kafka::TopicsOutcome, Problem>,
) {
    let prev_reason = |t: &str| {
        prev.and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
            .map(|c| c.reason.clone())
    };
    match redis {
        Ok(r) => {
            let note = match r.provision {
                ProvisionOutcome::Created { total } => {
                    Some(("StockProvisioned", format!("created with {total} coupons")))
                }
                ProvisionOutcome::Restocked { before, after, .. } => Some((
                    "Restocked",
                    format!("stock {before} → {after} (+{})", after - before),
                )),
                ProvisionOutcome::WindowUpdated { .. } => {
                    Some(("WindowUpdated", "sale window updated".into()))
                }
                ProvisionOutcome::Unchanged { .. } => None,
            };
            if let Some((reason, note)) = note {
                ctx.event(cc, EventType::Normal, reason, note).await;
            }
            if let Some(a) = r.pause_change {
                let (reason, note) = if a == AdminAction::Pause {
                    ("Paused", "issuing paused by spec.paused")
                } else {
                    ("Resumed", "issuing resumed")
                };
                ctx.event(cc, EventType::Normal, reason, note.into()).await;
            }
        }
        Err(p) if prev_reason("RedisProvisioned").as_deref() != Some(p.reason) => {
            ctx.event(cc, EventType::Warning, p.reason, p.message.clone())
                .await;
        }
        Err(_) => {}
    }
    match kafka {
        Ok(t) if t.decrease_refused => {
            if prev_reason("KafkaProvisioned").as_deref() != Some("PartitionDecreaseRefused") {
                let note = format!(
                    "topic {} keeps its {} partitions; Kafka cannot remove partitions",
                    t.topic, t.partitions
                );
                ctx.event(cc, EventType::Warning, "PartitionDecreaseRefused", note)
                    .await;
            }
        }
        Ok(t) if t.partitions_before == 0 => {
            let note = format!(
                "created {} ({} partitions) and {}",
                t.topic, t.partitions, t.dead_letter_topic
            );
            ctx.event(cc, EventType::Normal, "TopicsCreated", note)
                .await;
        }
        Ok(t) if t.partitions > t.partitions_before => {
            let note = format!(
                "{} grew from {} to {} partitions",
                t.topic, t.partitions_before, t.partitions
            );
            ctx.event(cc, EventType::Normal, "PartitionsAdded", note)
                .await;
        }
        Ok(_) => {}
        Err(p) if prev_reason("KafkaProvisioned").as_deref() != Some(p.reason) => {
            ctx.event(cc, EventType::Warning, p.reason, p.message.clone())
                .await;
        }
        Err(_) => {}
    }
}

async fn write_status(
    ctx: &Context,
    cc: &CouponCampaign,
    status: CouponCampaignStatus,
) -> Result<(), Error> {
    if cc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api =
        Api::<CouponCampaign>::namespaced(ctx.client.clone(), &cc.namespace().unwrap_or_default());
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

async fn ssa<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
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

async fn apply_children(client: &Client, plan: &Plan, c: &Children) -> Result<(), Error> {
    let ns = &plan.namespace;
    ssa(client, ns, &c.issuer).await?;
    ssa(client, ns, &c.service).await?;
    ssa(client, ns, &c.hpa).await?;
    ssa(client, ns, &c.pdb).await?;
    ssa(client, ns, &c.writer).await?;
    Ok(())
}

/// Applies the PrometheusRule when its CRD is installed.
async fn apply_alerts(
    client: &Client,
    plan: &Plan,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Alerts {
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
    let name = format!("{}-alerts", plan.campaign);
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

/// Available vs wanted pods of the issuer and writer Deployments.
async fn workloads(client: &Client, plan: &Plan) -> Result<Workloads, Problem> {
    let api = Api::<Deployment>::namespaced(client.clone(), &plan.namespace);
    let counts = |d: Option<Deployment>, wanted_default: i32| {
        let d = d.unwrap_or_default();
        let wanted = d.spec.replicas.unwrap_or(wanted_default).max(1);
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        (available, wanted)
    };
    let get = |name: String| {
        let api = api.clone();
        async move { api.get_opt(&name).await }
    };
    let (issuer, writer) = futures::try_join!(get(issuer_name(plan)), get(writer_name(plan)))
        .map_err(|e| Problem::new("WorkloadsUnreadable", e.to_string()))?;
    let (issuer_available, issuer_wanted) = counts(issuer, 1);
    let (writer_available, writer_wanted) = counts(writer, plan.writer.replicas);
    Ok(Workloads {
        issuer_available,
        issuer_wanted,
        writer_available,
        writer_wanted,
    })
}

/// Under the finalizer: close the campaign; under `Delete`, wait for the outbox to drain
/// (bounded by the drain timeout), then remove Redis data and the topics.
async fn cleanup(cc: &CouponCampaign, ctx: &Context) -> Result<Action, Error> {
    let plan = match validate(cc, &ctx.defaults) {
        Ok(p) => p,
        // Nothing was provisioned for a spec that never validated.
        Err(Error::InvalidSpec(_)) => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    };
    let conns = match connections(&ctx.client, &plan).await {
        Ok(c) => c,
        Err(Error::Secret(m)) if plan.deletion_policy == DeletionPolicy::Retain => {
            // A namespace being deleted takes its Secrets first; Retain keeps data anyway.
            ctx.event(
                cc,
                EventType::Warning,
                "CleanupSkipped",
                format!("campaign not closed: {m}"),
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let store = ctx.backends.store(&conns.redis)?;
    match store.admin(&plan.campaign, AdminAction::Close).await {
        Ok(_) => {
            ctx.event(
                cc,
                EventType::Normal,
                "Closed",
                "campaign closed; holders keep their coupons".into(),
            )
            .await
        }
        Err(stampede_service::Error::CampaignNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if plan.deletion_policy == DeletionPolicy::Retain {
        info!(campaign = %plan.campaign, "closed; data retained");
        return Ok(Action::await_change());
    }
    if let Some(snap) = store.snapshot(&plan.campaign).await?
        && snap.outbox_len > 0
    {
        let waited = cc
            .meta()
            .deletion_timestamp
            .as_ref()
            .map_or(Duration::ZERO, |t| {
                let ms = stampede_service::clock::now_ms() - t.0.as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            });
        if waited < ctx.drain_timeout {
            return Err(Error::OutboxNotDrained {
                pending: snap.outbox_len,
            });
        }
        let note = format!(
            "outbox still held {} issuances after {:?}; deleting anyway (`stampede-service audit` lists what PostgreSQL lacks)",
            snap.outbox_len, ctx.drain_timeout
        );
        ctx.event(cc, EventType::Warning, "DrainTimedOut", note)
            .await;
    }
    let mut removed = store.forget(&plan.campaign).await?;
    for t in &plan.load_tests {
        removed += store
            .forget(&crate::loadtest::shadow_id(&plan.campaign, &t.name))
            .await?;
    }
    let kafka = KafkaConfig {
        brokers: conns.kafka,
    };
    delete_topics(&kafka, plan.campaign.as_str()).await?;
    let note = format!(
        "deleted {removed} Redis keys and the topics of {}; rows in PostgreSQL are kept",
        plan.campaign
    );
    ctx.event(cc, EventType::Normal, "Deleted", note).await;
    Ok(Action::await_change())
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
