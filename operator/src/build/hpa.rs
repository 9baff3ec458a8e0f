//! The issuers' HorizontalPodAutoscaler (autoscaling/v2, on CPU).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{issuer_name, metadata, typed};
use crate::validate::Plan;

/// autoscaling/v2 HPA on average CPU utilisation.
pub(crate) fn issuer_hpa(plan: &Plan, owner: &OwnerReference) -> HorizontalPodAutoscaler {
    let i = &plan.issuer;
    typed(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": issuer_name(plan) },
            "minReplicas": i.min_replicas,
            "maxReplicas": i.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu",
                              "target": { "type": "Utilization", "averageUtilization": i.target_cpu } },
            }],
            // A stampede arrives in seconds: scale up at once, scale down slowly.
            "behavior": {
                "scaleUp": { "stabilizationWindowSeconds": 0,
                             "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }] },
                "scaleDown": { "stabilizationWindowSeconds": 300 },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    /// The campaign dashboard finds the objects the builders name after the CouponCampaign
    /// (`$name`, the id without its namespace), not after its id (`$campaign`): the HPA,
    /// and the issuer and writer pods every HTTP panel selects (those metrics carry no
    /// campaign label, so a panel without a pod matcher mixes every campaign's traffic).
    #[test]
    fn the_campaign_dashboard_selects_what_the_builders_name() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../dashboards/campaign.json")).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(exprs.len() > 20, "{} queries", exprs.len());
        for e in &exprs {
            for (matcher, stem) in [
                ("horizontalpodautoscaler=\"", "$name-issuer\""),
                ("pod=~\"", "$name-"),
            ] {
                for (i, _) in e.match_indices(matcher) {
                    let value = &e[i + matcher.len()..];
                    assert!(value.starts_with(stem), "{e}");
                }
            }
            if e.contains("stampede_http_requests_total") {
                assert!(e.contains("pod=~\"$name-issuer-"), "no pod matcher: {e}");
            }
        }
    }

    /// `$name` is `$campaign` through the variable's regex, as Grafana applies it: the
    /// first group of a match.
    #[test]
    fn the_name_variable_is_the_campaigns_name_whatever_its_id() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../dashboards/campaign.json")).unwrap();
        let vars = dashboard["templating"]["list"].as_array().unwrap();
        let name = vars.iter().find(|v| v["name"] == "name").unwrap();
        let js = name["regex"].as_str().unwrap();
        let re = regex::Regex::new(js.trim_start_matches('/').trim_end_matches('/')).unwrap();
        for (id, want) in [
            ("shop.flash", "flash"),
            ("shop.flash.2", "flash"),
            ("shop.flash-2", "flash-2"),
            ("flash", "flash"),
        ] {
            let got = re.captures(id).and_then(|c| c.get(1)).map(|m| m.as_str());
            assert_eq!(got, Some(want), "{id}");
        }
    }

    fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v.as_str() {
                        Some(e) if k == "expr" => out.push(e.to_owned()),
                        _ => collect_exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
            _ => {}
        }
    }
}
