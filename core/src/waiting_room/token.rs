//! The waiting room's signed tokens: `base64url(payload).base64url(HMAC-SHA256(payload))`,
//! the payload `v1|<kind>|<campaign>|<user>|<ticket>|<expiresMs>` (`|` is in neither id
//! grammar). A queue token (`q`) lets its user poll their place in line (the ticket is
//! their score in it); an admission token (`a`, no ticket) lets them issue once. Both are
//! verified without Redis, so a forger never costs a script call.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;
use crate::mac::MacKey;

/// The shortest key accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_KEY_BYTES: usize = 32;

/// Which token it is: the two never stand in for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Proves a place in line; polled with `X-Stampede-Queue-Token`.
    Queue,
    /// Proves an admission; sent to issue as `X-Stampede-Admission`.
    Admission,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Queue => "q",
            Self::Admission => "a",
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Queue or admission.
    pub kind: TokenKind,
    /// The campaign's id (as Redis keeps it, not the URL's name).
    pub campaign: String,
    /// The user it was given to.
    pub user: String,
    /// The user's score in line (queue tokens; empty in admission tokens).
    pub ticket: String,
    /// When it stops being valid, Unix ms (an admission token: when the admission lapses).
    pub expires_ms: i64,
}

impl Claims {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_ms
    }
}

/// The HMAC key every replica shares; never printed.
#[derive(Clone)]
pub struct TokenKey(MacKey);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

impl TokenKey {
    /// A key of at least [`MIN_KEY_BYTES`] bytes (surrounding whitespace, as a key file's
    /// last newline, is not part of it).
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(Error::InvalidInput(format!(
                "the waiting-room key must be at least {MIN_KEY_BYTES} bytes (got {})",
                key.len()
            )));
        }
        Ok(Self(MacKey::new(key)))
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = format!(
            "v1|{}|{}|{}|{}|{}",
            claims.kind.tag(),
            claims.campaign,
            claims.user,
            claims.ticket,
            claims.expires_ms
        );
        let tag = self.0.tag(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// `user`'s place in `campaign`'s line should they join before the opening (the line
    /// is shuffled at the opening): below [`super::PRE_OPEN_SCORES`], the same at every join
    /// under this key, so that a user who lets a place lapse and joins again draws nothing
    /// new (a fresh draw per join let one retry until a place near the front came up), and
    /// unknowable without the key.
    pub fn pre_open_score(&self, campaign: &str, user: &str) -> u64 {
        let tag = self
            .0
            .tag(format!("v1|pre-open|{campaign}|{user}").as_bytes());
        let [a, b, c, d, e, f, g, h, ..] = tag;
        u64::from_be_bytes([a, b, c, d, e, f, g, h]) % super::PRE_OPEN_SCORES
    }

    /// The claims of `token` if this key signed it as a token of `kind`; `None` for
    /// anything forged, altered, malformed or of the other kind. Expiry, campaign and
    /// user are the caller's to check (an expired queue token still answers `expired`).
    pub fn verify(&self, token: &str, kind: TokenKind) -> Option<Claims> {
        let (payload, tag) = token.trim().split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !self.0.verifies(&payload, &tag) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.split('|');
        let fields: [&str; 6] = std::array::from_fn(|_| parts.next().unwrap_or(""));
        let [version, tag, campaign, user, ticket, expires] = fields;
        if version != "v1" || tag != kind.tag() || parts.next().is_some() {
            return None;
        }
        Some(Claims {
            kind,
            campaign: campaign.to_owned(),
            user: user.to_owned(),
            ticket: ticket.to_owned(),
            expires_ms: expires.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_open_scores_are_the_users_own_below_the_arrivals_and_the_keys() {
        let (k, other) = (key(), TokenKey::new(&[7; 40]).unwrap());
        let scores: std::collections::HashSet<u64> = (0..1_000)
            .map(|i| k.pre_open_score("c", &format!("u{i}")))
            .collect();
        assert!(scores.iter().all(|&s| s < super::super::PRE_OPEN_SCORES));
        assert!(scores.len() > 990, "scores repeat: {}", scores.len());
        assert_eq!(k.pre_open_score("c", "u1"), k.pre_open_score("c", "u1"));
        assert_ne!(k.pre_open_score("c", "u1"), k.pre_open_score("d", "u1"));
        assert_ne!(k.pre_open_score("c", "u1"), other.pre_open_score("c", "u1"));
    }

    fn key() -> TokenKey {
        TokenKey::new(b"a-waiting-room-key-of-32-bytes-at-least").unwrap()
    }

    fn claims(kind: TokenKind) -> Claims {
        Claims {
            kind,
            campaign: "team.flash".into(),
            user: "alice@example.com".into(),
            ticket: if kind == TokenKind::Queue {
                "1125899906842625".into()
            } else {
                String::new()
            },
            expires_ms: 2_000,
        }
    }

    #[test]
    fn signs_and_verifies_both_kinds() {
        for kind in [TokenKind::Queue, TokenKind::Admission] {
            let token = key().sign(&claims(kind));
            assert_eq!(key().verify(&token, kind), Some(claims(kind)));
            assert!(!token.contains('|') && !token.contains('='), "{token}");
        }
    }

    #[test]
    fn refuses_tampered_forged_and_the_other_kind() {
        let token = key().sign(&claims(TokenKind::Admission));
        assert_eq!(key().verify(&token, TokenKind::Queue), None, "other kind");
        let other = TokenKey::new(b"another-key-that-is-32-bytes-long!!").unwrap();
        assert_eq!(other.verify(&token, TokenKind::Admission), None, "forged");
        // Another user's name in the payload, the old tag kept.
        let (_, tag) = token.split_once('.').unwrap();
        let mut c = claims(TokenKind::Admission);
        c.user = "mallory".into();
        let payload = key().sign(&c);
        let (payload, _) = payload.split_once('.').unwrap();
        let spliced = format!("{payload}.{tag}");
        assert_eq!(key().verify(&spliced, TokenKind::Admission), None);
        for bad in ["", ".", "abc", "abc.def", &token[1..], &format!("{token}x")] {
            assert_eq!(key().verify(bad, TokenKind::Admission), None, "{bad:?}");
        }
    }

    #[test]
    fn expiry_and_campaign_are_in_the_claims() {
        let c = key()
            .verify(&key().sign(&claims(TokenKind::Queue)), TokenKind::Queue)
            .unwrap();
        assert!(!c.expired(1_999));
        assert!(c.expired(2_000));
        assert_ne!(c.campaign, "team.other");
        // A later expiry is a different payload: the old tag does not cover it.
        let mut later = claims(TokenKind::Queue);
        later.expires_ms = 9_999_999;
        let (payload, _) = key()
            .sign(&later)
            .split_once('.')
            .map(|(p, _)| (p.to_owned(), ()))
            .unwrap();
        let old = key().sign(&claims(TokenKind::Queue));
        let (_, tag) = old.split_once('.').unwrap();
        assert_eq!(
            key().verify(&format!("{payload}.{tag}"), TokenKind::Queue),
            None
        );
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        assert!(TokenKey::new(b"short").is_err());
        assert!(TokenKey::new(b"   padded but short   \n").is_err());
        assert_eq!(format!("{:?}", key()), "TokenKey(<secret>)");
    }
}
