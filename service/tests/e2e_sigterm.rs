//! SIGTERM to the real `stampede-service serve` binary (relay in-process) under a stream of
//! issue requests: every request is answered or refused before the service took it on,
//! every coupon it issued has an answer and is in the outbox or in Kafka, and the process
//! exits within seconds. Needs the stack's Kafka (`scripts/stack up`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ledger::{issued, read_topic};
use common::pipeline::{provision, store};
use common::role::service_command;
use common::stack::{drop_topics, stack_kafka};
use common::{
    Reaped, RedisServer, eventually, exit_within, free_port, issuance_counts, sigterm, token,
    unique,
};
use stampede_core::issuance::topic;

/// Clients issuing at once; each stops at its first connection error.
const CLIENTS: usize = 16;
/// Coupons issued before the signal: it must land mid-stream.
const BEFORE_SIGNAL: usize = 300;

/// What one request got: a status and, for a new coupon, its seq; or a transport error.
type Outcome = Result<(u16, Option<u64>), String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sigtermed_under_load_answers_what_it_took_and_exits_promptly() {
    let redis = RedisServer::start().await;
    let (brokers, campaign) = (stack_kafka(), unique("sigterm"));
    provision(&store(&redis.url()).await, &brokers, &campaign, 1 << 30, 2).await;
    let _topics = Topics(brokers.clone(), campaign.clone());
    let (mut child, base) = serve(&redis, &brokers);
    let outcomes: Arc<Mutex<HashMap<String, Outcome>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| tokio::spawn(client(k, base.clone(), campaign.clone(), outcomes.clone())))
        .collect();
    // Mid-stream and mid-relay: enough coupons issued, and the relay has moved some on.
    eventually(
        "coupons issued and relayed",
        Duration::from_secs(60),
        || async {
            let (issued, _, outbox) = issuance_counts(&redis, &campaign).await;
            let n = created(&outcomes.lock().unwrap()).len();
            (n >= BEFORE_SIGNAL && outbox < issued).then_some(())
        },
    )
    .await;
    let before = created(&outcomes.lock().unwrap()).len();
    let sent = Instant::now();
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(20)).await;
    let took = sent.elapsed();
    for c in clients {
        c.await.unwrap();
    }
    assert!(status.success(), "graceful exit, got {status}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    let outcomes = outcomes.lock().unwrap().clone();
    let (n, coupons) = (outcomes.len(), created(&outcomes).len());
    eprintln!("{n} requests, {coupons} coupons; exited {took:?} after SIGTERM");
    assert!(
        coupons > before,
        "requests in flight at SIGTERM were answered"
    );
    every_request_answered_or_refused_unaccepted(&redis, &campaign, &outcomes).await;
    every_coupon_in_outbox_or_kafka(&redis, &brokers, &campaign, &created(&outcomes)).await;
}

/// Starts `stampede-service serve` on free ports; waits until the API listens.
fn serve(redis: &RedisServer, brokers: &str) -> (Reaped, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = service_command()
        .args(["serve", "--listen", &listen, "--relay-consumer", "sigterm"])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .env("STAMPEDE_REDIS_URL", redis.url())
        .env("STAMPEDE_REDIS_TIMEOUT_MS", "1000")
        .env("STAMPEDE_KAFKA_BROKERS", brokers)
        .stdout(Stdio::null())
        .spawn()
        .map(Reaped)
        .expect("starting stampede-service serve");
    let base = format!("http://{listen}");
    let start = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, base)
}

/// Issues to fresh users `c<k>-<i>` one after another until the first transport error.
async fn client(
    k: usize,
    base: String,
    campaign: String,
    out: Arc<Mutex<HashMap<String, Outcome>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{base}/v1/campaigns/{campaign}/issue");
    for i in 0.. {
        let user = format!("c{k}-{i}");
        let body = serde_json::json!({ "userId": user });
        let outcome = match http
            .post(&url)
            .bearer_auth(token(&user))
            .json(&body)
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                Ok((status, v["seq"].as_u64()))
            }
            Err(e) => Err(format!("{e:?}")),
        };
        let stop = outcome.is_err();
        out.lock().unwrap().insert(user, outcome);
        if stop {
            return;
        }
    }
}

/// Users that got a new coupon, with its seq.
fn created(outcomes: &HashMap<String, Outcome>) -> HashMap<String, u64> {
    outcomes
        .iter()
        .filter_map(|(u, o)| match o {
            Ok((201, Some(seq))) => Some((u.clone(), *seq)),
            _ => None,
        })
        .collect()
}

/// Every answer is a coupon or a clean refusal; Redis issued a coupon to exactly the users
/// that were answered 201, with the seq they were told: a request that ended in a
/// transport error was never taken on.
async fn every_request_answered_or_refused_unaccepted(
    redis: &RedisServer,
    campaign: &str,
    outcomes: &HashMap<String, Outcome>,
) {
    for (user, o) in outcomes {
        if let Ok((status, _)) = o {
            assert!([201, 409, 410, 503].contains(status), "{user}: {status}");
        }
    }
    let errors = outcomes.values().filter(|o| o.is_err()).count();
    assert!(errors > 0, "clients saw the service go away");
    let in_redis: HashMap<String, u64> = issued(redis, campaign)
        .await
        .into_iter()
        .map(|(seq, (user, _))| (user, seq))
        .collect();
    let answered = created(outcomes);
    for (user, seq) in &in_redis {
        assert_eq!(
            answered.get(user),
            Some(seq),
            "{user} was issued seq {seq} but got {:?}",
            outcomes.get(user)
        );
    }
    assert_eq!(
        in_redis.len(),
        answered.len(),
        "answered 201 but not in Redis"
    );
}

/// Every issued seq is still in the outbox or was produced to Kafka (the relay ran).
async fn every_coupon_in_outbox_or_kafka(
    redis: &RedisServer,
    brokers: &str,
    campaign: &str,
    created: &HashMap<String, u64>,
) {
    let mut seen: BTreeSet<u64> = common::outbox_issuances(redis, campaign)
        .await
        .iter()
        .map(|i| i.seq)
        .collect();
    let kafka: Vec<u64> = read_topic(brokers, &topic(campaign))
        .await
        .iter()
        .flat_map(|v| stampede_core::message::decode(v).unwrap())
        .map(|i| i.seq)
        .collect();
    assert!(!kafka.is_empty(), "the in-process relay produced to Kafka");
    seen.extend(kafka);
    let lost: Vec<u64> = created
        .values()
        .filter(|s| !seen.contains(s))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "issued but in neither outbox nor Kafka: {lost:?}"
    );
}

/// Deletes the campaign's topics when the test ends, however it ends.
struct Topics(String, String);

impl Drop for Topics {
    fn drop(&mut self) {
        drop_topics(&self.0, &self.1);
    }
}
