//! Gathers Kafka messages into batches on a task of its own, so the next batch fills while
//! the database writes the ones before it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WriterConsumer;

/// Reads `consumer` into batches of at most `rows` messages.
pub(super) struct Batcher {
    /// The writer's consumer (shared with the lag reporter).
    pub consumer: Arc<WriterConsumer>,
    /// A batch is handed on when it holds this many messages…
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
    pub async fn run(self, out: mpsc::Sender<Vec<OwnedMessage>>) {
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
    async fn next_batch(&self) -> Option<Vec<OwnedMessage>> {
        let first = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
        };
        let mut batch = Vec::with_capacity(self.rows);
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                return Some(batch);
            }
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        while batch.len() < self.rows {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                m = self.consumer.recv() => match m {
                    Ok(m) => batch.push(m.detach()),
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
