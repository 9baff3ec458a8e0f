//! One delivery: decode a read's entries, hand them all to the producer at once, and remove
//! from the outbox exactly what Kafka acknowledged; the deliveries under way, and the
//! relay's producer.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use stampede_core::Error;
use stampede_core::ids::CampaignId;
use stampede_core::issuance::{dead_letter_topic, topic};
use stampede_core::kafka::kafka;
use stampede_core::message::KafkaRecord;
use stampede_core::store::outbox::{Outbox, OutboxBatch, OutboxEntry};

use super::{MAX_IN_FLIGHT, Relay, RelayConfig, Unacked};
use crate::close::drop_on_own_thread;
use crate::metrics::PipelineMetrics;
use crate::writer::dead_letter;

/// How long a message may wait for room in a full producer queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The relay's idempotent producer. Topics are provisioned with their partition count; on
/// a broker that allows auto-creation, a metadata probe or a late send for a missing (or
/// just deleted) topic would otherwise create it with the broker's defaults.
pub(super) fn new_producer(config: &RelayConfig) -> Result<FutureProducer, Error> {
    config
        .kafka
        .producer(config.linger_ms)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(kafka)
}

impl Relay {
    /// Replaces a producer that is stuck for good ([`crate::close::why_renew`]; `timed_out`:
    /// a delivery had a message undelivered for the whole message timeout). What it had not
    /// delivered stays pending in the outbox and is read again. The old one is let go of on
    /// a thread of its own (its purge and close may wait on the broker), not waited for.
    pub(super) fn renew_producer_if_stuck(&mut self, timed_out: bool) -> Result<(), Error> {
        let built = self.producer_built;
        let Some(why) = crate::close::why_renew(&self.producer, built, timed_out) else {
            return Ok(());
        };
        tracing::warn!("{why}; building a new kafka producer");
        let old = std::mem::replace(&mut self.producer, new_producer(&self.config)?);
        self.producer_built = Instant::now();
        self.metrics.relay_producer_renewals.inc();
        tokio::spawn(drop_on_own_thread(old, "relay-close"));
        Ok(())
    }

    /// Starts delivering `batches` in the background, keeping at most `MAX_IN_FLIGHT`
    /// deliveries under way: reading the next batch overlaps waiting for Kafka's acks.
    pub(super) async fn deliver(&mut self, batches: Vec<OutboxBatch>) -> Result<(), Error> {
        if batches.iter().all(|b| b.entries.is_empty()) {
            return Ok(());
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.reap_oldest().await?;
        }
        let batches = (batches.into_iter())
            .map(|b| {
                let as_one = self.formats.batches(&topic_of(&b.campaign));
                (b, as_one)
            })
            .collect();
        let task = tokio::spawn(deliver(
            self.producer.clone(),
            self.outbox.clone(),
            self.metrics.clone(),
            batches,
        ));
        self.in_flight.push_back(task);
        Ok(())
    }

    /// Waits for the oldest delivery and books its outcome.
    pub(super) async fn reap_oldest(&mut self) -> Result<(), Error> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcomes = task
            .await
            .map_err(|e| Error::Kafka(format!("delivery task: {e}")))??;
        if outcomes.iter().any(|o| o.failed > 0) {
            self.renew_producer_if_stuck(outcomes.iter().any(|o| o.timed_out))?;
        }
        for o in outcomes {
            let Some(lane) = CampaignId::parse_stored(&o.campaign)
                .ok()
                .and_then(|c| self.lanes.get_mut(&c))
            else {
                continue;
            };
            if o.failed > 0 {
                lane.failures += 1;
                lane.reread = true;
                lane.resume_at =
                    Instant::now() + Duration::from_millis(250 << lane.failures.min(7));
            } else {
                lane.failures = 0;
            }
        }
        Ok(())
    }

    /// Books every finished delivery; with `all`, waits for the unfinished ones too.
    pub(super) async fn reap(&mut self, all: bool) -> Result<(), Error> {
        while self
            .in_flight
            .front()
            .is_some_and(|t| all || t.is_finished())
        {
            self.reap_oldest().await?;
        }
        Ok(())
    }
}

/// Produces every entry of every stream at once, then removes from each stream what Kafka
/// acknowledged: an entry once Kafka has every message it makes (a batch entry makes one,
/// or one per coupon where its batch flag says not as one; if one fails the whole entry is
/// sent again, and the writer keeps one row per user). Returns, per campaign, how many
/// issuances Kafka did not acknowledge and whether any of them timed out.
pub(super) async fn deliver(
    producer: FutureProducer,
    mut outbox: Outbox,
    metrics: PipelineMetrics,
    batches: Vec<(OutboxBatch, bool)>,
) -> Result<Vec<Unacked>, Error> {
    // Per batch: the entries Kafka has whole, the issuances it acknowledged, and the
    // campaign's outcome.
    let mut done: Vec<Vec<String>> = vec![Vec::new(); batches.len()];
    let mut produced = vec![0u64; batches.len()];
    let mut outcomes: Vec<Unacked> = Vec::with_capacity(batches.len());
    let mut sent = Vec::new();
    for (i, (batch, as_one)) in batches.into_iter().enumerate() {
        let entries = batch.entries;
        let queued = enqueue(&producer, &batch.campaign, entries, as_one).await;
        sent.extend(queued.into_iter().map(|s| (i, s)));
        outcomes.push(Unacked {
            campaign: batch.campaign,
            ..Unacked::default()
        });
    }
    // Deliveries are reported in the order they were enqueued (per partition), so awaiting
    // them in turn costs no more than one wake-up per batch.
    for (i, entry) in sent {
        let messages = entry.messages;
        let (issuances, message_count) =
            (messages.iter().map(|m| m.1).sum::<u64>(), messages.len());
        let (unacked, error) = acknowledged(messages).await;
        let o = &mut outcomes[i];
        o.timed_out |= error.as_ref().is_some_and(crate::close::is_timeout);
        if let Some(e) = error.filter(|_| o.failed == 0) {
            tracing::warn!(error = %e, campaign = %o.campaign, "produce failed; entries stay pending");
        }
        if unacked == 0 {
            done[i].push(entry.id);
            if entry.dead_letter {
                let letters = &metrics.dead_lettered;
                letters.with_label_values(&[&topic_of(&o.campaign)]).inc();
            } else {
                produced[i] += issuances;
                metrics.relay_messages.inc_by(message_count as u64);
            }
        }
        o.failed += unacked;
    }
    for ((o, done), produced) in outcomes.iter().zip(done).zip(produced) {
        outbox.remove(&o.campaign, &done).await?;
        metrics
            .relay_produced
            .with_label_values(&[stampede_core::ids::campaign_of(&o.campaign)])
            .inc_by(produced);
        metrics.relay_produce_errors.inc_by(o.failed);
    }
    Ok(outcomes)
}

/// An outbox entry handed to the producer.
struct Enqueued {
    /// The entry's id.
    id: String,
    /// Its messages, each with the issuances it holds (a dead letter counts as one).
    messages: Vec<(Sent, u64)>,
    /// Whether it went to the dead-letter topic (malformed) instead of the campaign's.
    dead_letter: bool,
}

/// A message handed to the producer: its delivery report to come, or already known.
enum Sent {
    Queued(DeliveryFuture),
    Done(Result<(), KafkaError>),
}

/// Waits for the delivery reports of an entry's messages (each with the issuances it
/// holds): how many issuances Kafka did not acknowledge, and the first error.
async fn acknowledged(messages: Vec<(Sent, u64)>) -> (u64, Option<KafkaError>) {
    let (mut unacked, mut first) = (0, None);
    for (message, issuances) in messages {
        let result = match message {
            Sent::Queued(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(KafkaError::Canceled),
            },
            Sent::Done(result) => result,
        };
        if let Err(e) = result {
            unacked += issuances;
            first.get_or_insert(e);
        }
    }
    (unacked, first)
}

/// The topic `campaign`'s outbox delivers to (a sharded campaign's buckets deliver to the
/// campaign's).
pub(super) fn topic_of(campaign: &str) -> String {
    topic(&topic_owner(campaign))
}

/// The campaign whose topics `campaign`'s outbox delivers to: itself, or a bucket's campaign.
fn topic_owner(campaign: &str) -> String {
    CampaignId::parse_stored(campaign)
        .map_or_else(|_| campaign.to_owned(), |c| c.campaign().to_owned())
}

/// The reason a malformed outbox entry's dead letter gives.
const MALFORMED_ENTRY: &str = "malformed_outbox_entry";

/// Hands every message of every entry of `campaign`'s outbox to the producer, to its topic
/// ([`topic_of`]); a batch entry as one message with `as_one`. A malformed entry (a batch
/// entry with one malformed coupon included) goes whole to the campaign's dead-letter topic
/// instead, and like any other leaves the outbox only once Kafka has it.
async fn enqueue(
    producer: &FutureProducer,
    campaign: &str,
    entries: Vec<OutboxEntry>,
    as_one: bool,
) -> Vec<Enqueued> {
    let topic = topic_of(campaign);
    let mut sent = Vec::with_capacity(entries.len());
    for mut e in entries {
        if e.fields.is_empty() {
            // Deleted while it was pending (another relay delivered it): only to remove.
            let (id, messages, dead_letter) = (e.id, Vec::new(), false);
            sent.push(Enqueued {
                id,
                messages,
                dead_letter,
            });
            continue;
        }
        let records = match KafkaRecord::all_from_entry(&mut e.fields, as_one) {
            Ok(records) => records,
            Err(err) => {
                // Only something other than the issue script could write this: kept out of
                // the campaign's topic, and out of the way, but not lost.
                tracing::error!(campaign, id = %e.id, error = %err, "dead-lettering malformed outbox entry");
                let letter = dead_letter(campaign, &e);
                let source = format!("outbox {campaign}/{}", e.id);
                let message = FutureRecord::to(&letter.0)
                    .key(e.id.as_bytes())
                    .payload(letter.1.as_slice())
                    .headers(dead_letter::headers(MALFORMED_ENTRY, &source));
                let messages = vec![(send(producer, message).await, 1)];
                let (id, dead_letter) = (e.id, true);
                sent.push(Enqueued {
                    id,
                    messages,
                    dead_letter,
                });
                continue;
            }
        };
        let mut messages = Vec::with_capacity(records.len());
        for record in &records {
            // Unkeyed: the writer reads the user from the payload, and a batch message's
            // many users have no one partition. Without a key the producer keeps a linger's
            // messages on one partition (`sticky.partitioning.linger.ms`): one produce
            // request per linger instead of one per partition, about half the broker's CPU
            // per issuance (docs/benchmarks.md).
            let message = FutureRecord::to(&topic).payload(record.payload.as_slice());
            messages.push((send(producer, message).await, record.issuances));
        }
        let (id, dead_letter) = (e.id, false);
        sent.push(Enqueued {
            id,
            messages,
            dead_letter,
        });
    }
    sent
}

/// A malformed entry's dead letter: its campaign's dead-letter topic, and the entry as it
/// stands, `{"campaign", "id", "fields": [[field, value], …]}` (as text; bytes that are not
/// UTF-8 replaced).
fn dead_letter(campaign: &str, e: &OutboxEntry) -> (String, Vec<u8>) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let fields: Vec<[String; 2]> = e.fields.iter().map(|(k, v)| [text(k), text(v)]).collect();
    let body = serde_json::json!({ "campaign": campaign, "id": e.id, "fields": fields });
    let topic = dead_letter_topic(&topic_owner(campaign));
    (
        topic,
        serde_json::to_vec(&body).expect("JSON values serialise"),
    )
}

/// Hands one message to the producer, waiting for room in a full queue as `send` does.
async fn send(producer: &FutureProducer, message: FutureRecord<'_, [u8], [u8]>) -> Sent {
    match producer.send_result(message) {
        Ok(delivery) => Sent::Queued(delivery),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), message)) => {
            let delivered = producer.send(message, QUEUE_TIMEOUT).await;
            Sent::Done(delivered.map(|_| ()).map_err(|(e, _)| e))
        }
        Err((e, _)) => Sent::Done(Err(e)),
    }
}

/// Whether Kafka knows `name` (metadata calls block, so they run on the blocking pool).
pub(super) async fn topic_exists(producer: &FutureProducer, name: &str) -> bool {
    let (producer, name) = (producer.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&name), Duration::from_secs(5))
            .is_ok_and(|md| {
                md.topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .unwrap_or(false)
}
