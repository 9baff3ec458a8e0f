//! An operator interrupted while a reconcile is provably in flight, on a real control
//! plane with the stack's Redis (behind a proxy the test controls) and Kafka: killed (a
//! crash) or SIGTERM'd (a rollout), it converges once restarted, without duplicates.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::HoldingProxy;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use stampede_operator::crd::FINALIZER;

const STOCK: u64 = 40;
/// The operator's bound on one Redis call (`operator/src/backends/real.rs`): a request held
/// longer than this has been given up on, and the reconcile has moved past it.
const REDIS_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The stock script, so the test can load it before the operator asks by its SHA.
const ENSURE_LUA: &str = include_str!("../../core/src/store/lua/ensure.lua");

/// A cluster and a campaign whose Redis sits behind a proxy that holds the campaign's
/// first request (the stock provisioning script) until released.
struct Blocked {
    c: Cluster,
    name: String,
    /// The campaign's id in Redis and Kafka.
    id: String,
    proxy: HoldingProxy,
    sha: String,
    _forget: Forget,
}

impl Blocked {
    async fn start(prefix: &str) -> Self {
        let c = Cluster::start().await;
        let name = unique(prefix);
        let id = c.id(&name);
        let forget = Forget(id.clone());
        // Loaded up front, so the held EVALSHA runs when released (no NOSCRIPT retry).
        let mut conn = redis::Client::open(stack_defaults().redis_url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(ENSURE_LUA)
            .query_async(&mut conn)
            .await
            .unwrap();
        let redis = stack_defaults().redis_url;
        // `redis://[user:password@]host:port`: the proxy forwards the AUTH it carries.
        let address = redis.trim_start_matches("redis://");
        let upstream = address.rsplit_once('@').map_or(address, |(_, a)| a);
        let upstream = upstream.parse().unwrap();
        // The stock script's own call: a reconcile reads the campaign (a snapshot, for its
        // id) before it provisions, on the same keys.
        let proxy = HoldingProxy::start(upstream, sha.as_bytes()).await;
        c.create(&name, &minimal_campaign(STOCK)).await.unwrap();
        Self {
            c,
            name,
            id,
            proxy,
            sha,
            _forget: forget,
        }
    }

    /// The campaigns' Redis URL, through the proxy.
    fn redis_url(&self) -> String {
        let redis = stack_defaults().redis_url;
        let credentials = redis
            .trim_start_matches("redis://")
            .rsplit_once('@')
            .map_or(String::new(), |(c, _)| format!("{c}@"));
        format!("redis://{credentials}{}", self.proxy.addr)
    }

    /// Waits until the reconcile is blocked on the held stock script, checks that it is
    /// (children applied, no status yet, the request unanswered), and returns when the
    /// request was first held.
    async fn reconcile_in_flight(&self) -> Instant {
        let Some(held) = self.proxy.until_held(Duration::from_secs(60)).await else {
            let cc = self.c.campaigns().get(&self.name).await.unwrap();
            panic!("no stock request reached Redis; status: {:?}", cc.status);
        };
        let request = String::from_utf8_lossy(&held.request);
        assert!(
            request.contains("EVALSHA") && request.contains(&self.sha),
            "{request}"
        );
        let issuer = format!("{}-issuer", self.name);
        let applied = self.c.deployments().get_opt(&issuer).await.unwrap();
        assert!(applied.is_some(), "apply ran before provision");
        let cc = self.c.campaigns().get(&self.name).await.unwrap();
        assert!(cc.status.is_none(), "the reconcile has not reported yet");
        assert!(!self.proxy.held().released, "still unanswered");
        held.since.unwrap()
    }

    /// The interruption (returned by `interrupt`) came while the stock script was still
    /// held and the operator still waiting for it: within its call timeout, unanswered.
    async fn interrupted_in_flight(&self, since: Instant, interrupt: impl Future<Output = ()>) {
        interrupt.await;
        let held_for = since.elapsed();
        assert!(
            !self.proxy.held().released,
            "the request was never answered"
        );
        assert!(
            held_for < REDIS_CALL_TIMEOUT,
            "interrupted {held_for:?} into the held call: the reconcile may have moved on"
        );
    }

    /// Releases the held request and waits until it ran: the stock was provisioned by a
    /// request whose sender is gone.
    async fn release_and_land(&self) {
        self.proxy.release();
        eventually(
            "the held stock request ran",
            Duration::from_secs(10),
            || async { snapshot(&self.id).await.filter(|s| s.total == STOCK) },
        )
        .await;
    }

    /// After a restart: ready, with one set of children, the stock provisioned once, and
    /// no event for a change that did not happen.
    async fn converged(&self) {
        let (c, name) = (&self.c, self.name.as_str());
        c.mark_campaign_available(name).await;
        let s = c
            .status_until(name, "Ready", |s| has(s, "Ready", "True"))
            .await;
        assert_eq!(s.stock.as_ref().unwrap().total, STOCK as i64);
        assert_eq!(children(c, name).await, (2, 1, 1, 1));
        let cc = c.campaigns().get(name).await.unwrap();
        assert_eq!(cc.finalizers(), [FINALIZER.to_owned()]);
        let snap = snapshot(&self.id).await.unwrap();
        assert_eq!((snap.total, snap.issued), (STOCK, 0), "provisioned once");
        assert_eq!(partitions(&format!("stampede.{}", self.id)).await, 6);
        let d = c
            .deployments()
            .get(&format!("{name}-issuer"))
            .await
            .unwrap();
        assert_eq!(apply_managers(&d), ["stampede-operator"]);
        let events = eventually("the Ready event", Duration::from_secs(30), || async {
            let e = event_counts(c, name).await;
            e.contains_key("Ready").then_some(e)
        })
        .await;
        eprintln!("{name}: events {events:?}");
        // Events of the interrupted reconcile were never published (it died before its
        // report stage); nothing may be reported twice, and nothing that did not happen.
        for (reason, at_most) in [("Ready", 1), ("StockProvisioned", 1), ("TopicsCreated", 1)] {
            assert!(
                events.get(reason).copied().unwrap_or(0) <= at_most,
                "{events:?}"
            );
        }
        for never in ["Restocked", "PartitionsAdded", "WindowUpdated"] {
            assert!(!events.contains_key(never), "{events:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_reconcile_converges_without_duplicates() {
    if single_node_only("a TCP proxy holding one Redis node's replies") {
        return;
    }
    let b = Blocked::start("crash").await;
    let mut defaults = stack_defaults();
    defaults.redis_url = b.redis_url();
    let op = Operator::start_with(&b.c.cp.kubeconfig, defaults.clone());
    let since = b.reconcile_in_flight().await;
    assert!(op.is_running());
    b.interrupted_in_flight(since, op.kill()).await;
    b.release_and_land().await;
    let op = Operator::start_with(&b.c.cp.kubeconfig, defaults);
    b.converged().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_sigtermed_mid_reconcile_exits_promptly_and_a_restart_converges() {
    if single_node_only("a TCP proxy holding one Redis node's replies") {
        return;
    }
    let b = Blocked::start("term").await;
    let mut child = operator_binary(&b);
    let since = b.reconcile_in_flight().await;
    assert!(child.try_wait().unwrap().is_none(), "the operator runs");
    let sent = Instant::now();
    b.interrupted_in_flight(since, async { sigterm(&child) })
        .await;
    let status = exit_within(&mut child, Duration::from_secs(15)).await;
    let took = sent.elapsed();
    assert!(status.success(), "graceful exit, got {status}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    // Graceful: the reconcile in flight was finished (its Redis call timed out) and
    // reported before the process exited, not dropped.
    let cc = b.c.campaigns().get(&b.name).await.unwrap();
    let redis = cc
        .status
        .as_ref()
        .and_then(|s| condition(s, "RedisProvisioned"));
    let reason = redis.map(|c| (c.status.as_str(), c.reason.as_str()));
    assert_eq!(
        reason,
        Some(("False", "RedisUnavailable")),
        "{:?}",
        cc.status
    );
    b.release_and_land().await;
    let mut restarted = operator_binary(&b);
    b.converged().await;
    sigterm(&restarted);
    exit_within(&mut restarted, Duration::from_secs(15)).await;
}

/// `stampede-operator run` against the test's control plane, campaigns' Redis through the
/// proxy, resyncing every 2 s.
fn operator_binary(b: &Blocked) -> Reaped {
    let d = stack_defaults();
    Command::new(env!("CARGO_BIN_EXE_stampede-operator"))
        .args(["run", "--listen", "127.0.0.1:0", "--resync-secs", "2"])
        .arg("--kubeconfig")
        .arg(&b.c.cp.kubeconfig)
        .args(["--redis-url", &b.redis_url()])
        .args(["--kafka-brokers", &d.kafka_brokers])
        .args(["--database-url", &d.database_url])
        .args([
            "--service-image",
            &d.service_image,
            "--k6-image",
            &d.k6_image,
        ])
        .env("STAMPEDE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map(Reaped)
        .expect("starting stampede-operator")
}

/// How often each event reason was recorded for `name` (a repeated event is one object
/// with a series count).
async fn event_counts(c: &Cluster, name: &str) -> HashMap<String, i32> {
    let api = Api::<k8s_openapi::api::events::v1::Event>::namespaced(c.client.clone(), &c.ns);
    let mut counts = HashMap::new();
    for e in api.list(&ListParams::default()).await.unwrap().items {
        if e.regarding.as_ref().and_then(|r| r.name.as_deref()) != Some(name) {
            continue;
        }
        let n = e.series.as_ref().map_or(1, |s| s.count);
        *counts.entry(e.reason.unwrap_or_default()).or_insert(0) += n;
    }
    counts
}

/// How many Deployments, Services, HPAs and PDBs carry the campaign's label.
async fn children(c: &Cluster, name: &str) -> (usize, usize, usize, usize) {
    let lp = ListParams::default().labels(&format!("stampede.dev/campaign={name}"));
    let (client, ns) = (c.client.clone(), c.ns.as_str());
    let deploy = Api::<Deployment>::namespaced(client.clone(), ns);
    let svc = Api::<Service>::namespaced(client.clone(), ns);
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    let pdb = Api::<PodDisruptionBudget>::namespaced(client, ns);
    (
        deploy.list(&lp).await.unwrap().items.len(),
        svc.list(&lp).await.unwrap().items.len(),
        hpa.list(&lp).await.unwrap().items.len(),
        pdb.list(&lp).await.unwrap().items.len(),
    )
}
