//! The gate's own flag on the real control plane and a running service: a gated campaign
//! whose window is already open answers no issue before its gate's verdict, however slow
//! the reconcile that creates it; and a campaign closed by hand stays closed across
//! reconciles, the gate passing included.

use std::time::{Duration, Instant};

use serde_json::json;
use stampede_core::campaign::AdminAction;
use stampede_core::clock::{format_ms, now_ms};
use stampede_core::ids::CampaignId;
use stampede_operator::crd::{ClosedBy, Phase};
use stampede_operator::validate::Defaults;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::runners::*;
use crate::common::*;

/// A gated smoke campaign (see [`gated_smoke_campaign`]) whose window opened an hour ago.
fn gated_open_window() -> String {
    let opened = format_ms(now_ms() - 3_600_000);
    gated_smoke_campaign("0.05", 1).replace(
        "  stock: 50\n",
        &format!("  stock: 50\n  window: {{opensAt: '{opened}'}}\n"),
    )
}

/// A PostgreSQL that accepts connections and never answers: every reconcile then spends
/// its persisted-count timeout between creating the stock and judging the gate, the gap
/// in which an open-at-creation campaign used to issue.
async fn hanging_database() -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (
        format!("postgres://stampede:stampede@{addr}/stampede"),
        task,
    )
}

/// What the hammer got back.
#[derive(Debug, Default)]
struct Answers {
    issued: u64,
    closed: u64,
    sold_out: u64,
    not_found: u64,
    other: Vec<u16>,
}

/// Issue requests from `workers` loops, each user new, until `stop` (bounded at 90 s and
/// 100 000 requests a worker). Each loop is paced at one request per 2 ms (up to 500/s):
/// plenty to find any gap in the gate, without starving the other suites' k6 runs that
/// share this test binary's two cores.
fn hammer(
    url: &str,
    campaign: &str,
    workers: usize,
    stop: &CancellationToken,
) -> JoinHandle<Answers> {
    let tasks: Vec<JoinHandle<Answers>> = (0..workers)
        .map(|w| {
            let (url, stop) = (format!("{url}/v1/campaigns/{campaign}/issue"), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut a, started) = (Answers::default(), Instant::now());
                let mut pace = tokio::time::interval(Duration::from_millis(2));
                pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                for i in 0..100_000 {
                    pace.tick().await;
                    if stop.is_cancelled() || started.elapsed() > Duration::from_secs(90) {
                        break;
                    }
                    let user = format!("h{w}-{i}");
                    let body = json!({ "userId": user });
                    let req = client.post(&url).header("authorization", bearer(&user));
                    let Ok(r) = req.json(&body).send().await else {
                        continue;
                    };
                    match r.status().as_u16() {
                        201 => a.issued += 1,
                        409 => a.closed += 1,
                        410 => a.sold_out += 1,
                        404 => a.not_found += 1,
                        s => a.other.push(s),
                    }
                }
                a
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut all = Answers::default();
        for t in tasks {
            let a = t.await.unwrap();
            all.issued += a.issued;
            all.closed += a.closed;
            all.sold_out += a.sold_out;
            all.not_found += a.not_found;
            all.other.extend(a.other);
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_campaign_issues_nothing_before_its_verdict_however_slow_the_reconcile() {
    let c = Cluster::start().await;
    let name = unique("gated-open");
    let _forget = Forget(c.id(&name));
    let service = LocalService::start(&c, &[&name]).await;
    let (database_url, db) = hanging_database().await;
    let defaults = Defaults {
        database_url,
        ..stack_defaults()
    };
    let op = Operator::start_with(&c.cp.kubeconfig, defaults);
    let stop = CancellationToken::new();
    let answers = hammer(&service.url, &name, 2, &stop);
    ready_campaign(&c, &name, &gated_open_window()).await;
    let job = runner_jobs_of(&c, &name).await;
    let (code, message) = run_like_the_job(&job, &service.url, &[]);
    assert_eq!(code, 0, "{message}");
    // Before the verdict exists: stop hammering and count.
    stop.cancel();
    let a = answers.await.unwrap();
    let snap = snapshot(&c.id(&name)).await.unwrap();
    assert_eq!(
        (a.issued, snap.issued),
        (0, 0),
        "nothing issued before the verdict: {a:?}"
    );
    assert!(a.closed > 0, "the hammer reached the campaign: {a:?}");
    assert!(a.other.is_empty() && a.sold_out == 0, "{a:?}");
    assert!(snap.gate_closed && !snap.closed, "{snap:?}");
    let s = c
        .status_until(&name, "Testing", |s| s.phase == Some(Phase::Testing))
        .await;
    assert_eq!(s.closed_by, [ClosedBy::Gate]);
    finish_pod(&c, &job, code, &message).await;
    let s = c
        .status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    assert!(s.closed_by.is_empty(), "{:?}", s.closed_by);
    let (status, _) = issue(&service.url, &name, "after-the-verdict").await;
    assert_eq!(status, 201);
    op.stop().await;
    db.abort();
}

/// POST issue; the status and the error code, if any.
async fn issue(url: &str, campaign: &str, user: &str) -> (u16, Option<String>) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/campaigns/{campaign}/issue"))
        .header("authorization", bearer(user))
        .json(&json!({ "userId": user }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_closed_by_hand_stays_closed_when_its_gate_passes() {
    let c = Cluster::start().await;
    let name = unique("by-hand");
    let _forget = Forget(c.id(&name));
    let service = LocalService::start(&c, &[&name]).await;
    let op = c.operator();
    ready_campaign(&c, &name, &gated_open_window()).await;
    c.status_until(&name, "Testing", |s| s.phase == Some(Phase::Testing))
        .await;
    // An operator closes it during an incident, as `stampede-service campaign close` does.
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    store().await.admin(&id, AdminAction::Close).await.unwrap();
    let job = runner_jobs_of(&c, &name).await;
    let (code, message) = run_like_the_job(&job, &service.url, &[]);
    finish_pod(&c, &job, code, &message).await;
    let s = c
        .status_until(&name, "gate passed, still closed by hand", |s| {
            has(s, "LoadTestsPassed", "True") && s.closed_by == [ClosedBy::Manual]
        })
        .await;
    assert_eq!(s.phase, Some(Phase::Closed));
    c.events_until(&name, &["GateOpened"]).await;
    // More reconciles (a spec change, then resyncs) leave the close alone.
    c.patch_spec(&name, json!({ "alerts": { "p95LatencyMs": 70 } }))
        .await
        .unwrap();
    let generation = c.campaigns().get(&name).await.unwrap().metadata.generation;
    c.status_until(&name, "new generation observed", |s| {
        s.observed_generation == generation
    })
    .await;
    let snap = snapshot(&c.id(&name)).await.unwrap();
    assert!(snap.closed && !snap.gate_closed, "{snap:?}");
    assert_eq!(
        issue(&service.url, &name, "during-the-incident").await,
        (409, Some("closed".to_owned()))
    );
    // Reopening by hand is what opens it.
    store().await.admin(&id, AdminAction::Reopen).await.unwrap();
    c.status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    assert_eq!(issue(&service.url, &name, "after").await.0, 201);
    op.stop().await;
}
