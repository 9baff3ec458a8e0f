//! Prometheus metrics. Each `Metrics` owns its registry, so tests can run several services
//! in one process. Labels are route templates, outcomes and campaign ids: never raw
//! paths or users.

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use stampede_core::metrics::{LATENCY_BUCKETS, RedisMetrics, Registrar};

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
    /// Waiting rooms.
    pub waiting_room: WaitingRoomMetrics,
}

/// Waiting rooms, by campaign: what each join or poll saw and did.
#[derive(Clone)]
pub struct WaitingRoomMetrics {
    /// Users in line at the last join or poll.
    pub queued: IntGaugeVec,
    /// Users admitted and not yet decided at the last join or poll.
    pub active: IntGaugeVec,
    /// Users admitted.
    pub admitted: IntCounterVec,
    /// 1 while the room admits (open, not paused, stock left) at the last join or poll.
    pub open: IntGaugeVec,
    /// Places in line and admissions that lapsed (not polled, or not used in time).
    pub lapsed: IntCounterVec,
}

impl WaitingRoomMetrics {
    fn register(r: Registrar<'_>) -> Self {
        let campaign = &["campaign"];
        Self {
            queued: r.gauge_vec(
                "stampede_waiting_room_queued",
                "Users in the waiting room's line",
                campaign,
            ),
            active: r.gauge_vec(
                "stampede_waiting_room_active",
                "Users admitted from the waiting room who have not issued yet",
                campaign,
            ),
            open: r.gauge_vec(
                "stampede_waiting_room_open",
                "1 while the waiting room admits: open, not paused or suspended, stock left",
                campaign,
            ),
            admitted: r.counter_vec(
                "stampede_waiting_room_admitted_total",
                "Users admitted from the waiting room",
                campaign,
            ),
            lapsed: r.counter_vec(
                "stampede_waiting_room_lapsed_total",
                "Places in line not polled within queueTtl and admissions unused within sessionTtl",
                campaign,
            ),
        }
    }
}

/// The durable half: outbox → Kafka → PostgreSQL.
#[derive(Clone)]
pub struct PipelineMetrics {
    /// Entries in each campaign's outbox stream (a sharded campaign's: its buckets'
    /// together), not yet acknowledged by Kafka.
    pub relay_backlog: IntGaugeVec,
    /// Issuances the relay delivered to Kafka, by campaign.
    pub relay_produced: IntCounterVec,
    /// Kafka messages delivered (one per issuance, or per batch entry where the topic's
    /// writers read batch messages).
    pub relay_messages: IntCounter,
    /// Issuances Kafka did not acknowledge (left pending, retried).
    pub relay_produce_errors: IntCounter,
    /// Entries taken over from a dead relay.
    pub relay_claimed: IntCounter,
    /// Relay producers replaced after librdkafka put them in its fatal state.
    pub relay_producer_renewals: IntCounter,
    /// Rows per writer batch.
    pub writer_batch_rows: Histogram,
    /// New rows written, by campaign.
    pub writer_rows: IntCounterVec,
    /// Rows skipped because they were already in the database (replays).
    pub writer_duplicates: IntCounter,
    /// Failed database attempts (each retried).
    pub writer_db_errors: IntCounter,
    /// Writer Kafka consumers closed and built again after their group membership stalled.
    pub writer_consumer_rebuilds: IntCounter,
    /// Rows refused because another user already holds their seq, by campaign.
    pub writer_seq_conflicts: IntCounterVec,
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
    /// Requests answered 429 because a user or client was past its budget, by who.
    pub rate_limited: IntCounterVec,
    /// Users and client addresses whose budgets are tracked (after the last sweep).
    pub rate_limit_keys: IntGaugeVec,
    /// JWKS refreshes by result (`ok`, `failed`: the last good keys stay).
    pub jwks_refreshes: IntCounterVec,
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
    /// Redis restarts or failovers this replica noticed (epoch changes).
    pub epoch_changes: IntCounter,
    /// Epoch checks this replica made (whatever they found).
    pub epoch_checks: IntCounter,
    /// 1 for each campaign suspended (a sharded one: any bucket) because Redis may have
    /// lost acknowledged writes.
    pub suspended: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = Registrar(&registry);
        Self {
            http: HttpMetrics::register(r),
            redis: RedisMetrics::register(&registry),
            issuance: IssuanceMetrics::register(r),
            pipeline: PipelineMetrics::register(r),
            waiting_room: WaitingRoomMetrics::register(r),
            registry,
        }
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

impl HttpMetrics {
    fn register(r: Registrar<'_>) -> Self {
        Self {
            requests: r.counter_vec(
                "stampede_http_requests_total",
                "HTTP requests by route and outcome",
                &["route", "outcome"],
            ),
            duration: r.histogram_vec(
                "stampede_http_request_duration_seconds",
                "HTTP request latency by route",
                &["route"],
                LATENCY_BUCKETS,
            ),
            in_flight: r.gauge("stampede_http_in_flight", "HTTP requests in flight"),
            shed: r.counter(
                "stampede_http_shed_total",
                "Requests answered 503 overloaded by the in-flight cap",
            ),
            rate_limited: r.counter_vec(
                "stampede_http_rate_limited_total",
                "Requests answered 429 rate_limited: a user or client past its budget",
                &["by"],
            ),
            rate_limit_keys: r.gauge_vec(
                "stampede_http_rate_limit_keys",
                "Users and client addresses whose budgets are tracked",
                &["by"],
            ),
            jwks_refreshes: r.counter_vec(
                "stampede_auth_jwks_refreshes_total",
                "JWKS refreshes by result (failed: the last good keys stay in use)",
                &["result"],
            ),
        }
    }
}

impl IssuanceMetrics {
    fn register(r: Registrar<'_>) -> Self {
        Self {
            decisions: r.counter_vec(
                "stampede_issuance_decisions_total",
                "Issuance decisions by outcome",
                &["campaign", "outcome"],
            ),
            soldout_from_memory: r.counter_vec(
                "stampede_soldout_memory_answers_total",
                "Sold-out answers given from memory without calling Redis",
                &["campaign"],
            ),
            soldout_campaigns: r.gauge(
                "stampede_soldout_campaigns",
                "Campaigns this replica answers as sold out from memory",
            ),
            epoch_changes: r.counter(
                "stampede_redis_epoch_changes_total",
                "Redis restarts or failovers noticed (on a cluster: per campaign shard), counted once the campaigns are suspended",
            ),
            epoch_checks: r.counter(
                "stampede_redis_epoch_checks_total",
                "Checks whether Redis restarted or failed over (one every --epoch-check-ms)",
            ),
            suspended: r.gauge_vec(
                "stampede_campaign_suspended",
                "1 while the campaign (a sharded one: any of its buckets) is suspended because Redis may have lost acknowledged writes",
                &["campaign"],
            ),
        }
    }
}

/// Rows per writer batch.
const BATCH_ROWS_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Issuance to committed row: milliseconds when healthy, minutes through an outage.
const ISSUE_TO_DB_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

impl PipelineMetrics {
    // layout: table
    fn register(r: Registrar<'_>) -> Self {
        Self {
            relay_backlog: r.gauge_vec(
                "stampede_relay_backlog",
                "Entries in the campaign's outbox stream (a sharded one's: its buckets' streams together) not yet acknowledged by Kafka",
                &["campaign"],
            ),
            relay_produced: r.counter_vec(
                "stampede_relay_produced_total",
                "Issuances delivered to Kafka",
                &["campaign"],
            ),
            relay_messages: r.counter(
                "stampede_relay_messages_total",
                "Kafka messages delivered: one per issuance, or one per batch outbox entry where the topic's writers read batch messages",
            ),
            relay_produce_errors: r.counter(
                "stampede_relay_produce_errors_total",
                "Issuances Kafka did not acknowledge (left pending and retried)",
            ),
            relay_claimed: r.counter(
                "stampede_relay_claimed_total",
                "Outbox entries taken over from a dead relay",
            ),
            relay_producer_renewals: r.counter(
                "stampede_relay_producer_renewals_total",
                "Relay Kafka producers replaced after a fatal error (every later send would fail)",
            ),
            writer_batch_rows: r.histogram(
                "stampede_writer_batch_rows",
                "Rows per writer batch",
                BATCH_ROWS_BUCKETS,
            ),
            writer_rows: r.counter_vec(
                "stampede_writer_rows_total",
                "New rows written to PostgreSQL",
                &["campaign"],
            ),
            writer_duplicates: r.counter(
                "stampede_writer_duplicate_rows_total",
                "Rows skipped because they were already persisted (replays)",
            ),
            writer_db_errors: r.counter(
                "stampede_writer_db_errors_total",
                "Failed database attempts (each one retried)",
            ),
            writer_consumer_rebuilds: r.counter(
                "stampede_writer_consumer_rebuilds_total",
                "Writer Kafka consumers closed and built again after their group membership stalled",
            ),
            writer_seq_conflicts: r.counter_vec(
                "stampede_writer_seq_conflicts_total",
                "Rows dead-lettered because another user already holds their seq (Redis lost writes)",
                &["campaign"],
            ),
            consumer_lag: r.gauge_vec(
                "stampede_writer_consumer_lag",
                "Messages behind the partition's high watermark",
                &["topic", "partition"],
            ),
            issue_to_db: r.histogram(
                "stampede_issue_to_db_seconds",
                "Time from issuance in Redis to the row committed in PostgreSQL",
                ISSUE_TO_DB_BUCKETS,
            ),
            dead_lettered: r.counter_vec(
                "stampede_dead_lettered_total",
                "Messages sent to the dead-letter topic",
                &["topic"],
            ),
            unpersisted: r.gauge_vec(
                "stampede_unpersisted_issuances",
                "Coupons issued in Redis but not yet in PostgreSQL",
                &["campaign"],
            ),
            excess_rows: r.gauge_vec(
                "stampede_audit_excess_rows",
                "Rows in PostgreSQL beyond the coupons Redis issued (oversold or unknown)",
                &["campaign"],
            ),
        }
    }
}
