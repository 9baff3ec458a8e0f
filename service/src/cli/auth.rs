//! `serve`'s authentication flags, and `token`: mint HS256 tokens for operators, curl
//! users and the benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::mint::Minter;
use crate::auth::{AuthConfig, DEFAULT_JWKS_REFRESH_SECS, JwtConfig, KeySource, Secret};
use stampede_core::Error;

/// How `serve` learns who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// The user is the `sub` of a verified bearer JWT.
    Jwt,
    /// The body's `userId` is believed. INSECURE: local rehearsal only.
    None,
}

/// `serve`'s authentication flags.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// `jwt`: the user is the `sub` of a bearer JWT the service verifies; `none`: the
    /// body's `userId` is believed (INSECURE, local rehearsal only; /readyz says so).
    #[arg(long, env = "STAMPEDE_AUTH", value_enum, default_value_t = AuthMode::Jwt)]
    pub auth: AuthMode,
    /// HS256 shared secret (at least 32 bytes). Prefer the variable (from a Secret): a
    /// flag shows in the process list.
    #[arg(long, env = "STAMPEDE_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<Secret>,
    /// JWKS file with the RS256/ES256 verification keys, read again every refresh.
    #[arg(long, env = "STAMPEDE_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// JWKS URL (http:// only) with the RS256/ES256 verification keys, fetched every refresh.
    #[arg(long, env = "STAMPEDE_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Seconds between JWKS reads; a failed read keeps the last good keys.
    #[arg(long, env = "STAMPEDE_JWT_JWKS_REFRESH_SECS", default_value_t = DEFAULT_JWKS_REFRESH_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub jwt_jwks_refresh_secs: u64,
    /// The `iss` every token must carry (required with --auth jwt).
    #[arg(long, env = "STAMPEDE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must include (required with --auth jwt).
    #[arg(long, env = "STAMPEDE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl AuthArgs {
    /// The configuration these flags describe, or an error naming the missing flag.
    pub fn config(&self) -> Result<AuthConfig, Error> {
        if self.auth == AuthMode::None {
            return Ok(AuthConfig::None);
        }
        let required = |v: &Option<String>, flag: &str, var: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| Error::InvalidInput(format!("--auth jwt needs {flag} (or {var})")))
        };
        let issuer = required(&self.jwt_issuer, "--jwt-issuer", "STAMPEDE_JWT_ISSUER")?;
        let audience = required(
            &self.jwt_audience,
            "--jwt-audience",
            "STAMPEDE_JWT_AUDIENCE",
        )?;
        Ok(AuthConfig::Jwt(JwtConfig {
            issuer,
            audience,
            keys: self.key_source()?,
            refresh: Duration::from_secs(self.jwt_jwks_refresh_secs),
        }))
    }

    fn key_source(&self) -> Result<KeySource, Error> {
        let secret = self.jwt_hs256_secret.as_ref().filter(|s| !s.0.is_empty());
        match (secret, &self.jwt_jwks_file, &self.jwt_jwks_url) {
            (Some(s), None, None) => Ok(KeySource::Hs256(s.clone())),
            (None, Some(f), None) => Ok(KeySource::JwksFile(f.clone())),
            (None, None, Some(u)) if u.starts_with("http://") => Ok(KeySource::JwksUrl(u.clone())),
            (None, None, Some(_)) => Err(Error::InvalidInput(
                "--jwt-jwks-url must be http:// (no TLS client is built in; mount the JWKS \
                 and use --jwt-jwks-file, or serve it in-cluster)"
                    .into(),
            )),
            (None, None, None) => Err(Error::InvalidInput(
                "--auth jwt needs a key: --jwt-hs256-secret (STAMPEDE_JWT_HS256_SECRET), \
                 --jwt-jwks-file or --jwt-jwks-url (--auth none is for local rehearsal only)"
                    .into(),
            )),
            _ => Err(Error::InvalidInput(
                "give one of --jwt-hs256-secret, --jwt-jwks-file, --jwt-jwks-url".into(),
            )),
        }
    }
}

/// `token`: print HS256 tokens, one a line.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The users (token subjects) to mint for.
    #[arg(long, num_args = 1..)]
    pub sub: Vec<String>,
    /// Instead of --sub: mint for `<prefix>-0` … `<prefix>-<count-1>`.
    #[arg(long, requires = "count", conflicts_with = "sub")]
    pub sub_prefix: Option<String>,
    /// How many users with --sub-prefix.
    #[arg(long)]
    pub count: Option<u64>,
    /// The variable holding the HS256 secret (never a flag: flags show in `ps`).
    #[arg(long, default_value = "STAMPEDE_JWT_HS256_SECRET")]
    pub secret_env: String,
    /// The token's `iss`.
    #[arg(long, env = "STAMPEDE_JWT_ISSUER")]
    pub issuer: String,
    /// The token's `aud`.
    #[arg(long, env = "STAMPEDE_JWT_AUDIENCE")]
    pub audience: String,
    /// Seconds each token stays valid.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
    /// Print `<sub> <token>` a line (a client that also names the user in the body).
    #[arg(long)]
    pub with_sub: bool,
}

/// Runs `token`.
pub fn token(a: TokenArgs) -> Result<(), Error> {
    let secret = std::env::var(&a.secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::InvalidInput(format!("{} is not set", a.secret_env)))?;
    let minter = Minter::new(secret.as_bytes(), &a.issuer, &a.audience, a.ttl_secs)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let with_sub = a.with_sub;
    let mut mint = |user: &str| -> Result<(), Error> {
        let token = minter.token(user)?;
        match with_sub {
            true => writeln!(out, "{user} {token}")?,
            false => writeln!(out, "{token}")?,
        }
        Ok(())
    };
    match (&a.sub_prefix, a.count) {
        (Some(prefix), Some(n)) => (0..n).try_for_each(|i| mint(&format!("{prefix}-{i}")))?,
        _ if a.sub.is_empty() => {
            return Err(Error::InvalidInput(
                "give --sub USER… or --sub-prefix P --count N".into(),
            ));
        }
        _ => a.sub.iter().try_for_each(|u| mint(u))?,
    }
    out.flush()?;
    Ok(())
}
