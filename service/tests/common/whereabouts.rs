//! Where a campaign's issuances stand on the way to PostgreSQL: for a failure message that
//! says where the missing rows stopped (the outbox, Kafka, or the writer's group).

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::pipeline::Fixture;

/// How long each Kafka query of the report may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

impl Fixture {
    /// One line per stage: the outbox (entries, pending for the relay), Kafka (each
    /// partition's high watermark against the writer group's committed offset), and the
    /// in-process roles' counters.
    pub async fn whereabouts(&self, rows: i64) -> String {
        let mut conn = self.redis.conn().await;
        let outbox = super::key(&self.campaign, "outbox");
        let len: Result<u64, _> = redis::cmd("XLEN").arg(&outbox).query_async(&mut conn).await;
        let pending: Result<redis::streams::StreamPendingReply, _> = redis::cmd("XPENDING")
            .arg(&outbox)
            .arg("relay")
            .query_async(&mut conn)
            .await;
        let pending = pending.map(|p| p.count());
        let kafka = self.kafka_positions().await;
        let text = self.metrics.render();
        let counter = |name: &str| super::sample(&text, name);
        format!(
            "rows in PostgreSQL: {rows}\noutbox: {len:?} entries, {pending:?} pending\n\
             kafka (partition: high watermark / committed): {kafka}\n\
             relay produced {} (errors {}, producer renewals {}); writer rows {} \
             (duplicates {}, db errors {}, consumer rebuilds {})",
            counter(&format!(
                "stampede_relay_produced_total{{campaign=\"{}\"}}",
                self.campaign
            )),
            counter("stampede_relay_produce_errors_total"),
            counter("stampede_relay_producer_renewals_total"),
            counter(&format!(
                "stampede_writer_rows_total{{campaign=\"{}\"}}",
                self.campaign
            )),
            counter("stampede_writer_duplicate_rows_total"),
            counter("stampede_writer_db_errors_total"),
            counter("stampede_writer_consumer_rebuilds_total"),
        )
    }

    /// `p: high / committed` for every partition of the campaign's topic.
    async fn kafka_positions(&self) -> String {
        let c = self.writer_group_client();
        let topic = stampede_core::issuance::topic(&self.campaign);
        let found = tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(Some(&topic), KAFKA_TIMEOUT)?;
            let count = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
            let mut tpl = TopicPartitionList::new();
            for p in 0..count {
                tpl.add_partition(&topic, p);
            }
            let committed = c.committed_offsets(tpl, KAFKA_TIMEOUT)?;
            let mut out = Vec::new();
            for e in committed.elements() {
                let high = c
                    .fetch_watermarks(&topic, e.partition(), KAFKA_TIMEOUT)
                    .map_or(-1, |(_, h)| h);
                let at = match e.offset() {
                    Offset::Offset(o) => o.to_string(),
                    other => format!("{other:?}"),
                };
                out.push(format!("{}: {high} / {at}", e.partition()));
            }
            Ok::<_, rdkafka::error::KafkaError>(out.join(", "))
        })
        .await;
        match found {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => format!("unreadable: {e}"),
            Err(e) => format!("query task failed: {e}"),
        }
    }
}
