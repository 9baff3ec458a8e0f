//! The private control plane of a test (etcd + kube-apiserver from
//! `scripts/control-plane`), orphan reaping, and installing CRDs into it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use stampede_operator::run::client;
use tracing_subscriber::EnvFilter;

use super::{eventually, repo, unique};

/// etcd + kube-apiserver on loopback ports, stopped on drop.
pub struct ControlPlane {
    dir: PathBuf,
    /// Admin kubeconfig (token auth).
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts one (building the binaries first if the cache lacks them).
    pub fn start() -> Self {
        reap_orphans();
        let dir = std::env::temp_dir().join(dir_name());
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(repo().join("scripts/control-plane"))
            .args(["start", "--dir", dir.to_str().unwrap(), "--timeout", "120"])
            .output()
            .expect("running scripts/control-plane");
        assert!(
            out.status.success(),
            "control plane did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        }
    }

    /// A client authenticated as the admin.
    pub async fn client(&self) -> Client {
        client(Some(&self.kubeconfig))
            .await
            .expect("client from kubeconfig")
    }
}

/// What every control plane's directory name starts with.
const DIR_PREFIX: &str = "stampede-cp-";

/// A new control plane directory's name: `stampede-cp-<pid>-<unique>`, the owner's pid on
/// its own. (`unique` writes the pid and a start-time stamp together: read as one number,
/// a stamp of digits only made a live test's pid look dead, and its control plane was
/// killed and removed under it by another test's reaping.)
pub fn dir_name() -> String {
    format!("{DIR_PREFIX}{}-{}", std::process::id(), unique("cp"))
}

/// The test process that owns control plane directory `name`, when it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(DIR_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Stops control planes left behind by test processes that were killed before their
/// `Drop` ran (a CI timeout, a ^C): their directory names carry the dead process's pid.
fn reap_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let _ = Command::new(repo().join("scripts/control-plane"))
            .args(["stop", "--dir", &e.path().to_string_lossy(), "--kill"])
            .output();
        let _ = std::fs::remove_dir_all(e.path());
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // A failing test's control plane is removed below: what it logged goes with the
        // failure, so a lost connection or a refused request can be told apart afterwards.
        if std::thread::panicking() {
            for log in ["etcd.log", "kube-apiserver.log"] {
                let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
                print_tail(log, text.lines());
            }
            let text = std::fs::read_to_string(operator_log()).unwrap_or_default();
            let mine = format!("cp={}", self.dir.file_name().unwrap().to_string_lossy());
            print_tail("operator log", text.lines().filter(|l| l.contains(&mine)));
        }
        let _ = Command::new(repo().join("scripts/control-plane"))
            .args(["stop", "--dir", self.dir.to_str().unwrap(), "--kill"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints the last 40 of `lines`, headed as the failed test's `what`.
fn print_tail<'a>(what: &str, lines: impl Iterator<Item = &'a str>) {
    let lines: Vec<&str> = lines.collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    eprintln!("--- the failed test's {what} (last 40 lines) ---\n{tail}");
}

/// Where the operators this test process runs in-process log (one file per process, named
/// like a control plane's directory so orphan reaping removes it too); installs the
/// process's subscriber on first use.
fn operator_log() -> &'static Path {
    static LOG: OnceLock<PathBuf> = OnceLock::new();
    LOG.get_or_init(|| {
        let name = format!("{DIR_PREFIX}{}-operator.log", std::process::id());
        let path = std::env::temp_dir().join(name);
        if let Ok(file) = std::fs::File::create(&path) {
            let _ = tracing_subscriber::fmt()
                .with_writer(Mutex::new(file))
                .with_ansi(false)
                .with_env_filter(EnvFilter::new("info,kube=warn"))
                .try_init();
        }
        path
    })
}

/// The span an in-process operator runs in: its lines in the log carry `cp=<dir name>`.
pub fn operator_span(control_plane: &str) -> tracing::Span {
    operator_log();
    tracing::info_span!("operator", cp = %control_plane)
}

/// Installs a CRD by server-side apply and waits until it is served.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("stampede-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    eventually(
        &format!("CRD {name} established"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        },
    )
    .await;
}

/// A minimal `prometheusrules.monitoring.coreos.com` CRD (what prometheus-operator
/// installs, without its schema), so the operator's PrometheusRule path runs.
pub fn prometheus_rule_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "prometheusrules.monitoring.coreos.com" },
        "spec": { "group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": { "plural": "prometheusrules", "singular": "prometheusrule", "kind": "PrometheusRule", "listKind": "PrometheusRuleList" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }] }
    }))
    .unwrap()
}
