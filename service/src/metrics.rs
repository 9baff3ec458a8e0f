//! Prometheus metrics. Each `Metrics` owns its registry, so tests can run several services
//! in one process. Labels are route templates, outcomes and campaign ids: never raw
//! paths or users.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::Error;

/// Latency buckets from 100 µs to 2.5 s: the hot path lives in the first few.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every metric the service exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP server metrics.
    pub http: HttpMetrics,
    /// Redis client metrics.
    pub redis: RedisMetrics,
    /// Issuance decisions.
    pub issuance: IssuanceMetrics,
}

/// HTTP server metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Requests by route template and outcome.
    pub requests: IntCounterVec,
    /// Request latency by route template.
    pub duration: HistogramVec,
    /// Requests being served now.
    pub in_flight: IntGauge,
    /// Requests refused by the in-flight cap.
    pub shed: IntCounter,
}

/// Redis client metrics.
#[derive(Clone)]
pub struct RedisMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

/// Issuance decisions by campaign.
#[derive(Clone)]
pub struct IssuanceMetrics {
    /// Decisions by campaign and outcome (issued, already, sold_out, …).
    pub decisions: IntCounterVec,
    /// Sold-out answers given from memory, without Redis.
    pub soldout_from_memory: IntCounterVec,
    /// Campaigns this replica currently knows to be sold out.
    pub soldout_campaigns: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            http: HttpMetrics {
                requests: IntCounterVec::new(
                    Opts::new(
                        "stampede_http_requests_total",
                        "HTTP requests by route and outcome",
                    ),
                    &["route", "outcome"],
                )
                .unwrap(),
                duration: HistogramVec::new(
                    HistogramOpts::new(
                        "stampede_http_request_duration_seconds",
                        "HTTP request latency by route",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )
                .unwrap(),
                in_flight: IntGauge::new("stampede_http_in_flight", "HTTP requests in flight")
                    .unwrap(),
                shed: IntCounter::new(
                    "stampede_http_shed_total",
                    "Requests answered 503 overloaded by the in-flight cap",
                )
                .unwrap(),
            },
            redis: RedisMetrics {
                duration: HistogramVec::new(
                    HistogramOpts::new(
                        "stampede_redis_call_duration_seconds",
                        "Redis call latency",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["op"],
                )
                .unwrap(),
                errors: IntCounterVec::new(
                    Opts::new("stampede_redis_errors_total", "Failed Redis calls by kind"),
                    &["op", "kind"],
                )
                .unwrap(),
            },
            issuance: IssuanceMetrics {
                decisions: IntCounterVec::new(
                    Opts::new(
                        "stampede_issuance_decisions_total",
                        "Issuance decisions by outcome",
                    ),
                    &["campaign", "outcome"],
                )
                .unwrap(),
                soldout_from_memory: IntCounterVec::new(
                    Opts::new(
                        "stampede_soldout_memory_answers_total",
                        "Sold-out answers given from memory without calling Redis",
                    ),
                    &["campaign"],
                )
                .unwrap(),
                soldout_campaigns: IntGauge::new(
                    "stampede_soldout_campaigns",
                    "Campaigns this replica answers as sold out from memory",
                )
                .unwrap(),
            },
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.http.requests.clone())).unwrap();
        r.register(Box::new(m.http.duration.clone())).unwrap();
        r.register(Box::new(m.http.in_flight.clone())).unwrap();
        r.register(Box::new(m.http.shed.clone())).unwrap();
        r.register(Box::new(m.redis.duration.clone())).unwrap();
        r.register(Box::new(m.redis.errors.clone())).unwrap();
        r.register(Box::new(m.issuance.decisions.clone())).unwrap();
        r.register(Box::new(m.issuance.soldout_from_memory.clone()))
            .unwrap();
        r.register(Box::new(m.issuance.soldout_campaigns.clone()))
            .unwrap();
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisMetrics {
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
