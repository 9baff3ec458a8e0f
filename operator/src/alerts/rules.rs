//! The alert rules, one row each: what an alert watches, when it fires, for how long, and
//! what it says. The single source of the campaign's PrometheusRule and of the Grafana
//! alerting file (`dashboards/alerting/stampede-alerts.yaml`, `make generate`).

use super::scope::{Pods, Scope};
use crate::crd::AlertsSpec;

/// The issue route's matcher (HTTP metrics).
const ISSUE: &str = r#"route="/v1/campaigns/{campaign}/issue""#;
/// Server errors among issue answers: the store away, a bug, an answer past the request's
/// deadline (503 `timeout`); 503 `overloaded` is load shedding, not an error.
const ERRORS: &str = r#"outcome=~"unavailable|internal|timeout|error""#;
const SHED: &str = r#"outcome="overloaded""#;

/// One alert.
pub struct Rule {
    /// Alert name, also the runbook's file name.
    pub alert: &'static str,
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    /// The watched value, as PromQL for a scope (Grafana: query A).
    pub query: fn(&Scope) -> String,
    /// When the value fires (Prometheus: `<query> > <limit>`; Grafana: threshold C).
    pub fires: Cmp,
    /// How long the condition must hold.
    pub hold: Hold,
    /// Series whose absence fires too, for one campaign's rules (a rule over every
    /// campaign cannot tell that a campaign it never saw is missing).
    pub absent: Option<fn(&Scope) -> String>,
    /// Templates, see [`Scope::text`].
    pub summary: &'static str,
    pub description: &'static str,
}

/// The comparison that fires.
#[derive(Clone, Copy, Debug)]
pub enum Cmp {
    Above(Limit),
    Below(Limit),
}

/// A threshold: one of `spec.alerts`, or a constant.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    P95LatencyMs,
    ErrorRatio,
    ShedRatio,
    ConsumerLag,
    IssueToDbSeconds,
    RelayBacklog,
    Const(f64),
}

/// How long a condition holds before the alert fires.
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    /// `spec.alerts.for`.
    Spec,
    /// A fixed duration, whatever the spec says.
    Fixed(&'static str),
    /// At once (informational).
    AtOnce,
}

/// Every rule, in rule order.
// layout: table
pub fn rules() -> [Rule; 13] {
    [
        Rule {
            alert: "StampedeIssueLatencyHigh",
            severity: "warning",
            query: |s| {
                s.p95(
                    "stampede_http_request_duration_seconds_bucket",
                    Pods::Issuer,
                    ISSUE,
                )
            },
            fires: Cmp::Above(Limit::P95LatencyMs),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: issue p95 above {limit} ms",
            description: "The 95th percentile of issue requests is {value:duration}; users wait and retry.",
        },
        Rule {
            alert: "StampedeIssueErrorsHigh",
            severity: "critical",
            query: |s| s.ratio("stampede_http_requests_total", Pods::Issuer, ISSUE, ERRORS),
            fires: Cmp::Above(Limit::ErrorRatio),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: more than {limit} of issue requests fail with 5xx",
            description: "{value:percent} of issue requests end in a server error.",
        },
        Rule {
            alert: "StampedeLoadShedding",
            severity: "warning",
            query: |s| s.ratio("stampede_http_requests_total", Pods::Issuer, ISSUE, SHED),
            fires: Cmp::Above(Limit::ShedRatio),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: more than {limit} of issue requests are shed (503 overloaded)",
            description: "{value:percent} of issue requests hit the in-flight cap; the issuers need more replicas or a higher cap.",
        },
        Rule {
            alert: "StampedeWriterLagHigh",
            severity: "warning",
            // Max per partition first: while a rebalance moves a partition, the writer that
            // lost it and the one that got it may both report it for a scrape or two.
            query: |s| {
                let lag = format!(
                    "max by (topic, partition) (stampede_writer_consumer_lag{{{}}})",
                    s.topic_matchers()
                );
                s.agg("sum", "", &s.per_topic(&lag))
            },
            fires: Cmp::Above(Limit::ConsumerLag),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: writer {writer} is more than {limit} messages behind on {topic}",
            description: "The writer is {value} messages behind; coupons reach PostgreSQL late.",
        },
        Rule {
            alert: "StampedeIssueToDbSlow",
            severity: "warning",
            query: |s| s.p95("stampede_issue_to_db_seconds_bucket", Pods::Writer, ""),
            fires: Cmp::Above(Limit::IssueToDbSeconds),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: p95 issuance-to-database time above {limit} s",
            description: "Issued coupons take {value:duration} (p95) to reach PostgreSQL.",
        },
        Rule {
            alert: "StampedeRelayBacklogHigh",
            severity: "warning",
            // Every relay reports every campaign it relays: max, not sum.
            query: |s| s.labelled("max", "stampede_relay_backlog", ""),
            fires: Cmp::Above(Limit::RelayBacklog),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: more than {limit} issuances wait in the outbox",
            description: "{value} outbox entries are not yet acknowledged by Kafka.",
        },
        Rule {
            alert: "StampedeAuditDrift",
            severity: "critical",
            // Unpersisted for the whole `for` window, or any excess row. `a > 0 or b`, then
            // `> 0`: whichever side is positive.
            query: |s| {
                let unpersisted = format!(
                    "min_over_time(stampede_unpersisted_issuances{{{}}}[{}])",
                    s.campaign_matchers(""),
                    s.alerts.for_
                );
                let excess = s.labelled("max", "stampede_audit_excess_rows", "");
                format!("{} > 0 or {excess}", s.agg("max", "", &unpersisted))
            },
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::Spec,
            absent: None,
            summary: "Campaign {campaign}: Redis and PostgreSQL disagree",
            description: "Issued coupons have been missing from PostgreSQL for the whole window, or PostgreSQL holds rows Redis never issued ({value}). Run the audit.",
        },
        Rule {
            alert: "StampedeRedisUnreachable",
            severity: "critical",
            query: |s| s.rate("stampede_redis_errors_total", Pods::Issuer, "", "1m"),
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::Fixed("1m"),
            absent: None,
            summary: "Campaign {campaign}: issuers cannot reach Redis",
            description: "Redis calls fail at {value} per second; issue requests get 503 unavailable.",
        },
        Rule {
            alert: "StampedeIssuerDown",
            severity: "critical",
            query: |s| s.sum_of("up", Pods::Issuer),
            fires: Cmp::Below(Limit::Const(1.0)),
            hold: Hold::Fixed("1m"),
            absent: Some(|s| s.series("up", Pods::Issuer)),
            summary: "Campaign {campaign}: no issuer pod is up",
            description: "Prometheus scrapes no live {issuer} pod.",
        },
        Rule {
            alert: "StampedeSoldOut",
            severity: "info",
            query: |s| {
                s.labelled(
                    "sum",
                    "stampede_issuance_decisions_total",
                    r#"outcome="sold_out""#,
                )
            },
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::AtOnce,
            absent: None,
            summary: "Campaign {campaign} sold out",
            description: "Every coupon is issued; later requests get 410 from memory.",
        },
        Rule {
            alert: "StampedeWriterSeqConflict",
            severity: "critical",
            // Rows dead-lettered in the last hour because another user holds their seq. A
            // writer exports the counter at 0 from a campaign's first rows; a series that
            // still appears at 1 or more (a conflict in a new pod's first batch) counts too.
            query: |s| {
                let total = format!(
                    "stampede_writer_seq_conflicts_total{{{}}}",
                    s.campaign_matchers("")
                );
                let rose = s.agg("sum", "", &format!("increase({total}[1h])"));
                let new = s.agg("sum", "", &format!("{total} unless {total} offset 1h"));
                format!("{rose} > 0 or {new}")
            },
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::AtOnce,
            absent: None,
            summary: "Campaign {campaign}: a coupon seq was handed to two users",
            description: "The writer dead-lettered issuances whose seq another user already holds in PostgreSQL (reason seq_conflict): Redis lost acknowledged writes and is reissuing taken coupons.",
        },
        Rule {
            alert: "StampedeCampaignSuspended",
            severity: "critical",
            // Every issuer exports the campaigns suspended in its Redis, so any one says it.
            query: |s| s.labelled("max", "stampede_campaign_suspended", ""),
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::AtOnce,
            absent: None,
            summary: "Campaign {campaign} is suspended: Redis may have lost issued coupons",
            description: "Redis restarted or failed over, or its issued counter fell below seqs already handed out; the campaign issues nothing until an admin runs the audit and `campaign unsuspend`.",
        },
        Rule {
            alert: "StampedeWaitingRoomStalled",
            severity: "critical",
            // People in line, the room admitting (open, not paused, stock left), and for 10
            // minutes nobody admitted and no admission or place lapsed (which would free
            // room): the line does not move while there is stock to sell.
            query: |s| {
                let queued = s.labelled("max", "stampede_waiting_room_queued", "");
                let moved = |counter: &str| {
                    let m = s.campaign_matchers("");
                    s.agg("sum", "", &format!("increase({counter}{{{m}}}[10m])"))
                };
                let open = s.labelled("max", "stampede_waiting_room_open", "");
                format!(
                    "({queued} unless ({} > 0 or {} > 0)) and {open} > 0",
                    moved("stampede_waiting_room_admitted_total"),
                    moved("stampede_waiting_room_lapsed_total")
                )
            },
            fires: Cmp::Above(Limit::Const(0.0)),
            hold: Hold::Fixed("5m"),
            absent: None,
            summary: "Campaign {campaign}: the waiting room's line is not moving",
            description: "{value} users wait in line while the campaign is open with stock left, and nobody was admitted for 10 minutes.",
        },
    ]
}

impl Scope {
    /// p95 of a histogram of the pods' series over 5 minutes.
    pub fn p95(&self, bucket: &str, pods: Pods, extra: &str) -> String {
        let rate = self.rate_of(bucket, pods, extra, "5m");
        format!("histogram_quantile(0.95, {})", self.agg("sum", "le", &rate))
    }

    /// Sum of the pods' per-second rate of a counter.
    pub fn rate(&self, counter: &str, pods: Pods, extra: &str, range: &str) -> String {
        self.agg("sum", "", &self.rate_of(counter, pods, extra, range))
    }

    /// Share of the pods' `whole` requests that also match `part`, over 5 minutes.
    pub fn ratio(&self, counter: &str, pods: Pods, whole: &str, part: &str) -> String {
        let num = self.rate(counter, pods, &format!("{whole},{part}"), "5m");
        format!("{num} / {}", self.rate(counter, pods, whole, "5m"))
    }

    /// Sum of the pods' gauge.
    pub fn sum_of(&self, gauge: &str, pods: Pods) -> String {
        self.agg("sum", "", &self.per_pod(pods, &self.series(gauge, pods)))
    }

    /// The pods' series of a metric.
    pub fn series(&self, metric: &str, pods: Pods) -> String {
        format!("{metric}{{{}}}", self.pods(pods, ""))
    }

    /// `op` over a campaign-labelled series.
    pub fn labelled(&self, op: &str, metric: &str, extra: &str) -> String {
        self.agg(
            op,
            "",
            &format!("{metric}{{{}}}", self.campaign_matchers(extra)),
        )
    }

    fn rate_of(&self, counter: &str, pods: Pods, extra: &str, range: &str) -> String {
        let rate = format!("rate({counter}{{{}}}[{range}])", self.pods(pods, extra));
        self.per_pod(pods, &rate)
    }
}

impl Cmp {
    /// The PromQL comparison operator.
    pub fn op(self) -> &'static str {
        match self {
            Cmp::Above(_) => ">",
            Cmp::Below(_) => "<",
        }
    }

    /// The Grafana threshold evaluator type.
    pub fn evaluator(self) -> &'static str {
        match self {
            Cmp::Above(_) => "gt",
            Cmp::Below(_) => "lt",
        }
    }

    /// The threshold.
    pub fn limit(self) -> Limit {
        match self {
            Cmp::Above(l) | Cmp::Below(l) => l,
        }
    }
}

impl Limit {
    /// The threshold in the query's unit (seconds, ratio, messages).
    pub fn value(self, a: &AlertsSpec) -> f64 {
        match self {
            Limit::P95LatencyMs => f64::from(a.p95_latency_ms) / 1000.0,
            Limit::ErrorRatio => a.error_ratio,
            Limit::ShedRatio => a.shed_ratio,
            Limit::ConsumerLag => a.consumer_lag as f64,
            Limit::IssueToDbSeconds => a.issue_to_db_seconds,
            Limit::RelayBacklog => a.relay_backlog as f64,
            Limit::Const(v) => v,
        }
    }

    /// The threshold as `spec.alerts` spells it (latency in milliseconds).
    pub fn shown(self, a: &AlertsSpec) -> String {
        match self {
            Limit::P95LatencyMs => a.p95_latency_ms.to_string(),
            other => other.value(a).to_string(),
        }
    }
}

impl Hold {
    /// The duration; `None` for at once.
    pub fn duration(self, a: &AlertsSpec) -> Option<String> {
        match self {
            Hold::Spec => Some(a.for_.clone()),
            Hold::Fixed(d) => Some(d.to_owned()),
            Hold::AtOnce => None,
        }
    }
}
