//! The core's own metrics (the Redis client's) and the Prometheus text exposition; each
//! binary owns a registry and registers these beside its own.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
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
}

impl RedisMetrics {
    /// Creates the Redis metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            duration: HistogramVec::new(
                HistogramOpts::new("stampede_redis_call_duration_seconds", "Redis call latency")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["op"],
            )
            .unwrap(),
            errors: IntCounterVec::new(
                Opts::new("stampede_redis_errors_total", "Failed Redis calls by kind"),
                &["op", "kind"],
            )
            .unwrap(),
        };
        registry.register(Box::new(m.duration.clone())).unwrap();
        registry.register(Box::new(m.errors.clone())).unwrap();
        m
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
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding never fails");
    String::from_utf8(buf).expect("exposition is UTF-8")
}
