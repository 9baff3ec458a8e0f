//! Validated campaign and user identifiers (the grammar in the README's HTTP contract).

use std::fmt;

use crate::Error;

/// A campaign id: `[a-z0-9]([a-z0-9.-]{0,126}[a-z0-9])?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CampaignId(String);

/// A user id: 1–128 characters of `[A-Za-z0-9._:@-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl CampaignId {
    /// Checks `raw` against the campaign id grammar.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let b = raw.as_bytes();
        let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty()
            && b.len() <= 128
            && edge(b[0])
            && edge(b[b.len() - 1])
            && b.iter().all(|&c| edge(c) || c == b'.' || c == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidInput(format!(
                "campaign id {:?} must match [a-z0-9]([a-z0-9.-]{{0,126}}[a-z0-9])?",
                truncate(raw)
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of campaign `name` of Kubernetes namespace `namespace`: `<namespace>.<name>`,
    /// so same-named campaigns of two namespaces never share keys, topics or rows (a
    /// namespace is a DNS label, never holding a '.', so the split is unambiguous).
    pub fn namespaced(namespace: &str, name: &str) -> Result<Self, Error> {
        Self::parse(&format!("{namespace}.{name}"))
    }

    /// The shadow campaign load test `test` issues from, so it never spends real stock:
    /// `<id>.lt-<test>`, the id shortened as needed to stay within 128 characters.
    pub fn shadow(&self, test: &str) -> Self {
        let suffix = format!("{SHADOW_MARK}{test}");
        let keep = 128usize.saturating_sub(suffix.len());
        let base: String = self.0.chars().take(keep).collect();
        let id = format!("{}{suffix}", base.trim_end_matches(['.', '-']));
        // Both parts are campaign-id characters and the result is at most 128 long.
        Self::parse(&id).expect("shadow id is a campaign id")
    }

    /// The load test's name when this is a shadow campaign id (after the last mark).
    pub fn shadow_test(&self) -> Option<&str> {
        self.0
            .rfind(SHADOW_MARK)
            .map(|at| &self.0[at + SHADOW_MARK.len()..])
    }

    /// Whether this is a load test's shadow campaign (`<campaign>.lt-<test>`), which spends
    /// no real stock.
    pub fn is_load_test_shadow(&self) -> bool {
        self.0.contains(SHADOW_MARK)
    }
}

/// What separates a campaign from its load test's name in a shadow campaign id.
pub const SHADOW_MARK: &str = ".lt-";

/// What separates a sharded campaign's id from a bucket's number in a bucket id
/// (`<campaign>~<n>`): not a campaign id character, so no client can name a bucket.
pub const BUCKET_MARK: char = '~';

/// The campaign an id as Redis stores it (a campaign's or a bucket's) belongs to.
pub fn campaign_of(stored: &str) -> &str {
    stored.split(BUCKET_MARK).next().unwrap_or(stored)
}

impl CampaignId {
    /// Bucket `n` of this (sharded) campaign: `<id>~<n>`, keys of its own hash tag.
    pub fn bucket(&self, n: u32) -> Self {
        Self(format!("{}{BUCKET_MARK}{n}", self.campaign()))
    }

    /// The campaign this id belongs to: itself, or a bucket's campaign.
    pub fn campaign(&self) -> &str {
        campaign_of(&self.0)
    }

    /// Whether this is a bucket of a sharded campaign.
    pub fn is_bucket(&self) -> bool {
        self.0.contains(BUCKET_MARK)
    }

    /// A sharded campaign's bucket list as Redis stores it (meta `buckets`, "a~0,a~1,…").
    pub fn parse_buckets(list: &str) -> Result<Vec<Self>, Error> {
        list.split(',').map(Self::parse_stored).collect()
    }

    /// A campaign id, or a bucket id (`<campaign>~<n>`) as found in Redis (the registry,
    /// stream keys); never for what clients send.
    pub fn parse_stored(raw: &str) -> Result<Self, Error> {
        match raw.split_once(BUCKET_MARK) {
            Some((campaign, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Self::parse(campaign)?.bucket(
                    n.parse().map_err(|_| {
                        Error::InvalidInput(format!("bucket id {:?}", truncate(raw)))
                    })?,
                ))
            }
            Some(_) => Err(Error::InvalidInput(format!(
                "bucket id {:?} must be <campaign>{BUCKET_MARK}<number>",
                truncate(raw)
            ))),
            None => Self::parse(raw),
        }
    }
}

impl UserId {
    /// Checks `raw` against the user id grammar.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'@' | b'-')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidInput(format!(
                "userId {:?} must be 1-128 characters of [A-Za-z0-9._:@-]",
                truncate(raw)
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keeps error messages short when the offending input is huge.
fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_ids() {
        for ok in ["a", "0", "spring-sale", "a.b-c9", &"a".repeat(128)] {
            assert!(CampaignId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a/b",
            ".a",
            &"a".repeat(129),
            "한",
        ] {
            assert!(CampaignId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaced_ids_and_shadows() {
        let c = CampaignId::namespaced("team-a", "flash").unwrap();
        assert_eq!(c.as_str(), "team-a.flash");
        assert!(CampaignId::namespaced("team-a", &"a".repeat(128)).is_err());
        let s = c.shadow("smoke");
        assert_eq!(s.as_str(), "team-a.flash.lt-smoke");
        assert_eq!(s.shadow_test(), Some("smoke"));
        assert_eq!(c.shadow_test(), None);
        let long = CampaignId::parse(&"a".repeat(128)).unwrap();
        let s = long.shadow("preflight");
        assert!(s.as_str().len() <= 128 && s.as_str().ends_with(".lt-preflight"));
        assert!(s.is_load_test_shadow() && !long.is_load_test_shadow());
    }

    #[test]
    fn user_ids() {
        for ok in ["u", "user-1", "a.b_c:d@e-F", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a b", "a/b", "é", &"x".repeat(129), "a\n"] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }
}
