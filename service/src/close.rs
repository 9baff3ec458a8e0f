//! Letting go of a Kafka client without blocking the runtime: its close (a consumer leaving
//! its group, a producer purging what it still queues) may wait on a broker, or, for a
//! client librdkafka has wedged, never finish; and when a producer is stuck for good.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use stampede_core::kafka::MESSAGE_TIMEOUT;

/// Why an idempotent producer built at `built` should be replaced, `None` to keep it:
/// librdkafka's fatal state, which fails every later send (its sequence numbers could not
/// be reconciled: a broker restart with messages in flight can leave it so); or a message
/// of it that stayed undelivered for the whole message timeout (`timed_out`), on a producer
/// at least that old: after a broker restart an idempotent producer can stay
/// waiting for its producer id with the broker long back and no fatal error, while a new
/// one delivers at once (`scripts/drill kafka`). During an outage that lasts, this renews
/// it once per message timeout.
pub(crate) fn why_renew(
    producer: &FutureProducer,
    built: Instant,
    timed_out: bool,
) -> Option<String> {
    use rdkafka::producer::Producer;
    if let Some((code, reason)) = producer.client().fatal_error() {
        return Some(format!(
            "kafka producer in a fatal state ({code:?}: {reason})"
        ));
    }
    (timed_out && built.elapsed() >= MESSAGE_TIMEOUT).then(|| {
        format!("a message stayed undelivered for the whole message timeout ({MESSAGE_TIMEOUT:?})")
    })
}

/// Whether a delivery failed because the message stayed undelivered for the whole message
/// timeout.
pub(crate) fn is_timeout(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    )
}

/// How long a caller waits for a client to close.
pub(crate) const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Drops `client` on a thread of its own named `name`, waited for no longer than
/// [`CLOSE_LIMIT`]: a broker that does not answer must not keep a stopping role alive, and
/// a plain thread, unlike the runtime's blocking pool, does not hold up the process exit. A
/// close that never finishes leaves its thread behind.
pub(crate) async fn drop_on_own_thread<T: Send + 'static>(client: T, name: &str) {
    let (done, closed) = tokio::sync::oneshot::channel();
    let closing = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            drop(client);
            let _ = done.send(());
        });
    if let Err(e) = closing {
        tracing::warn!(error = %e, "cannot start the closing thread; leaving kafka as is");
        return;
    }
    if tokio::time::timeout(CLOSE_LIMIT, closed).await.is_err() {
        tracing::warn!(limit = ?CLOSE_LIMIT, name, "kafka client did not close in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_is_renewed_only_when_stuck_for_good() {
        let config = stampede_core::kafka::KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            security: None,
        };
        let producer: FutureProducer = config.producer(5).create().unwrap();
        let old = Instant::now().checked_sub(MESSAGE_TIMEOUT).unwrap();
        assert!(
            why_renew(&producer, old, true).is_some(),
            "timed out, old enough"
        );
        assert!(
            why_renew(&producer, old, false).is_none(),
            "a failure of another kind"
        );
        let young = Instant::now();
        assert!(
            why_renew(&producer, young, true).is_none(),
            "younger than one timeout"
        );
    }
}
