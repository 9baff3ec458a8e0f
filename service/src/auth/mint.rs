//! Mints HS256 tokens, for `stampede-service token` (operators, curl users, the bench).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

use stampede_core::Error;
use stampede_core::ids::UserId;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs tokens for users with one secret, issuer and audience.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl Minter {
    /// A minter whose tokens live `ttl_secs` from the moment each is signed.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: u64) -> Result<Self, Error> {
        let key = EncodingKey::from_secret(secret)
            .map_err(|e| Error::InvalidInput(format!("HS256 secret: {e}")))?;
        Ok(Self {
            key,
            header: Header::default(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        })
    }

    /// A token whose `sub` is `user` (which must be a user id).
    pub fn token(&self, user: &str) -> Result<String, Error> {
        let user = UserId::parse(user)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user.as_str(),
            iss: &self.issuer,
            aud: &self.audience,
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&self.header, &claims, &self.key)
            .map_err(|e| Error::InvalidInput(format!("signing a token: {e}")))
    }
}
