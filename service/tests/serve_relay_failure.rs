//! `serve` does not go on issuing when its in-process relay cannot run: a producer Kafka
//! refuses to build stops the whole process with the error, instead of coupons piling up
//! in an outbox nothing delivers while `/readyz` says ready. Fast: a private Redis, no
//! broker needed (the producer is refused before it connects).

mod common;

use std::time::Duration;

use common::pipeline::relay_config;
use common::{RedisServer, Service, config};

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
