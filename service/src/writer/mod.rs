//! The writer: consumes every campaign topic as one consumer group and writes batches to
//! PostgreSQL. Offsets are committed only after every message of the batch is settled (its
//! row committed in the database, or the message acknowledged by the dead-letter topic),
//! so a crash replays (harmlessly: the insert skips rows it already has) and never skips.
//! Up to `batches_in_flight` batches are written at once, each on its own database
//! connection (one PostgreSQL backend uses one core); offsets are still committed in the
//! order the batches were read, a batch only after every batch before it.
//!
//! The consumer lives for a session: one that stops being a settled member of its group
//! for the stall limit (`health`) ends the session, and the next starts with a new
//! consumer, which reads again what the old one had not committed.

mod batcher;
pub(crate) mod dead_letter;
mod health;
mod insert;
mod lag;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::close::drop_on_own_thread;
use crate::metrics::PipelineMetrics;
use batcher::{Batcher, Read};
use dead_letter::{DeadLetters, Letter};
use lag::WriterContext;
use stampede_core::Error;
use stampede_core::db;
use stampede_core::kafka::{KafkaConfig, kafka};
use stampede_core::message;

/// Every campaign's issuance topic (and not the dead-letter topics, `stampede-dlq.*`).
pub const ALL_CAMPAIGN_TOPICS: &str = "^stampede\\.[a-z0-9].*";

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Consumer group shared by every writer replica.
    pub group: String,
    /// Topics to consume: a name, or a regex when it starts with `^`.
    pub topics: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// A batch is written when it holds this many rows…
    pub batch_rows: usize,
    /// …or when its first message has waited this long.
    pub batch_linger: Duration,
    /// Batches written at once (at least 1).
    pub batches_in_flight: usize,
    /// A consumer that has not been a settled member of its group this long is replaced.
    pub stall: Duration,
    /// A database write running this long is ended by the server (`statement_timeout`) and
    /// written again; one still unanswered 5 s later is given up on a dropped connection
    /// (the server's node may have vanished mid-write).
    pub write_timeout: Duration,
}

type WriterConsumer = StreamConsumer<WriterContext>;

/// A batch being written, handed back with whether it was settled.
type Settling<'a> = std::pin::Pin<Box<dyn Future<Output = (Vec<Read>, bool)> + Send + 'a>>;

/// Runs until `shutdown`. A batch being written when shutdown comes is finished first, or
/// left uncommitted (replayed by the next owner of its partitions) when it cannot be.
pub async fn run(
    mut config: WriterConfig,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.batches_in_flight = config.batches_in_flight.max(1);
    // A connection per batch in flight (a refused batch's row-by-row retry reuses its
    // batch's turn), and never fewer than the four the writer always had.
    let connections = (config.batches_in_flight as u32).max(4);
    let limit = Some(config.write_timeout);
    let pool = db::connect_with(&config.database_url, connections, limit).await?;
    let applied = db::migrate(&pool).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    let dlq = DeadLetters::new(&config.kafka, metrics.clone())?;
    tracing::info!(group = %config.group, "writer running");
    let mut stall = config.stall;
    let result = loop {
        let consumer = Arc::new(consumer(&config, &metrics)?);
        let session = shutdown.child_token();
        let (stalled, result) =
            session_of(&config, &metrics, &pool, &dlq, &consumer, stall, &session).await;
        let settled = consumer.context().health.ever_settled();
        drop_on_own_thread(consumer, "writer-close").await;
        if result.is_err() || !stalled || shutdown.is_cancelled() {
            break result;
        }
        metrics.writer_consumer_rebuilds.inc();
        stall = health::next_limit(config.stall, stall, settled);
    };
    pool.close().await;
    // A letter still queued was abandoned and is not committed past: the purge is safe.
    drop_on_own_thread(dlq, "writer-close").await;
    tracing::info!("writer stopped");
    result
}

/// One consumer's session: reads and writes until `session` ends (shutdown, or the
/// consumer stalled for `stall`: then the first value is true).
async fn session_of(
    config: &WriterConfig,
    metrics: &PipelineMetrics,
    pool: &PgPool,
    dlq: &DeadLetters,
    consumer: &Arc<WriterConsumer>,
    stall: Duration,
    session: &CancellationToken,
) -> (bool, Result<(), Error>) {
    let lag = tokio::spawn(lag::report_lag(
        consumer.clone(),
        metrics.consumer_lag.clone(),
        session.clone(),
    ));
    let health = consumer.context().health.watch(stall, session.clone());
    let w = Writer {
        config,
        metrics,
        pool,
        consumer: consumer.clone(),
        dlq,
        shutdown: session.clone(),
    };
    let (stalled, result) = tokio::join!(health, async {
        let r = w.run().await;
        session.cancel();
        r
    });
    // The lag reporter holds the consumer; it must let go before the consumer is closed.
    let _ = lag.await;
    (stalled, result)
}

fn consumer(config: &WriterConfig, metrics: &PipelineMetrics) -> Result<WriterConsumer, Error> {
    let consumer: WriterConsumer = config
        .kafka
        .client()
        .set("group.id", &config.group)
        // Says which message format this writer reads: relays send batch messages to a
        // topic only while all its consumers read them.
        .set("client.id", message::writer_client_id())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A writer that died is noticed in seconds, not the default 45 s, so its
        // partitions move to a live writer quickly.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("fetch.min.bytes", "1")
        // Read by the group membership's health check (only their `cgrp` part).
        .set("statistics.interval.ms", health::STATS_EVERY_MS)
        .create_with_context(WriterContext::new(metrics.consumer_lag.clone()))
        .map_err(kafka)?;
    // A regex subscription picks up campaigns created after the writer started.
    consumer.subscribe(&[&config.topics]).map_err(kafka)?;
    Ok(consumer)
}

struct Writer<'a> {
    config: &'a WriterConfig,
    metrics: &'a PipelineMetrics,
    pool: &'a PgPool,
    consumer: Arc<WriterConsumer>,
    dlq: &'a DeadLetters,
    /// The session's: ends at shutdown or when the consumer stalls.
    shutdown: CancellationToken,
}

impl Writer<'_> {
    async fn run(&self) -> Result<(), Error> {
        let (batches, mut read) = mpsc::channel(1);
        let batcher = tokio::spawn(
            Batcher {
                consumer: self.consumer.clone(),
                rows: self.config.batch_rows,
                linger: self.config.batch_linger,
                shutdown: self.shutdown.clone(),
            }
            .run(batches),
        );
        let in_flight = self.config.batches_in_flight;
        // Yields in the order the batches were read, whichever finished first.
        let mut writing: FuturesOrdered<Settling<'_>> = FuturesOrdered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                Some((batch, settled)) = writing.next(), if !writing.is_empty() => {
                    if !settled {
                        // Shut down before every message was settled: nothing from here on
                        // is committed, the next owner of these partitions replays it.
                        break;
                    }
                    self.commit(&batch);
                }
                batch = read.recv(), if reading && writing.len() < in_flight => match batch {
                    Some(batch) if !self.shutdown.is_cancelled() => {
                        writing.push_back(Box::pin(self.settled(batch)));
                    }
                    // Read but not started when shutdown came: replayed, like the rest.
                    _ => reading = false,
                },
                else => break,
            }
        }
        // The batcher holds the consumer, which must be let go of before it is closed.
        drop(read);
        let _ = batcher.await;
        Ok(())
    }

    /// [`Writer::settle`], handing the batch back for its commit.
    async fn settled(&self, mut batch: Vec<Read>) -> (Vec<Read>, bool) {
        let settled = self.settle(&mut batch).await;
        (batch, settled)
    }

    /// Puts every issuance of `batch` in PostgreSQL, or its message in the dead-letter topic;
    /// false when shutdown came first. Takes the issuances out of `batch`.
    async fn settle(&self, batch: &mut [Read]) -> bool {
        let (mut rows, mut sources) = (Vec::with_capacity(batch.len()), Vec::new());
        for read in batch.iter_mut() {
            match &mut read.issuances {
                Ok(issuances) => {
                    sources.extend(std::iter::repeat_n(&read.message, issuances.len()));
                    rows.append(issuances);
                }
                Err(reason) => {
                    let letter = Letter::of(&read.message, reason);
                    if !self.dlq.send(letter, &self.shutdown).await {
                        return false;
                    }
                }
            }
        }
        self.write(&rows, &sources).await
    }

    /// Commits, per partition, the offset after the last message of the batch.
    fn commit(&self, batch: &[Read]) {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for Read { message: m, .. } in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in next {
            if let Err(e) = tpl.add_partition_offset(t, p, Offset::Offset(o)) {
                tracing::warn!(error = %e, "bad offset");
            }
        }
        // Asynchronous: the rows are already committed, so waiting for the broker's answer
        // would only stall the next batch. A commit that is lost (crash, rebalance) makes
        // the next owner replay from the previous one: duplicates, which the insert skips.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}
