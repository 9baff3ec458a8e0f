//! The writer: consumes every campaign topic as one consumer group and writes batches to
//! PostgreSQL. Offsets are committed only after the database committed, so a crash
//! replays (harmlessly: the insert skips rows it already has) and never skips.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::PipelineMetrics;
use stampede_core::Error;
use stampede_core::db;
use stampede_core::issuance::{Issuance, campaign_of_topic, dead_letter_topic};
use stampede_core::kafka::{KafkaConfig, kafka};

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
}

/// Runs until `shutdown`. A batch being written when shutdown comes is finished first.
pub async fn run(
    config: WriterConfig,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let pool = db::connect(&config.database_url, 4).await?;
    let applied = db::migrate(&pool).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    let consumer: StreamConsumer = config
        .kafka
        .client()
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A writer that died is noticed in seconds, not the default 45 s, so its
        // partitions move to a live writer quickly.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("fetch.min.bytes", "1")
        .create()
        .map_err(kafka)?;
    // A regex subscription picks up campaigns created after the writer started.
    consumer.subscribe(&[&config.topics]).map_err(kafka)?;
    let consumer = Arc::new(consumer);
    let dlq: FutureProducer = config.kafka.producer(5).create().map_err(kafka)?;
    let lag = tokio::spawn(report_lag(
        consumer.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(group = %config.group, "writer running");
    let w = Writer {
        config,
        metrics,
        pool,
        consumer,
        dlq,
        shutdown,
    };
    let result = w.run().await;
    lag.abort();
    tracing::info!("writer stopped");
    result
}

struct Writer {
    config: WriterConfig,
    metrics: PipelineMetrics,
    pool: PgPool,
    consumer: Arc<StreamConsumer>,
    dlq: FutureProducer,
    shutdown: CancellationToken,
}

impl Writer {
    async fn run(&self) -> Result<(), Error> {
        while let Some(batch) = self.next_batch().await {
            if batch.is_empty() {
                continue;
            }
            let mut rows = Vec::with_capacity(batch.len());
            for m in &batch {
                match Issuance::from_json(m.payload().unwrap_or_default()) {
                    Ok(i) => rows.push(i),
                    Err(reason) => self.dead_letter(m, &reason).await,
                }
            }
            if !self.write(&rows).await {
                return Ok(()); // shut down mid-retry: nothing committed, all replays later
            }
            self.commit(&batch);
        }
        Ok(())
    }

    /// Waits for a first message, then gathers more until the batch is full or has lingered.
    async fn next_batch(&self) -> Option<Vec<OwnedMessage>> {
        let first = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
        };
        let mut batch = Vec::with_capacity(self.config.batch_rows);
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                return Some(batch);
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_linger;
        while batch.len() < self.config.batch_rows {
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

    /// Writes `rows`; false when shutdown came first (nothing is committed then, so the
    /// batch is replayed later). A batch the database refuses outright is written row by
    /// row, and only the rows it still refuses go to the dead-letter topic: one bad row
    /// must not hold the partition.
    async fn write(&self, rows: &[Issuance]) -> bool {
        if rows.is_empty() {
            return true;
        }
        match self.insert_retrying(rows).await {
            None => return false,
            Some(Ok(())) => return true,
            Some(Err(e)) => tracing::error!(error = %e, "batch refused; writing row by row"),
        }
        for row in rows {
            match self.insert_retrying(std::slice::from_ref(row)).await {
                None => return false,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let topic = stampede_core::issuance::topic(&row.campaign);
                    let reason = e.to_string();
                    self.send_dead_letter(
                        &topic,
                        Some(&row.user_id),
                        &row.to_json(),
                        &reason,
                        None,
                    )
                    .await;
                }
            }
        }
        true
    }

    /// Inserts `rows`, retrying transient failures with backoff until they succeed.
    /// `None` when shutdown came first; `Some(Err)` for an error retrying cannot fix.
    async fn insert_retrying(&self, rows: &[Issuance]) -> Option<Result<(), Error>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match db::insert_batch(&self.pool, rows).await {
                Ok(new) => {
                    self.record(rows, new);
                    return Some(Ok(()));
                }
                Err(e) if db::is_transient(&e) => {
                    self.metrics.writer_db_errors.inc();
                    tracing::warn!(error = %e, rows = rows.len(), ?backoff, "database unavailable; retrying");
                }
                Err(e) => {
                    self.metrics.writer_db_errors.inc();
                    return Some(Err(e));
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn record(&self, rows: &[Issuance], new: HashMap<String, u64>) {
        let m = &self.metrics;
        m.writer_batch_rows.observe(rows.len() as f64);
        let fresh: u64 = new.values().sum();
        m.writer_duplicates
            .inc_by((rows.len() as u64).saturating_sub(fresh));
        for (c, n) in &new {
            m.writer_rows.with_label_values(&[c]).inc_by(*n);
        }
        let now_ms = now_ms();
        for r in rows {
            m.issue_to_db
                .observe((now_ms - r.issued_at_ms).max(0) as f64 / 1000.0);
        }
    }

    /// Sends an undecodable message to its campaign's dead-letter topic with the reason.
    async fn dead_letter(&self, m: &OwnedMessage, reason: &str) {
        let source = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
        tracing::warn!(%source, %reason, "dead-lettering message");
        let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
        self.send_dead_letter(
            m.topic(),
            key,
            m.payload().unwrap_or_default(),
            reason,
            Some(&source),
        )
        .await;
    }

    async fn send_dead_letter(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        reason: &str,
        source: Option<&str>,
    ) {
        let campaign = campaign_of_topic(topic).unwrap_or("unknown");
        let dlq_topic = dead_letter_topic(campaign);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "stampede-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "stampede-source",
                value: Some(source.unwrap_or(topic)),
            });
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut record = FutureRecord::to(&dlq_topic)
                .payload(payload)
                .headers(headers.clone());
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.dlq.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err((e, _)) => {
                    tracing::warn!(error = %e, topic = %dlq_topic, "dead-letter produce failed; retrying");
                    if self.shutdown.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.metrics.dead_lettered.with_label_values(&[topic]).inc();
    }

    /// Commits, per partition, the offset after the last message of the batch.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in batch {
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

/// Publishes consumer lag per assigned partition every few seconds.
async fn report_lag(
    consumer: Arc<StreamConsumer>,
    metrics: PipelineMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let Ok(positions) = c.position() else {
                return out;
            };
            for e in positions.elements() {
                let Ok((_, high)) =
                    c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                else {
                    continue;
                };
                let pos = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => match c.committed_offsets(
                        {
                            let mut t = TopicPartitionList::new();
                            t.add_partition(e.topic(), e.partition());
                            t
                        },
                        Duration::from_secs(2),
                    ) {
                        Ok(t) => t
                            .elements()
                            .first()
                            .and_then(|x| x.offset().to_raw())
                            .filter(|o| *o >= 0)
                            .unwrap_or(0),
                        Err(_) => continue,
                    },
                };
                out.push((e.topic().to_owned(), e.partition(), (high - pos).max(0)));
            }
            out
        })
        .await
        .unwrap_or_default();
        for (t, p, lag) in lags {
            metrics
                .consumer_lag
                .with_label_values(&[&t, &p.to_string()])
                .set(lag);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
