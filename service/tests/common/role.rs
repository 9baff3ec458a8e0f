//! The service binary as a child process: one-shot commands (`campaign …`, `audit …`) and
//! long-running roles (relay, writer) that a test can kill with SIGKILL and start again, or
//! stop with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `stampede-service` binary, logging warnings only. `STAMPEDE_TEST_SERVICE_BIN` names
/// another build to run instead (to show that a test fails on an older one).
pub fn service_command() -> Command {
    let bin = std::env::var("STAMPEDE_TEST_SERVICE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stampede-service").to_owned());
    let mut cmd = Command::new(bin);
    cmd.env("STAMPEDE_LOG", "warn").envs(super::auth_env());
    cmd
}

/// The service binary running one role as a child process.
pub struct Role {
    child: Option<Child>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Where stderr goes, logging at debug level (else inherited, warnings only).
    log: Option<PathBuf>,
}

impl Role {
    /// Starts `stampede-service ARGS` with `envs`.
    pub fn start(args: &[&str], envs: &[(&str, String)]) -> Self {
        Self::launch(args, envs, None)
    }

    /// Starts `stampede-service ARGS` with `envs`, logging everything down to debug level
    /// into the file `log` (appended to on restart): what a test searches for secrets.
    pub fn start_logged(args: &[&str], envs: &[(&str, String)], log: &Path) -> Self {
        let mut envs = envs.to_vec();
        envs.push(("STAMPEDE_LOG", "debug".to_owned()));
        Self::launch(args, &envs, Some(log.to_owned()))
    }

    fn launch(args: &[&str], envs: &[(&str, String)], log: Option<PathBuf>) -> Self {
        let mut r = Self {
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            log,
        };
        r.restart();
        r
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = service_command();
        // A private broker speaks plaintext: the stack's SASL and TLS are not for it.
        let private = self
            .envs
            .iter()
            .any(|(k, v)| k == "STAMPEDE_KAFKA_BROKERS" && *v != super::stack::stack_kafka());
        if private {
            for var in stampede_core::kafka_security::ENV {
                cmd.env_remove(var);
            }
        }
        let stderr = match &self.log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap()
                .into(),
            None => Stdio::inherit(),
        };
        let child = cmd
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Sends `signal` (`STOP`, `CONT`…) to the running process.
    pub fn signal(&self, signal: &str) {
        super::kit::signal(self.child.as_ref().expect("running").id(), signal);
    }

    /// SIGKILL: no cleanup, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit: its exit status, or
    /// `None` when it is still running then (it is left running; `Drop` kills it).
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut().expect("running");
        super::kit::sigterm(c);
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill9();
    }
}
