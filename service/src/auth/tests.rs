//! The verifier against tokens a client could send: good, forged, expired, early, for
//! another audience or issuer, unsigned, malformed; and JWKS key selection.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef!";

fn config(keys: KeySource) -> JwtConfig {
    JwtConfig {
        issuer: "iss-a".into(),
        audience: "aud-a".into(),
        keys,
        refresh: Duration::from_secs(300),
    }
}

fn hs256() -> Verifier {
    let keys = KeySet::hs256(SECRET).unwrap();
    Verifier::with_keys(&config(KeySource::Hs256(Secret(SECRET.to_vec()))), keys)
}

fn claims(sub: &str) -> Value {
    let now = get_current_timestamp();
    json!({ "sub": sub, "iss": "iss-a", "aud": "aud-a", "exp": now + 600 })
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn with(claims: Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims;
    edit(&mut c);
    c
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[test]
fn a_good_token_names_its_user() {
    let v = hs256();
    let user = v
        .authenticate(&bearer(&sign(&claims("u-1"), SECRET)))
        .unwrap();
    assert_eq!(user.as_str(), "u-1");
}

/// `claims("u-1")` signed with SECRET after `field` is set to `value`.
fn edited(field: &str, value: Value) -> String {
    sign(&with(claims("u-1"), |c| c[field] = value), SECRET)
}

/// Every token a forger or a broken client could send, by what is wrong with it.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let now = get_current_timestamp();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = json!({"alg": "none", "typ": "JWT"});
    let unsigned = format!("{}.{}.", b64(&none), b64(&claims("u-1")));
    let no_sub = json!({"iss": "iss-a", "aud": "aud-a", "exp": now + 600});
    vec![
        (
            "forged",
            sign(&claims("u-1"), b"another-secret-0123456789abcdefgh"),
        ),
        ("expired", edited("exp", json!(now - 120))),
        ("not yet valid", edited("nbf", json!(now + 120))),
        ("wrong audience", edited("aud", json!("aud-b"))),
        ("wrong issuer", edited("iss", json!("iss-b"))),
        ("no exp", edited("exp", Value::Null)),
        ("no sub", sign(&no_sub, SECRET)),
        ("sub not a user id", sign(&claims("a b"), SECRET)),
        ("alg none", unsigned),
        ("malformed", "not.a.token".into()),
    ]
}

#[test]
fn every_bad_token_is_invalid() {
    let v = hs256();
    for (what, token) in bad_tokens() {
        assert_eq!(
            v.authenticate(&bearer(&token)),
            Err(Rejection::InvalidToken),
            "{what}"
        );
    }
}

#[test]
fn a_missing_or_blank_header_is_unauthenticated_another_scheme_invalid() {
    let v = hs256();
    let header = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        h
    };
    assert_eq!(
        v.authenticate(&HeaderMap::new()),
        Err(Rejection::Unauthenticated)
    );
    assert_eq!(
        v.authenticate(&header("  ")),
        Err(Rejection::Unauthenticated)
    );
    assert_eq!(
        v.authenticate(&header("Basic dTpw")),
        Err(Rejection::InvalidToken)
    );
    assert_eq!(
        v.authenticate(&header("Bearer")),
        Err(Rejection::InvalidToken)
    );
}

#[test]
fn within_the_leeway_a_token_is_still_good() {
    let now = get_current_timestamp();
    let token = sign(&with(claims("u-1"), |c| c["exp"] = json!(now - 5)), SECRET);
    assert!(hs256().authenticate(&bearer(&token)).is_ok());
}

#[test]
fn a_short_secret_is_refused() {
    assert!(KeySet::hs256(b"short").is_err());
}

#[test]
fn a_jwks_without_a_usable_key_is_refused() {
    assert!(KeySet::jwks(r#"{"keys": []}"#.into()).is_err());
    assert!(KeySet::jwks(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#.into()).is_err());
    assert!(KeySet::jwks("nonsense".into()).is_err());
}

#[test]
fn a_jwks_token_must_name_a_known_key() {
    // An oct key is never used; a token for a JWKS verifier must find an RS/ES key by kid.
    let jwks = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    let keys = KeySet::jwks(jwks.into()).unwrap();
    let v = Verifier::with_keys(&config(KeySource::JwksFile("x".into())), keys);
    // HS256 with the EC key's kid: the key's algorithm is ES256, so it is refused unread.
    let mut header = Header {
        kid: Some("k1".into()),
        ..Header::default()
    };
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let confused = encode(&header, &claims("u-1"), &key).unwrap();
    assert_eq!(
        v.authenticate(&bearer(&confused)),
        Err(Rejection::InvalidToken)
    );
    header.kid = Some("k2".into());
    let unknown = encode(&header, &claims("u-1"), &key).unwrap();
    assert_eq!(
        v.authenticate(&bearer(&unknown)),
        Err(Rejection::InvalidToken)
    );
}

/// The general path (jsonwebtoken) for the same secret: an HS256 key in a one-key set.
fn hs256_general() -> Verifier {
    let key = VerifyKey {
        key: jsonwebtoken::DecodingKey::from_secret(SECRET).unwrap(),
        algorithm: Algorithm::HS256,
    };
    let keys = KeySet::Jwks(std::sync::RwLock::new(Arc::new(
        [(String::new(), key)].into_iter().collect(),
    )));
    Verifier::with_keys(&config(KeySource::JwksFile("x".into())), keys)
}

/// `header.claims` signed with SECRET, whatever the header says.
fn sign_raw(header: &Value, claims: &Value) -> String {
    sign_text(&header.to_string(), &claims.to_string())
}

/// The JSON texts `header` and `claims` as a token signed with SECRET.
fn sign_text(header: &str, claims: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = stampede_core::mac::MacKey::new(SECRET).tag(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Tokens at the edges of the claim rules, good and bad, then those of `segment_edges`
/// and `bad_tokens`; 10 of them are good.
fn edge_tokens() -> Vec<(&'static str, String)> {
    let now = get_current_timestamp();
    let escaped = format!(
        r#"{{"sub": "u\u002d1", "iss": "iss-a", "aud": "aud-a", "exp": {}}}"#,
        now + 600
    );
    let mut cases = vec![
        ("good", sign(&claims("u-1"), SECRET)),
        (
            "good, no typ",
            sign_raw(&json!({"alg": "HS256"}), &claims("u-1")),
        ),
        (
            "aud list with ours",
            edited("aud", json!(["aud-x", "aud-a"])),
        ),
        ("aud list without ours", edited("aud", json!(["aud-x"]))),
        ("aud empty list", edited("aud", json!([]))),
        ("aud a number", edited("aud", json!(7))),
        ("exp a float", edited("exp", json!(now as f64 + 600.4))),
        ("exp a string", edited("exp", json!("soon"))),
        ("exp negative", edited("exp", json!(-1))),
        ("exp within the leeway", edited("exp", json!(now - 5))),
        ("nbf within the leeway", edited("nbf", json!(now + 10))),
        ("nbf past", edited("nbf", json!(now - 10))),
        ("nbf a string", edited("nbf", json!("now"))),
        ("iss a number", edited("iss", json!(1))),
        ("sub a number", edited("sub", json!(1))),
        (
            "sub with a JSON escape",
            sign_text(r#"{"alg":"HS256"}"#, &escaped),
        ),
        ("load test", edited("stampede_load_test", json!(true))),
        (
            "load test not a bool",
            edited("stampede_load_test", json!("yes")),
        ),
        ("extra claims", edited("role", json!({"admin": true}))),
    ];
    cases.extend(segment_edges());
    cases.extend(bad_tokens());
    cases
}

/// Tokens whose header, segments or signature are off.
fn segment_edges() -> Vec<(&'static str, String)> {
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let good = sign(&claims("u-1"), SECRET);
    vec![
        ("HS512", {
            let key = EncodingKey::from_secret(SECRET).unwrap();
            encode(&Header::new(Algorithm::HS512), &claims("u-1"), &key).unwrap()
        }),
        (
            "alg lowercase",
            sign_raw(&json!({"alg": "hs256"}), &claims("u-1")),
        ),
        (
            "header not an object",
            sign_raw(&json!("HS256"), &claims("u-1")),
        ),
        ("claims not an object", sign_raw(&hs256, &json!(["u-1"]))),
        ("padded signature", format!("{good}=")),
        ("four segments", format!("{good}.x")),
        ("two segments", good.rsplit_once('.').unwrap().0.to_owned()),
        ("signature cut short", good[..good.len() - 2].to_owned()),
        ("signature a byte longer", format!("{good}AA")),
        (
            "empty signature",
            format!("{}.", good.rsplit_once('.').unwrap().0),
        ),
        ("claims edited after signing", {
            let (h, rest) = good.split_once('.').unwrap();
            let sig = rest.rsplit_once('.').unwrap().1;
            let other = URL_SAFE_NO_PAD.encode(claims("u-2").to_string());
            format!("{h}.{other}.{sig}")
        }),
    ]
}

#[test]
fn the_hs256_path_decides_every_token_as_the_general_path_does() {
    let (fast, general) = (hs256(), hs256_general());
    let mut accepted = 0;
    for (what, token) in &edge_tokens() {
        let h = bearer(token);
        let decided = fast.caller(&h);
        assert_eq!(decided, general.caller(&h), "{what}");
        accepted += usize::from(decided.is_ok());
    }
    // Not both refusing everything: the good ones pass, with what they carry.
    assert_eq!(accepted, 10, "accepted tokens");
    let loaded = fast.caller(&bearer(&edited("stampede_load_test", json!(true))));
    assert!(loaded.unwrap().load_test);
}

#[test]
fn the_hs256_path_refuses_critical_extensions_and_a_list_of_issuers() {
    let v = hs256();
    let crit = json!({"alg": "HS256", "crit": ["exp"]});
    for (what, token) in [
        ("crit", sign_raw(&crit, &claims("u-1"))),
        ("iss list", edited("iss", json!(["iss-a"]))),
    ] {
        assert_eq!(
            v.authenticate(&bearer(&token)),
            Err(Rejection::InvalidToken),
            "{what}"
        );
    }
}
