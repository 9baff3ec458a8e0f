//! Test kit shared by every crate's black-box tests (the operator's include this file by
//! path): polling, unique names, free ports, SIGTERM to a child, a private redis-server,
//! metric samples.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// A name unique to this test process and call, usable as a campaign id.
///
/// The process id alone repeats across runs (CI starts each run in a fresh pid space
/// while PostgreSQL and Kafka keep their data), so a stamp of the process's start time
/// rides along with it.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}{}-{}",
        std::process::id(),
        run_stamp(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Five lowercase base-36 digits of this process's start time in milliseconds (they wrap
/// every 16.8 hours, and a clash needs the same pid too).
fn run_stamp() -> &'static str {
    static STAMP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAMP.get_or_init(|| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut n = millis % 36u128.pow(5);
        let mut digits = [b'0'; 5];
        for d in digits.iter_mut().rev() {
            *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
            n /= 36;
        }
        String::from_utf8(digits.to_vec()).unwrap()
    })
}

/// The password in `url`'s user info (`scheme://user:password@host`), if it has one.
pub fn url_password(url: &str) -> Option<String> {
    let userinfo = url.split_once("://")?.1.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_owned())
}

/// `url` with its password replaced by `new` (its user kept); `url` must name a user.
pub fn with_password(url: &str, new: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').unwrap();
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:{new}@{host}")
}

/// The repository root (scripts live there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the sample `name_and_labels` (exactly as exported) in `text`.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `kill -TERM <pid>`: a signal without unsafe code.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(ok.success(), "kill -TERM {}", child.id());
}

/// Waits up to `limit` for `child` to exit; kills it (SIGKILL) and panics after that.
pub async fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running {limit:?} after SIGTERM", child.id());
        }
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
        Self::start_with(&[]).await
    }

    /// Starts a replica of `primary` and waits until its link to the primary is up.
    pub async fn replica_of(primary: &RedisServer) -> Self {
        let port = primary.port.to_string();
        let replica = Self::start_with(&["--replicaof", "127.0.0.1", &port]).await;
        let mut conn = replica.conn().await;
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

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// Starts one with extra `redis-server` arguments.
    pub async fn start_with(extra: &[&str]) -> Self {
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
                .args(extra)
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

    /// Makes `replica` (of this primary) lag for real: freezes it (SIGSTOP) and drops its
    /// link here, so nothing written from now on reaches it, not even its socket buffer.
    pub async fn cut_off(&self, replica: &RedisServer) {
        replica.signal("STOP");
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "replica"])
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
    }

    /// Makes it answer nobody for `ms` milliseconds (CLIENT PAUSE).
    pub async fn freeze(&self, ms: u64) {
        let mut admin = self.conn().await;
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
    }

    /// Kills it (SIGKILL) and starts a new, empty one on the same port (a restart that lost
    /// everything: no persistence).
    pub async fn restart_empty(&mut self) {
        self.stop();
        let bin = std::env::var("STAMPEDE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let child = Command::new(&bin)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir", self.dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        assert!(self.wait_ready(Duration::from_secs(10)).await, "restarted");
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
