//! A private authenticated stack (`STAMPEDE_STACK_AUTH=1 scripts/stack up` under its own
//! home and ports): Redis with an ACL user, PostgreSQL over verified TLS, Kafka with
//! SASL/SCRAM over TLS, and the variables `scripts/stack env` prints for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use super::kit::{PORT_TAKEN, foreign_server, free_port, repo, retry_port_taken, unique};

/// The stack, stopped and removed on drop.
pub struct SecureStack {
    home: PathBuf,
    ports: [u16; 5],
    /// What `scripts/stack env` prints: the clients' URLs, credentials and CA.
    pub env: HashMap<String, String>,
}

impl SecureStack {
    /// Starts Redis, PostgreSQL and Kafka authenticated, on free ports (blocks until up); on
    /// new ones, three tries in all, while a port picked is taken before its server binds it.
    pub fn start() -> Self {
        let home = std::env::temp_dir().join(unique("stampede-secure"));
        std::fs::create_dir_all(&home).unwrap();
        // The Kafka jars are shared with the caller's home: nothing is fetched twice.
        let jars = PathBuf::from(std::env::var("STAMPEDE_HOME").expect("STAMPEDE_HOME"));
        std::os::unix::fs::symlink(jars.join("kafka"), home.join("kafka")).unwrap();
        let mut s = Self {
            home,
            ports: [0; 5],
            env: HashMap::new(),
        };
        retry_port_taken(|| {
            s.ports = std::array::from_fn(|_| free_port());
            let up = s.script(&["up"]);
            let out = String::from_utf8_lossy(&up.stdout).into_owned() + &stderr(&up);
            let foreign = foreign_server(&out);
            if up.status.success() && !foreign {
                return Ok(());
            }
            let _ = s.script(&["down"]);
            let taken = if foreign { PORT_TAKEN } else { "failed" };
            Err(format!("secure stack up: {taken}:\n{out}"))
        });
        let printed = s.script(&["env"]);
        assert!(printed.status.success(), "{}", stderr(&printed));
        s.env = parse_exports(&String::from_utf8_lossy(&printed.stdout));
        s
    }

    /// The value of `scripts/stack env`'s `name`.
    pub fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("scripts/stack env printed no {name}"))
            .clone()
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        let [redis, pg, kafka, controller, node] = self.ports.map(|p| p.to_string());
        Command::new(repo().join("scripts/stack"))
            .args(args)
            .env("STAMPEDE_HOME", &self.home)
            .env("STAMPEDE_STACK_AUTH", "1")
            .env("STAMPEDE_SKIP_DEPS", "1")
            .env("STAMPEDE_REDIS_PORT", redis)
            .env("STAMPEDE_PG_PORT", pg)
            .env("STAMPEDE_KAFKA_PORT", kafka)
            .env("STAMPEDE_KAFKA_CONTROLLER_PORT", controller)
            .env("STAMPEDE_KAFKA_NODE_PORT", node)
            .output()
            .expect("running scripts/stack")
    }
}

impl Drop for SecureStack {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `export NAME='value'` (or unquoted) lines as a map.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_owned(), v.replace("'\\''", "'"))
        })
        .collect()
}
