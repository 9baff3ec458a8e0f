//! Who is asking: the `sub` of a bearer JWT verified against the configured keys (HS256
//! secret, or RS256/ES256 keys from a JWKS file or URL, refreshed), or, with `--auth none`,
//! nobody in particular (the body names the user; local rehearsal only).

mod hs256;
mod jwks;
mod keys;
pub mod mint;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, Validation};
use prometheus::IntCounterVec;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use stampede_core::Error;
use stampede_core::ids::UserId;

pub use keys::{KeySet, VerifyKey};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// `/readyz` with `--auth none`, and the startup warning.
pub const INSECURE_READY: &str = "ready (auth: none — INSECURE, local rehearsal only)";
/// `--jwt-jwks-refresh-secs` unless set.
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;

/// How `serve` learns who is asking.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// The body's `userId` is believed: for local rehearsal only, never a deployment.
    None,
    /// The user is the `sub` of a verified bearer JWT.
    Jwt(JwtConfig),
}

/// What a token must carry and which keys sign it.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The `iss` every token must name.
    pub issuer: String,
    /// The `aud` every token must include.
    pub audience: String,
    /// Where the verification keys come from.
    pub keys: KeySource,
    /// How often JWKS keys are read again.
    pub refresh: Duration,
}

/// Where the verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// One HS256 shared secret.
    Hs256(Secret),
    /// A JWKS file (RS256/ES256 keys), read again every refresh.
    JwksFile(PathBuf),
    /// A JWKS URL (`http://` only: no TLS client is built in), fetched every refresh.
    JwksUrl(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Hs256(_) => f.write_str("Hs256(<secret>)"),
            KeySource::JwksFile(p) => write!(f, "JwksFile({})", p.display()),
            KeySource::JwksUrl(u) => write!(f, "JwksUrl({u})"),
        }
    }
}

/// A shared secret that never prints.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.as_bytes().to_vec()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl AuthConfig {
    /// The verifier for this configuration (loading its keys once), started refreshing
    /// until `shutdown` (each refresh counted in `refreshes` by result); `None` with
    /// `--auth none`, after a loud warning.
    pub async fn start(
        &self,
        refreshes: IntCounterVec,
        shutdown: &CancellationToken,
    ) -> Result<Option<Arc<Verifier>>, Error> {
        match self {
            AuthConfig::None => {
                tracing::warn!(
                    "--auth none: the request body names the user and nothing is verified; \
                     {INSECURE_READY}"
                );
                Ok(None)
            }
            AuthConfig::Jwt(jwt) => {
                let verifier = Arc::new(Verifier::load(jwt).await?);
                verifier.refresh(jwt, refreshes, shutdown.clone());
                tracing::info!(issuer = %jwt.issuer, audience = %jwt.audience, keys = ?jwt.keys, "verifying bearer tokens");
                Ok(Some(verifier))
            }
        }
    }
}

/// Why a request has no user. The two codes are all a client learns; the reason a forger
/// could use stays in the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No (or a blank) `Authorization` header.
    Unauthenticated,
    /// Anything else: not a bearer token, malformed, bad signature, expired, not yet
    /// valid, wrong issuer or audience, unknown key, a `sub` that is not a user id.
    InvalidToken,
}

/// The verifier `serve` runs with: the claims to check and the keys, swapped whole on
/// a JWKS refresh so that a request never sees half a key set.
pub struct Verifier {
    /// One validation per JWKS algorithm, built once: a request clones nothing.
    validations: [(Algorithm, Validation); 3],
    keys: KeySet,
    issuer: String,
    audience: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Set in the tokens load-test runners mint (`k6-jobs/lib.js`): only these reach a
    /// load test's shadow campaign.
    #[serde(default)]
    stampede_load_test: bool,
}

/// A verified caller: the token's user, and whether it is a load-test runner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`.
    pub user: UserId,
    /// The token carries `"stampede_load_test": true`.
    pub load_test: bool,
}

impl Verifier {
    /// Loads the keys once (a JWKS that cannot be read or holds no usable key is an
    /// error: `serve` refuses to start without a way to verify).
    pub async fn load(config: &JwtConfig) -> Result<Self, Error> {
        let keys = match &config.keys {
            KeySource::Hs256(secret) => KeySet::hs256(&secret.0)?,
            source => KeySet::jwks(jwks::fetch(source).await?)?,
        };
        Ok(Self::with_keys(config, keys))
    }

    fn with_keys(config: &JwtConfig, keys: KeySet) -> Self {
        // The same rules as `hs256::verify`: exp, iss, aud and sub required, nbf checked.
        let validation = |alg| {
            // One algorithm per validation, the key's own: a token cannot pick HS256 to
            // have a public key used as an HMAC secret.
            let mut v = Validation::new(alg);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            v.set_issuer(&[&config.issuer]);
            v.set_audience(&[&config.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            (alg, v)
        };
        let validations = [
            validation(Algorithm::HS256),
            validation(Algorithm::RS256),
            validation(Algorithm::ES256),
        ];
        Self {
            validations,
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// Keeps a JWKS source's keys fresh until `shutdown`; a failed refresh keeps the last
    /// good keys.
    pub fn refresh(
        self: &Arc<Self>,
        config: &JwtConfig,
        refreshes: IntCounterVec,
        shutdown: CancellationToken,
    ) {
        if matches!(config.keys, KeySource::Hs256(_)) {
            return;
        }
        let (me, source, every) = (self.clone(), config.keys.clone(), config.refresh);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match jwks::fetch(&source)
                    .await
                    .and_then(|set| me.keys.replace(set))
                {
                    Ok(n) => {
                        refreshes.with_label_values(&["ok"]).inc();
                        tracing::debug!(keys = n, "jwks refreshed");
                    }
                    Err(e) => {
                        refreshes.with_label_values(&["failed"]).inc();
                        tracing::warn!(error = %e, "jwks refresh failed; keeping the last good keys")
                    }
                }
            }
        });
    }

    /// The user a request's `Authorization` header proves, or why not.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<UserId, Rejection> {
        self.caller(headers).map(|c| c.user)
    }

    /// The caller a request's `Authorization` header proves, or why not.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, Rejection> {
        let token = bearer(headers)?;
        match &self.keys {
            KeySet::Hs256(key) => hs256::verify(key, token, &self.expected()).map_err(Cow::from),
            KeySet::Jwks(keys) => keys::with_jwks_key(keys, token, |key| self.general(token, key)),
        }
        .map_err(|reason| {
            tracing::debug!(%reason, "token refused");
            Rejection::InvalidToken
        })
    }

    fn expected(&self) -> hs256::Expected<'_> {
        hs256::Expected {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: LEEWAY_SECS,
        }
    }

    /// A JWKS key's token, through jsonwebtoken.
    fn general(&self, token: &str, key: &VerifyKey) -> Result<Caller, Cow<'static, str>> {
        let (_, validation) = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == key.algorithm)
            .ok_or("no validation for the key's algorithm")?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, validation)
            .map_err(|e| format!("{:?}", e.kind()))?
            .claims;
        Ok(Caller {
            user: UserId::parse(&claims.sub).map_err(|_| "sub is not a user id")?,
            load_test: claims.stampede_load_test,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Rejection::Unauthenticated);
    };
    let value = value.to_str().map_err(|_| Rejection::InvalidToken)?.trim();
    if value.is_empty() {
        return Err(Rejection::Unauthenticated);
    }
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Rejection::InvalidToken),
    }
}

#[cfg(test)]
mod tests;
