//! One delivery: decode a read's entries, produce them all to Kafka at once, and remove
//! from the outbox exactly what Kafka acknowledged.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use stampede_core::Error;
use stampede_core::issuance::{Issuance, topic};
use stampede_core::store::outbox::{Outbox, OutboxBatch};

use super::Unacked;
use crate::metrics::PipelineMetrics;

/// Produces every entry of every stream at once, then removes from each stream what Kafka
/// acknowledged. Returns, per campaign, how many entries Kafka did not acknowledge.
pub(super) async fn deliver(
    producer: FutureProducer,
    mut outbox: Outbox,
    metrics: PipelineMetrics,
    batches: Vec<OutboxBatch>,
) -> Result<Vec<Unacked>, Error> {
    let (sends, mut done) = decode(&batches);
    let results = join_all(sends.iter().map(|(_, _, issuance)| {
        let payload = issuance.to_json();
        let topic = topic(&issuance.campaign);
        let producer = &producer;
        async move {
            let record = FutureRecord::to(&topic)
                .key(&issuance.user_id)
                .payload(&payload);
            producer.send(record, Duration::from_secs(30)).await
        }
    }))
    .await;
    let mut failed = vec![0u64; batches.len()];
    for ((i, id, _), r) in sends.into_iter().zip(results) {
        match r {
            Ok(_) => done[i].push(id),
            Err((e, _)) => {
                if failed[i] == 0 {
                    tracing::warn!(error = %e, campaign = %batches[i].campaign, "produce failed; entries stay pending");
                }
                failed[i] += 1;
            }
        }
    }
    let mut outcomes = Vec::with_capacity(batches.len());
    for (i, batch) in batches.iter().enumerate() {
        outbox.remove(&batch.campaign, &done[i]).await?;
        metrics
            .relay_produced
            .with_label_values(&[batch.campaign.as_str()])
            .inc_by(done[i].len() as u64);
        metrics.relay_produce_errors.inc_by(failed[i]);
        outcomes.push((batch.campaign.clone(), failed[i]));
    }
    Ok(outcomes)
}

/// An issuance to send: the batch it came from, its stream entry id, the issuance.
type Outgoing = (usize, String, Issuance);

/// Decodes every entry; a malformed one is not sent but removed at once (returned among
/// the per-batch ids to remove).
fn decode(batches: &[OutboxBatch]) -> (Vec<Outgoing>, Vec<Vec<String>>) {
    let mut sends = Vec::new();
    let mut done: Vec<Vec<String>> = vec![Vec::new(); batches.len()];
    for (i, batch) in batches.iter().enumerate() {
        for e in &batch.entries {
            let fields = e.map.iter().filter_map(|(k, v)| match v {
                redis::Value::BulkString(b) => std::str::from_utf8(b).ok().map(|s| (k.as_str(), s)),
                _ => None,
            });
            match Issuance::from_stream_fields(fields) {
                Ok(issuance) => sends.push((i, e.id.clone(), issuance)),
                Err(err) => {
                    // Only something other than the issue script could write this; keep it
                    // out of Kafka and out of the way.
                    tracing::error!(campaign = %batch.campaign, id = %e.id, error = %err, "dropping malformed outbox entry");
                    done[i].push(e.id.clone());
                }
            }
        }
    }
    (sends, done)
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
