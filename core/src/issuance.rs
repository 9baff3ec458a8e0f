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
    /// Reads an outbox stream entry's fields (`campaign user seq ts code`).
    pub fn from_stream_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Error> {
        let (mut campaign, mut user, mut seq, mut ts, mut code) = (None, None, None, None, None);
        for (k, v) in fields {
            match k {
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
            _ => Err(Error::Protocol("outbox entry is missing a field".into())),
        }
    }

    /// The fields of an outbox stream entry, in the order the issue script writes them.
    pub fn stream_fields(&self) -> [(&'static str, String); 5] {
        [
            ("campaign", self.campaign.clone()),
            ("user", self.user_id.clone()),
            ("seq", self.seq.to_string()),
            ("ts", self.issued_at_ms.to_string()),
            ("code", self.coupon_code.clone()),
        ]
    }

    /// The Kafka message value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }

    /// Decodes a Kafka message value, explaining what is wrong with a poison one.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let i: Self = serde_json::from_slice(bytes).map_err(|e| format!("undecodable: {e}"))?;
        if i.seq == 0 || i.user_id.is_empty() || i.campaign.is_empty() || i.coupon_code.is_empty() {
            return Err("a required field is empty or zero".into());
        }
        Ok(i)
    }
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
mod tests {
    use super::*;

    fn sample() -> Issuance {
        Issuance {
            campaign: "c".into(),
            user_id: "u-1".into(),
            seq: 7,
            coupon_code: "ABC".into(),
            issued_at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn stream_fields_round_trip() {
        let i = sample();
        let fields = i.stream_fields();
        let back = Issuance::from_stream_fields(fields.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(back.unwrap(), i);
        assert!(Issuance::from_stream_fields([("campaign", "c"), ("seq", "x")]).is_err());
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
