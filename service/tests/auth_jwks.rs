//! RS256 and ES256 keys from a JWKS file verify tokens, and a rotation (the file
//! rewritten with a new key) is picked up at the next refresh while the old key stops
//! working.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TEST_AUDIENCE, TEST_ISSUER, eventually, id, setup_with, status_and_json, unique};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use stampede_service::auth::{AuthConfig, JwtConfig, KeySource};

/// A fresh private key (PKCS#8 PEM) from openssl: `rsa` or `ec` (P-256).
fn private_key(dir: &Path, kind: &str, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let opts: &[&str] = match kind {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let ok = Command::new("openssl")
        .args(["genpkey", "-quiet"])
        .args(opts)
        .arg("-out")
        .arg(&path)
        .status()
        .expect("openssl (Debian package) generates the test keys");
    assert!(ok.success(), "openssl genpkey {kind}");
    std::fs::read(&path).unwrap()
}

/// A signing key with its kid and algorithm.
struct Signer {
    key: EncodingKey,
    kid: String,
    alg: Algorithm,
}

impl Signer {
    fn new(dir: &Path, alg: Algorithm, kid: &str) -> Self {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private_key(dir, "rsa", kid)),
            _ => EncodingKey::from_ec_pem(&private_key(dir, "ec", kid)),
        }
        .unwrap();
        Self {
            key,
            kid: kid.into(),
            alg,
        }
    }

    /// Its public half as a JWK.
    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    fn token(&self, sub: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let now = get_current_timestamp();
        let claims =
            json!({"sub": sub, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "exp": now + 600});
        encode(&header, &claims, &self.key).unwrap()
    }
}

fn write_jwks(path: &Path, signers: &[&Signer]) {
    let set = JwkSet {
        keys: signers.iter().map(|s| s.jwk()).collect(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&set).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap(); // whole, as a ConfigMap update lands
}

#[tokio::test]
async fn rs256_and_es256_keys_from_a_jwks_file_verify_and_rotate() {
    let dir = std::env::temp_dir().join(unique("stampede-jwks"));
    std::fs::create_dir_all(&dir).unwrap();
    let (rsa, ec) = (
        Signer::new(&dir, Algorithm::RS256, "rsa-1"),
        Signer::new(&dir, Algorithm::ES256, "ec-1"),
    );
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[&rsa, &ec]);
    let (_redis, svc, store) = setup_with(|c| {
        c.auth = AuthConfig::Jwt(JwtConfig {
            issuer: TEST_ISSUER.into(),
            audience: TEST_AUDIENCE.into(),
            keys: KeySource::JwksFile(jwks.clone()),
            refresh: Duration::from_millis(100),
        });
    })
    .await;
    store.ensure_campaign(&id("c"), 100, None).await.unwrap();
    let issue = |token: String| {
        status_and_json(
            svc.http
                .post(svc.url("/v1/campaigns/c/issue"))
                .bearer_auth(token),
        )
    };
    assert_eq!(issue(rsa.token("r1")).await.0, 201, "RS256");
    assert_eq!(issue(ec.token("e1")).await.0, 201, "ES256");

    // Rotation: the RSA key is replaced by a new one; the EC key stays.
    let rsa2 = Signer::new(&dir, Algorithm::RS256, "rsa-2");
    write_jwks(&jwks, &[&rsa2, &ec]);
    let mut n = 0;
    eventually("the rotated key verifies", Duration::from_secs(10), || {
        n += 1;
        let token = rsa2.token(&format!("r2-{n}"));
        async { (issue(token).await.0 == 201).then_some(()) }
    })
    .await;
    let (s, b) = issue(rsa.token("r1-late")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_token")),
        "the old key is gone"
    );
    assert_eq!(
        issue(ec.token("e2")).await.0,
        201,
        "the kept key still verifies"
    );

    // A broken rewrite keeps the last good keys.
    std::fs::write(&jwks, "not json").unwrap();
    refresh_failed(&svc).await;
    assert_eq!(issue(ec.token("e3")).await.0, 201, "last good keys kept");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until a JWKS refresh has failed (the service counts them).
async fn refresh_failed(svc: &common::Service) {
    let failed = r#"stampede_auth_jwks_refreshes_total{result="failed"}"#;
    eventually("a failed refresh", Duration::from_secs(10), || async {
        (svc.metric(failed).await >= 1.0).then_some(())
    })
    .await;
}

/// A JWKS served over HTTP (`--jwt-jwks-url`): its keys verify, and while the URL fails
/// the last good keys stay.
#[tokio::test]
async fn a_jwks_url_verifies_and_an_outage_keeps_the_last_good_keys() {
    use axum::http::StatusCode;
    use std::sync::{Arc, Mutex};
    let dir = std::env::temp_dir().join(unique("stampede-jwks-url"));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = Signer::new(&dir, Algorithm::ES256, "ec-url");
    let set = serde_json::to_string(&JwkSet {
        keys: vec![ec.jwk()],
    })
    .unwrap();
    // What the JWKS endpoint answers: the set, or (None) a 503.
    let answer = Arc::new(Mutex::new(Some(set)));
    let served = answer.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = served.lock().unwrap().clone();
            async move { body.ok_or(StatusCode::SERVICE_UNAVAILABLE) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_redis, svc, store) = setup_with(|c| {
        c.auth = AuthConfig::Jwt(JwtConfig {
            issuer: TEST_ISSUER.into(),
            audience: TEST_AUDIENCE.into(),
            keys: KeySource::JwksUrl(url),
            refresh: Duration::from_millis(100),
        });
    })
    .await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let issue = |token: String| {
        status_and_json(
            svc.http
                .post(svc.url("/v1/campaigns/c/issue"))
                .bearer_auth(token),
        )
    };
    assert_eq!(issue(ec.token("u1")).await.0, 201);
    *answer.lock().unwrap() = None;
    refresh_failed(&svc).await;
    assert_eq!(issue(ec.token("u2")).await.0, 201, "last good keys kept");
    let _ = std::fs::remove_dir_all(&dir);
}
