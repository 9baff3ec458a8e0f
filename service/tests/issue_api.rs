//! The HTTP contract on real Redis: campaign states and windows, bad input refused with a
//! code, coupons, provisioning that only grows, readiness and metrics.

mod common;

use std::time::Duration;

use common::{Service, id, issuance_counts, setup, setup_with, status_and_json};
use stampede_core::campaign::{AdminAction, ProvisionOutcome, Window};
use stampede_core::clock::{now_ms, parse_rfc3339_ms};
use stampede_service::auth::AuthConfig;

#[tokio::test]
async fn window_pause_close_and_unknown_campaigns() {
    let (_redis, svc, store) = setup().await;
    let later = Window {
        opens_ms: Some(now_ms() + 3_600_000),
        closes_ms: None,
    };
    store
        .ensure_campaign(&id("later"), 5, Some(later))
        .await
        .unwrap();
    let (s, b) = svc.issue("later", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("not_open")));
    assert_eq!(svc.get("/v1/campaigns/later").await.1["state"], "scheduled");

    let past = Window {
        opens_ms: Some(now_ms() - 7_200_000),
        closes_ms: Some(now_ms() - 3_600_000),
    };
    store
        .ensure_campaign(&id("past"), 5, Some(past))
        .await
        .unwrap();
    let (s, b) = svc.issue("past", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("closed")));

    store.ensure_campaign(&id("live"), 5, None).await.unwrap();
    store.admin(&id("live"), AdminAction::Pause).await.unwrap();
    let (s, b) = svc.issue("live", "u1").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("paused")));
    assert_eq!(svc.get("/v1/campaigns/live").await.1["state"], "paused");
    store.admin(&id("live"), AdminAction::Resume).await.unwrap();
    let (s, coupon) = svc.issue("live", "u1").await;
    assert_eq!(s, 201);
    assert_eq!(coupon["seq"], 1);
    let issued_at = parse_rfc3339_ms(coupon["issuedAt"].as_str().unwrap()).unwrap();
    assert!((issued_at - now_ms()).abs() < 60_000);

    store.admin(&id("live"), AdminAction::Close).await.unwrap();
    let (s, b) = svc.issue("live", "u2").await;
    assert_eq!((s, b["error"].as_str()), (409, Some("closed")));
    // A holder still gets their coupon back after the close.
    assert_eq!(svc.issue("live", "u1").await, (200, coupon.clone()));
    assert_eq!(
        svc.get("/v1/campaigns/live/users/u1/coupon").await,
        (200, coupon)
    );
    let (s, b) = svc.get("/v1/campaigns/live/users/u2/coupon").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_issued")));

    let (s, b) = svc.issue("nope", "u1").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("campaign_not_found")));
    let (s, b) = svc.get("/v1/campaigns/nope").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("campaign_not_found")));
    let (s, b) = svc.get("/v1/campaigns/nope/users/u1/coupon").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("campaign_not_found")));
}

/// The content type of a JSON body.
const JSON: Option<&str> = Some("application/json");
/// The answer to a body that is not a valid issue request.
const INVALID: (u16, &str) = (400, "invalid_request");
/// The answer to a body that is not declared JSON.
const UNSUPPORTED: (u16, &str) = (415, "unsupported_media_type");
/// The answer to a body over the size limit.
const TOO_LARGE: (u16, &str) = (413, "payload_too_large");

/// An issue request with a bad body or content type, and the answer it must get.
struct BadBody {
    what: &'static str,
    content_type: Option<&'static str>,
    body: String,
    answer: (u16, &'static str),
}

/// One row of the `bad_bodies` table.
fn bad(
    what: &'static str,
    content_type: Option<&'static str>,
    body: impl Into<String>,
    answer: (u16, &'static str),
) -> BadBody {
    let body = body.into();
    BadBody {
        what,
        content_type,
        body,
        answer,
    }
}

/// Every way an issue request's body or its content type can be wrong.
fn bad_bodies() -> Vec<BadBody> {
    let too_long = format!(r#"{{"userId":"{}"}}"#, "x".repeat(129));
    let oversized = format!(r#"{{"userId":"a","pad":"{}"}}"#, "x".repeat(10_000));
    let fine = r#"{"userId":"a"}"#;
    vec![
        bad("malformed json", JSON, r#"{"userId":"#, INVALID),
        bad("not an object", JSON, "[1,2]", INVALID),
        bad("missing userId", JSON, r#"{"user":"a"}"#, INVALID),
        bad("userId not a string", JSON, r#"{"userId":7}"#, INVALID),
        bad("empty userId", JSON, r#"{"userId":""}"#, INVALID),
        bad("userId with space", JSON, r#"{"userId":"a b"}"#, INVALID),
        bad("userId too long", JSON, too_long, INVALID),
        bad("wrong content type", Some("text/plain"), fine, UNSUPPORTED),
        bad("no content type", None, fine, UNSUPPORTED),
        bad("oversized body", JSON, oversized, TOO_LARGE),
    ]
}

/// Posts `case` to campaign `c`: the status and error code it must get, and a message.
async fn assert_body_refused(svc: &Service, case: BadBody) {
    let BadBody {
        what,
        content_type,
        body,
        answer: (status, code),
    } = case;
    let mut req = svc.http.post(svc.url("/v1/campaigns/c/issue")).body(body);
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), status, "{what}");
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], code, "{what}: {b}");
    assert!(
        b["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}"
    );
}

/// A chunked body with no Content-Length is still capped (raw HTTP over TCP).
async fn assert_chunked_body_capped(svc: &Service) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = svc.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = String::from(
        "POST /v1/campaigns/c/issue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..10 {
        req.push_str(&format!("3e8\r\n{}\r\n", " ".repeat(1_000)));
    }
    req.push_str("0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("payload_too_large"), "{resp}");
}

/// Bad ids in the path, an unknown route and a wrong method: each refused with its code.
async fn assert_bad_routes_refused(svc: &Service) {
    let get = |path: &str| (path.to_owned(), svc.http.get(svc.url(path)));
    let issue = |c: &str| {
        (
            format!("/v1/campaigns/{c}/issue"),
            svc.issue_request(c, "a"),
        )
    };
    let cases = [
        (issue("Bad_Id"), INVALID),
        (issue("-x"), INVALID),
        (get("/v1/campaigns/c/users/a%20b/coupon"), INVALID),
        // Segments that are not UTF-8: JSON like every error, not axum's plain text.
        (issue("%FF"), INVALID),
        (get("/v1/campaigns/c/users/%C3%28/coupon"), INVALID),
        (get("/v1/campaigns/%FF"), INVALID),
        (get("/v1/nothing-here"), (404, "not_found")),
        (get("/v1/campaigns/c/issue"), (405, "method_not_allowed")),
    ];
    for ((path, request), (status, code)) in cases {
        let (s, b) = status_and_json(request).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (status, Some(code)),
            "{path}: {b}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_4xx_with_a_code_and_changes_nothing() {
    // The body's userId grammar is the --auth none contract (tests/auth.rs has the bodies
    // a token may come with).
    let (redis, svc, store) = setup_with(|c| c.auth = AuthConfig::None).await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    for case in bad_bodies() {
        assert_body_refused(&svc, case).await;
    }
    assert_chunked_body_capped(&svc).await;
    assert_bad_routes_refused(&svc).await;

    let counts = issuance_counts(&redis, "c").await;
    assert_eq!(
        counts,
        (0, 0, 0),
        "nothing was spent: (issued, holders, outbox)"
    );
    let text = svc.metrics().await;
    let refused = common::sample(
        &text,
        "stampede_http_requests_total{outcome=\"invalid_request\",route=\"/v1/campaigns/{campaign}/issue\"}",
    );
    assert!(refused >= 7.0, "{text}");
}

#[tokio::test]
async fn provisioning_is_idempotent_and_only_grows_stock() {
    let (_redis, svc, store) = setup().await;
    let c = id("grow");
    assert!(matches!(
        store.ensure_campaign(&c, 2, None).await.unwrap(),
        ProvisionOutcome::Created { total: 2 }
    ));
    assert_eq!(svc.issue("grow", "a").await.0, 201);
    assert!(matches!(
        store.ensure_campaign(&c, 2, None).await.unwrap(),
        ProvisionOutcome::Unchanged { total: 2 }
    ));
    let err = store.ensure_campaign(&c, 1, None).await.unwrap_err();
    assert!(err.to_string().contains("never shrink"), "{err}");
    assert!(matches!(
        store.ensure_campaign(&c, 3, None).await.unwrap(),
        ProvisionOutcome::Restocked {
            before: 2,
            after: 3,
            ..
        }
    ));
    // Holders and the issued count survived every call.
    assert_eq!(svc.issue("grow", "a").await.0, 200);
    let v = svc.get("/v1/campaigns/grow").await.1;
    assert_eq!(
        v["stock"],
        serde_json::json!({"total": 3, "remaining": 2, "issued": 1})
    );
    assert_eq!(store.admin(&c, AdminAction::Restock(4)).await.unwrap(), 7);
    assert!(
        store
            .admin(&id("ghost"), AdminAction::Restock(1))
            .await
            .is_err()
    );
    assert!(store.admin(&c, AdminAction::Restock(0)).await.is_err());
}

#[tokio::test]
async fn readiness_and_metrics_follow_redis() {
    let (mut redis, svc, store) = setup().await;
    store.ensure_campaign(&id("m"), 5, None).await.unwrap();
    assert_eq!(svc.issue("m", "a").await.0, 201);
    assert_eq!(svc.ops_get("/healthz").await.0, 200);
    assert_eq!(
        svc.ops_get("/readyz").await.0,
        200,
        "ready while Redis answers"
    );
    // Operations stay off the public port.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (status, body) = svc.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let text = svc.metrics().await;
    for needle in [
        "stampede_http_requests_total{outcome=\"issued\",route=\"/v1/campaigns/{campaign}/issue\"} 1",
        "stampede_issuance_decisions_total{campaign=\"m\",outcome=\"issued\"} 1",
        "stampede_http_request_duration_seconds_bucket{route=\"/v1/campaigns/{campaign}/issue\"",
        "stampede_redis_call_duration_seconds_bucket{op=\"issue\"",
        "stampede_http_in_flight",
        "stampede_http_shed_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // Redis gone: a fast 503 with Retry-After, never a hang; readiness fails.
    redis.stop();
    let started = std::time::Instant::now();
    let r = svc.issue_request("m", "b").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answer took {:?}",
        started.elapsed()
    );
    assert_eq!(
        svc.ops_get("/readyz").await.0,
        503,
        "not ready without Redis"
    );
    assert!(
        svc.metric("stampede_redis_errors_total{kind=\"redis\",op=\"issue\"}")
            .await
            + svc
                .metric("stampede_redis_errors_total{kind=\"redis_timeout\",op=\"issue\"}")
                .await
            >= 1.0
    );
}
