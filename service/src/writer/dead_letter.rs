//! The dead-letter topic `stampede-dlq.<c>`: where a message goes that the writer cannot
//! store (undecodable, refused by the database as data, a seq another user holds), with
//! headers `stampede-reason` and `stampede-source`. A letter counts as settled only once
//! Kafka acknowledged it; the writer commits nothing past a letter that was not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::retry::Retry;
use crate::close::drop_on_own_thread;
use crate::metrics::PipelineMetrics;
use stampede_core::Error;
use stampede_core::issuance::{campaign_of_topic, dead_letter_topic};
use stampede_core::kafka::{KafkaConfig, kafka};

/// The reason of a row whose seq another user already holds.
pub(super) const SEQ_CONFLICT: &str = "seq_conflict";
/// How long a send already under way may finish after shutdown before it is abandoned.
const SEND_GRACE: Duration = Duration::from_secs(2);

/// One message on its way to the dead-letter topic.
pub(super) struct Letter<'a> {
    topic: &'a str,
    key: Option<&'a str>,
    payload: &'a [u8],
    reason: &'a str,
    source: String,
}

impl<'a> Letter<'a> {
    /// `m`, as it was consumed, with why it cannot be stored.
    pub(super) fn of(m: &'a OwnedMessage, reason: &'a str) -> Self {
        Self {
            topic: m.topic(),
            key: m.key().and_then(|k| std::str::from_utf8(k).ok()),
            payload: m.payload().unwrap_or_default(),
            reason,
            source: format!("{}/{}@{}", m.topic(), m.partition(), m.offset()),
        }
    }

    /// One issuance of `m`, keyed by its user, with `payload` as value: `m`'s own, or, for a
    /// batch message, the issuance alone (the rest of the batch was stored).
    pub(super) fn of_one(
        m: &'a OwnedMessage,
        payload: &'a [u8],
        user: &'a str,
        reason: &'a str,
    ) -> Self {
        Self {
            key: Some(user),
            payload,
            ..Self::of(m, reason)
        }
    }
}

/// The producer of dead letters, replaced when it is stuck for good (as the relay's is).
pub(super) struct DeadLetters {
    producer: Mutex<(FutureProducer, Instant)>,
    kafka: KafkaConfig,
    metrics: PipelineMetrics,
}

impl DeadLetters {
    pub(super) fn new(kafka_config: &KafkaConfig, metrics: PipelineMetrics) -> Result<Self, Error> {
        let producer = kafka_config.producer(5).create().map_err(kafka)?;
        Ok(Self {
            producer: Mutex::new((producer, Instant::now())),
            kafka: kafka_config.clone(),
            metrics,
        })
    }

    /// The producer to send on now.
    fn producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Replaces the producer when a failed send (`timed_out`: its message stayed
    /// undelivered for the whole message timeout) shows it stuck for good: after a broker
    /// restart, every later letter would fail, no batch would settle and the writer would
    /// stop committing for good. The old one is let go of on a thread of its own.
    fn renew_if_stuck(&self, timed_out: bool) {
        let mut p = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(why) = crate::close::why_renew(&p.0, p.1, timed_out) else {
            return;
        };
        match self.kafka.producer(5).create() {
            Ok(new) => {
                tracing::warn!("{why}; building a new dead-letter producer");
                let old = std::mem::replace(&mut *p, (new, Instant::now()));
                tokio::spawn(drop_on_own_thread(old.0, "writer-dlq-close"));
            }
            Err(e) => tracing::warn!(error = %e, "{why}; building a new one failed"),
        }
    }

    /// Sends `letter` to its campaign's dead-letter topic, retrying until Kafka acknowledged
    /// it: true then, false when shutdown came first (the letter may or may not have
    /// arrived; the caller must not commit past it, so it is sent again after a replay).
    pub(super) async fn send(&self, letter: Letter<'_>, shutdown: &CancellationToken) -> bool {
        let campaign = campaign_of_topic(letter.topic).unwrap_or("unknown");
        let dlq_topic = dead_letter_topic(campaign);
        tracing::warn!(source = %letter.source, reason = %letter.reason, "dead-lettering message");
        let headers = headers(letter.reason, &letter.source);
        let mut retry = Retry::new("dead-letter produce");
        loop {
            let mut record = FutureRecord::to(&dlq_topic)
                .payload(letter.payload)
                .headers(headers.clone());
            if let Some(k) = letter.key {
                record = record.key(k);
            }
            let producer = self.producer();
            let sent = tokio::select! {
                r = producer.send(record, Duration::from_secs(5)) => r,
                _ = after_grace(shutdown) => break,
            };
            match sent {
                Ok(_) => {
                    retry.succeeded();
                    let m = &self.metrics.dead_lettered;
                    m.with_label_values(&[letter.topic]).inc();
                    return true;
                }
                Err((e, _)) => {
                    retry.failed(&format_args!("{e} (topic {dlq_topic})"));
                    self.renew_if_stuck(crate::close::is_timeout(&e));
                }
            }
            if !retry.wait(shutdown).await {
                break;
            }
        }
        tracing::warn!(source = %letter.source, "shutdown before the dead letter was acknowledged; it will be replayed");
        false
    }
}

/// A dead letter's headers: why it could not be stored, and where it came from.
pub(crate) fn headers(reason: &str, source: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "stampede-reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "stampede-source",
            value: Some(source),
        })
}

/// Completes [`SEND_GRACE`] after shutdown.
async fn after_grace(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(SEND_GRACE).await;
}
