//! Operator metrics on their own registry: reconciles, failures by error label, duration.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

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
        let reconciles = IntCounterVec::new(
            Opts::new(
                "stampede_operator_reconciles_total",
                "Reconciles by kind (apply, cleanup) and result (ok, error)",
            ),
            &["kind", "result"],
        )
        .unwrap();
        let failures = IntCounterVec::new(
            Opts::new(
                "stampede_operator_reconcile_failures_total",
                "Failed reconciles by error label",
            ),
            &["error"],
        )
        .unwrap();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "stampede_operator_reconcile_duration_seconds",
                "Reconcile duration by kind",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )
        .unwrap();
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(c).unwrap();
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
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
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
