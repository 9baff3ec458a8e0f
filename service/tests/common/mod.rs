//! Test harness: a real redis-server per test on a free loopback port, and the service
//! served in-process on port 0.
#![allow(dead_code)]

pub mod kit;
pub mod pipeline;

pub use kit::*;

use std::time::Duration;

use stampede_core::store::StoreConfig;
use stampede_service::server::{ServeConfig, serve};
use tokio_util::sync::CancellationToken;

/// The service running in-process.
pub struct Service {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Fires graceful shutdown.
    pub shutdown: CancellationToken,
    /// The serve task.
    pub task: tokio::task::JoinHandle<Result<(), stampede_core::Error>>,
    /// An HTTP client.
    pub http: reqwest::Client,
}

/// Test defaults: a short sold-out recheck, a generous Redis timeout.
pub fn config(redis_url: &str) -> ServeConfig {
    ServeConfig {
        store: StoreConfig {
            url: redis_url.to_owned(),
            connections: 2,
            timeout: Duration::from_millis(1_000),
        },
        max_in_flight: 512,
        soldout_recheck: Duration::from_millis(50),
        max_body_bytes: 4096,
        relay: None,
    }
}

impl Service {
    /// Serves with `config` on a free port.
    pub async fn start(config: ServeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, shutdown.clone()));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            base,
            shutdown,
            task,
            http,
        }
    }

    /// POSTs an issue request for `user`; returns status, body and headers.
    pub async fn issue(&self, campaign: &str, user: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/v1/campaigns/{campaign}/issue", self.base))
            .json(&serde_json::json!({ "userId": user }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// GETs `path`; returns status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// The value of one sample line in /metrics, 0 when absent.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        sample(&self.metrics().await, name_and_labels)
    }
}
