//! Unit tests of the child builders, from an inline campaign.

use serde_json::Value;

use super::*;
use crate::validate::tests::{defaults, from_yaml};
use crate::validate::{Endpoint, validate};

pub(super) const CAMPAIGN: &str = "
apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: spring-sale, namespace: shop, uid: 0a1b2c3d}
spec:
  stock: 1200
  redis: {secretRef: {name: redis-conn, key: url}}
  issuer:
    minReplicas: 3
    maxReplicas: 12
    targetCPUUtilization: 60
    maxInFlight: 512
    durability: Replica
    limits: {perClient: {perSecond: 200, burst: 400}, clientIpHeader: X-Forwarded-For}
  writer: {replicas: 2, batchRows: 2000, batchLingerMs: 10}
";

fn built() -> (Plan, Children) {
    let cc = from_yaml(CAMPAIGN);
    let plan = validate(&cc, &defaults()).unwrap();
    let owner = OwnerReference {
        api_version: "stampede.dev/v1alpha1".into(),
        kind: "CouponCampaign".into(),
        name: "spring-sale".into(),
        uid: "0a1b2c3d".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let c = children(&plan, &owner);
    (plan, c)
}

pub(super) fn env(d: &Deployment) -> Value {
    let spec = d.spec.template.spec.as_ref().unwrap();
    serde_json::to_value(&spec.containers[0].env).unwrap()
}

pub(super) fn find<'a>(env: &'a Value, name: &str) -> &'a Value {
    env.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("env {name} missing"))
}

#[test]
fn every_child_is_owned_named_and_labelled() {
    let (_, c) = built();
    let metas = [
        (&c.issuer.metadata, "spring-sale-issuer", "issuer"),
        (&c.service.metadata, "spring-sale-issuer", "issuer"),
        (&c.hpa.metadata, "spring-sale-issuer", "issuer"),
        (&c.pdb.metadata, "spring-sale-issuer", "issuer"),
        (&c.writer.metadata, "spring-sale-writer", "writer"),
    ];
    for (m, name, component) in metas {
        assert_eq!(m.name.as_deref(), Some(name));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("0a1b2c3d", Some(true))
        );
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], component);
        assert_eq!(labels["stampede.dev/campaign"], "spring-sale");
    }
}

#[test]
fn pods_are_hardened_with_probes_and_resources() {
    let (_, c) = built();
    for d in [&c.issuer, &c.writer] {
        let pod = d.spec.template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let ctr = &pod.containers[0];
        let sc = ctr.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone()
        };
        assert_eq!(probe_path(&ctr.liveness_probe).as_deref(), Some("/healthz"));
        assert_eq!(probe_path(&ctr.readiness_probe).as_deref(), Some("/readyz"));
        // Probes and scraping on the operations port, never the public one.
        let probe_port = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().unwrap().http_get.as_ref().unwrap().port.clone()
        };
        let metrics =
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into());
        assert_eq!(probe_port(&ctr.readiness_probe), metrics);
        assert_eq!(probe_port(&ctr.liveness_probe), metrics);
        let ports = ctr.ports.as_ref().unwrap();
        let scraped = &d
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["prometheus.io/port"];
        let metrics_port = ports.iter().find(|p| p.name.as_deref() == Some("metrics"));
        assert_eq!(scraped, &metrics_port.unwrap().container_port.to_string());
        let r = ctr.resources.as_ref().unwrap();
        for key in ["cpu", "memory"] {
            assert!(r.requests.as_ref().unwrap().contains_key(key));
            assert!(r.limits.as_ref().unwrap().contains_key(key));
        }
    }
}

#[test]
fn issuer_leaves_replicas_to_the_hpa() {
    let (_, c) = built();
    assert_eq!(c.issuer.spec.replicas, None);
    let hpa = &c.hpa.spec;
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 12));
    assert_eq!(hpa.scale_target_ref.name, "spring-sale-issuer");
    let target = &hpa.metrics.as_ref().unwrap()[0]
        .resource
        .as_ref()
        .unwrap()
        .target;
    assert_eq!(target.average_utilization, Some(60));
    let env = env(&c.issuer);
    assert_eq!(find(&env, "STAMPEDE_MAX_IN_FLIGHT")["value"], "512");
    assert_eq!(find(&env, "STAMPEDE_DURABILITY")["value"], "replica");
    assert_eq!(
        find(&env, "STAMPEDE_RELAY_CAMPAIGNS")["value"],
        "shop.spring-sale"
    );
    assert_eq!(
        find(&env, "STAMPEDE_CAMPAIGNS")["value"],
        "spring-sale=shop.spring-sale",
        "serves only its own campaign, named as clients name it"
    );
    assert_eq!(
        find(&env, "STAMPEDE_REDIS_URL")["valueFrom"]["secretKeyRef"]["name"],
        "redis-conn"
    );
}

#[test]
fn durability_defaults_to_local() {
    let cc = from_yaml(
        "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: c, namespace: shop, uid: u}\nspec: {stock: 1}\n",
    );
    let plan = validate(&cc, &defaults()).unwrap();
    assert_eq!(plan.issuer.durability.flag(), "local");
}

#[test]
fn writer_consumes_only_its_campaign_topic() {
    let (_, c) = built();
    assert_eq!(c.writer.spec.replicas, Some(2));
    let env = env(&c.writer);
    assert_eq!(
        find(&env, "STAMPEDE_WRITER_TOPICS")["value"],
        "stampede.shop.spring-sale"
    );
    assert_eq!(find(&env, "STAMPEDE_BATCH_ROWS")["value"], "2000");
    let db = &find(&env, "STAMPEDE_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(db["name"], "spring-sale-connections", "never a plain value");
    let selector = c.service.spec.as_ref().unwrap().selector.as_ref().unwrap();
    assert_eq!(selector["app.kubernetes.io/component"], "issuer");
}

#[test]
fn selectors_match_pod_labels() {
    let (_, c) = built();
    for d in [&c.issuer, &c.writer] {
        let spec = &d.spec;
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "{k}");
        }
    }
}

#[test]
fn the_issuer_gets_the_budgets_the_spec_sets_and_the_services_defaults_otherwise() {
    let (_, c) = built();
    let env = env(&c.issuer);
    assert_eq!(find(&env, "STAMPEDE_CLIENT_RATE")["value"], "200");
    assert_eq!(find(&env, "STAMPEDE_CLIENT_BURST")["value"], "400");
    assert_eq!(
        find(&env, "STAMPEDE_CLIENT_IP_HEADER")["value"],
        "X-Forwarded-For"
    );
    let names: Vec<&str> = env
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"STAMPEDE_USER_RATE"),
        "per user: the service's default"
    );
}

#[test]
fn connections_the_campaign_does_not_keep_in_its_own_secrets_go_through_the_campaigns_secret() {
    let (plan, c) = built();
    let secret = c
        .connections
        .as_ref()
        .expect("the operator's defaults need a Secret");
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("spring-sale-connections")
    );
    let data = secret.data.as_ref().unwrap();
    let Endpoint::Value(db) = &plan.database else {
        panic!("the test campaign takes the operator's database")
    };
    assert_eq!(data["database-url"].0, db.as_bytes());
    assert!(
        !data.contains_key("redis-url"),
        "redis comes from redis-conn"
    );
    for d in [&c.issuer, &c.writer] {
        let env = env(d);
        for e in env.as_array().unwrap() {
            assert!(
                e.get("value")
                    .is_none_or(|v| !v.as_str().unwrap_or("").contains("://")),
                "{e}"
            );
        }
        let redis = &find(&env, "STAMPEDE_REDIS_URL")["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (redis["name"].as_str(), redis["key"].as_str()),
            (Some("redis-conn"), Some("url"))
        );
    }
    let writer_env = env(&c.writer);
    let db = &find(&writer_env, "STAMPEDE_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(db["name"], "spring-sale-connections");
    assert_eq!(db["key"], "database-url");
}

#[test]
fn network_policies_admit_the_api_anywhere_and_metrics_from_monitoring_only() {
    let (mut plan, c) = built();
    let [issuer, writer] = &c.network_policies[..] else {
        panic!("two policies: {:?}", c.network_policies.len())
    };
    let rules = |p: &k8s_openapi::api::networking::v1::NetworkPolicy| {
        serde_json::to_value(&p.spec.as_ref().unwrap().ingress).unwrap()
    };
    let i = rules(issuer);
    assert_eq!(i[0]["ports"][0]["port"], 8080);
    assert!(i[0].get("from").is_none(), "the API from anywhere");
    assert_eq!(i[1]["ports"][0]["port"], 9464);
    let from = &i[1]["from"][0]["namespaceSelector"]["matchLabels"];
    assert_eq!(from["kubernetes.io/metadata.name"], "monitoring");
    let w = rules(writer);
    assert_eq!(w.as_array().unwrap().len(), 1);
    assert_eq!(w[0]["ports"][0]["port"], 9466);
    plan.monitoring_namespace = None;
    assert!(
        children(
            &plan,
            &c.issuer.metadata.owner_references.clone().unwrap()[0]
        )
        .network_policies
        .is_empty()
    );
}

#[test]
fn the_issuer_verifies_tokens_with_the_secret_by_reference() {
    let (_, c) = built();
    let env = env(&c.issuer);
    assert_eq!(find(&env, "STAMPEDE_AUTH")["value"], "jwt");
    assert_eq!(find(&env, "STAMPEDE_JWT_ISSUER")["value"], "stampede");
    assert_eq!(find(&env, "STAMPEDE_JWT_AUDIENCE")["value"], "stampede");
    let secret = find(&env, "STAMPEDE_JWT_HS256_SECRET");
    assert!(secret.get("value").is_none(), "never a value: {secret}");
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"],
        serde_json::json!({ "name": "stampede-auth", "key": "hs256-secret" })
    );
}

#[test]
fn a_jwks_url_replaces_the_secret() {
    let yaml = CAMPAIGN.replace(
        "  stock: 1200\n",
        "  stock: 1200\n  auth: {issuer: https://id.shop, audience: coupons, jwksUrl: 'http://id.shop/jwks'}\n",
    );
    let plan = validate(&from_yaml(&yaml), &defaults()).unwrap();
    let owner = OwnerReference::default();
    let env = env(&issuer_deployment(&plan, &owner));
    assert_eq!(
        find(&env, "STAMPEDE_JWT_JWKS_URL")["value"],
        "http://id.shop/jwks"
    );
    assert_eq!(
        find(&env, "STAMPEDE_JWT_ISSUER")["value"],
        "https://id.shop"
    );
    assert_eq!(find(&env, "STAMPEDE_JWT_AUDIENCE")["value"], "coupons");
    let names: Vec<_> = env
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert!(
        !names.contains(&"STAMPEDE_JWT_HS256_SECRET".into()),
        "{names:?}"
    );
}
