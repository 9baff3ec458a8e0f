//! Prometheus metrics. Each `Metrics` owns its registry, so tests can run several services
//! in one process. Labels are route templates, outcomes and campaign ids: never raw
//! paths or users.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use stampede_core::metrics::{LATENCY_BUCKETS, RedisMetrics};

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
    /// Relay, writer and audit.
    pub pipeline: PipelineMetrics,
}

/// The durable half: outbox → Kafka → PostgreSQL.
#[derive(Clone)]
pub struct PipelineMetrics {
    /// Entries in each campaign's outbox stream (not yet acknowledged by Kafka).
    pub relay_backlog: IntGaugeVec,
    /// Issuances the relay delivered to Kafka, by campaign.
    pub relay_produced: IntCounterVec,
    /// Issuances Kafka did not acknowledge (left pending, retried).
    pub relay_produce_errors: IntCounter,
    /// Entries taken over from a dead relay.
    pub relay_claimed: IntCounter,
    /// Rows per writer batch.
    pub writer_batch_rows: Histogram,
    /// New rows written, by campaign.
    pub writer_rows: IntCounterVec,
    /// Rows skipped because they were already in the database (replays).
    pub writer_duplicates: IntCounter,
    /// Failed database attempts (each retried).
    pub writer_db_errors: IntCounter,
    /// Messages behind the high watermark, per topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// From issuance in Redis to the row committed in PostgreSQL.
    pub issue_to_db: Histogram,
    /// Messages sent to a dead-letter topic, by source topic.
    pub dead_lettered: IntCounterVec,
    /// Issued in Redis but not yet in PostgreSQL, by campaign.
    pub unpersisted: IntGaugeVec,
    /// Rows in PostgreSQL beyond what Redis issued (oversold or unknown), by campaign.
    pub excess_rows: IntGaugeVec,
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
            redis: RedisMetrics::register(&registry),
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
            pipeline: PipelineMetrics::new(),
            registry,
        };
        let r = &m.registry;
        m.pipeline.register(r);
        r.register(Box::new(m.http.requests.clone())).unwrap();
        r.register(Box::new(m.http.duration.clone())).unwrap();
        r.register(Box::new(m.http.in_flight.clone())).unwrap();
        r.register(Box::new(m.http.shed.clone())).unwrap();
        r.register(Box::new(m.issuance.decisions.clone())).unwrap();
        r.register(Box::new(m.issuance.soldout_from_memory.clone()))
            .unwrap();
        r.register(Box::new(m.issuance.soldout_campaigns.clone()))
            .unwrap();
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        stampede_core::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineMetrics {
    fn new() -> Self {
        let gauge_vec =
            |n: &str, h: &str, l: &[&str]| IntGaugeVec::new(Opts::new(n, h), l).unwrap();
        let counter_vec =
            |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l).unwrap();
        let counter = |n: &str, h: &str| IntCounter::new(n, h).unwrap();
        Self {
            relay_backlog: gauge_vec(
                "stampede_relay_backlog",
                "Entries in the campaign's outbox stream not yet acknowledged by Kafka",
                &["campaign"],
            ),
            relay_produced: counter_vec(
                "stampede_relay_produced_total",
                "Issuances delivered to Kafka",
                &["campaign"],
            ),
            relay_produce_errors: counter(
                "stampede_relay_produce_errors_total",
                "Issuances Kafka did not acknowledge (left pending and retried)",
            ),
            relay_claimed: counter(
                "stampede_relay_claimed_total",
                "Outbox entries taken over from a dead relay",
            ),
            writer_batch_rows: Histogram::with_opts(
                HistogramOpts::new("stampede_writer_batch_rows", "Rows per writer batch").buckets(
                    vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
                ),
            )
            .unwrap(),
            writer_rows: counter_vec(
                "stampede_writer_rows_total",
                "New rows written to PostgreSQL",
                &["campaign"],
            ),
            writer_duplicates: counter(
                "stampede_writer_duplicate_rows_total",
                "Rows skipped because they were already persisted (replays)",
            ),
            writer_db_errors: counter(
                "stampede_writer_db_errors_total",
                "Failed database attempts (each one retried)",
            ),
            consumer_lag: gauge_vec(
                "stampede_writer_consumer_lag",
                "Messages behind the partition's high watermark",
                &["topic", "partition"],
            ),
            issue_to_db: Histogram::with_opts(
                HistogramOpts::new(
                    "stampede_issue_to_db_seconds",
                    "Time from issuance in Redis to the row committed in PostgreSQL",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ]),
            )
            .unwrap(),
            dead_lettered: counter_vec(
                "stampede_dead_lettered_total",
                "Messages sent to the dead-letter topic",
                &["topic"],
            ),
            unpersisted: gauge_vec(
                "stampede_unpersisted_issuances",
                "Coupons issued in Redis but not yet in PostgreSQL",
                &["campaign"],
            ),
            excess_rows: gauge_vec(
                "stampede_audit_excess_rows",
                "Rows in PostgreSQL beyond the coupons Redis issued (oversold or unknown)",
                &["campaign"],
            ),
        }
    }

    fn register(&self, r: &Registry) {
        r.register(Box::new(self.relay_backlog.clone())).unwrap();
        r.register(Box::new(self.relay_produced.clone())).unwrap();
        r.register(Box::new(self.relay_produce_errors.clone()))
            .unwrap();
        r.register(Box::new(self.relay_claimed.clone())).unwrap();
        r.register(Box::new(self.writer_batch_rows.clone()))
            .unwrap();
        r.register(Box::new(self.writer_rows.clone())).unwrap();
        r.register(Box::new(self.writer_duplicates.clone()))
            .unwrap();
        r.register(Box::new(self.writer_db_errors.clone())).unwrap();
        r.register(Box::new(self.consumer_lag.clone())).unwrap();
        r.register(Box::new(self.issue_to_db.clone())).unwrap();
        r.register(Box::new(self.dead_lettered.clone())).unwrap();
        r.register(Box::new(self.unpersisted.clone())).unwrap();
        r.register(Box::new(self.excess_rows.clone())).unwrap();
    }
}
