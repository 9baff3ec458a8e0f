//! Private servers a fault test may stop and start without disturbing the shared stack: a
//! Kafka broker (`scripts/kafka-broker`) and a PostgreSQL (`scripts/stack`'s component under
//! its own home and port).

use std::path::PathBuf;
use std::process::Command;

use super::kit::{PORT_TAKEN, foreign_server, free_port, repo, retry_port_taken, unique};

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!("stampede-{what}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a repository script with `bash`, panicking with its output when it fails.
fn script(args: &[&str], envs: &[(&str, String)]) {
    run_script(args, envs).unwrap_or_else(|out| panic!("{out}"));
}

/// Runs a repository script with `bash`; its output when it fails, or when it found a
/// server it did not start on a port (`foreign_server`: here, another test's).
fn run_script(args: &[&str], envs: &[(&str, String)]) -> Result<(), String> {
    let out = Command::new("bash")
        .args(args)
        .current_dir(repo())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match (out.status.success(), foreign_server(&text)) {
        (true, false) => Ok(()),
        (_, true) => Err(format!("{args:?}: {PORT_TAKEN}:\n{text}")),
        (false, false) => Err(format!("{args:?} failed:\n{text}")),
    }
}

/// Runs a repository script with `bash` for cleanup: its outcome is ignored.
fn script_ignoring_failure(args: &[&str], envs: &[(&str, String)]) {
    let _ = Command::new("bash")
        .args(args)
        .current_dir(repo())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output();
}

/// A private Kafka broker (scripts/kafka-broker) that a test may stop and start.
pub struct PrivateKafka {
    dir: PathBuf,
    /// `auto.create.topics.enable` (off unless asked for, like the stack's broker).
    auto_create: bool,
    /// Its port.
    pub port: u16,
}

impl PrivateKafka {
    /// Starts one on free ports and waits until it serves.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts one that creates a topic a client merely asks about (as some production
    /// brokers do), for tests that clients never rely on that.
    pub fn start_auto_creating() -> Self {
        Self::start_with(true)
    }

    fn start_with(auto_create: bool) -> Self {
        let mut k = Self {
            dir: temp_dir("kafka"),
            auto_create,
            port: 0,
        };
        // A first start may move to another port; a restart keeps its own.
        retry_port_taken(|| {
            k.port = free_port();
            k.start_once()
        });
        k
    }

    /// `host:port`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Starts it again (after `stop`), keeping its data and its port.
    pub fn up(&self) {
        retry_port_taken(|| self.start_once());
    }

    /// One start on its port and a freshly picked controller port.
    fn start_once(&self) -> Result<(), String> {
        let (port, cport) = (self.port.to_string(), free_port().to_string());
        let args = [
            "scripts/kafka-broker",
            "start",
            "--dir",
            self.dir(),
            "--port",
            &port,
            "--controller-port",
            &cport,
        ];
        let auto = (
            "STAMPEDE_KAFKA_AUTO_CREATE_TOPICS",
            self.auto_create.to_string(),
        );
        run_script(&args, &[auto])
    }

    /// Stops it gracefully and waits until it is gone.
    pub fn stop(&self) {
        script(&["scripts/kafka-broker", "stop", "--dir", self.dir()], &[]);
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let args = [
            "scripts/kafka-broker",
            "stop",
            "--dir",
            self.dir(),
            "--kill",
        ];
        script_ignoring_failure(&args, &[]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PostgreSQL (scripts/stack's postgres component under its own home and port).
pub struct PrivatePostgres {
    home: PathBuf,
    /// Its port.
    pub port: u16,
}

impl PrivatePostgres {
    /// Initialises and starts one on a free port (another, three tries in all, while the
    /// one picked is taken before PostgreSQL binds it).
    pub fn start() -> Self {
        let mut p = Self {
            home: temp_dir("pg"),
            port: 0,
        };
        retry_port_taken(|| {
            p.port = free_port();
            run_script(&["scripts/stack", "up", "postgres"], &p.env())
        });
        p
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STAMPEDE_HOME", self.home.to_str().unwrap().to_owned()),
            ("STAMPEDE_PG_PORT", self.port.to_string()),
            ("STAMPEDE_SKIP_DEPS", "1".into()),
            // Plain, whatever the shared stack runs: the tests use its fixed password.
            ("STAMPEDE_STACK_AUTH", "0".into()),
        ]
    }

    /// Its admin URL.
    pub fn url(&self) -> String {
        format!(
            "postgres://stampede:stampede@127.0.0.1:{}/stampede",
            self.port
        )
    }

    /// Starts it again (after `stop`), on its port.
    pub fn up(&self) {
        script(&["scripts/stack", "up", "postgres"], &self.env());
    }

    /// Stops it (fast shutdown) and waits until it is down.
    pub fn stop(&self) {
        script(&["scripts/stack", "down", "postgres"], &self.env());
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        script_ignoring_failure(&["scripts/stack", "down", "postgres"], &self.env());
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
