//! The verification keys: one HS256 secret, or the usable keys of a JWKS by `kid`,
//! replaced whole when the JWKS is read again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use stampede_core::Error;
use stampede_core::mac::MacKey;

/// A decoded key and the one algorithm it verifies.
pub struct VerifyKey {
    /// Decoded once, when loaded.
    pub key: DecodingKey,
    /// The only `alg` a token verified by this key may name.
    pub algorithm: Algorithm,
}

/// The keys a verifier uses.
pub enum KeySet {
    /// One HS256 secret, fixed for the process' life (tokens checked by `hs256::verify`).
    Hs256(MacKey),
    /// JWKS keys by `kid`, swapped whole on refresh.
    Jwks(JwksKeys),
}

impl KeySet {
    /// The HS256 key set of `secret` (at least 32 bytes: a short secret is guessable).
    pub fn hs256(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < 32 {
            return Err(Error::InvalidInput(
                "--jwt-hs256-secret must be at least 32 bytes".into(),
            ));
        }
        Ok(Self::Hs256(MacKey::new(secret)))
    }

    /// The key set of a JWKS document.
    pub fn jwks(json: String) -> Result<Self, Error> {
        Ok(Self::Jwks(RwLock::new(Arc::new(parse(&json)?))))
    }

    /// Replaces a JWKS key set with the usable keys of `json`; returns how many there are.
    /// A document without any usable key changes nothing (an error).
    pub fn replace(&self, json: String) -> Result<usize, Error> {
        let Self::Jwks(keys) = self else {
            return Ok(1);
        };
        let fresh = Arc::new(parse(&json)?);
        let n = fresh.len();
        *keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(n)
    }
}

/// JWKS keys by `kid` (a key without one under ""), swapped whole on refresh.
pub type JwksKeys = RwLock<Arc<HashMap<String, VerifyKey>>>;

/// Runs `verify` with the key of `keys` that `token` names (its header's `kid`, or the
/// only key); refused when there is none or the header names another algorithm.
pub fn with_jwks_key<T>(
    keys: &JwksKeys,
    token: &str,
    verify: impl FnOnce(&VerifyKey) -> Result<T, Cow<'static, str>>,
) -> Result<T, Cow<'static, str>> {
    let keys = keys.read().unwrap_or_else(|p| p.into_inner()).clone();
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| format!("header: {:?}", e.kind()))?;
    let kid = header.kid.as_deref().unwrap_or("");
    let key = match keys.get(kid) {
        Some(key) => key,
        // A token without a kid is fine while the set holds a single key.
        None if header.kid.is_none() && keys.len() == 1 => keys.values().next().ok_or("no key")?,
        None => return Err("unknown kid".into()),
    };
    if key.algorithm != header.alg {
        return Err(format!("algorithm {:?} is not the key's", header.alg).into());
    }
    verify(key)
}

#[derive(serde::Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWKS (RS256, ES256 on P-256, for signatures); others are skipped
/// with a warning naming their `kid`.
fn parse(json: &str) -> Result<HashMap<String, VerifyKey>, Error> {
    let doc: Document = serde_json::from_str(json)
        .map_err(|e| Error::InvalidInput(format!("the JWKS is not {{\"keys\": [...]}}: {e}")))?;
    let mut keys = HashMap::new();
    for raw in doc.keys {
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS: skipping a key this service cannot read");
                continue;
            }
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        match usable(&jwk) {
            Some(key) => {
                keys.insert(kid, key);
            }
            None => tracing::warn!(
                kid,
                "JWKS: skipping a key that is not RS256/ES256 for signing"
            ),
        }
    }
    if keys.is_empty() {
        return Err(Error::InvalidInput(
            "the JWKS holds no RS256 or ES256 signing key".into(),
        ));
    }
    Ok(keys)
}

/// The key and algorithm of `jwk`, if it is one this service verifies with.
fn usable(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { key, algorithm })
}
