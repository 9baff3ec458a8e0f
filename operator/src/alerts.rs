//! The campaign's PrometheusRule (monitoring.coreos.com/v1), a pure function of its plan.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};
use stampede_service::issuance::topic;

use crate::build::{issuer_name, writer_name};
use crate::validate::{Plan, labels};

/// Where runbooks live; each alert links `<base>/<AlertName>.md`.
pub const RUNBOOK_BASE: &str = "https://github.com/stampede-dev/stampede/blob/main/docs/runbooks";

/// The PrometheusRule, as the JSON object the operator applies.
pub fn prometheus_rule(plan: &Plan, owner: &OwnerReference) -> Value {
    let a = &plan.alerts;
    let ns = &plan.namespace;
    let c = plan.campaign.as_str();
    let issuer = format!(r#"namespace="{ns}",job="{}""#, issuer_name(plan));
    let issue_route = r#"route="/v1/campaigns/{campaign}/issue""#;
    let rule = |alert: &str, expr: String, severity: &str, summary: String| {
        let mut labels = a.rule_labels.clone();
        labels
            .entry("severity".into())
            .or_insert_with(|| severity.into());
        labels.insert("campaign".into(), c.into());
        json!({
            "alert": alert,
            "expr": expr,
            "for": a.for_,
            "labels": labels,
            "annotations": {
                "summary": summary,
                "runbook_url": format!("{RUNBOOK_BASE}/{alert}.md"),
            },
        })
    };
    let rules = vec![
        rule(
            "StampedeIssueLatencyHigh",
            format!(
                "histogram_quantile(0.95, sum by (le) (rate(stampede_http_request_duration_seconds_bucket{{{issuer},{issue_route}}}[5m]))) > {}",
                f64::from(a.p95_latency_ms) / 1000.0
            ),
            "warning",
            format!("Campaign {c}: issue p95 above {} ms", a.p95_latency_ms),
        ),
        rule(
            "StampedeIssueErrorsHigh",
            format!(
                r#"sum(rate(stampede_http_requests_total{{{issuer},{issue_route},outcome=~"unavailable|internal|error"}}[5m])) / sum(rate(stampede_http_requests_total{{{issuer},{issue_route}}}[5m])) > {}"#,
                a.error_ratio
            ),
            "critical",
            format!(
                "Campaign {c}: more than {} of issue requests fail",
                a.error_ratio
            ),
        ),
        rule(
            "StampedeWriterLagHigh",
            format!(
                r#"sum(stampede_writer_consumer_lag{{namespace="{ns}",topic="{}"}}) > {}"#,
                topic(c),
                a.consumer_lag
            ),
            "warning",
            format!(
                "Campaign {c}: writer {} is more than {} messages behind",
                writer_name(plan),
                a.consumer_lag
            ),
        ),
        rule(
            "StampedeIssuancesUnpersisted",
            format!(
                r#"max(stampede_unpersisted_issuances{{namespace="{ns}",campaign="{c}"}}) > 0"#
            ),
            "critical",
            format!("Campaign {c}: issued coupons are missing from PostgreSQL"),
        ),
    ];
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": format!("{c}-alerts"),
            "namespace": ns,
            "labels": labels(plan, "alerts"),
            "ownerReferences": [owner],
        },
        "spec": { "groups": [{ "name": format!("stampede.{c}"), "rules": rules }] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{defaults, from_yaml};
    use crate::validate::validate;

    #[test]
    fn rules_use_the_spec_thresholds_and_link_runbooks() {
        let cc = from_yaml(
            "
metadata: {name: flash, namespace: shop}
spec:
  stock: 10
  alerts: {p95LatencyMs: 80, errorRatio: 0.05, consumerLag: 5000, for: 1m, ruleLabels: {team: growth}}
",
        );
        let plan = validate(&cc, &defaults()).unwrap();
        let owner = OwnerReference {
            name: "flash".into(),
            ..Default::default()
        };
        let r = prometheus_rule(&plan, &owner);
        let rules = r["spec"]["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 4);
        for rule in rules {
            assert_eq!(rule["for"], "1m");
            assert_eq!(rule["labels"]["team"], "growth");
            assert_eq!(rule["labels"]["campaign"], "flash");
            let alert = rule["alert"].as_str().unwrap();
            assert!(
                rule["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{alert}.md"))
            );
        }
        assert!(rules[0]["expr"].as_str().unwrap().ends_with("> 0.08"));
        assert!(rules[1]["expr"].as_str().unwrap().ends_with("> 0.05"));
        assert!(
            rules[2]["expr"]
                .as_str()
                .unwrap()
                .contains(r#"topic="stampede.flash""#)
        );
        assert_eq!(r["metadata"]["ownerReferences"][0]["name"], "flash");
    }
}
