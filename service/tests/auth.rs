//! Verified identity on the issue path (issue #13): a user is the `sub` of a bearer JWT
//! the service verifies. Forged, expired, early, wrong-audience, wrong-issuer, unsigned
//! and malformed tokens get 401 `invalid_token`, a missing one 401 `unauthenticated`, and
//! none of them reaches Redis; a user reads only their own coupon; a bot posting user ids
//! without tokens issues nothing; `--auth none` trusts the body and says so.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::role::service_command;
use common::{
    Service, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, exit_within, id, issuance_counts, setup,
    setup_with, status_and_json, token,
};
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use stampede_service::auth::AuthConfig;

fn claims(sub: &str) -> Value {
    let now = get_current_timestamp();
    json!({ "sub": sub, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "exp": now + 600 })
}

fn signed(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    encode(&Header::default(), claims, &key).unwrap()
}

fn edited(sub: &str, field: &str, value: Value) -> String {
    let mut c = claims(sub);
    c[field] = value;
    signed(&c, TEST_SECRET)
}

/// Every token a forger or a broken client could send, by what is wrong with it.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let now = get_current_timestamp() as i64;
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims("u1")));
    vec![
        (
            "forged",
            signed(&claims("u1"), "another-secret-that-is-long-enough!!"),
        ),
        ("expired", edited("u1", "exp", json!(now - 120))),
        ("not yet valid", edited("u1", "nbf", json!(now + 120))),
        ("wrong audience", edited("u1", "aud", json!("someone-else"))),
        (
            "wrong issuer",
            edited("u1", "iss", json!("https://evil.test")),
        ),
        ("alg none", unsigned),
        ("malformed", "abc.def".into()),
    ]
}

fn post(svc: &Service, campaign: &str, body: Value) -> reqwest::RequestBuilder {
    svc.http
        .post(svc.url(&format!("/v1/campaigns/{campaign}/issue")))
        .json(&body)
}

#[tokio::test]
async fn bad_and_missing_tokens_get_401_and_never_reach_redis() {
    let (redis, svc, store) = setup().await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    for (what, bad) in bad_tokens() {
        let r = post(&svc, "c", json!({"userId": "u1"}))
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(challenge, r#"Bearer error="invalid_token""#, "{what}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], "invalid_token", "{what}: {b}");
        let (s, b) = status_and_json(
            svc.http
                .get(svc.url("/v1/campaigns/c/users/u1/coupon"))
                .bearer_auth(&bad),
        )
        .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("invalid_token")),
            "{what} lookup"
        );
    }
    let (s, b) = status_and_json(post(&svc, "c", json!({"userId": "u1"}))).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("unauthenticated")));
    assert_eq!(
        issuance_counts(&redis, "c").await,
        (0, 0, 0),
        "nothing issued"
    );
    let route = r#"route="/v1/campaigns/{campaign}/issue"}"#;
    let refused = svc
        .metric(&format!(
            r#"stampede_http_requests_total{{outcome="invalid_token",{route}"#
        ))
        .await;
    assert_eq!(refused, bad_tokens().len() as f64, "401s counted by code");
}

#[tokio::test]
async fn a_bot_posting_user_ids_without_tokens_issues_nothing() {
    let (redis, svc, store) = setup().await;
    store
        .ensure_campaign(&id("drain"), 1_000, None)
        .await
        .unwrap();
    for i in 0..200 {
        let (s, b) =
            status_and_json(post(&svc, "drain", json!({"userId": format!("bot-{i}")}))).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("unauthenticated")),
            "bot-{i}"
        );
    }
    assert_eq!(issuance_counts(&redis, "drain").await, (0, 0, 0));
    let (s, _) = svc.issue("drain", "human").await;
    assert_eq!(s, 201, "a user with a token still gets one");
}

#[tokio::test]
async fn a_user_reads_only_their_own_coupon() {
    let (_redis, svc, store) = setup().await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let as_user = |path: &str, user: &str| {
        status_and_json(svc.http.get(svc.url(path)).bearer_auth(token(user)))
    };
    // What u1 sees before holding a coupon is what anyone else sees after.
    let before = as_user("/v1/campaigns/c/users/u1/coupon", "u1").await;
    assert_eq!(
        (before.0, before.1["error"].as_str()),
        (404, Some("not_issued"))
    );
    let (s, mine) = svc.issue("c", "u1").await;
    assert_eq!(s, 201);
    assert_eq!(
        as_user("/v1/campaigns/c/users/u1/coupon", "u1").await,
        (200, mine.clone())
    );
    assert_eq!(
        as_user("/v1/campaigns/c/coupon", "u1").await,
        (200, mine.clone())
    );
    assert_eq!(
        as_user("/v1/campaigns/c/users/u1/coupon", "u2").await,
        before,
        "another user's coupon: the same 404 as no coupon"
    );
    // Asking to issue for u1 with u2's token does not hand u1's coupon out either.
    let (s, b) =
        status_and_json(post(&svc, "c", json!({"userId": "u1"})).bearer_auth(token("u2"))).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("user_mismatch")),
        "{b}"
    );
    assert_eq!(
        as_user("/v1/campaigns/c/coupon", "u2").await.0,
        404,
        "u2 got nothing"
    );
}

#[tokio::test]
async fn with_a_token_the_body_may_be_empty_or_repeat_the_user() {
    let (_redis, svc, store) = setup().await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let url = svc.url("/v1/campaigns/c/issue");
    let empty = svc.http.post(&url).bearer_auth(token("u1"));
    let (s, first) = status_and_json(empty).await;
    assert_eq!((s, first["userId"].as_str()), (201, Some("u1")), "{first}");
    let (s, again) = status_and_json(post(&svc, "c", json!({})).bearer_auth(token("u1"))).await;
    assert_eq!((s, &again), (200, &first));
    let same = post(&svc, "c", json!({"userId": "u1"})).bearer_auth(token("u1"));
    assert_eq!(status_and_json(same).await, (200, first));
}

#[tokio::test]
async fn auth_none_trusts_the_body_and_says_so() {
    let (redis, svc, store) = setup_with(|c| c.auth = AuthConfig::None).await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let (s, b) = status_and_json(post(&svc, "c", json!({"userId": "anyone"}))).await;
    assert_eq!((s, b["userId"].as_str()), (201, Some("anyone")));
    let (status, text) = svc.ops_get("/readyz").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("auth: none") && text.contains("INSECURE"),
        "{text}"
    );
    assert_eq!(issuance_counts(&redis, "c").await.0, 1);
    let (_redis, jwt, _) = setup().await;
    assert_eq!(jwt.ops_get("/readyz").await, (200, "ready".to_owned()));
}

/// `serve` without a way to verify tokens refuses to start, naming the flag.
#[tokio::test]
async fn serve_refuses_to_start_without_keys_issuer_or_audience() {
    let cases = [
        ("STAMPEDE_JWT_HS256_SECRET", "--jwt-hs256-secret"),
        ("STAMPEDE_JWT_ISSUER", "--jwt-issuer"),
        ("STAMPEDE_JWT_AUDIENCE", "--jwt-audience"),
    ];
    for (unset, flag) in cases {
        let mut child = service_command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove(unset)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a serve that started anyway is killed and the test fails.
        let status = exit_within(&mut child, Duration::from_secs(30)).await;
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let out = (status, err);
        let (status, err) = out;
        assert!(!status.success(), "without {unset}");
        assert!(err.contains(flag), "without {unset}: {err}");
        assert!(
            !err.contains(TEST_SECRET),
            "the secret never printed: {err}"
        );
    }
}

/// `stampede-service token` mints what `serve` accepts (the bench and curl users use it).
#[tokio::test]
async fn the_token_command_mints_tokens_the_service_accepts() {
    let (_redis, svc, store) = setup().await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let out = service_command()
        .args(["token", "--sub-prefix", "minted", "--count", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = String::from_utf8(out.stdout).unwrap();
    let tokens: Vec<&str> = tokens.lines().collect();
    assert_eq!(tokens.len(), 2);
    for (i, t) in tokens.iter().enumerate() {
        let (s, b) = status_and_json(
            svc.http
                .post(svc.url("/v1/campaigns/c/issue"))
                .bearer_auth(t),
        )
        .await;
        assert_eq!(
            (s, b["userId"].as_str()),
            (201, Some(format!("minted-{i}").as_str()))
        );
    }
}
