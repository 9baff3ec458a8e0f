//! No dead queries: the service (with its relay), the writer and the operator run for
//! real and see traffic (issues, sell-out, a poison message, an invalid campaign, Redis
//! going away); every `stampede_*` metric any alert rule or dashboard queries must then be
//! in their /metrics.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Parser;
use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use stampede_operator::alerts::rule_groups;
use stampede_operator::crd::Phase;
use stampede_operator::validate::validate;
use stampede_service::cli::{Cli, run};
use tokio_util::sync::CancellationToken;

/// Runs `stampede-service ARGS` in-process (the real CLI) until the token fires.
fn role(args: &[&str], stop: &CancellationToken) {
    let cli = Cli::parse_from(std::iter::once("stampede-service").chain(args.iter().copied()));
    tokio::spawn(run(cli, stop.clone()));
}

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Metric names present in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// `stampede_*` names in a query.
fn queried(expr: &str, into: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("stampede_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // Skip label values and names that merely contain the prefix (e.g. job names).
        let before = start.checked_sub(1).map(|b| bytes[b]);
        if !matches!(before, Some(b'"' | b'.' | b'-' | b'_'))
            && !matches!(bytes.get(end), Some(b'"'))
        {
            into.insert(expr[start..end].to_owned());
        }
        i = end;
    }
}

fn walk(v: &serde_json::Value, into: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        queried(s, into)
                    }
                    _ => walk(x, into),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, into)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_rule_or_dashboard_queries_is_exported() {
    let wanted = queried_by_rules_and_dashboards();

    // The processes, with traffic that makes each labelled metric appear.
    let mut redis = RedisServer::start().await;
    let c = Cluster::start().await;
    let mut defaults = stack_defaults();
    defaults.redis_url = redis.url();
    let op = Operator::start_with(&c.cp.kubeconfig, defaults);
    let name = unique("metrics");
    let id = c.id(&name);
    let _forget = Forget(id.clone());
    a_good_and_a_bad_campaign(&c, &name).await;
    let stop = CancellationToken::new();
    // Its Redis is this test's own; its topics are the stack's.
    let _forget_room = Forget(format!("{name}-room"));
    room_campaign(&format!("{name}-room"), &redis.url(), &stop).await;
    let ports = [free_port(), free_port(), free_port()];
    service_and_writer(&redis.url(), (&name, &id), ports, &stop);
    let svc = format!("http://127.0.0.1:{}", ports[0]);
    let svc_ops = format!("http://127.0.0.1:{}", ports[1]);
    let writer_metrics = format!("http://127.0.0.1:{}/metrics", ports[2]);
    let http = traffic(&svc, &svc_ops, (&name, &id), &writer_metrics).await;
    // Redis goes away: issue calls fail and are counted (for a campaign not sold out:
    // a sold-out one is still answered from memory).
    redis.stop();
    let r = http
        .post(format!("{svc}/v1/campaigns/{name}-other/issue"))
        .json(&serde_json::json!({ "userId": "late" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);

    let mut have = exported(&scrape(&format!("{svc_ops}/metrics")).await);
    have.extend(exported(&scrape(&writer_metrics).await));
    have.extend(exported(&op.get("/metrics").await.1));
    let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {have:?}"
    );
    stop.cancel();
    op.stop().await;
}

/// What the example's alert rules and the dashboards (and their alerting rules) query.
fn queried_by_rules_and_dashboards() -> BTreeSet<String> {
    let example: stampede_operator::crd::CouponCampaign =
        serde_yaml::from_str(include_str!("../../examples/campaign.yaml")).unwrap();
    let plan = validate(&example, &stack_defaults()).unwrap();
    let mut wanted = BTreeSet::new();
    walk(&rule_groups(&plan), &mut wanted);
    let dashboards = repo().join("dashboards");
    let mut files = 0;
    for entry in std::fs::read_dir(&dashboards).unwrap().flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let doc: Option<serde_json::Value> = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).ok(),
            _ => None,
        };
        if let Some(doc) = doc {
            walk(&doc, &mut wanted);
            files += 1;
        }
    }
    for entry in std::fs::read_dir(dashboards.join("alerting"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Ok(doc) = serde_yaml::from_str::<serde_json::Value>(&text) {
            walk(&doc, &mut wanted);
            files += 1;
        }
    }
    assert!(
        files >= 2,
        "dashboards/ has the campaign and operator dashboards"
    );
    assert!(wanted.len() >= 15, "{wanted:?}");
    wanted
}

/// `name` provisioned, and `bad` Failed (an invalid spec is counted).
async fn a_good_and_a_bad_campaign(c: &Cluster, name: &str) {
    c.create(name, "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\nspec: {stock: 3, issuer: {minReplicas: 1}}\n")
        .await
        .unwrap();
    c.create("bad", "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\nspec: {stock: 3, writer: {resources: {limits: {cpu: lots}}}}\n")
        .await
        .unwrap();
    c.status_until("bad", "Failed", |s| s.phase == Some(Phase::Failed))
        .await;
    c.status_until(name, "provisioned", |s| has(s, "RedisProvisioned", "True"))
        .await;
}

/// The service (with its relay) serving campaign `name` (id `id`) as its issuer pods do,
/// and a campaign `<name>-other` that Redis does not hold, and the writer of its topic,
/// in-process, on `[API, service metrics, writer metrics]` ports.
fn service_and_writer(
    redis_url: &str,
    (name, id): (&str, &str),
    ports: [u16; 3],
    stop: &CancellationToken,
) {
    let kafka = stack_defaults().kafka_brokers;
    let db = stack_defaults().database_url;
    let topic = format!("stampede.{id}");
    let group = format!("metrics-test-{name}");
    let served = format!("{name}={id},{name}-other,{name}-room");
    let listen = format!("127.0.0.1:{}", ports[0]);
    let svc_metrics = format!("127.0.0.1:{}", ports[1]);
    role(
        &[
            "serve",
            "--listen",
            &listen,
            "--metrics-listen",
            &svc_metrics,
            "--redis-url",
            redis_url,
            "--kafka-brokers",
            &kafka,
            "--relay-consumer",
            "metrics-test",
            "--campaigns",
            &served,
            // What is measured here is the metrics, not who asks (tests/auth.rs in the
            // service covers tokens).
            "--auth",
            "none",
            // a test key: the room's tokens are not what is measured here
            "--waiting-room-key",
            "metrics-test-waiting-room-key-0123456789",
        ],
        stop,
    );
    let metrics_listen = format!("127.0.0.1:{}", ports[2]);
    role(
        &[
            "writer",
            "--metrics-listen",
            &metrics_listen,
            "--redis-url",
            redis_url,
            "--kafka-brokers",
            &kafka,
            "--database-url",
            &db,
            "--topics",
            &topic,
            "--group",
            &group,
            "--audit-interval-ms",
            "200",
            "--batch-linger-ms",
            "5",
        ],
        stop,
    );
}

/// Issues past the stock, and a poison message the writer dead-letters; returns once the
/// writer's metrics show rows written and the poison dead-lettered.
/// A campaign with a waiting room (admin CLI, in-process), for the room's series.
async fn room_campaign(room: &str, redis_url: &str, stop: &CancellationToken) {
    let kafka = stack_defaults().kafka_brokers;
    let create = [
        "stampede-service",
        "campaign",
        "create",
        "--id",
        room,
        "--stock",
        "5",
    ];
    let rest = [
        "--waiting-room",
        "--redis-url",
        redis_url,
        "--kafka-brokers",
        &kafka,
    ];
    let cli = Cli::parse_from(create.into_iter().chain(rest));
    run(cli, stop.clone()).await.expect("the room campaign");
}

/// One user joins the waiting room: its gauges and counters appear.
async fn join_the_room(http: &reqwest::Client, svc: &str, name: &str) {
    let joined = http
        .post(format!("{svc}/v1/campaigns/{name}-room/queue"))
        .json(&serde_json::json!({ "userId": "q1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status().as_u16(), 201, "{:?}", joined.text().await);
}

async fn traffic(
    svc: &str,
    svc_ops: &str,
    (name, id): (&str, &str),
    writer_metrics: &str,
) -> reqwest::Client {
    let http = reqwest::Client::new();
    eventually("service ready", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), format!("{svc_ops}/readyz"));
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    // Four users for three coupons: issued, sold out, then sold out from memory.
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        http.post(format!("{svc}/v1/campaigns/{name}/issue"))
            .json(&serde_json::json!({ "userId": u }))
            .send()
            .await
            .unwrap();
    }
    join_the_room(&http, svc, name).await;
    // A message the writer cannot decode goes to the dead-letter topic.
    let kafka = stack_defaults().kafka_brokers;
    let producer: FutureProducer = stampede_operator_kafka(&kafka).create().unwrap();
    producer
        .send(
            FutureRecord::to(&format!("stampede.{id}"))
                .key("poison")
                .payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    eventually(
        "writer wrote rows and dead-lettered the poison",
        Duration::from_secs(60),
        || {
            let url = writer_metrics.to_owned();
            async move {
                let text = reqwest::get(url).await.ok()?.text().await.ok()?;
                let names = exported(&text);
                (names.contains("stampede_writer_rows_total")
                    && names.contains("stampede_dead_lettered_total")
                    && names.contains("stampede_unpersisted_issuances")
                    && names.contains("stampede_writer_consumer_lag"))
                .then_some(())
            }
        },
    )
    .await;
    http
}

fn stampede_operator_kafka(brokers: &str) -> rdkafka::ClientConfig {
    stampede_core::kafka::KafkaConfig::with_env_security(brokers)
        .unwrap()
        .producer(0)
}
