//! `spec.auth`: how the issuer knows who is asking (the `sub` of a bearer JWT it
//! verifies) and where the load-test runners get the key to mint their users' tokens.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// `spec.auth.issuer` and `spec.auth.audience` unless set.
pub const DEFAULT_TOKEN_CLAIM: &str = "stampede";
/// The Secret holding the HS256 secret unless `hs256SecretRef` or `jwksUrl` is set.
pub const DEFAULT_AUTH_SECRET: &str = "stampede-auth";
/// Its key.
pub const DEFAULT_AUTH_SECRET_KEY: &str = "hs256-secret";

/// Bearer-token verification. With neither key source set, the HS256 secret is key
/// `hs256-secret` of Secret `stampede-auth` in the campaign's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.hs256SecretRef) && has(self.jwksUrl))").message("set at most one of auth.hs256SecretRef and auth.jwksUrl"))]
pub struct AuthSpec {
    /// The `iss` every token must carry.
    #[serde(default = "default_claim")]
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// The `aud` every token must include.
    #[serde(default = "default_claim")]
    #[schemars(length(min = 1))]
    pub audience: String,
    /// The Secret key holding the HS256 secret (at least 32 bytes). The issuer verifies
    /// with it and the load-test runners mint their users' tokens with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret_ref: Option<SecretKeyRef>,
    /// Instead: an `http://` JWKS URL with RS256/ES256 keys, read every 5 minutes. Load
    /// tests need `hs256SecretRef` (their runners mint HS256 tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^http://.+"))]
    pub jwks_url: Option<String>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        Self {
            issuer: default_claim(),
            audience: default_claim(),
            hs256_secret_ref: None,
            jwks_url: None,
        }
    }
}

fn default_claim() -> String {
    DEFAULT_TOKEN_CLAIM.into()
}
