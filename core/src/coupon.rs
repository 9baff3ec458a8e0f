//! Coupons and issuance decisions.

use serde::Serialize;

use crate::Error;
use crate::clock::format_ms;
use crate::ids::CampaignId;

/// A coupon as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    /// Campaign id.
    pub campaign: String,
    /// Holder.
    pub user_id: String,
    /// Unguessable code derived in the issue script.
    pub coupon_code: String,
    /// Position in 1..=stock.
    pub seq: u64,
    /// RFC 3339 issuance time (Redis server clock).
    pub issued_at: String,
}

/// The holder record stored in Redis: `seq:issuedMs:code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRecord {
    /// Position in 1..=stock.
    pub seq: u64,
    /// Issuance time, Unix ms.
    pub issued_ms: i64,
    /// Coupon code.
    pub code: String,
}

impl HolderRecord {
    /// Parses the stored form.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = || Error::Protocol(format!("holder record {raw:?}"));
        let mut it = raw.splitn(3, ':');
        let seq = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let issued_ms = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let code = it.next().filter(|c| !c.is_empty()).ok_or_else(bad)?;
        Ok(Self {
            seq,
            issued_ms,
            code: code.to_owned(),
        })
    }

    /// The coupon this record stands for.
    pub fn into_coupon(self, campaign: &str, user: &str) -> Coupon {
        Coupon {
            campaign: campaign.to_owned(),
            user_id: user.to_owned(),
            coupon_code: self.code,
            seq: self.seq,
            issued_at: format_ms(self.issued_ms),
        }
    }
}

/// What the issue script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new coupon.
    Issued(HolderRecord),
    /// The user already holds this coupon.
    Already(HolderRecord),
    /// No stock left; carries the stock total.
    SoldOut(u64),
    /// Before the window.
    NotOpen,
    /// After the window or closed.
    Closed,
    /// Paused.
    Paused,
    /// Suspended: Redis may have lost acknowledged writes.
    Suspended,
    /// No such campaign.
    Unknown,
    /// The campaign is sharded: ask the user's bucket (one of these) instead.
    Sharded(Vec<CampaignId>),
    /// The campaign has a waiting room and the user holds no live admission matching the
    /// token sent (or sent none).
    AdmissionRequired,
}

impl Decision {
    /// Decodes the script's `{status, detail}` reply.
    pub fn from_reply(reply: &[String]) -> Result<Self, Error> {
        let detail = || {
            reply
                .get(1)
                .ok_or_else(|| Error::Protocol(format!("{reply:?}")))
        };
        Ok(match reply.first().map(String::as_str) {
            Some("ISSUED") => Self::Issued(HolderRecord::parse(detail()?)?),
            Some("ALREADY") => Self::Already(HolderRecord::parse(detail()?)?),
            Some("SOLD_OUT") => Self::SoldOut(
                detail()?
                    .parse()
                    .map_err(|_| Error::Protocol(format!("{reply:?}")))?,
            ),
            Some("NOT_OPEN") => Self::NotOpen,
            Some("CLOSED") => Self::Closed,
            Some("PAUSED") => Self::Paused,
            Some("SUSPENDED") => Self::Suspended,
            Some("UNKNOWN") => Self::Unknown,
            Some("ADMISSION_REQUIRED") => Self::AdmissionRequired,
            Some("SHARDED") => Self::Sharded(CampaignId::parse_buckets(detail()?)?),
            _ => return Err(Error::Protocol(format!("{reply:?}"))),
        })
    }

    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Issued(_) => "issued",
            Self::Already(_) => "already",
            Self::SoldOut(_) => "sold_out",
            Self::NotOpen => "not_open",
            Self::Closed => "closed",
            Self::Paused => "paused",
            Self::Suspended => "suspended",
            Self::Unknown => "campaign_not_found",
            Self::Sharded(_) => "sharded",
            Self::AdmissionRequired => "admission_required",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn decodes_replies() {
        let d = Decision::from_reply(&s(&["ISSUED", "7:1763719200000:ABCDEF0123456789"])).unwrap();
        let Decision::Issued(rec) = d else { panic!() };
        assert_eq!(rec.seq, 7);
        let c = rec.into_coupon("c", "u");
        assert_eq!(c.issued_at, "2025-11-21T10:00:00Z");
        assert_eq!(c.coupon_code, "ABCDEF0123456789");
        assert_eq!(
            Decision::from_reply(&s(&["SOLD_OUT", "12"])).unwrap(),
            Decision::SoldOut(12)
        );
        assert_eq!(
            Decision::from_reply(&s(&["PAUSED"])).unwrap(),
            Decision::Paused
        );
        assert!(Decision::from_reply(&s(&["ISSUED"])).is_err());
        assert!(Decision::from_reply(&s(&["ISSUED", "x:1:C"])).is_err());
        assert!(Decision::from_reply(&s(&["WHAT"])).is_err());
    }
}
