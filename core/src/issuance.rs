//! One issuance on its way from Redis to the database: the outbox entry, the Kafka
//! message and the database row all carry exactly these fields.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A coupon issued to a user, as the pipeline carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issuance {
    /// Campaign id.
    pub campaign: String,
    /// Holder.
    pub user_id: String,
    /// Position in 1..=stock.
    pub seq: u64,
    /// Coupon code.
    pub coupon_code: String,
    /// Issuance time, Unix ms (Redis clock).
    pub issued_at_ms: i64,
}

impl Issuance {
    /// Reads a single-issuance outbox entry's fields, of either shape (see
    /// [`crate::message::KafkaRecord`]); a batch entry is refused (it holds several:
    /// [`Issuance::all_from_raw_fields`]).
    pub fn from_stream_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Error> {
        let (mut campaign, mut user, mut seq, mut ts, mut code) = (None, None, None, None, None);
        for (k, v) in fields {
            match k {
                ISSUANCE_FIELD => return Self::from_json(v.as_bytes()).map_err(malformed),
                BATCH_FIELD => return Err(malformed("a batch entry holds several issuances")),
                "campaign" => campaign = Some(v),
                "user" => user = Some(v),
                "seq" => seq = v.parse().ok(),
                "ts" => ts = v.parse().ok(),
                "code" => code = Some(v),
                _ => {}
            }
        }
        match (campaign, user, seq, ts, code) {
            (Some(c), Some(u), Some(s), Some(t), Some(code)) if s > 0 => Ok(Self {
                campaign: c.to_owned(),
                user_id: u.to_owned(),
                seq: s,
                coupon_code: code.to_owned(),
                issued_at_ms: t,
            }),
            _ => Err(malformed("a field is missing")),
        }
    }

    /// Reads an outbox stream entry's field-value pairs as Redis sent them, of either shape.
    pub fn from_raw_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Self, Error> {
        let pairs = fields
            .iter()
            .map(|(k, v)| Ok((std::str::from_utf8(k)?, std::str::from_utf8(v)?)))
            .collect::<Result<Vec<_>, std::str::Utf8Error>>()
            .map_err(malformed)?;
        Self::from_stream_fields(pairs)
    }

    /// Every issuance an outbox entry holds, of any shape: one, or a batch entry's several.
    /// A batch entry (`serve --outbox-batches`: one per issue script call that issues more
    /// than one coupon) is `batch` campaign, `ts` ms, then per coupon its user and
    /// `seq:code`. A malformed batch entry is refused whole.
    pub fn all_from_raw_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Self>, Error> {
        let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned).map_err(malformed);
        if !is_batch_entry(fields) {
            return Ok(vec![Self::from_raw_fields(fields)?]);
        }
        let [(_, campaign), (k1, ts), coupons @ ..] = fields else {
            return Err(malformed("a batch entry without its ts"));
        };
        let campaign = text(campaign)?;
        let issued_at_ms = match (k1 == b"ts", text(ts)?.parse()) {
            (true, Ok(t)) => t,
            _ => return Err(malformed("a batch entry without its ts")),
        };
        if campaign.is_empty() || coupons.is_empty() {
            return Err(malformed("an empty batch entry"));
        }
        coupons
            .iter()
            .map(|(user, seq_code)| {
                let (user, seq_code) = (text(user)?, text(seq_code)?);
                let (seq, code) = seq_code
                    .split_once(':')
                    .and_then(|(s, c)| Some((s.parse::<u64>().ok()?, c)))
                    .filter(|(s, c)| *s > 0 && !c.is_empty() && !user.is_empty())
                    .ok_or_else(|| malformed(format!("batch coupon {user:?}: {seq_code:?}")))?;
                Ok(Self {
                    campaign: campaign.clone(),
                    user_id: user,
                    seq,
                    coupon_code: code.to_owned(),
                    issued_at_ms,
                })
            })
            .collect()
    }

    /// The fields of an outbox stream entry, as the issue script writes them (and `audit
    /// --repair` appends them): the five-field shape every relay reads.
    pub fn stream_fields(&self) -> [(&'static str, Vec<u8>); 5] {
        [
            ("campaign", self.campaign.clone().into_bytes()),
            (USER_FIELD, self.user_id.clone().into_bytes()),
            ("seq", self.seq.to_string().into_bytes()),
            ("ts", self.issued_at_ms.to_string().into_bytes()),
            ("code", self.coupon_code.clone().into_bytes()),
        ]
    }

    /// The fields of an outbox stream entry of the two-field shape, the Kafka message itself
    /// (see [`crate::message::KafkaRecord`]).
    pub fn message_fields(&self) -> [(&'static str, Vec<u8>); 2] {
        [
            (USER_FIELD, self.user_id.clone().into_bytes()),
            (ISSUANCE_FIELD, self.to_json()),
        ]
    }

    /// The Kafka message value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }

    /// Decodes a Kafka message value, explaining what is wrong with a poison one.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let i: Self = serde_json::from_slice(bytes).map_err(|e| format!("undecodable: {e}"))?;
        i.check()?;
        Ok(i)
    }

    /// Refuses an issuance with an empty or zero required field, or an id longer than any
    /// the service issues to (a message produced to the topic by something else: a key
    /// that size would not fit the table's indexes).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.seq == 0
            || self.user_id.is_empty()
            || self.campaign.is_empty()
            || self.coupon_code.is_empty()
        {
            return Err("a required field is empty or zero".into());
        }
        if self.user_id.len() > LONGEST_ID || self.campaign.len() > LONGEST_ID {
            return Err(format!(
                "a user or campaign id longer than {LONGEST_ID} bytes"
            ));
        }
        Ok(())
    }
}

/// Longer ids are refused as poison: twice the longest the service issues to (128
/// characters, a bucket's `~<n>` besides), far below what the table's indexes hold.
const LONGEST_ID: usize = 256;

/// The outbox entry field holding the user id, the Kafka message key.
pub(crate) const USER_FIELD: &str = "user";
/// The outbox entry field holding the issuance as JSON, the Kafka message value.
pub(crate) const ISSUANCE_FIELD: &str = "issuance";
/// The first field of a batch entry, holding the campaign id.
const BATCH_FIELD: &str = "batch";

/// Whether an outbox entry's fields are of the batch shape (its first field is `batch`).
pub(crate) fn is_batch_entry(fields: &[(Vec<u8>, Vec<u8>)]) -> bool {
    fields
        .first()
        .is_some_and(|(k, _)| k == BATCH_FIELD.as_bytes())
}

pub(crate) fn malformed(why: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("malformed outbox entry: {why}"))
}

/// The Kafka topic that carries a campaign's issuances.
pub fn topic(campaign: &str) -> String {
    format!("stampede.{campaign}")
}

/// The dead-letter topic for messages the writer cannot decode.
pub fn dead_letter_topic(campaign: &str) -> String {
    format!("stampede-dlq.{campaign}")
}

/// The campaign a topic belongs to, for issuance topics only.
pub fn campaign_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("stampede.")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::message::KafkaRecord;

    pub(crate) fn sample() -> Issuance {
        Issuance {
            campaign: "c".into(),
            user_id: "u-1".into(),
            seq: 7,
            coupon_code: "ABC".into(),
            issued_at_ms: 1_700_000_000_123,
        }
    }

    /// `(field, value)` pairs as Redis returns them.
    pub(crate) fn raw(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn an_id_longer_than_any_the_service_issues_to_is_poison() {
        let long = Issuance {
            user_id: "x".repeat(3_000),
            ..sample()
        };
        let err = Issuance::from_json(&long.to_json()).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        let longest = Issuance {
            user_id: "x".repeat(128),
            ..sample()
        };
        assert_eq!(Issuance::from_json(&longest.to_json()), Ok(longest));
    }

    #[test]
    fn both_entry_shapes_round_trip_to_the_same_message() {
        let i = sample();
        for fields in [&i.stream_fields()[..], &i.message_fields()[..]] {
            let text: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (*k, std::str::from_utf8(v).unwrap()))
                .collect();
            assert_eq!(Issuance::from_stream_fields(text.clone()).unwrap(), i);
            let record = KafkaRecord::from_stream_fields(raw(&text)).unwrap();
            assert_eq!(record.payload, i.to_json());
        }
        assert!(Issuance::from_stream_fields([("campaign", "c"), ("seq", "x")]).is_err());
    }

    #[test]
    fn five_field_entries_read_as_written() {
        let old = [
            ("campaign", "c"),
            ("user", "u-1"),
            ("seq", "7"),
            ("ts", "1700000000123"),
            ("code", "ABC"),
        ];
        assert_eq!(Issuance::from_stream_fields(old).unwrap(), sample());
        let record = KafkaRecord::from_stream_fields(raw(&old)).unwrap();
        assert_eq!(Issuance::from_json(&record.payload).unwrap(), sample());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for fields in [
            &[][..],
            &[("user", "u-1")],
            &[("user", ""), ("issuance", "{}")],
            &[("user", "u-1"), ("issuance", "")],
            &[("issuance", "{}"), ("user", "u-1")],
            &[
                ("campaign", "c"),
                ("user", "u-1"),
                ("seq", "0"),
                ("ts", "1"),
                ("code", "A"),
            ],
        ] {
            assert!(
                KafkaRecord::from_stream_fields(raw(fields)).is_err(),
                "{fields:?}"
            );
        }
        let not_utf8 = vec![
            (b"user".to_vec(), vec![0xff]),
            (b"seq".to_vec(), b"1".to_vec()),
        ];
        assert!(KafkaRecord::from_stream_fields(not_utf8).is_err());
        assert!(Issuance::from_stream_fields([("user", "u"), ("issuance", "{")]).is_err());
    }

    /// A single entry's five fields, as Redis returns them.
    pub(crate) fn five_fields(i: &Issuance) -> Vec<(Vec<u8>, Vec<u8>)> {
        let fields = i.stream_fields();
        fields.map(|(k, v)| (k.as_bytes().to_vec(), v)).to_vec()
    }

    /// A batch entry's fields, as the issue script writes them.
    pub(crate) fn batch_fields(
        campaign: &str,
        ts: i64,
        coupons: &[&Issuance],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let ts = ts.to_string();
        let mut f = raw(&[("batch", campaign), ("ts", ts.as_str())]);
        for i in coupons {
            let seq_code = format!("{}:{}", i.seq, i.coupon_code);
            f.extend(raw(&[(i.user_id.as_str(), seq_code.as_str())]));
        }
        f
    }

    #[test]
    fn a_batch_entry_reads_as_every_coupon_it_holds() {
        let a = sample();
        let b = Issuance {
            user_id: "ts".into(),
            seq: 8,
            coupon_code: "D:E".into(),
            ..sample()
        };
        let fields = batch_fields("c", a.issued_at_ms, &[&a, &b]);
        assert_eq!(
            Issuance::all_from_raw_fields(&fields).unwrap(),
            [a.clone(), b.clone()]
        );
        let records = KafkaRecord::all_from_stream_fields(fields.clone(), false).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].payload, b.to_json());
        // The single-issuance readers refuse it rather than take it for one coupon.
        assert!(Issuance::from_raw_fields(&fields).is_err());
        assert!(KafkaRecord::from_stream_fields(fields).is_err());
        // Single shapes read as one.
        let five = five_fields(&a);
        assert_eq!(Issuance::all_from_raw_fields(&five).unwrap(), [a]);
        assert_eq!(
            KafkaRecord::all_from_stream_fields(five, false)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn malformed_batch_entries_are_refused_whole() {
        let a = sample();
        let good = batch_fields("c", 1, &[&a]);
        let mut cases = vec![
            raw(&[("batch", "c"), ("ts", "1")]),
            raw(&[("batch", ""), ("ts", "1"), ("u", "1:A")]),
            raw(&[("batch", "c"), ("tz", "1"), ("u", "1:A")]),
            raw(&[("batch", "c"), ("ts", "x"), ("u", "1:A")]),
        ];
        for bad in ["0:A", "1:", "A", "x:A", ":A"] {
            let mut f = good.clone();
            f.extend(raw(&[("u-2", bad)]));
            cases.push(f);
        }
        let mut empty_user = good.clone();
        empty_user.extend(raw(&[("", "2:B")]));
        cases.push(empty_user);
        for fields in cases {
            assert!(
                Issuance::all_from_raw_fields(&fields).is_err(),
                "{fields:?}"
            );
            assert!(KafkaRecord::all_from_stream_fields(fields, false).is_err());
        }
    }

    #[test]
    fn json_round_trip_and_poison() {
        let i = sample();
        assert_eq!(Issuance::from_json(&i.to_json()).unwrap(), i);
        for poison in [&b"not json"[..], b"{}", b"{\"campaign\":\"c\",\"userId\":\"u\",\"seq\":0,\"couponCode\":\"x\",\"issuedAtMs\":1}"] {
            assert!(Issuance::from_json(poison).is_err());
        }
    }

    #[test]
    fn topics() {
        assert_eq!(topic("spring.sale"), "stampede.spring.sale");
        assert_eq!(
            campaign_of_topic(&topic("spring.sale")),
            Some("spring.sale")
        );
        assert_eq!(campaign_of_topic(&dead_letter_topic("x")), None);
    }
}
