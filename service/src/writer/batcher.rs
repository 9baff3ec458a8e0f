//! Gathers Kafka messages into batches on a task of its own, so the next batch fills while
//! the database writes the ones before it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use stampede_core::issuance::Issuance;
use stampede_core::message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WriterConsumer;

/// A message as read: what it holds, decoded, or why it holds nothing that can be stored.
pub(super) struct Read {
    /// The message, for its offset (and the dead-letter topic).
    pub message: OwnedMessage,
    /// Its issuances (one, or a batch message's several), taken when they are written.
    pub issuances: Result<Vec<Issuance>, String>,
}

impl Read {
    fn of(message: OwnedMessage) -> Self {
        let issuances = message::decode(message.payload().unwrap_or_default());
        Self { message, issuances }
    }

    /// The rows it counts for in a batch (a poison message: one).
    fn rows(&self) -> usize {
        self.issuances.as_ref().map_or(1, Vec::len)
    }
}

/// Reads `consumer` into batches of about `rows` rows (a batch message is not split).
pub(super) struct Batcher {
    /// The writer's consumer (shared with the lag reporter).
    pub consumer: Arc<WriterConsumer>,
    /// A batch is handed on when it holds this many rows…
    pub rows: usize,
    /// …or when its first message has waited this long.
    pub linger: Duration,
    /// Ends the reading; a batch being gathered is dropped uncommitted (it is replayed).
    pub shutdown: CancellationToken,
}

impl Batcher {
    /// Hands batches to `out` in the order they were read until shutdown, or until `out`
    /// is closed. Batches are never dropped halfway through the writer's loop: a message
    /// received here either reaches `out` or nothing after it is committed.
    pub async fn run(self, out: mpsc::Sender<Vec<Read>>) {
        while let Some(batch) = self.next_batch().await {
            if batch.is_empty() {
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                sent = out.send(batch) => if sent.is_err() { return },
            }
        }
    }

    /// Waits for a first message, then gathers more until the batch is full or has lingered.
    async fn next_batch(&self) -> Option<Vec<Read>> {
        let first = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => Read::of(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                return Some(Vec::new());
            }
        };
        let mut rows = first.rows();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.linger;
        while rows < self.rows {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        let read = Read::of(m.detach());
                        rows += read.rows();
                        batch.push(read);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka receive failed");
                        break;
                    }
                },
            }
        }
        Some(batch)
    }
}
