//! The Kafka messages of a campaign's topic, and which shapes its writers read.
//!
//! Format 1 is one issuance per message, the issuance as JSON ([`Issuance::to_json`]) as
//! value; every writer reads it. Format 2 adds the batch message: the issuances of one batch
//! outbox entry (one issue script call's) as one JSON array. Messages carry no key (relays of
//! earlier releases keyed them by user; no writer reads the key). A writer of this release
//! names its Kafka client `stampede-writer@2` ([`writer_client_id`]); a relay sends batch
//! messages to a topic only while every member of every consumer group that reads it names
//! format 2 ([`lowest_reader_format`]), so a writer of an earlier release, which would
//! dead-letter a batch message, never receives one.

use crate::Error;
use crate::batches::{format_of, named};
use crate::issuance::{ISSUANCE_FIELD, Issuance, USER_FIELD, is_batch_entry};

/// The newest message format this release's writers read.
pub const FORMAT: u32 = 2;

/// The Kafka client id of a writer of this release: it says which format it reads.
pub fn writer_client_id() -> String {
    named("stampede-writer", FORMAT)
}

/// Every issuance a message value holds: a batch message's (a JSON array, refused whole when
/// one of them is malformed) or a single one's. The error says what is wrong with a poison
/// message.
pub fn decode(payload: &[u8]) -> Result<Vec<Issuance>, String> {
    if !is_batch(payload) {
        return Issuance::from_json(payload).map(|i| vec![i]);
    }
    let all: Vec<Issuance> =
        serde_json::from_slice(payload).map_err(|e| format!("undecodable batch: {e}"))?;
    if all.is_empty() {
        return Err("an empty batch message".into());
    }
    for i in &all {
        i.check()?;
    }
    Ok(all)
}

/// Whether a message value is of the batch shape (a JSON array), well formed or not.
pub fn is_batch(payload: &[u8]) -> bool {
    payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// One member of a consumer group as the broker describes it (`DescribeGroups`).
#[derive(Debug, Clone, Copy)]
pub struct GroupMember<'a> {
    /// Its Kafka client id.
    pub client_id: &'a str,
    /// Its subscription (the topics it asked for), as the group protocol encodes it.
    pub metadata: &'a [u8],
    /// Its assignment (the topics and partitions it was given), likewise.
    pub assignment: &'a [u8],
}

/// The lowest message format among the group members that read `topic`; `None` when none
/// does. A member reads a topic when its subscription or its assignment names it, and
/// counts as reading every topic while it has neither (a group between rebalances): an older
/// writer joining is never missed.
pub fn lowest_reader_format<'a>(
    members: impl IntoIterator<Item = GroupMember<'a>>,
    topic: &str,
) -> Option<u32> {
    members
        .into_iter()
        .filter(|m| {
            let unknown = m.metadata.is_empty() && m.assignment.is_empty();
            unknown || names_topic(m.metadata, topic) || names_topic(m.assignment, topic)
        })
        .map(|m| format_of(m.client_id))
        .min()
}

/// Whether consumer protocol bytes name `topic`: the group protocol writes a topic name as a
/// big-endian 16-bit length and its bytes, so a name that merely contains `topic` does not
/// count.
fn names_topic(bytes: &[u8], topic: &str) -> bool {
    let Ok(len) = u16::try_from(topic.len()) else {
        return false;
    };
    let mut needle = len.to_be_bytes().to_vec();
    needle.extend_from_slice(topic.as_bytes());
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// An outbox entry as Kafka takes it, from either shape of entry. The two-field shape is the
/// message itself: `user` (once its key) and `issuance` (the value, the JSON
/// [`Issuance::to_json`] writes), sent as it comes. The five-field shape (`campaign user seq
/// ts code`, [`Issuance::stream_fields`]) is what the issue script writes while relays of
/// earlier releases, which read only it, may still run; it is encoded here. Reading both
/// now lets a later release write the message shape without a rolling upgrade's older
/// relays dropping its entries as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The issuance as JSON, or a batch message's issuances as a JSON array.
    pub payload: Vec<u8>,
    /// How many issuances it holds.
    pub issuances: u64,
}

impl KafkaRecord {
    /// From an outbox entry's field-value pairs, of either single shape; the issuance itself
    /// is the writer's to check (it sends what it cannot decode to the dead-letter topic).
    pub fn from_stream_fields(mut fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, Error> {
        Self::from_entry(&mut fields)
    }

    /// [`KafkaRecord::from_stream_fields`] of borrowed pairs: a value it uses as it stands is
    /// taken out of them, but only when it succeeds (a refused entry keeps every pair).
    fn from_entry(fields: &mut [(Vec<u8>, Vec<u8>)]) -> Result<Self, Error> {
        if let [(k1, v1), (k2, v2)] = &mut *fields
            && k1 == USER_FIELD.as_bytes()
            && k2 == ISSUANCE_FIELD.as_bytes()
            && !v1.is_empty()
            && !v2.is_empty()
        {
            return Ok(Self {
                payload: std::mem::take(v2),
                issuances: 1,
            });
        }
        let issuance = Issuance::from_raw_fields(fields)?;
        Ok(Self::of(issuance))
    }

    /// Every message an outbox entry makes, of any shape. A batch entry (refused whole when
    /// malformed: [`Issuance::all_from_raw_fields`]) makes one batch message with `batch`,
    /// else a message per coupon.
    pub fn all_from_stream_fields(
        mut fields: Vec<(Vec<u8>, Vec<u8>)>,
        batch: bool,
    ) -> Result<Vec<Self>, Error> {
        Self::all_from_entry(&mut fields, batch)
    }

    /// [`KafkaRecord::all_from_stream_fields`] of borrowed pairs, which a refused entry
    /// keeps whole (the relay dead-letters them as they are).
    pub fn all_from_entry(
        fields: &mut [(Vec<u8>, Vec<u8>)],
        batch: bool,
    ) -> Result<Vec<Self>, Error> {
        if !is_batch_entry(fields) {
            return Ok(vec![Self::from_entry(fields)?]);
        }
        let issuances = Issuance::all_from_raw_fields(fields)?;
        if batch {
            return Ok(vec![Self::batch(&issuances)]);
        }
        Ok(issuances.into_iter().map(Self::of).collect())
    }

    fn of(issuance: Issuance) -> Self {
        Self {
            payload: issuance.to_json(),
            issuances: 1,
        }
    }

    /// One message for `issuances` (not empty: a batch entry holds at least one).
    fn batch(issuances: &[Issuance]) -> Self {
        Self {
            payload: serde_json::to_vec(issuances).expect("plain structs serialise"),
            issuances: issuances.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests;
