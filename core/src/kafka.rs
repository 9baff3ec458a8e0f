//! Kafka plumbing: client settings and the idempotent topic provisioning that
//! `campaign create` (and later the operator) runs.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use serde::Serialize;

use crate::Error;
use crate::issuance::{dead_letter_topic, topic};
pub use crate::kafka_security::KafkaSecurity;

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// SASL and TLS; plaintext when `None`.
    pub security: Option<KafkaSecurity>,
}

impl KafkaConfig {
    /// Plaintext to `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security: None,
        }
    }

    /// `brokers`, with the security the environment describes (`STAMPEDE_KAFKA_*`).
    pub fn with_env_security(brokers: impl Into<String>) -> Result<Self, Error> {
        Ok(Self {
            brokers: brokers.into(),
            security: KafkaSecurity::from_env()?,
        })
    }

    /// Base client settings every client shares. librdkafka's warnings reach the log;
    /// `STAMPEDE_KAFKA_DEBUG` (librdkafka's `debug` contexts, e.g. `cgrp,protocol`) adds
    /// its debug lines.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "stampede")
            .set("socket.keepalive.enable", "true")
            .set("log_level", "4");
        if let Some(contexts) = std::env::var("STAMPEDE_KAFKA_DEBUG")
            .ok()
            .filter(|d| !d.is_empty())
        {
            c.set("debug", contexts).set("log_level", "7");
        }
        if let Some(s) = &self.security {
            s.apply(&mut c);
        }
        c
    }

    /// An idempotent producer: acks from all in-sync replicas, no duplicates from its own
    /// retries, lz4 batches lingering `linger_ms`, a linger's unkeyed messages on one
    /// partition.
    pub fn producer(&self, linger_ms: u32) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", linger_ms.to_string())
            // An unkeyed message joins the partition its linger's messages go to.
            .set("sticky.partitioning.linger.ms", linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        c
    }
}

/// How long a produced message may go undelivered before its delivery fails.
pub const MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What provisioning did to a campaign's topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicsOutcome {
    /// The issuance topic.
    pub topic: String,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
    /// Partitions before (0 when the topic was created).
    pub partitions_before: i32,
    /// Partitions now.
    pub partitions: i32,
    /// Fewer partitions were asked for than exist; they were kept (never shrink).
    pub decrease_refused: bool,
}

/// Creates the campaign's topic and dead-letter topic, or grows the topic to
/// `partitions`. Never shrinks: a smaller count leaves the topic as it is and says so.
pub async fn ensure_topics(
    config: &KafkaConfig,
    campaign: &str,
    partitions: i32,
    replication: i32,
) -> Result<TopicsOutcome, Error> {
    if partitions < 1 {
        return Err(Error::InvalidInput(
            "--partitions must be at least 1".into(),
        ));
    }
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(kafka)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let name = topic(campaign);
    let dlq = dead_letter_topic(campaign);
    let before = partition_count(config, &name).await?;
    let mut outcome = TopicsOutcome {
        topic: name.clone(),
        dead_letter_topic: dlq.clone(),
        partitions_before: before,
        partitions: before.max(partitions),
        decrease_refused: before > partitions,
    };
    if before == 0 {
        create(&admin, &opts, &name, partitions, replication).await?;
    } else if partitions > before {
        let grow = NewPartitions::new(&name, partitions as usize);
        for r in admin
            .create_partitions(&[grow], &opts)
            .await
            .map_err(kafka)?
        {
            r.map_err(|(t, e)| Error::Kafka(format!("growing {t} to {partitions}: {e}")))?;
        }
    }
    if partition_count(config, &dlq).await? == 0 {
        create(&admin, &opts, &dlq, 1, replication).await?;
    }
    outcome.partitions = partition_count(config, &name).await?;
    Ok(outcome)
}

async fn create(
    admin: &AdminClient<DefaultClientContext>,
    opts: &AdminOptions,
    name: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), Error> {
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for r in admin.create_topics(&[t], opts).await.map_err(kafka)? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(Error::Kafka(format!("creating {t}: {e}"))),
        }
    }
    Ok(())
}

/// Partitions of topic `name`, 0 when it does not exist. Metadata calls block, so they run on
/// the blocking pool with a client of their own.
pub async fn partition_count(config: &KafkaConfig, name: &str) -> Result<i32, Error> {
    let client: BaseConsumer = config.client().create().map_err(kafka)?;
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = client
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .map_err(kafka)?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32))
    })
    .await
    .map_err(|e| Error::Kafka(format!("metadata task: {e}")))?
}

/// Wraps a client error.
pub fn kafka(e: rdkafka::error::KafkaError) -> Error {
    Error::Kafka(e.to_string())
}

/// Deletes the campaign's topic and dead-letter topic (for `deletionPolicy: Delete` and
/// for tests that clean up after themselves). Topics that do not exist are fine.
pub async fn delete_topics(config: &KafkaConfig, campaign: &str) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(kafka)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let names = [topic(campaign), dead_letter_topic(campaign)];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for r in admin.delete_topics(&refs, &opts).await.map_err(kafka)? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, e)) => return Err(Error::Kafka(format!("deleting {t}: {e}"))),
        }
    }
    Ok(())
}
