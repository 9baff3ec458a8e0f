//! Metrics plumbing shared by every binary: a registrar that creates and registers in one
//! step, the Redis client's metrics, and the Prometheus text exposition. Each binary owns
//! its registry, so tests can run several in one process.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Error;

/// Latency buckets from 100 µs to 2.5 s: the hot path lives in the first few.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Redis client metrics: call latency by operation, failures by operation and kind.
#[derive(Clone)]
pub struct RedisMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    batch: Histogram,
}

impl RedisMetrics {
    /// Creates the Redis metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let r = Registrar(registry);
        Self {
            duration: r.histogram_vec(
                "stampede_redis_call_duration_seconds",
                "Redis call latency",
                &["op"],
                LATENCY_BUCKETS,
            ),
            errors: r.counter_vec(
                "stampede_redis_errors_total",
                "Failed Redis calls by kind",
                &["op", "kind"],
            ),
            batch: r.histogram(
                "stampede_redis_issue_batch_size",
                "Issuances decided by one issue script call",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
        }
    }

    /// Metrics kept in a registry nobody serves: for one-shot commands and callers whose
    /// Redis calls are not part of what they export (the operator's provisioning).
    pub fn detached() -> Self {
        Self::register(&Registry::new())
    }

    /// Records one call.
    pub fn observe(&self, op: &'static str, took: Duration, err: Option<&Error>) {
        self.duration
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
        if let Some(e) = err {
            self.errors.with_label_values(&[op, e.metric_label()]).inc();
        }
    }

    /// Records the size of one issue batch.
    pub fn observe_batch(&self, issuances: usize) {
        self.batch.observe(issuances as f64);
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding never fails");
    String::from_utf8(buf).expect("exposition is UTF-8")
}

/// Creates metrics and registers them in one step, so a metric can't be created and
/// forgotten. Names and labels are constants of this code base: a clash is a programming
/// error and panics at start-up.
#[derive(Clone, Copy)]
pub struct Registrar<'a>(pub &'a Registry);

impl Registrar<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> M {
        self.0
            .register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    /// A counter with labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    /// A gauge with labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A histogram with these bucket bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }

    /// A histogram with labels and these bucket bounds.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}
