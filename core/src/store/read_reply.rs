//! XREADGROUP's, XAUTOCLAIM's and XRANGE's replies walked by hand into outbox entries, moving each
//! value out rather than building a map of `Value`s per entry (`StreamReadReply`): the relay
//! reads every issuance once, on the issue path's cores.

use redis::Value;

use super::outbox::{OutboxBatch, OutboxEntry};
use crate::Error;
use crate::keys::CampaignKeys;

/// An XREADGROUP reply as batches: nil (nothing new), or per stream its key and entries
/// (an array of pairs in RESP2, a map in RESP3).
pub(super) fn batches(reply: Value) -> Result<Vec<OutboxBatch>, Error> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(pair) => <[Value; 2]>::try_from(pair).ok().map(|[k, e]| (k, e)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>(),
        Value::Map(streams) => Some(streams),
        _ => None,
    }
    .ok_or_else(|| unexpected("XREADGROUP", "a stream"))?;
    let mut batches = Vec::with_capacity(streams.len());
    for (key, entries) in streams {
        let key = bulk_text(key).ok_or_else(|| unexpected("XREADGROUP", "a stream key"))?;
        let entries = entry_list(entries).ok_or_else(|| unexpected("XREADGROUP", "an entry"))?;
        if let Some(campaign) = CampaignKeys::campaign_of(&key) {
            batches.push(OutboxBatch {
                campaign: campaign.to_owned(),
                entries,
            });
        }
    }
    Ok(batches)
}

/// An XAUTOCLAIM reply: the cursor to go on from ("0-0": done) and the claimed entries
/// (a third element, the ids of entries deleted while pending, needs nothing from us).
pub(super) fn claimed(reply: Value) -> Result<(String, Vec<OutboxEntry>), Error> {
    let Value::Array(parts) = reply else {
        return Err(unexpected("XAUTOCLAIM", "the reply"));
    };
    let mut parts = parts.into_iter();
    let next = parts.next().and_then(bulk_text);
    let entries = parts.next().and_then(entry_list);
    match (next, entries) {
        (Some(next), Some(entries)) => Ok((next, entries)),
        _ => Err(unexpected("XAUTOCLAIM", "the reply")),
    }
}

/// An XRANGE reply: a page of entries, oldest first.
pub(super) fn range(reply: Value) -> Result<Vec<OutboxEntry>, Error> {
    entry_list(reply).ok_or_else(|| unexpected("XRANGE", "an entry"))
}

/// An array of entries, as XRANGE answers and XREADGROUP and XAUTOCLAIM nest them.
fn entry_list(v: Value) -> Option<Vec<OutboxEntry>> {
    let Value::Array(entries) = v else {
        return None;
    };
    entries.into_iter().map(parse_entry).collect()
}

/// `[id, [field, value, …]]`; the fields nil for an entry deleted while pending.
fn parse_entry(entry: Value) -> Option<OutboxEntry> {
    let Value::Array(entry) = entry else {
        return None;
    };
    let [id, fields] = <[Value; 2]>::try_from(entry).ok()?;
    let fields = match fields {
        Value::Nil => Vec::new(),
        Value::Array(flat) => {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) =
                (flat.next(), flat.next())
            {
                pairs.push((k, v));
            }
            pairs
        }
        _ => return None,
    };
    Some(OutboxEntry {
        id: bulk_text(id)?,
        fields,
    })
}

/// A bulk or simple string as UTF-8 text.
fn bulk_text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn unexpected(command: &str, what: &str) -> Error {
    Error::Protocol(format!("{command} reply: {what} of an unexpected shape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    fn stream(key: &str, entries: Vec<Value>) -> (Value, Value) {
        (bulk(key), Value::Array(entries))
    }

    fn expected() -> Vec<OutboxBatch> {
        let pair = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        vec![OutboxBatch {
            campaign: "spring".into(),
            entries: vec![
                OutboxEntry {
                    id: "1-0".into(),
                    fields: vec![pair("user", "u-1"), pair("issuance", "{}")],
                },
                OutboxEntry {
                    id: "1-1".into(),
                    fields: vec![],
                },
            ],
        }]
    }

    fn spring() -> (Value, Value) {
        let key = CampaignKeys::new(&crate::ids::CampaignId::parse("spring").unwrap()).outbox;
        let deleted = Value::Array(vec![bulk("1-1"), Value::Nil]);
        stream(
            &key,
            vec![entry("1-0", &["user", "u-1", "issuance", "{}"]), deleted],
        )
    }

    #[test]
    fn reads_resp2_and_resp3_replies_and_deleted_entries() {
        let (k, e) = spring();
        let resp2 = Value::Array(vec![Value::Array(vec![k.clone(), e.clone()])]);
        assert_eq!(batches(resp2).unwrap(), expected());
        assert_eq!(batches(Value::Map(vec![(k, e)])).unwrap(), expected());
        assert!(batches(Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn reads_a_range_of_entries() {
        let (_, entries) = spring();
        assert_eq!(range(entries).unwrap(), expected().remove(0).entries);
        assert!(range(Value::Array(vec![])).unwrap().is_empty());
        assert!(range(Value::Int(1)).is_err());
        assert!(range(Value::Array(vec![Value::Array(vec![bulk("1-0")])])).is_err());
    }

    #[test]
    fn reads_claims_with_and_without_the_deleted_ids() {
        let (_, entries) = spring();
        let want = ("0-0".to_owned(), expected().remove(0).entries);
        let redis6 = Value::Array(vec![bulk("0-0"), entries.clone()]);
        assert_eq!(claimed(redis6).unwrap(), want);
        let redis7 = Value::Array(vec![bulk("0-0"), entries, Value::Array(vec![bulk("1-2")])]);
        assert_eq!(claimed(redis7).unwrap(), want);
        assert!(claimed(Value::Array(vec![bulk("0-0")])).is_err());
        assert!(claimed(Value::Nil).is_err());
    }

    #[test]
    fn skips_streams_that_are_not_outboxes_and_refuses_other_shapes() {
        let (k, e) = stream("elsewhere", vec![entry("1-0", &["a", "b"])]);
        assert!(batches(Value::Map(vec![(k, e)])).unwrap().is_empty());
        let (k, _) = spring();
        for bad in [
            Value::Int(1),
            Value::Array(vec![Value::Array(vec![k.clone()])]),
            Value::Map(vec![(k.clone(), Value::Int(1))]),
            Value::Map(vec![(
                k.clone(),
                Value::Array(vec![Value::Array(vec![bulk("1-0")])]),
            )]),
            Value::Map(vec![(Value::Int(3), Value::Array(vec![]))]),
        ] {
            assert!(batches(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
