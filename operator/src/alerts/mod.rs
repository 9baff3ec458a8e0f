//! The alert rules, a pure function of a campaign's plan: the PrometheusRule the operator
//! applies, the same groups as a plain Prometheus rules file (`stampede-operator rules`),
//! and, from the same table ([`rules`]), the rules over every campaign at once for Grafana
//! alerting and Prometheus (`stampede-operator alerts --grafana|--prometheus`).

mod grafana;
mod rules;
mod scope;

use clap::{ArgGroup, Args};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::Error;
use crate::validate::{Plan, labels};
pub use rules::{Cmp, Hold, Limit, Rule, rules};
pub use scope::{Dialect, FLEET_LABELS, Pods, Scope};

/// Where runbooks live; each alert links `<base>/<AlertName>.md`.
pub const RUNBOOK_BASE: &str = "https://github.com/stampede-dev/stampede/blob/main/docs/runbooks";

/// Every alert the operator generates, in rule order.
pub const ALERTS: [&str; 13] = [
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
    "StampedeWriterSeqConflict",
    "StampedeCampaignSuspended",
    "StampedeWaitingRoomStalled",
];

/// The campaign's rule groups (`{groups: [...]}`), as in a Prometheus rules file.
pub fn rule_groups(plan: &Plan) -> Value {
    groups(
        &Scope::campaign(plan),
        &format!("stampede.{}", plan.campaign.as_str()),
    )
}

/// The rule groups over every campaign at once (the CRD's default thresholds).
pub fn fleet_rule_groups() -> Value {
    groups(&Scope::fleet(), "stampede")
}

fn groups(scope: &Scope, name: &str) -> Value {
    let rules: Vec<Value> = rules().iter().map(|r| prometheus(r, scope)).collect();
    json!({ "groups": [{ "name": name, "rules": rules }] })
}

/// The rule's PromQL condition: its query, the comparison, and (one campaign) absence.
pub fn expr(rule: &Rule, scope: &Scope) -> String {
    let f = rule.fires;
    // The query whole in parentheses: a comparison binds tighter than `and`, `or` and
    // `unless`, so `a and b > 0` would compare `b` and fire on any `a`.
    let mut expr = format!(
        "({}) {} {}",
        (rule.query)(scope),
        f.op(),
        f.limit().value(&scope.alerts)
    );
    if let (Some(absent), false) = (rule.absent, scope.is_fleet()) {
        expr.push_str(&format!(" or absent({})", absent(scope)));
    }
    expr
}

/// `summary`, `description` and `runbook_url`, for the scope, in the dialect's templates.
pub fn annotations(rule: &Rule, scope: &Scope, dialect: Dialect) -> [(&'static str, String); 3] {
    let limit = rule.fires.limit().shown(&scope.alerts);
    [
        ("summary", scope.text(rule.summary, &limit, dialect)),
        ("description", scope.text(rule.description, &limit, dialect)),
        ("runbook_url", format!("{RUNBOOK_BASE}/{}.md", rule.alert)),
    ]
}

fn prometheus(rule: &Rule, scope: &Scope) -> Value {
    let mut labels = scope.labels();
    labels.insert("severity".into(), rule.severity.into());
    let annotations: serde_json::Map<String, Value> = annotations(rule, scope, Dialect::Prometheus)
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let mut out = json!({
        "alert": rule.alert,
        "expr": expr(rule, scope),
        "labels": labels,
        "annotations": annotations,
    });
    if let Some(f) = rule.hold.duration(&scope.alerts) {
        out["for"] = f.into();
    }
    out
}

/// `alerts` flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("format").required(true)))]
pub struct AlertsArgs {
    /// Grafana alerting file provisioning (dashboards/alerting/stampede-alerts.yaml).
    #[arg(long, group = "format")]
    pub grafana: bool,
    /// A Prometheus rules file.
    #[arg(long, group = "format")]
    pub prometheus: bool,
    /// The Prometheus data source UID of the Grafana queries (default: Grafana expands
    /// `${DS_PROMETHEUS}` from its environment).
    #[arg(long, default_value = grafana::DS_VAR)]
    pub datasource_uid: String,
}

/// The rules over every campaign at once, as `alerts` prints them.
pub fn render(args: &AlertsArgs) -> Result<String, Error> {
    if args.grafana {
        grafana::provisioning(&args.datasource_uid)
    } else {
        serde_yaml::to_string(&fleet_rule_groups())
            .map_err(|e| Error::Config(format!("alerts --prometheus: {e}")))
    }
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
            "name": format!("{}-alerts", plan.name),
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
            assert_eq!(rule["labels"]["campaign"], "shop.flash");
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
        assert!(expr(3).contains(r#"topic="stampede.shop.flash""#) && expr(3).ends_with("> 5000"));
        assert_eq!(rules[0]["for"], "1m");
        assert!(
            rules[9].get("for").is_none(),
            "sold out is informational, at once"
        );
        assert_eq!(r["metadata"]["ownerReferences"][0]["name"], "flash");
        assert_eq!(r["metadata"]["labels"]["team"], "growth");
    }

    #[test]
    fn one_campaign_selects_its_own_pods_topic_and_series() {
        let g = rule_groups(&plan());
        let expr = |i: usize| {
            g["groups"][0]["rules"][i]["expr"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            expr(3),
            r#"(sum(max by (topic, partition) (stampede_writer_consumer_lag{topic="stampede.shop.flash"}))) > 5000"#
        );
        let up = r#"up{namespace="shop",pod=~"flash-issuer-.+"}"#;
        assert_eq!(expr(8), format!("(sum({up})) < 1 or absent({up})"));
        assert!(
            expr(6).contains(r#"{campaign="shop.flash"}[1m]"#),
            "the `for` window"
        );
        assert_eq!(
            expr(9),
            r#"(sum(stampede_issuance_decisions_total{campaign="shop.flash",outcome="sold_out"})) > 0"#
        );
        let conflicts = r#"stampede_writer_seq_conflicts_total{campaign="shop.flash"}"#;
        assert_eq!(
            expr(10),
            format!(
                "(sum(increase({conflicts}[1h])) > 0 or sum({conflicts} unless {conflicts} offset 1h)) > 0"
            )
        );
    }

    #[test]
    fn every_campaign_at_once_from_the_same_table() {
        let g = fleet_rule_groups();
        let rules = g["groups"][0]["rules"].as_array().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        assert_eq!(names, ALERTS);
        for r in rules {
            let expr = r["expr"].as_str().unwrap();
            assert!(
                expr.contains("by (campaign") && !expr.contains("absent("),
                "{expr}"
            );
            assert_eq!(r["labels"]["service"], "stampede");
            assert!(r["labels"].get("campaign").is_none(), "the query's label");
        }
    }

    #[test]
    fn fleet_rules_leave_out_exactly_the_load_tests_shadows() {
        let campaign = stampede_core::ids::CampaignId::parse("flash").unwrap();
        let shadow = campaign.shadow("smoke");
        assert_eq!(
            shadow.as_str(),
            format!("flash{}smoke", scope::SHADOW_INFIX)
        );
    }
}
