//! Test harness: a real redis-server per test on a free loopback port, and the service
//! served in-process on port 0.
#![allow(dead_code)]

pub mod pipeline;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stampede_service::server::{ServeConfig, serve};
use stampede_service::store::StoreConfig;
use tokio_util::sync::CancellationToken;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Polls `f` every 20 ms until it returns `Some`, panicking with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redis-server child process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub async fn start() -> Self {
        let bin = std::env::var("STAMPEDE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = std::env::temp_dir().join(format!(
            "stampede-test-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            let child = Command::new(&bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "no", "--dir", dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin} (run scripts/deps): {e}"));
            let mut server = Self {
                child: Some(child),
                port,
                dir: dir.clone(),
            };
            if server.wait_ready(Duration::from_secs(10)).await {
                return server;
            }
            server.stop();
        }
        panic!("redis-server did not come up");
    }

    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(mut c) = self.client().get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client for direct checks.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// A connection for direct checks.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Kills it (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service running in-process.
pub struct Service {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Fires graceful shutdown.
    pub shutdown: CancellationToken,
    /// The serve task.
    pub task: tokio::task::JoinHandle<Result<(), stampede_service::Error>>,
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

/// The value of the sample `name_and_labels` (exactly as exported) in `text`.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
