//! Per-user and per-client budgets on a real redis-server with the service on port 0: one
//! user hammering and one address spraying user ids get 429 `rate_limited` with
//! Retry-After, while other users from other addresses keep getting their coupons; a load
//! test's runners are exempt from the client budget on its shadow campaign, nobody else;
//! behind a proxy the client is the header's entry the proxy appended. Clients pick their
//! source address on the loopback network (127.0.0.2, .3, …) to be told apart.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{id, setup_with, token};
use stampede_service::server::{LimitConfig, Rate};

/// An HTTP client whose requests come from `addr`.
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs an issue for `user` (with its token) of `campaign` from `http`; the status and
/// error code.
async fn issue(http: &reqwest::Client, base: &str, campaign: &str, user: &str) -> (u16, String) {
    // A runner's token on a shadow campaign, a user's elsewhere.
    let bearer = if campaign.contains(".lt-") {
        common::load_test_token(user)
    } else {
        token(user)
    };
    let r = http
        .post(format!("{base}/v1/campaigns/{campaign}/issue"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({ "userId": user }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 429 {
        assert!(
            r.headers().contains_key("retry-after"),
            "429 without Retry-After"
        );
    }
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

/// `n` requests, the i-th as `who(i)` = (source address, user); returns how many were
/// answered 429 `rate_limited`.
async fn flood(base: String, n: usize, who: impl Fn(usize) -> (String, String)) -> usize {
    let mut limited = 0;
    for i in 0..n {
        let (addr, user) = who(i);
        let (status, code) = issue(&client_from(&addr), &base, "sale", &user).await;
        if status == 429 {
            assert_eq!(code, "rate_limited");
            limited += 1;
        }
    }
    limited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_one_user_and_one_address_are_limited_and_others_are_served() {
    let (_redis, svc, store) = setup_with(|c| {
        c.limits = LimitConfig {
            per_user: Rate::new(1, 3),
            per_client: Rate::new(5, 20),
            client_ip_header: None,
        }
    })
    .await;
    store
        .ensure_campaign(&id("sale"), 10_000, None)
        .await
        .unwrap();
    let base = svc.base.clone();

    // One user asks again and again (from addresses of its own, each within budget), and
    // one address sprays made-up user ids.
    let greedy = tokio::spawn(flood(base.clone(), 50, |i| {
        (format!("127.0.2.{}", i + 1), "greedy".to_owned())
    }));
    let spray = tokio::spawn(flood(base.clone(), 200, |i| {
        ("127.0.0.2".to_owned(), format!("bot-{i}"))
    }));
    // Meanwhile ordinary users, each from its own address, one request each.
    for i in 0..30 {
        let http = client_from(&format!("127.0.1.{}", i + 1));
        let (status, code) = issue(&http, &base, "sale", &format!("fan-{i}")).await;
        assert_eq!((status, code.as_str()), (201, ""), "fan-{i}");
    }
    let (greedy, spray) = (greedy.await.unwrap(), spray.await.unwrap());
    assert!(
        greedy >= 40,
        "the greedy user was limited only {greedy} times of 50"
    );
    assert!(
        spray >= 100,
        "the spraying address was limited only {spray} times of 200"
    );
    let user = svc
        .metric(r#"stampede_http_rate_limited_total{by="user"}"#)
        .await;
    let client = svc
        .metric(r#"stampede_http_rate_limited_total{by="client"}"#)
        .await;
    assert_eq!((user, client), (greedy as f64, spray as f64));
    svc.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_tests_shadow_campaign_is_exempt_from_the_client_budget() {
    let (_redis, svc, store) = setup_with(|c| {
        c.limits = LimitConfig {
            per_user: Rate::new(1, 3),
            per_client: Rate::new(1, 5),
            client_ip_header: None,
        }
    })
    .await;
    store
        .ensure_campaign(&id("sale.lt-smoke"), 1_000, None)
        .await
        .unwrap();
    let http = client_from("127.0.0.5");
    for i in 0..100 {
        let (status, _) = issue(&http, &svc.base, "sale.lt-smoke", &format!("vu-{i}")).await;
        assert_eq!(
            status, 201,
            "vu-{i}: a runner's stampede comes from one address"
        );
    }
    // Anyone else naming a shadow is held to the budget: the path alone proves nothing.
    let shown = |i: usize| {
        let url = format!("{}/v1/campaigns/sale.lt-probe{i}", svc.base);
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(shown(i).await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    svc.shutdown.cancel();
}

/// Behind a proxy the client's address is the header's last entry, the one the proxy
/// appended: the entries before it are the client's own to write, and do not make a
/// flood from one address many clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_entry_of_x_forwarded_for_is_the_client() {
    let (_redis, svc, store) = setup_with(|c| {
        c.limits = LimitConfig {
            per_user: Rate::new(100, 100),
            per_client: Rate::new(1, 3),
            client_ip_header: Some("x-forwarded-for".parse().unwrap()),
        }
    })
    .await;
    store.ensure_campaign(&id("sale"), 100, None).await.unwrap();
    let mut limited = 0;
    for i in 0..10 {
        let r = client_from("127.0.0.6")
            .post(format!("{}/v1/campaigns/sale/issue", svc.base))
            .bearer_auth(token(&format!("xff-{i}")))
            .header("x-forwarded-for", format!("203.0.113.{i}, 10.9.8.7"))
            .send()
            .await
            .unwrap();
        limited += usize::from(r.status().as_u16() == 429);
    }
    assert!(limited >= 6, "only {limited} of 10 limited");
    svc.shutdown.cancel();
}
