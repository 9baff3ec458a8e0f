//! What a failed node test leaves in its output: the namespace's campaigns, workloads,
//! pods with their containers' states, recent events, the pods' own warnings, and the
//! operator's and kubelet's last words about it. CI shows a failure's output and nothing
//! of the machine, so a timeout must say there what the node was doing.

use std::path::Path;

use super::node::try_kubectl;

/// At most this many lines from each source, so the whole stays readable in a CI log.
const TAIL: usize = 25;

/// Each campaign's phase and load-test runs.
const RUNS: &str = "jsonpath={range .items[*]}{.metadata.name}: {.status.phase} \
                    {.status.loadTests}{\"\\n\"}{end}";

/// Each pod's phase and its containers' waiting reasons, exit codes and times.
const CONTAINERS: &str = "custom-columns=POD:.metadata.name,PHASE:.status.phase,\
                          WAITING:.status.containerStatuses[*].state.waiting.reason,\
                          EXIT:.status.containerStatuses[*].state.terminated.exitCode,\
                          REASON:.status.containerStatuses[*].state.terminated.reason,\
                          STARTED:.status.startTime,\
                          FINISHED:.status.containerStatuses[*].state.terminated.finishedAt";

/// A compact report of namespace `ns` on the node (commands that fail say so inline).
pub fn diagnose(ns: &str, state: &Path) -> String {
    // Its stdout, or its stderr when it fails.
    let kubectl = |args: &[&str]| try_kubectl(args).unwrap_or_else(|e| e);
    let operator_log = [
        "-n",
        super::node::RELEASE_NS,
        "logs",
        "deploy/stampede-operator",
    ];
    let sections = [
        ("campaigns", kubectl(&["-n", ns, "get", "cc", "-o", "wide"])),
        (
            "load-test runs",
            kubectl(&["-n", ns, "get", "cc", "-o", RUNS]),
        ),
        (
            "workloads",
            kubectl(&["-n", ns, "get", "deploy,jobs,pods", "-o", "wide"]),
        ),
        (
            "containers",
            kubectl(&["-n", ns, "get", "pods", "-o", CONTAINERS]),
        ),
        (
            "events",
            kubectl(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"]),
        ),
        (
            "operator log",
            grep(
                &kubectl(&[&operator_log[..], &["--tail=2000"]].concat()),
                ns,
            ),
        ),
        ("pods' warnings and errors", pod_warnings(ns)),
        (
            "kubelet warnings and errors",
            grep(&warnings(&state.join("kubelet.log")), ns),
        ),
    ];
    let mut out = format!("==== node diagnostics for namespace {ns} ====\n");
    for (title, text) in sections {
        out.push_str(&format!("---- {title}\n{}", tail(&text)));
    }
    out
}

/// The warning and error lines each pod of `ns` logged (the service's tracing lines, k6's
/// `level=` lines: a runner's answers off the contract among them), prefixed by its pod.
fn pod_warnings(ns: &str) -> String {
    let Ok(pods) = try_kubectl(&["-n", ns, "get", "pods", "-o", "name"]) else {
        return String::new();
    };
    let mut out = String::new();
    for pod in pods.lines() {
        let log = try_kubectl(&["-n", ns, "logs", pod, "--all-containers", "--tail=5000"]);
        for line in log.unwrap_or_default().lines().filter(|l| is_warning(l)) {
            out.push_str(&format!("{}: {line}\n", pod.trim_start_matches("pod/")));
        }
    }
    out
}

/// Whether a pod's log line is a warning or an error (tracing's or k6's format).
fn is_warning(line: &str) -> bool {
    [" WARN ", " ERROR ", "level=warning", "level=error"]
        .iter()
        .any(|m| line.contains(m))
}

/// The warning and error lines of a klog file (they start with `W` or `E`).
fn warnings(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('E') || l.starts_with('W'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The lines of `text` that mention `needle`.
fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The last [`TAIL`] lines of `text`, each cut to 400 characters.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(TAIL);
    let mut out = if skipped > 0 {
        format!("({skipped} earlier lines left out)\n")
    } else {
        String::new()
    };
    for l in &lines[skipped..] {
        out.extend(l.chars().take(400));
        out.push('\n');
    }
    out
}
