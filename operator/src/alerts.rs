//! The campaign's alert rules, a pure function of its plan: the PrometheusRule the
//! operator applies, and the same groups as a plain Prometheus rules file
//! (`stampede-operator rules`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};
use stampede_service::issuance::topic;

use crate::build::{issuer_name, writer_name};
use crate::validate::{Plan, labels};

/// Where runbooks live; each alert links `<base>/<AlertName>.md`.
pub const RUNBOOK_BASE: &str = "https://github.com/stampede-dev/stampede/blob/main/docs/runbooks";

/// Every alert the operator generates, in rule order.
pub const ALERTS: [&str; 10] = [
    "StampedeIssueLatencyHigh",
    "StampedeIssueErrorsHigh",
    "StampedeLoadShedding",
    "StampedeWriterLagHigh",
    "StampedeIssueToDbSlow",
    "StampedeRelayBacklogHigh",
    "StampedeAuditDrift",
    "StampedeRedisUnreachable",
    "StampedeIssuerDown",
    "StampedeSoldOut",
];

struct Rule {
    alert: &'static str,
    expr: String,
    severity: &'static str,
    summary: String,
    description: String,
    // `None`: fire at once (informational).
    for_: Option<String>,
}

/// The rule groups (`{groups: [...]}`), as in a Prometheus rules file.
pub fn rule_groups(plan: &Plan) -> Value {
    let a = &plan.alerts;
    let ns = &plan.namespace;
    let c = plan.campaign.as_str();
    // Issuer pods serve this campaign only; the pod name prefix selects them whether
    // Prometheus scrapes them through a ServiceMonitor or by pod annotations.
    let pods = format!(r#"namespace="{ns}",pod=~"{}-.+""#, issuer_name(plan));
    let issue = format!(r#"{pods},route="/v1/campaigns/{{campaign}}/issue""#);
    let t = topic(c);
    let fmt_for = Some(a.for_.clone());
    let rules = [
        Rule {
            alert: "StampedeIssueLatencyHigh",
            expr: format!(
                "histogram_quantile(0.95, sum by (le) (rate(stampede_http_request_duration_seconds_bucket{{{issue}}}[5m]))) > {}",
                f64::from(a.p95_latency_ms) / 1000.0
            ),
            severity: "warning",
            summary: format!("Campaign {c}: issue p95 above {} ms", a.p95_latency_ms),
            description: "The 95th percentile of issue requests is {{ $value | humanizeDuration }}; users wait and retry.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeIssueErrorsHigh",
            expr: format!(
                r#"sum(rate(stampede_http_requests_total{{{issue},outcome=~"unavailable|internal|error"}}[5m])) / sum(rate(stampede_http_requests_total{{{issue}}}[5m])) > {}"#,
                a.error_ratio
            ),
            severity: "critical",
            summary: format!("Campaign {c}: more than {} of issue requests fail with 5xx", a.error_ratio),
            description: "{{ $value | humanizePercentage }} of issue requests end in a server error.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeLoadShedding",
            expr: format!(
                r#"sum(rate(stampede_http_requests_total{{{issue},outcome="overloaded"}}[5m])) / sum(rate(stampede_http_requests_total{{{issue}}}[5m])) > {}"#,
                a.shed_ratio
            ),
            severity: "warning",
            summary: format!("Campaign {c}: more than {} of issue requests are shed (503 overloaded)", a.shed_ratio),
            description: "{{ $value | humanizePercentage }} of issue requests hit the in-flight cap; the issuers need more replicas or a higher cap.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeWriterLagHigh",
            expr: format!(r#"sum(stampede_writer_consumer_lag{{topic="{t}"}}) > {}"#, a.consumer_lag),
            severity: "warning",
            summary: format!(
                "Campaign {c}: writer {} is more than {} messages behind on {t}",
                writer_name(plan),
                a.consumer_lag
            ),
            description: "The writer is {{ $value }} messages behind; coupons reach PostgreSQL late.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeIssueToDbSlow",
            expr: format!(
                r#"histogram_quantile(0.95, sum by (le) (rate(stampede_issue_to_db_seconds_bucket{{namespace="{ns}",pod=~"{}-.+"}}[5m]))) > {}"#,
                writer_name(plan),
                a.issue_to_db_seconds
            ),
            severity: "warning",
            summary: format!("Campaign {c}: p95 issuance-to-database time above {} s", a.issue_to_db_seconds),
            description: "Issued coupons take {{ $value | humanizeDuration }} (p95) to reach PostgreSQL.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeRelayBacklogHigh",
            expr: format!(r#"max(stampede_relay_backlog{{campaign="{c}"}}) > {}"#, a.relay_backlog),
            severity: "warning",
            summary: format!("Campaign {c}: more than {} issuances wait in the outbox", a.relay_backlog),
            description: "{{ $value }} outbox entries are not yet acknowledged by Kafka.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeAuditDrift",
            expr: format!(
                r#"max(min_over_time(stampede_unpersisted_issuances{{campaign="{c}"}}[{f}])) > 0 or max(stampede_audit_excess_rows{{campaign="{c}"}}) > 0"#,
                f = a.for_
            ),
            severity: "critical",
            summary: format!("Campaign {c}: Redis and PostgreSQL disagree"),
            description: "Issued coupons have been missing from PostgreSQL for the whole window, or PostgreSQL holds rows Redis never issued ({{ $value }}). Run the audit.".into(),
            for_: fmt_for.clone(),
        },
        Rule {
            alert: "StampedeRedisUnreachable",
            expr: format!(r#"sum(rate(stampede_redis_errors_total{{{pods}}}[1m])) > 0"#),
            severity: "critical",
            summary: format!("Campaign {c}: issuers cannot reach Redis"),
            description: "Redis calls fail at {{ $value }} per second; issue requests get 503 unavailable.".into(),
            for_: Some("1m".into()),
        },
        Rule {
            alert: "StampedeIssuerDown",
            expr: format!(r#"sum(up{{{pods}}}) == 0 or absent(up{{{pods}}})"#),
            severity: "critical",
            summary: format!("Campaign {c}: no issuer pod is up"),
            description: format!("Prometheus scrapes no live {} pod.", issuer_name(plan)),
            for_: Some("1m".into()),
        },
        Rule {
            alert: "StampedeSoldOut",
            expr: format!(
                r#"sum(stampede_issuance_decisions_total{{campaign="{c}",outcome="sold_out"}}) > 0"#
            ),
            severity: "info",
            summary: format!("Campaign {c} sold out"),
            description: "Every coupon is issued; later requests get 410 from memory.".into(),
            for_: None,
        },
    ];
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|r| {
            let mut labels = a.rule_labels.clone();
            labels.insert("severity".into(), r.severity.into());
            labels.insert("campaign".into(), c.into());
            let mut rule = json!({
                "alert": r.alert,
                "expr": r.expr,
                "labels": labels,
                "annotations": {
                    "summary": r.summary,
                    "description": r.description,
                    "runbook_url": format!("{RUNBOOK_BASE}/{}.md", r.alert),
                },
            });
            if let Some(f) = r.for_ {
                rule["for"] = f.into();
            }
            rule
        })
        .collect();
    json!({ "groups": [{ "name": format!("stampede.{c}"), "rules": rules }] })
}

/// The PrometheusRule, as the JSON object the operator applies. `spec.alerts.ruleLabels`
/// label the resource too, so a Prometheus `ruleSelector` can pick it.
pub fn prometheus_rule(plan: &Plan, owner: &OwnerReference) -> Value {
    let mut meta_labels = plan.alerts.rule_labels.clone();
    meta_labels.extend(labels(plan, "alerts"));
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": format!("{}-alerts", plan.campaign),
            "namespace": plan.namespace,
            "labels": meta_labels,
            "ownerReferences": [owner],
        },
        "spec": rule_groups(plan),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{defaults, from_yaml};
    use crate::validate::validate;

    fn plan() -> Plan {
        let cc = from_yaml(
            "
metadata: {name: flash, namespace: shop}
spec:
  stock: 10
  alerts: {p95LatencyMs: 80, errorRatio: 0.05, consumerLag: 5000, for: 1m, ruleLabels: {team: growth, severity: page}}
",
        );
        validate(&cc, &defaults()).unwrap()
    }

    #[test]
    fn every_alert_once_with_thresholds_labels_and_runbooks() {
        let owner = OwnerReference {
            name: "flash".into(),
            ..Default::default()
        };
        let r = prometheus_rule(&plan(), &owner);
        let rules = r["spec"]["groups"][0]["rules"].as_array().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        assert_eq!(names, ALERTS);
        for rule in rules {
            assert_eq!(rule["labels"]["team"], "growth");
            assert_eq!(rule["labels"]["campaign"], "flash");
            assert_ne!(
                rule["labels"]["severity"], "page",
                "severity is the rule's own"
            );
            let alert = rule["alert"].as_str().unwrap();
            let a = &rule["annotations"];
            assert!(
                a["runbook_url"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{alert}.md"))
            );
            assert!(!a["summary"].as_str().unwrap().is_empty());
            assert!(!a["description"].as_str().unwrap().is_empty());
        }
        let expr = |i: usize| rules[i]["expr"].as_str().unwrap();
        assert!(expr(0).ends_with("> 0.08"));
        assert!(expr(1).ends_with("> 0.05"));
        assert!(expr(3).contains(r#"topic="stampede.flash""#) && expr(3).ends_with("> 5000"));
        assert_eq!(rules[0]["for"], "1m");
        assert!(
            rules[9].get("for").is_none(),
            "sold out is informational, at once"
        );
        assert_eq!(r["metadata"]["ownerReferences"][0]["name"], "flash");
        assert_eq!(r["metadata"]["labels"]["team"], "growth");
    }
}
