//! Where a rule looks: one campaign's series (its PrometheusRule, `rules -f`) or every
//! campaign's at once (Grafana alerting, `alerts`). The rule table is written once against
//! a [`Scope`]; the selectors, aggregations and annotation templates differ per scope.

use std::collections::BTreeMap;

use stampede_core::issuance::topic;

use crate::build::{issuer_name, writer_name};
use crate::crd::{AlertsSpec, CouponCampaign};
use crate::validate::{Defaults, Plan, validate};

/// Load tests run on shadow campaigns `<campaign>` + this + `<test>`
/// ([`stampede_core::ids::CampaignId::shadow`]); fleet-wide rules leave them out.
pub(super) const SHADOW_INFIX: &str = ".lt-";
/// The label every fleet-wide rule carries, for routing (`service=stampede`).
pub const FLEET_LABELS: [(&str, &str); 1] = [("service", "stampede")];
/// ReplicaSet and pod hashes of a Deployment's pod name (never a dash inside).
const POD_HASHES: &str = "-[a-z0-9]+-[a-z0-9]+";

/// The pods a series comes from: a campaign's issuers or its writers.
#[derive(Clone, Copy, Debug)]
pub enum Pods {
    /// `<campaign>-issuer-…`: HTTP, Redis and the outbox relay.
    Issuer,
    /// `<campaign>-writer-…`: Kafka to PostgreSQL.
    Writer,
}

/// Who evaluates the rule, hence the template language of its annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Prometheus alerting rules: `$value`.
    Prometheus,
    /// Grafana alerting: `$values.A.Value` (query A).
    Grafana,
}

/// The campaign one scope covers.
#[derive(Clone, Debug)]
struct One {
    namespace: String,
    id: String,
    name: String,
}

/// One campaign (names known) or every campaign (names taken from the series).
#[derive(Clone, Debug)]
pub struct Scope {
    /// Thresholds and `for`: the campaign's `spec.alerts`, or the CRD's defaults.
    pub alerts: AlertsSpec,
    /// For one campaign: its namespace, its id (the series' `campaign` label, the topic)
    /// and its object name (the stem of its pods' names).
    one: Option<One>,
    issuer_suffix: String,
    writer_suffix: String,
    topic_prefix: String,
}

impl Scope {
    /// The rules of one campaign, as its PrometheusRule carries them.
    pub fn campaign(plan: &Plan) -> Self {
        let n = plan.name.as_str();
        let suffix = |name: String| name.strip_prefix(n).unwrap_or(&name).to_owned();
        Self {
            alerts: plan.alerts.clone(),
            one: Some(One {
                namespace: plan.namespace.clone(),
                id: plan.campaign.to_string(),
                name: n.to_owned(),
            }),
            issuer_suffix: suffix(issuer_name(plan)),
            writer_suffix: suffix(writer_name(plan)),
            topic_prefix: topic(""),
        }
    }

    /// Every campaign at once, with the CRD's default thresholds: each query is aggregated
    /// `by (campaign)`, taken from the pod name or the topic where a series has no
    /// campaign label. The names are derived from a probe campaign, so they follow
    /// `build` and `issuance::topic`.
    pub fn fleet() -> Self {
        let probe: CouponCampaign =
            serde_yaml::from_str("metadata: {name: probe, namespace: default}\nspec: {stock: 1}\n")
                .expect("the probe campaign parses");
        let none = String::new;
        let defaults = Defaults {
            redis_url: none(),
            kafka_brokers: none(),
            database_url: none(),
            service_image: none(),
            k6_image: none(),
            allowed_images: Vec::new(),
            monitoring_namespace: Some("monitoring".into()),
            kafka_security: None,
            database_ca_pem: None,
        };
        let plan = validate(&probe, &defaults).expect("the probe campaign is valid");
        Self {
            one: None,
            ..Self::campaign(&plan)
        }
    }

    /// Whether this scope covers every campaign.
    pub fn is_fleet(&self) -> bool {
        self.one.is_none()
    }

    /// The labels every rule carries besides `severity`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        match &self.one {
            Some(one) => {
                let mut labels = self.alerts.rule_labels.clone();
                labels.insert("campaign".into(), one.id.clone());
                labels
            }
            None => FLEET_LABELS
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    /// Matchers of the pods' series, then `extra`: `namespace="ns",pod=~"c-issuer-.+"`
    /// for one campaign, `pod=~".+-issuer-<hash>-<hash>"` for all.
    pub fn pods(&self, pods: Pods, extra: &str) -> String {
        let suffix = self.suffix(pods);
        let own = match &self.one {
            Some(one) => format!(
                r#"namespace="{}",pod=~"{}{suffix}-.+""#,
                one.namespace, one.name
            ),
            None => format!(r#"pod=~".+{}{POD_HASHES}""#, escape(suffix)),
        };
        join(&own, extra)
    }

    /// `inner` (series of the pods) with a campaign label taken from the namespace and the
    /// pod name (`<namespace>.<name>`, the campaign's id), for all campaigns; unchanged
    /// for one.
    pub fn per_pod(&self, pods: Pods, inner: &str) -> String {
        match self.one {
            Some(_) => inner.to_owned(),
            None => {
                let re = format!("(.+){}{POD_HASHES}", escape(self.suffix(pods)));
                let joined =
                    format!(r#"label_join({inner}, "namespace_pod", ".", "namespace", "pod")"#);
                format!(r#"label_replace({joined}, "campaign", "$1", "namespace_pod", "{re}")"#)
            }
        }
    }

    /// Matchers of a campaign-labelled series, then `extra`: `campaign="c"`, or every
    /// campaign but the load tests' shadows.
    pub fn campaign_matchers(&self, extra: &str) -> String {
        let own = match &self.one {
            Some(one) => format!(r#"campaign="{}""#, one.id),
            None => format!(r#"campaign!~".+{}.+""#, escape(SHADOW_INFIX)),
        };
        join(&own, extra)
    }

    /// Matchers of the campaign's topic.
    pub fn topic_matchers(&self) -> String {
        match &self.one {
            Some(one) => format!(r#"topic="{}""#, topic(&one.id)),
            None => format!(r#"topic=~"{}.+""#, escape(&self.topic_prefix)),
        }
    }

    /// `inner` (series with a topic label) with a campaign label taken from the topic, for
    /// all campaigns; unchanged for one.
    pub fn per_topic(&self, inner: &str) -> String {
        match self.one {
            Some(_) => inner.to_owned(),
            None => {
                let re = format!("{}(.+)", escape(&self.topic_prefix));
                format!(r#"label_replace({inner}, "campaign", "$1", "topic", "{re}")"#)
            }
        }
    }

    /// `op(inner)` (or `op by (by) (inner)`) for one campaign; `op by (campaign[, by])
    /// (inner)` for all.
    pub fn agg(&self, op: &str, by: &str, inner: &str) -> String {
        let by = match (&self.one, by) {
            (Some(_), "") => return format!("{op}({inner})"),
            (Some(_), by) => by.to_owned(),
            (None, "") => "campaign".to_owned(),
            (None, by) => format!("campaign, {by}"),
        };
        format!("{op} by ({by}) ({inner})")
    }

    /// Annotation text: `{campaign}`, `{issuer}`, `{writer}`, `{topic}`, `{limit}` and the
    /// alert's value `{value}`, `{value:percent}`, `{value:duration}`. One campaign's names
    /// are spelled out; every campaign's come from the alert's `campaign` label. The value
    /// is written in the template language of the rule's evaluator (Grafana: query `A`).
    pub fn text(&self, template: &str, limit: &str, dialect: Dialect) -> String {
        let (c, n) = match &self.one {
            Some(one) => (one.id.clone(), one.name.clone()),
            None => {
                let c = "{{ $labels.campaign }}".to_owned();
                (c.clone(), c)
            }
        };
        let [value, percent, duration] = match dialect {
            Dialect::Prometheus => [
                "{{ $value }}",
                "{{ $value | humanizePercentage }}",
                "{{ $value | humanizeDuration }}",
            ],
            Dialect::Grafana => [
                "{{ humanize $values.A.Value }}",
                "{{ humanizePercentage $values.A.Value }}",
                "{{ humanizeDuration $values.A.Value }}",
            ],
        };
        template
            .replace("{issuer}", &format!("{n}{}", self.issuer_suffix))
            .replace("{writer}", &format!("{n}{}", self.writer_suffix))
            .replace("{topic}", &format!("{}{c}", self.topic_prefix))
            .replace("{campaign}", &c)
            .replace("{limit}", limit)
            .replace("{value:percent}", percent)
            .replace("{value:duration}", duration)
            .replace("{value}", value)
    }

    fn suffix(&self, pods: Pods) -> &str {
        match pods {
            Pods::Issuer => &self.issuer_suffix,
            Pods::Writer => &self.writer_suffix,
        }
    }
}

fn join(own: &str, extra: &str) -> String {
    if extra.is_empty() {
        own.to_owned()
    } else {
        format!("{own},{extra}")
    }
}

/// A literal as a PromQL (RE2) regular expression; names hold no other metacharacter.
fn escape(literal: &str) -> String {
    literal.replace('.', "[.]")
}
