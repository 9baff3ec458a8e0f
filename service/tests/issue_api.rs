//! The HTTP contract on real Redis: states, bad input, coupons, readiness, metrics.

mod common;

use std::time::Duration;

use common::{RedisServer, Service, config};
use redis::AsyncCommands;
use stampede_core::campaign::{AdminAction, Window};
use stampede_core::clock::parse_rfc3339_ms;
use stampede_core::ids::CampaignId;
use stampede_core::store::Store;
use stampede_service::metrics::Metrics;

async fn setup() -> (RedisServer, Service, Store) {
    let redis = RedisServer::start().await;
    let svc = Service::start(config(&redis.url())).await;
    let store = Store::connect(&config(&redis.url()).store, Metrics::new().redis)
        .await
        .unwrap();
    (redis, svc, store)
}

fn id(s: &str) -> CampaignId {
    CampaignId::parse(s).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

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

#[tokio::test]
async fn bad_input_gets_4xx_with_a_code_and_changes_nothing() {
    let (redis, svc, store) = setup().await;
    store.ensure_campaign(&id("c"), 10, None).await.unwrap();
    let url = format!("{}/v1/campaigns/c/issue", svc.base);
    let json = "application/json";
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "malformed json",
            Some(json),
            "{\"userId\":".into(),
            400,
            "invalid_request",
        ),
        (
            "not an object",
            Some(json),
            "[1,2]".into(),
            400,
            "invalid_request",
        ),
        (
            "missing userId",
            Some(json),
            "{\"user\":\"a\"}".into(),
            400,
            "invalid_request",
        ),
        (
            "userId not a string",
            Some(json),
            "{\"userId\":7}".into(),
            400,
            "invalid_request",
        ),
        (
            "empty userId",
            Some(json),
            "{\"userId\":\"\"}".into(),
            400,
            "invalid_request",
        ),
        (
            "userId with space",
            Some(json),
            "{\"userId\":\"a b\"}".into(),
            400,
            "invalid_request",
        ),
        (
            "userId too long",
            Some(json),
            format!("{{\"userId\":\"{}\"}}", "x".repeat(129)),
            400,
            "invalid_request",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            "{\"userId\":\"a\"}".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            "{\"userId\":\"a\"}".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            Some(json),
            format!("{{\"userId\":\"a\",\"pad\":\"{}\"}}", "x".repeat(10_000)),
            413,
            "payload_too_large",
        ),
    ];
    for (what, ctype, body, status, code) in cases {
        let mut req = svc.http.post(&url).body(body);
        if let Some(t) = ctype {
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
    // A chunked body with no Content-Length is still capped (raw HTTP over TCP).
    {
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

    for (path, code) in [
        ("/v1/campaigns/Bad_Id/issue", 400),
        ("/v1/campaigns/-x/issue", 400),
    ] {
        let r = svc
            .http
            .post(format!("{}{path}", svc.base))
            .json(&serde_json::json!({"userId": "a"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"], "invalid_request");
    }
    let (s, b) = svc.get("/v1/campaigns/c/users/a%20b/coupon").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    let (s, b) = svc.get("/v1/nothing-here").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
    let (s, b) = svc.get("/v1/campaigns/c/issue").await;
    assert_eq!((s, b["error"].as_str()), (405, Some("method_not_allowed")));

    // Nothing was spent.
    let mut conn = redis.conn().await;
    let issued: Option<u64> = conn.hget("{stampede:c}:meta", "issued").await.unwrap();
    let holders: u64 = conn.hlen("{stampede:c}:holders").await.unwrap();
    let outbox: u64 = conn.xlen("{stampede:c}:outbox").await.unwrap();
    assert_eq!((issued.unwrap_or(0), holders, outbox), (0, 0, 0));
    let text = svc.metrics().await;
    assert!(
        common::sample(
            &text,
            "stampede_http_requests_total{outcome=\"invalid_request\",route=\"/v1/campaigns/{campaign}/issue\"}"
        ) >= 7.0,
        "{text}"
    );
}

#[tokio::test]
async fn provisioning_is_idempotent_and_only_grows_stock() {
    let (_redis, svc, store) = setup().await;
    let c = id("grow");
    assert!(matches!(
        store.ensure_campaign(&c, 2, None).await.unwrap(),
        stampede_core::campaign::ProvisionOutcome::Created { total: 2 }
    ));
    assert_eq!(svc.issue("grow", "a").await.0, 201);
    assert!(matches!(
        store.ensure_campaign(&c, 2, None).await.unwrap(),
        stampede_core::campaign::ProvisionOutcome::Unchanged { total: 2 }
    ));
    let err = store.ensure_campaign(&c, 1, None).await.unwrap_err();
    assert!(err.to_string().contains("never shrink"), "{err}");
    assert!(matches!(
        store.ensure_campaign(&c, 3, None).await.unwrap(),
        stampede_core::campaign::ProvisionOutcome::Restocked {
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
    assert_eq!(svc.get("/healthz").await.0, 200);
    let r = svc
        .http
        .get(format!("{}/readyz", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
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
    let r = svc
        .http
        .post(format!("{}/v1/campaigns/m/issue", svc.base))
        .json(&serde_json::json!({"userId": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answer took {:?}",
        started.elapsed()
    );
    let r = svc
        .http
        .get(format!("{}/readyz", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        svc.metric("stampede_redis_errors_total{kind=\"redis\",op=\"issue\"}")
            .await
            + svc
                .metric("stampede_redis_errors_total{kind=\"redis_timeout\",op=\"issue\"}")
                .await
            >= 1.0
    );
}
