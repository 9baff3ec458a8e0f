//! How `serve` stops: told to, it first drains (unready, still answering) for its drain
//! delay, then closes; and it does not go on issuing when its in-process relay cannot run:
//! a producer Kafka refuses to build stops the whole process with the error, instead of
//! coupons piling up in an outbox nothing delivers while `/readyz` says ready. Fast: a
//! private Redis, no broker needed (the producer is refused before it connects).

mod common;

use std::time::Duration;

use common::pipeline::relay_config;
use common::{RedisServer, Service, config, setup_with};

#[tokio::test]
async fn serve_stops_with_the_error_when_its_relay_cannot_run() {
    let redis = RedisServer::start().await;
    let mut relay = relay_config(&redis.url(), "127.0.0.1:1", "refused");
    // librdkafka takes `linger.ms` up to 900 000 (the CLI refuses more; a config built in
    // code reaches the producer).
    relay.linger_ms = 900_001;
    let mut serve = config(&redis.url());
    serve.relay = Some(relay);
    let mut service = Service::start(serve).await;
    let outcome = tokio::time::timeout(Duration::from_secs(20), &mut service.task)
        .await
        .expect("serve went on without its relay")
        .unwrap();
    let error = outcome
        .expect_err("serve ended without an error")
        .to_string();
    assert!(error.contains("linger.ms"), "{error}");
}

#[tokio::test]
async fn told_to_stop_it_drains_unready_then_closes() {
    let delay = Duration::from_millis(1_500);
    let (_redis, mut svc, store) = setup_with(|c| c.drain_delay = delay).await;
    let c = common::id("draining");
    store.ensure_campaign(&c, 10, None).await.unwrap();
    assert_eq!(svc.ops_get("/readyz").await.0, 200);
    svc.shutdown.cancel();
    let (status, body) = svc.ops_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    // Connections still on their way are answered, not refused.
    let (status, body) = svc.issue("draining", "late-arrival").await;
    assert_eq!(status, 201, "{body}");
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut svc.task).await;
    stopped
        .expect("it closed after its drain delay")
        .unwrap()
        .unwrap();
}
