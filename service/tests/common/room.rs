//! Waiting-room helpers (issue #16): a campaign with a room on a private Redis behind the
//! service, joins, polls and issues over HTTP with the user's bearer token.

use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::{Value, json};
use stampede_core::campaign::Window;
use stampede_core::store::Store;
use stampede_core::waiting_room::WaitingRoomConfig;
use stampede_core::waiting_room::token::TokenKey;

use super::{RedisServer, Service, id, setup_with, status_and_json, token};

/// The waiting-room key every test service signs with.
pub const ROOM_KEY: &[u8] = b"stampede-test-waiting-room-key-0123456789";

/// The test key.
pub fn room_key() -> TokenKey {
    TokenKey::new(ROOM_KEY).unwrap()
}

/// A room with these bounds, shuffled at the opening, with long TTLs unless changed.
pub fn room(max_active: u32, admit_per_second: u32) -> WaitingRoomConfig {
    WaitingRoomConfig {
        enabled: true,
        max_active,
        admit_per_second,
        session_ttl: Duration::from_secs(600),
        queue_ttl: Duration::from_secs(600),
        shuffle_at_open: true,
    }
}

/// A private Redis, the service on it with the test room key, and a store.
pub struct Rig {
    /// The Redis (kept alive).
    pub redis: RedisServer,
    /// The service.
    pub svc: Service,
    /// A store on the Redis.
    pub store: Store,
}

impl Rig {
    /// Starts one with the room key configured.
    pub async fn start() -> Self {
        Self::start_keyed(true).await
    }

    /// Starts one, with or without the room key.
    pub async fn start_keyed(keyed: bool) -> Self {
        let (redis, svc, store) = setup_with(|c| {
            c.waiting_room_key = keyed.then(room_key);
        })
        .await;
        Self { redis, svc, store }
    }

    /// Creates `campaign` with `stock`, `window` and `room`.
    pub async fn campaign(
        &self,
        campaign: &str,
        stock: u64,
        window: Option<Window>,
        room: WaitingRoomConfig,
    ) {
        self.store
            .ensure_campaign_with_room(&id(campaign), stock, window, (false, 1), &room)
            .await
            .unwrap();
    }

    fn post(&self, path: String, user: &str) -> RequestBuilder {
        self.svc
            .http
            .post(self.svc.url(&path))
            .bearer_auth(token(user))
            .json(&json!({ "userId": user }))
    }

    /// Joins `campaign`'s line as `user`.
    pub async fn join(&self, campaign: &str, user: &str) -> (u16, Value) {
        status_and_json(self.post(format!("/v1/campaigns/{campaign}/queue"), user)).await
    }

    /// Polls with `queue_token` as `user`.
    pub async fn poll(&self, campaign: &str, user: &str, queue_token: &str) -> (u16, Value) {
        let url = self.svc.url(&format!("/v1/campaigns/{campaign}/queue"));
        let req = self.svc.http.get(url).bearer_auth(token(user));
        status_and_json(req.header("X-Stampede-Queue-Token", queue_token)).await
    }

    /// Issues as `user`, with `admission` as `X-Stampede-Admission` when given.
    pub async fn issue(&self, campaign: &str, user: &str, admission: Option<&str>) -> (u16, Value) {
        let mut req = self.post(format!("/v1/campaigns/{campaign}/issue"), user);
        if let Some(a) = admission {
            req = req.header("X-Stampede-Admission", a);
        }
        status_and_json(req).await
    }

    /// Users admitted and undecided right now, as Redis holds them.
    pub async fn active(&self, campaign: &str) -> u64 {
        let mut conn = self.redis.conn().await;
        redis::cmd("ZCARD")
            .arg(super::key(campaign, "wr:active"))
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// A user's queue token from a join's answer.
pub fn queue_token(answer: &Value) -> String {
    answer["queueToken"]
        .as_str()
        .expect("a queue token")
        .to_owned()
}

/// Spearman's rank correlation of two rankings of the same items (each a permutation of
/// 0..n).
pub fn spearman(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}
