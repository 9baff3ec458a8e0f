//! Test harness: a real redis-server per test on a free loopback port, the service served
//! in-process on port 0, and what the HTTP tests check in Redis behind it.
#![allow(dead_code)]

pub mod crowd;
pub mod held;
pub mod kit;
pub mod ledger;
pub mod letters;
pub mod pipeline;
pub mod private;
pub mod role;
pub mod room;
pub mod secure;
pub mod stack;
pub mod stall;
pub mod switch;
pub mod whereabouts;

pub use kit::*;

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::RequestBuilder;
use stampede_core::ids::CampaignId;
use stampede_core::issuance::Issuance;
use stampede_core::store::{Store, StoreConfig};
use stampede_service::auth::{AuthConfig, JwtConfig, KeySource, Secret};
use stampede_service::metrics::Metrics;
use stampede_service::server::{LimitConfig, Listeners, ServeConfig, serve};
use tokio_util::sync::CancellationToken;

/// The service running in-process.
pub struct Service {
    /// `http://127.0.0.1:port`: the public API.
    pub base: String,
    /// `http://127.0.0.1:port`: /metrics, /healthz and /readyz.
    pub ops_base: String,
    /// Fires graceful shutdown.
    pub shutdown: CancellationToken,
    /// The serve task.
    pub task: tokio::task::JoinHandle<Result<(), stampede_core::Error>>,
    /// An HTTP client.
    pub http: reqwest::Client,
}

/// The HS256 secret every test service verifies with (at least 32 bytes).
pub const TEST_SECRET: &str = "stampede-test-secret-0123456789abcdef";
/// The issuer test tokens carry.
pub const TEST_ISSUER: &str = "https://issuer.test";
/// The audience test tokens carry.
pub const TEST_AUDIENCE: &str = "stampede-test";

/// The auth configuration of every test service: HS256 with the test secret.
pub fn test_auth() -> AuthConfig {
    AuthConfig::Jwt(JwtConfig {
        issuer: TEST_ISSUER.into(),
        audience: TEST_AUDIENCE.into(),
        keys: KeySource::Hs256(Secret(TEST_SECRET.as_bytes().to_vec())),
        refresh: Duration::from_secs(300),
    })
}

/// The variables a child `serve` needs to verify test tokens.
pub fn auth_env() -> [(&'static str, &'static str); 3] {
    [
        ("STAMPEDE_JWT_HS256_SECRET", TEST_SECRET),
        ("STAMPEDE_JWT_ISSUER", TEST_ISSUER),
        ("STAMPEDE_JWT_AUDIENCE", TEST_AUDIENCE),
    ]
}

/// A valid test token for `user` (an hour long).
pub fn token(user: &str) -> String {
    signed(user, false)
}

/// A token for `user` as load-test runners mint them (`"stampede_load_test": true`): the
/// only kind that reaches a load test's shadow campaign.
pub fn load_test_token(user: &str) -> String {
    signed(user, true)
}

fn signed(user: &str, load_test: bool) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": user, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, "iat": now, "exp": now + 3600,
        "stampede_load_test": load_test,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Test defaults: a short sold-out recheck, a generous Redis timeout, test tokens.
pub fn config(redis_url: &str) -> ServeConfig {
    ServeConfig {
        max_in_flight: 512,
        soldout_recheck: Duration::from_millis(50),
        // Budgets are tested on their own (rate_limits.rs); elsewhere tests send many
        // requests per user on purpose (races, retries).
        limits: LimitConfig::default(),
        auth: test_auth(),
        ..ServeConfig::new(StoreConfig {
            url: redis_url.to_owned(),
            connections: 2,
            timeout: Duration::from_millis(1_000),
        })
    }
}

/// A campaign id that must parse.
pub fn id(s: &str) -> CampaignId {
    CampaignId::parse(s).unwrap()
}

/// A store with `config`, for provisioning and driving campaigns directly.
pub async fn connect_store(config: &StoreConfig) -> Store {
    Store::connect(config, Metrics::new().redis).await.unwrap()
}

/// A store on `redis` with the test defaults.
pub async fn store(redis: &RedisServer) -> Store {
    connect_store(&config(&redis.url()).store).await
}

/// A private Redis, the service on it with the test defaults, and a store on it.
pub async fn setup() -> (RedisServer, Service, Store) {
    setup_with(|_| {}).await
}

/// As `setup`, with the service's defaults changed by `tweak` (the store keeps them).
pub async fn setup_with(tweak: impl FnOnce(&mut ServeConfig)) -> (RedisServer, Service, Store) {
    let redis = RedisServer::start().await;
    let mut config = config(&redis.url());
    tweak(&mut config);
    let svc = Service::start(config).await;
    let store = store(&redis).await;
    (redis, svc, store)
}

/// The Redis key `{stampede:<campaign>}:<suffix>`.
pub fn key(campaign: &str, suffix: &str) -> String {
    format!("{{stampede:{campaign}}}:{suffix}")
}

/// Entries in `campaign`'s outbox stream.
pub async fn outbox_len(redis: &RedisServer, campaign: &str) -> u64 {
    let mut conn = redis.conn().await;
    conn.xlen(key(campaign, "outbox")).await.unwrap()
}

/// Every issuance in `campaign`'s outbox stream, oldest first, from entries of any shape.
/// An entry of the two-field shape must carry the issuance as JSON byte for byte as the
/// writer's serde writes it (the relay sends it to Kafka as it is).
pub async fn outbox_issuances(redis: &RedisServer, campaign: &str) -> Vec<Issuance> {
    outbox_entries(redis, campaign).await.concat()
}

/// [`outbox_issuances`], entry by entry: a batch entry's coupons together.
pub async fn outbox_entries(redis: &RedisServer, campaign: &str) -> Vec<Vec<Issuance>> {
    let mut conn = redis.conn().await;
    let range: redis::Value = redis::cmd("XRANGE")
        .arg(key(campaign, "outbox"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(entries) = range else {
        panic!("XRANGE answered {range:?}");
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not a bulk string: {other:?}"),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let redis::Value::Array(entry) = entry else {
            panic!("entry {entry:?}")
        };
        let redis::Value::Array(flat) = &entry[1] else {
            panic!("fields {entry:?}")
        };
        let flat: Vec<String> = flat.iter().map(text).collect();
        if flat.first().is_some_and(|k| k == "batch") {
            let raw: Vec<(Vec<u8>, Vec<u8>)> = flat
                .chunks(2)
                .map(|kv| (kv[0].clone().into_bytes(), kv[1].clone().into_bytes()))
                .collect();
            out.push(Issuance::all_from_raw_fields(&raw).unwrap());
            continue;
        }
        let pairs: Vec<(&str, &str)> = flat
            .chunks(2)
            .map(|kv| (kv[0].as_str(), kv[1].as_str()))
            .collect();
        let issuance = Issuance::from_stream_fields(pairs.clone()).unwrap();
        if let [("user", user), ("issuance", json)] = pairs.as_slice() {
            assert_eq!(
                issuance.to_json(),
                json.as_bytes(),
                "JSON as serde writes it"
            );
            assert_eq!(&issuance.user_id, user);
        } else {
            assert_eq!(pairs.len(), 5, "the five-field shape: {pairs:?}");
        }
        out.push(vec![issuance]);
    }
    out
}

/// What Redis holds for `campaign`: (issued counter, holders, outbox entries).
pub async fn issuance_counts(redis: &RedisServer, campaign: &str) -> (u64, u64, u64) {
    let mut conn = redis.conn().await;
    let issued: Option<u64> = conn.hget(key(campaign, "meta"), "issued").await.unwrap();
    let holders: u64 = conn.hlen(key(campaign, "holders")).await.unwrap();
    let outbox = outbox_len(redis, campaign).await;
    (issued.unwrap_or(0), holders, outbox)
}

/// Sends `request`; returns its status and JSON body (Null when not JSON).
pub async fn status_and_json(request: RequestBuilder) -> (u16, serde_json::Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

impl Drop for Service {
    /// Stops what the service runs beside the test (the relay's own thread, whose Redis
    /// client would otherwise outlive the test and find a later test's Redis on a reused
    /// port).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Service {
    /// Serves with `config` on a free port.
    pub async fn start(config: ServeConfig) -> Self {
        let listeners = Listeners {
            api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            ops: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let base = format!("http://{}", listeners.api.local_addr().unwrap());
        let ops_base = format!("http://{}", listeners.ops.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listeners, config, shutdown.clone()));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            base,
            ops_base,
            shutdown,
            task,
            http,
        }
    }

    /// The URL of `path` on this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An issue request for `user` with `user`'s token, not yet sent (for its headers, or
    /// to send elsewhere).
    pub fn issue_request(&self, campaign: &str, user: &str) -> RequestBuilder {
        self.http
            .post(self.url(&format!("/v1/campaigns/{campaign}/issue")))
            .bearer_auth(token(user))
            .json(&serde_json::json!({ "userId": user }))
    }

    /// POSTs an issue request for `user`; returns status and JSON body.
    pub async fn issue(&self, campaign: &str, user: &str) -> (u16, serde_json::Value) {
        status_and_json(self.issue_request(campaign, user)).await
    }

    /// GETs `path` with the token of the user it names (`…/users/<u>/…`, else `reader`);
    /// returns status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let user = path
            .split_once("/users/")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or("reader");
        status_and_json(self.http.get(self.url(path)).bearer_auth(token(user))).await
    }

    /// GETs `path` on the operations listener; returns status and body text.
    pub async fn ops_get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.ops_base));
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The /metrics text (from the operations listener).
    pub async fn metrics(&self) -> String {
        self.ops_get("/metrics").await.1
    }

    /// The value of one sample line in /metrics, 0 when absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        sample(&self.metrics().await, name_and_labels)
    }
}
