//! Operator metrics on their own registry: reconciles, failures by error label, duration.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, Registry};
use stampede_core::metrics::Registrar;

/// Reconciles take milliseconds; a slow API server or backend, seconds.
const DURATION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = Registrar(&registry);
        Self {
            reconciles: r.counter_vec(
                "stampede_operator_reconciles_total",
                "Reconciles by kind (apply, cleanup) and result (ok, error)",
                &["kind", "result"],
            ),
            failures: r.counter_vec(
                "stampede_operator_reconcile_failures_total",
                "Failed reconciles by error label",
                &["error"],
            ),
            duration: r.histogram_vec(
                "stampede_operator_reconcile_duration_seconds",
                "Reconcile duration by kind",
                &["kind"],
                DURATION_BUCKETS,
            ),
            registry,
        }
    }

    /// Records one reconcile of `kind` (`apply` or `cleanup`).
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&crate::Error>) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles.with_label_values(&[kind, result]).inc();
        self.duration
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
        if let Some(e) = error {
            self.failures.with_label_values(&[e.metric_label()]).inc();
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        stampede_core::metrics::render(&self.registry)
    }
}
