//! Which campaigns' topics carry batch messages (`--relay-message-batches`): in `auto`, the
//! topics whose every consumer is a writer that reads them (`stampede_core::message`), looked
//! up in the broker's consumer groups every few seconds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::groups::GroupList;
use rdkafka::producer::{FutureProducer, Producer};
use stampede_core::batches::Batches;
use stampede_core::message::{FORMAT, GroupMember, lowest_reader_format};

/// How often `auto` looks at the consumer groups again: how long an older writer that joins
/// a group (a rollback) may still be sent batch messages, which it dead-letters.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How long one look may take before it counts as failed.
const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// Per topic, whether batch entries go to it as one message.
pub(super) struct MessageFormats {
    mode: Batches,
    /// In `auto`: the topics whose every reader reads batch messages, at the last look.
    batching: HashSet<String>,
    last_look: Option<Instant>,
    /// The last look failed (logged once until one succeeds).
    failing: bool,
}

impl MessageFormats {
    /// Nothing known yet: a message per coupon until a look says otherwise.
    pub(super) fn new(mode: Batches) -> Self {
        Self {
            mode,
            batching: HashSet::new(),
            last_look: None,
            failing: false,
        }
    }

    /// Whether a batch entry goes to `topic` as one message.
    pub(super) fn batches(&self, topic: &str) -> bool {
        match self.mode {
            Batches::Always => true,
            Batches::Never => false,
            Batches::Auto => self.batching.contains(topic),
        }
    }

    /// Whether [`MessageFormats::look`] has work: in `auto`, once every [`LOOK_EVERY`].
    pub(super) fn due(&self) -> bool {
        self.mode == Batches::Auto && self.last_look.is_none_or(|t| t.elapsed() >= LOOK_EVERY)
    }

    /// Reads the broker's consumer groups and records which of `topics` only writers reading
    /// batch messages consume. A failed look turns batch messages off until one succeeds (an
    /// unseen reader may be an older writer).
    pub(super) async fn look(&mut self, producer: &FutureProducer, topics: HashSet<String>) {
        self.last_look = Some(Instant::now());
        let producer = producer.clone();
        // Metadata calls block: they run on the blocking pool.
        let looked = tokio::task::spawn_blocking(move || {
            let groups = producer.client().fetch_group_list(None, LOOK_TIMEOUT)?;
            Ok::<_, rdkafka::error::KafkaError>(batching_topics(&groups, topics))
        })
        .await;
        let now = match looked {
            Ok(Ok(now)) => {
                self.failing = false;
                now
            }
            failed => {
                if !self.failing {
                    let error = failed.map(|r| r.err()).map_err(|e| e.to_string());
                    tracing::warn!(
                        ?error,
                        "listing Kafka's consumer groups failed: a message per coupon until it works"
                    );
                }
                self.failing = true;
                HashSet::new()
            }
        };
        for topic in now.symmetric_difference(&self.batching) {
            tracing::info!(
                topic,
                "the topic's consumers {}: {}",
                if now.contains(topic) {
                    "all read batch messages"
                } else {
                    "no longer all read batch messages"
                },
                if now.contains(topic) {
                    "a batch outbox entry now goes as one message"
                } else {
                    "a message per coupon"
                }
            );
        }
        self.batching = now;
    }
}

/// The `topics` whose readers, over every consumer group, all read batch messages (a topic
/// nobody reads is not among them: the next reader may be an older writer).
fn batching_topics(groups: &GroupList, topics: HashSet<String>) -> HashSet<String> {
    let members: Vec<GroupMember<'_>> = groups
        .groups()
        .iter()
        .flat_map(|g| g.members())
        .map(|m| GroupMember {
            client_id: m.client_id(),
            metadata: m.metadata().unwrap_or_default(),
            assignment: m.assignment().unwrap_or_default(),
        })
        .collect();
    topics
        .into_iter()
        .filter(|t| lowest_reader_format(members.iter().copied(), t).is_some_and(|f| f >= FORMAT))
        .collect()
}
