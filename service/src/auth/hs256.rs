//! HS256 tokens checked without the general JWT path. That path (jsonwebtoken) parses the
//! header into a struct of a dozen optional fields, keys a new HMAC, decodes the claims
//! twice and reads `iss`/`aud` through untagged enums: ~12 % of the service's CPU on the
//! sold-out path, the cheapest answer it gives, and a stampede's every request carries a
//! token. Here the secret is keyed once and the claims are read once into borrowed fields,
//! by the same rules `Verifier::with_keys` gives the general path (tests.rs compares the
//! two on every token it makes).

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

use super::Caller;
use stampede_core::ids::UserId;
use stampede_core::mac::MacKey;

/// What a token must name, and how much clock skew is forgiven.
pub struct Expected<'a> {
    /// The one accepted `iss`.
    pub issuer: &'a str,
    /// The `aud` (or one of them) a token must carry.
    pub audience: &'a str,
    /// Seconds of skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    /// Extensions the signer marked critical: none is understood here, so any refuses the
    /// token (RFC 7515 §4.1.11).
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aud: Option<Audience<'a>>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default)]
    stampede_load_test: bool,
}

/// `aud`: one string, or a list of them.
enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Audience<'_> {
    fn includes(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Audience<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Audience::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Audience::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(a) = seq.next_element::<Cow<'de, str>>()? {
                    all.push(a);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A NumericDate: whole seconds, or a non-negative finite number rounded to them.
fn numeric_date<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("seconds since the epoch")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                Ok(Some(v.round() as u64))
            } else {
                Err(E::custom("a NumericDate must fit in u64"))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Checks `token`'s signature with `key`, then its claims against `expected` at the
/// current time; the reason it is refused names no secret and goes only to the debug log.
pub fn verify(key: &MacKey, token: &str, expected: &Expected<'_>) -> Result<Caller, &'static str> {
    let mut parts = token.splitn(4, '.');
    let (Some(header64), Some(claims64), Some(tag64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three segments");
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header64)
        .map_err(|_| "header: not base64url")?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| "header: not JSON")?;
    if header.alg != "HS256" {
        return Err("algorithm is not HS256");
    }
    if header.crit.is_some() {
        return Err("header: unknown critical extensions");
    }
    let mut tag = [0u8; 48];
    let n = URL_SAFE_NO_PAD
        .decode_slice(tag64, &mut tag)
        .map_err(|_| "signature: not base64url")?;
    // The signed message is the first two segments with the dot between them.
    let signed = &token.as_bytes()[..header64.len() + 1 + claims64.len()];
    if !key.verifies(signed, &tag[..n]) {
        return Err("bad signature");
    }

    let claims_json = URL_SAFE_NO_PAD
        .decode(claims64)
        .map_err(|_| "claims: not base64url")?;
    let claims: Claims = serde_json::from_slice(&claims_json).map_err(|_| "claims: malformed")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    check(claims, expected, now)
}

/// The claims' rules: `exp`, `iss`, `aud` and `sub` required; not expired and not early
/// beyond the leeway; the expected issuer and audience; a `sub` that is a user id.
fn check(claims: Claims<'_>, expected: &Expected<'_>, now: u64) -> Result<Caller, &'static str> {
    let (Some(exp), Some(iss), Some(aud), Some(sub)) =
        (claims.exp, claims.iss, claims.aud, claims.sub)
    else {
        return Err("a required claim (exp, iss, aud, sub) is missing");
    };
    if exp < now.saturating_sub(expected.leeway) {
        return Err("expired");
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + expected.leeway) {
        return Err("not yet valid");
    }
    if iss != expected.issuer {
        return Err("another issuer");
    }
    if !aud.includes(expected.audience) {
        return Err("another audience");
    }
    Ok(Caller {
        user: UserId::parse(&sub).map_err(|_| "sub is not a user id")?,
        load_test: claims.stampede_load_test,
    })
}
