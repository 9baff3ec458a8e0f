//! Test kit shared by every crate's black-box tests (the operator's include this file by
//! path): polling, unique names, free ports, SIGTERM to a child, a private redis-server,
//! metric samples.
#![allow(dead_code)]

#[path = "redis_server.rs"]
mod redis_server;
#[allow(unused_imports)] // a suite may use none of it
pub use redis_server::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
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

/// Runs `start` until it succeeds, again (three tries in all) while it fails because a port
/// was taken: a port found free can be bound by another suite's server before ours binds it.
pub fn retry_port_taken(mut start: impl FnMut() -> Result<(), String>) {
    for tries in 1.. {
        match start() {
            Ok(()) => return,
            Err(out) => assert!(tries < 3 && out.contains("already in use"), "{out}"),
        }
    }
}

/// What a start that found its port taken says, for [`retry_port_taken`].
pub const PORT_TAKEN: &str = "a port picked is already in use by a server it did not start";

/// Whether `scripts/stack up`'s output says a server it did not start answered on a port:
/// it leaves a user's own alone (on the default ports); on a port a test picked, that is
/// another test's server, and the test would talk to it.
pub fn foreign_server(output: &str) -> bool {
    output.contains("not started by scripts/stack")
}

/// A free loopback port for a server a test starts, from 20000-31999: below the kernel's
/// ephemeral range (32768-60999), where a port picked by binding port 0 could become some
/// outgoing connection's source port before the server bound it (CI saw it happen to a
/// control plane's etcd). Never the same port twice in one process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..2_000 {
        // RandomState is seeded afresh per instance: a random number without a crate.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}

/// The value of the sample `name_and_labels` (exactly as exported) in `text`.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A child process that is killed and reaped when dropped: a test that fails midway leaves
/// no process running, none holding the output pipe `make test` waits on.
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `kill -SIGNAL <pid>` (`TERM`, `STOP`, `CONT`…): a signal without unsafe code.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// `kill -TERM <pid>`.
pub fn sigterm(child: &Child) {
    signal(child.id(), "TERM");
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

/// Every `--help` of `bin`, each subcommand's too (found in its parent's "Commands:"),
/// run with `env` set: (the command path, the text).
pub fn every_help(bin: &str, env: &[(&str, String)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let out = std::process::Command::new(bin)
            .args(&path)
            .arg("--help")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{path:?} --help: {text}");
        let commands = text.lines().skip_while(|l| *l != "Commands:").skip(1);
        // A command's line starts two spaces in; a wrapped description further in.
        for line in commands.take_while(|l| !l.is_empty()) {
            let name = line.strip_prefix("  ").filter(|l| !l.starts_with(' '));
            if let Some(name) = name
                .and_then(|l| l.split_whitespace().next())
                .filter(|n| *n != "help")
            {
                todo.push([path.clone(), vec![name.to_owned()]].concat());
            }
        }
        found.push((path.join(" "), text));
    }
    found
}

/// Asserts that none of `bin`'s `--help` texts (at least `min` of them) shows the value of
/// any of `vars`, each set to a URL with a password, as a Secret would hand it over.
pub fn assert_no_help_shows(bin: &str, vars: &[&str], min: usize) {
    let secret = "s3cret-from-a-Secret";
    let value = format!("redis://app:{secret}@127.0.0.1:1/0123456789abcdef0123456789abcdef");
    let env: Vec<_> = vars.iter().map(|v| (*v, value.clone())).collect();
    let helps = every_help(bin, &env);
    assert!(
        helps.len() >= min,
        "{} helps: the walk found too few",
        helps.len()
    );
    for (path, text) in helps {
        assert!(
            !text.contains(secret),
            "`{path} --help` shows a credential:\n{text}"
        );
    }
}
