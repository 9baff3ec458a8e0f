//! A private Redis per test: one redis-server on a free loopback port, or, with
//! `STAMPEDE_TEST_REDIS_CLUSTER=1`, a Redis Cluster of three primaries on free ports (its URL
//! `redis+cluster://…`), so the same suites run on both (`make test-cluster`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stampede_core::store::conn::{Patience, RedisConn, RedisTarget};

use super::{NEXT, free_port};

#[path = "redis_cluster.rs"]
mod cluster;

/// Whether this run's private Redis is a cluster (`STAMPEDE_TEST_REDIS_CLUSTER=1`).
pub fn on_cluster() -> bool {
    std::env::var("STAMPEDE_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1")
}

/// True (and says why on stderr) when a test that needs a single Redis runs on a cluster:
/// the test returns at once. Replication and failover on a cluster have suites of their own.
pub fn single_node_only(why: &str) -> bool {
    let skip = on_cluster();
    if skip {
        eprintln!("skipped on a Redis Cluster: {why}");
    }
    skip
}

/// One redis-server process.
pub(super) struct Node {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

/// A private Redis (one server, or a cluster's primaries), killed on drop.
pub struct RedisServer {
    nodes: Vec<Node>,
    /// Its port (a cluster's first node).
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one (a cluster with `STAMPEDE_TEST_REDIS_CLUSTER=1`) and waits until it serves.
    pub async fn start() -> Self {
        if on_cluster() {
            Self::start_cluster(3, 0).await
        } else {
            Self::start_with(&[]).await
        }
    }

    /// Starts a single server with extra `redis-server` arguments.
    pub async fn start_with(extra: &[&str]) -> Self {
        let dir = fresh_dir();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let node = start_fresh(&dir, |_| args.clone()).await;
        Self {
            port: node.port,
            nodes: vec![node],
            dir,
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.nodes.len() > 1
    }

    /// Its URL (a cluster's lists every node).
    pub fn url(&self) -> String {
        if !self.is_cluster() {
            return format!("redis://127.0.0.1:{}", self.port);
        }
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// A connection for direct checks (on a cluster: to the whole cluster).
    pub async fn conn(&self) -> RedisConn {
        RedisTarget::parse(&self.url())
            .unwrap()
            .connect(Patience::both(Duration::from_secs(5)))
            .await
            .unwrap()
    }

    /// Starts a replica of `primary` (a single server) and waits until its link is up.
    pub async fn replica_of(primary: &RedisServer) -> Self {
        assert!(
            !primary.is_cluster(),
            "replica_of: a single server's replica"
        );
        let port = primary.port.to_string();
        let replica = Self::start_with(&["--replicaof", "127.0.0.1", &port]).await;
        let mut conn = node_conn(replica.port).await;
        for _ in 0..500 {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains("master_link_status:up") {
                return replica;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the replica never linked to its primary");
    }

    /// The port of every server process.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to every server process.
    pub fn signal(&self, signal: &str) {
        for node in &self.nodes {
            super::signal(node.child.as_ref().expect("running").id(), signal);
        }
    }

    /// Makes `replica` (of this single primary) lag for real: freezes it (SIGSTOP) and
    /// drops its link here, so nothing written from now on reaches it.
    pub async fn cut_off(&self, replica: &RedisServer) {
        replica.signal("STOP");
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "replica"])
            .query_async(&mut node_conn(self.port).await)
            .await
            .unwrap();
    }

    /// Makes every node answer nobody for `ms` milliseconds (CLIENT PAUSE).
    pub async fn freeze(&self, ms: u64) {
        self.pause(ms, "ALL").await;
    }

    /// Holds every command that may write (scripts included) on every node until
    /// [`RedisServer::thaw`] or `ms` milliseconds (CLIENT PAUSE WRITE: reads and
    /// connection set-up still work).
    pub async fn pause_writes(&self, ms: u64) {
        self.pause(ms, "WRITE").await;
    }

    /// CLIENT PAUSE `ms` `mode` on every node.
    async fn pause(&self, ms: u64, mode: &str) {
        for node in &self.nodes {
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg(mode)
                .query_async::<()>(&mut node_conn(node.port).await)
                .await
                .unwrap();
        }
    }

    /// Ends a [`RedisServer::pause_writes`] on every node (CLIENT UNPAUSE).
    pub async fn thaw(&self) {
        for node in &self.nodes {
            redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async::<()>(&mut node_conn(node.port).await)
                .await
                .unwrap();
        }
    }

    /// Kills every node (SIGKILL) and starts each again, empty, on its port (a restart that
    /// lost everything: no persistence). A cluster keeps its slot layout (nodes.conf).
    pub async fn restart_empty(&mut self) {
        self.stop();
        for node in &mut self.nodes {
            let again = start_node(&self.dir, node.port, node.args.clone()).await;
            *node = again;
        }
        if self.is_cluster() {
            self.wait_cluster_ok().await;
        }
    }

    /// Kills every node (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new scratch directory for one private Redis.
fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stampede-test-redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts redis-server (no persistence) on a free port with `args_for(port)`, and waits
/// until it answers PING; a port someone took meanwhile is retried with new ones.
pub(super) async fn start_fresh(
    dir: &std::path::Path,
    args_for: impl Fn(u16) -> Vec<String>,
) -> Node {
    for _attempt in 0..5 {
        let port = free_port();
        if let Some(node) = try_start(dir, port, args_for(port)).await {
            return node;
        }
    }
    panic!("redis-server did not come up");
}

/// Starts redis-server on `port` again with the same `args`.
pub(super) async fn start_node(dir: &std::path::Path, port: u16, args: Vec<String>) -> Node {
    try_start(dir, port, args)
        .await
        .unwrap_or_else(|| panic!("redis-server did not come up on port {port}"))
}

async fn try_start(dir: &std::path::Path, port: u16, args: Vec<String>) -> Option<Node> {
    let bin = std::env::var("STAMPEDE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
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
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} (run scripts/deps): {e}"));
    let mut node = Node {
        child: Some(child),
        port,
        args,
    };
    if wait_ready(&mut node, Duration::from_secs(10)).await {
        return Some(node);
    }
    if let Some(mut c) = node.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

async fn wait_ready(node: &mut Node, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(Ok(Some(_))) = node.child.as_mut().map(|c| c.try_wait()) {
            return false;
        }
        if let Some(mut c) = node_conn_once(node.port).await
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

/// A connection to the one node on `port`, if it answers.
pub(super) async fn node_conn_once(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()
}

/// A connection to the one node on `port`.
pub(super) async fn node_conn(port: u16) -> redis::aio::MultiplexedConnection {
    node_conn_once(port).await.expect("node answers")
}
