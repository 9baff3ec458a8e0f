//! A campaign with a waiting room through real pods on the local node: report 001's two
//! shapes, scaled down. The gated preflight is the `queue` profile in a real k6 runner pod
//! against the campaign's shadow (which has the room); once open, the `queue-status` profile
//! runs from inside the cluster against the real campaign's issuer Service until the stock
//! is gone. Held: no error, never more than `maxActive` admitted at once, exactly `stock`
//! coupons, every one to an admitted user, nobody admitted beyond the stock, every coupon
//! persisted and audited.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::node::*;
use common::*;
use serde_json::Value;
use stampede_core::ids::CampaignId;
use stampede_operator::crd::Phase;

const STOCK: i64 = 200;
const MAX_ACTIVE: u64 = 15;

/// Stock 200 behind a room of 15 at once, 20 admissions a second, on two issuers from the
/// start (one line across both); the gate is a short `queue` run (arrivals ramping to 20/s
/// over 15 s). The issuers keep the default CPU request: at 50m (once used here to make the
/// HPA scale mid-run; node_campaigns covers that) the k6 pod's 500m outweighed them ten to
/// one, and a poll starved past `--redis-timeout-ms` answered 503 in CI.
fn campaign() -> String {
    format!(
        "apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {{name: x}}
spec:
  stock: {STOCK}
  issuer: {{minReplicas: 2, maxReplicas: 2}}
  waitingRoom: {{maxActive: {MAX_ACTIVE}, admitPerSecond: 20, sessionTtl: 30s, queueTtl: 20s}}
  loadTests:
  - {{name: preflight, profile: queue, rate: 20, duration: 15s, gate: true, thresholds: {{p95Ms: 1000, errorRate: 0.01}}}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_campaign_passes_its_queue_gate_in_a_pod_and_sells_out_through_the_line() {
    let mut t = NodeTest::start("wr").await;
    t.pods_use_the_stacks_redis().await;
    let name = t.campaign_name("room");
    t.apply(&name, &campaign());

    the_queue_gate_passed_in_a_pod(&t, &name).await;

    // Report 001's `queue-status`, scaled: 300 users polling from inside the cluster.
    let id = t.id(&name);
    let sampling = Arc::new(AtomicBool::new(true));
    let most = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(max_active(id.clone(), sampling.clone(), most.clone()));
    let summary = stampede(&t, &name).await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let most = most.load(Ordering::Relaxed);
    eprintln!("measured: queue-status in the cluster: {summary}; at most {most} admitted at once");

    assert_eq!(summary["thresholdsPassed"], true, "{summary}");
    assert_eq!(summary["errorRate"], 0.0, "no error: {summary}");
    assert_eq!(
        summary["outcomes"]["201"], STOCK,
        "exactly the stock: {summary}"
    );
    let q = &summary["queue"];
    assert_eq!(
        q["admittedNoCoupon"], 0,
        "every admitted user got a coupon: {summary}"
    );
    assert!(
        q["waiting"].as_u64().unwrap() > 0 && q["sold_out"].as_u64().unwrap() > 0,
        "a line formed and was told sold_out: {summary}"
    );
    assert!(
        (1..=MAX_ACTIVE).contains(&most),
        "at most {MAX_ACTIVE} admitted at once, saw {most}"
    );
    let s = t
        .status_until(
            &name,
            "every admission counted",
            Duration::from_secs(60),
            |s| s.waiting_room.as_ref().is_some_and(|w| w.admitted >= STOCK),
        )
        .await;
    assert_eq!(
        s.waiting_room.unwrap().admitted,
        STOCK,
        "nobody admitted beyond the stock"
    );
    sold_out_persisted_and_audited(&t, &name, STOCK).await;
}

/// The gate: report 001's `queue` shape in a real k6 pod against the shadow's room; the
/// campaign opens and its own room is untouched.
async fn the_queue_gate_passed_in_a_pod(t: &NodeTest, name: &str) {
    let s = t
        .status_until(
            name,
            "Open after the queue gate",
            Duration::from_secs(300),
            |s| s.phase == Some(Phase::Open),
        )
        .await;
    let pre = s.load_tests.iter().find(|r| r.name == "preflight").unwrap();
    assert_eq!(pre.verdict.as_deref(), Some("Passed"), "{pre:?}");
    let gate: Value = serde_json::from_str(&t.runner_message(name)).expect("k6 summary");
    let q = &gate["queue"];
    assert!(
        q["joined"].as_u64().unwrap() > 0,
        "users joined the shadow's line: {gate}"
    );
    assert_eq!(q["admittedNoCoupon"], 0, "{gate}");
    assert_eq!(gate["errorRate"], 0.0, "{gate}");
    let room = s.waiting_room.expect("status.waitingRoom");
    assert_eq!(
        room.admitted, 0,
        "the real campaign's room is untouched by the gate"
    );
}

/// `scripts/k6-stampede --profile queue-status` against the campaign; its summary.
async fn stampede(t: &NodeTest, name: &str) -> Value {
    let mut args = vec![];
    for env in [
        "VUS=300",
        "SPAWN=100",
        "DURATION=40",
        "THINK_MIN=0.5",
        "THINK_MAX=1.5",
    ] {
        args.extend(["--env", env]);
    }
    let (_, out) = t.stampede(name, "queue-status", &args).await.unwrap();
    let raw = std::fs::read_to_string(out.join("stampede-summary.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// Samples the room's admitted-at-once count (Redis, every 50 ms) into `most`.
async fn max_active(campaign: String, sampling: Arc<AtomicBool>, most: Arc<AtomicU64>) {
    let (store, id) = (store().await, CampaignId::parse(&campaign).unwrap());
    while sampling.load(Ordering::Relaxed) {
        if let Ok(Some(room)) = store.snapshot(&id).await.map(|s| s.and_then(|s| s.room)) {
            most.fetch_max(room.active, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
