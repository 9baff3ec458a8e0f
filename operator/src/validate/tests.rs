//! Unit tests of validation, and the fixtures other stages' tests build plans from.

use super::fields::is_quantity;
use super::*;
use crate::crd::DeletionPolicy;

pub(crate) fn defaults() -> Defaults {
    Defaults {
        redis_url: "redis://redis:6379".into(),
        kafka_brokers: "kafka:9092".into(),
        database_url: "postgres://db/stampede".into(),
        service_image: "stampede/service:test".into(),
        k6_image: "grafana/k6:test".into(),
        allowed_images: Vec::new(),
        monitoring_namespace: Some("monitoring".into()),
        kafka_security: None,
        database_ca_pem: None,
    }
}

pub(crate) fn from_yaml(yaml: &str) -> CouponCampaign {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

fn plan(yaml: &str) -> Result<Plan, Error> {
    validate(&from_yaml(yaml), &defaults())
}

const MINIMAL: &str = "
apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: spring-sale, namespace: shop}
spec: {stock: 1200}
";

#[test]
fn minimal_spec_gets_defaults() {
    let p = plan(MINIMAL).unwrap();
    assert_eq!(
        p.campaign.as_str(),
        "shop.spring-sale",
        "the namespace is part of the id"
    );
    assert_eq!(p.name, "spring-sale");
    assert_eq!(p.stock, 1200);
    assert_eq!(p.partitions, 6);
    assert_eq!((p.issuer.min_replicas, p.issuer.max_replicas), (2, 10));
    assert_eq!(p.issuer.image, "stampede/service:test");
    assert_eq!(p.writer.image, "stampede/service:test");
    assert_eq!(p.redis, Endpoint::Value("redis://redis:6379".into()));
    assert_eq!(p.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(p.issuer.resources.limits["memory"], "512Mi");
    assert!(p.window.is_none());
}

#[test]
fn secret_refs_and_explicit_values() {
    let p = plan(
        "
metadata: {name: s, namespace: shop}
spec:
  stock: 5
  redis: {secretRef: {name: redis-conn, key: url}}
  database: {url: 'postgres://other/db'}
  issuer: {resources: {requests: {cpu: 1500m}}}
",
    )
    .unwrap();
    assert_eq!(
        p.redis,
        Endpoint::Secret {
            name: "redis-conn".into(),
            key: "url".into()
        }
    );
    assert_eq!(p.database, Endpoint::Value("postgres://other/db".into()));
    assert_eq!(p.issuer.resources.requests["cpu"], "1500m");
    assert_eq!(p.issuer.resources.requests["memory"], "128Mi");
}

/// A default never leaves a request above its limit (the API server would refuse the
/// Deployment): it gives way to what the spec named; both named so is refused here.
#[test]
fn defaults_give_way_to_a_named_request_or_limit() {
    let with = |resources: &str| {
        plan(&format!(
            "metadata: {{name: s, namespace: shop}}\nspec: {{stock: 5, issuer: {{resources: {resources}}}}}"
        ))
    };
    let big = with("{requests: {cpu: '4', memory: 1Gi}}")
        .unwrap()
        .issuer
        .resources;
    assert_eq!(
        (big.limits["cpu"].as_str(), big.limits["memory"].as_str()),
        ("4", "1Gi")
    );
    let small = with("{limits: {cpu: 100m, memory: 64Mi}}")
        .unwrap()
        .issuer
        .resources;
    let requests = (
        small.requests["cpu"].as_str(),
        small.requests["memory"].as_str(),
    );
    assert_eq!(requests, ("100m", "64Mi"));
    let both = with("{requests: {cpu: '2'}, limits: {cpu: 500m}}");
    assert!(matches!(both, Err(Error::InvalidSpec(m)) if m.contains("requests.cpu")));
    let fine = with("{requests: {cpu: 500m}, limits: {cpu: '2'}}")
        .unwrap()
        .issuer
        .resources;
    assert_eq!(fine.requests["cpu"], "500m");
}

#[test]
fn bad_specs_name_the_field() {
    let cases = [
        ("spec: {stock: 0}", "spec.stock"),
        ("spec: {stock: 10000000000001}", "at most"),
        (
            "spec: {stock: 1, window: {opensAt: '2026-01-02T00:00:00Z', closesAt: '2026-01-01T00:00:00Z'}}",
            "closesAt",
        ),
        ("spec: {stock: 1, window: {opensAt: 'tomorrow'}}", "opensAt"),
        (
            "spec: {stock: 1, issuer: {minReplicas: 5, maxReplicas: 2}}",
            "spec.issuer.minReplicas",
        ),
        (
            "spec: {stock: 1, kafka: {partitions: 0}}",
            "spec.kafka.partitions",
        ),
        (
            "spec: {stock: 1, redis: {url: 'redis://x', secretRef: {name: a, key: b}}}",
            "spec.redis",
        ),
        (
            "spec: {stock: 1, writer: {resources: {limits: {memory: lots}}}}",
            "spec.writer.resources.limits.memory",
        ),
    ];
    for (spec, field) in cases {
        let yaml = format!("metadata: {{name: c, namespace: n}}\n{spec}");
        match plan(&yaml) {
            Err(Error::InvalidSpec(m)) => assert!(m.contains(field), "{spec}: {m}"),
            other => panic!("{spec}: expected InvalidSpec, got {other:?}"),
        }
    }
}

#[test]
fn names_that_cannot_name_the_campaigns_children_are_refused() {
    // A Service `<name>-issuer` must be a DNS label: no dots, at most 63 characters.
    for bad in ["summer.sale", "1sale", "sale-", &"a".repeat(57)] {
        let yaml = format!("metadata: {{name: '{bad}', namespace: n}}\nspec: {{stock: 1}}");
        assert!(
            matches!(plan(&yaml), Err(Error::InvalidSpec(m)) if m.contains("metadata.name")),
            "{bad}"
        );
    }
    for good in ["s", "summer-sale-2", &"a".repeat(56)] {
        let yaml = format!("metadata: {{name: '{good}', namespace: n}}\nspec: {{stock: 1}}");
        assert!(plan(&yaml).is_ok(), "{good}");
    }
}

#[test]
fn names_that_are_not_campaign_ids_are_refused() {
    // A name starting "lt-" would, after its namespace, read as a load test's shadow
    // campaign: "shop.lt-flash".
    let yaml = "metadata: {name: lt-flash, namespace: shop}\nspec: {stock: 1}";
    assert!(matches!(plan(yaml), Err(Error::InvalidSpec(m)) if m.contains("'lt-'")));
}

#[test]
fn ids_carry_the_namespace_and_a_legacy_campaign_keeps_its_bare_name() {
    let id = |yaml: &str| plan(yaml).unwrap().campaign.to_string();
    let new = "metadata: {name: flash, namespace: team-a}\nspec: {stock: 1}";
    assert_eq!(id(new), "team-a.flash");
    // Provisioned by an operator before namespaced ids: stock in its status, no id.
    let legacy = format!("{new}\nstatus: {{stock: {{total: 1, remaining: 1, issued: 0}}}}");
    assert_eq!(id(&legacy), "flash");
    let pinned = format!("{new}\nstatus: {{campaignId: flash}}");
    assert_eq!(id(&pinned), "flash", "once pinned, kept");
    // A status naming anything else (another tenant's id) is not believed.
    let forged = format!("{new}\nstatus: {{campaignId: team-b.flash}}");
    assert_eq!(id(&forged), "team-a.flash");
    // Created again after one of its name was deleted with its rows kept: its next id.
    let again = format!("{new}\nstatus: {{campaignId: team-a.flash.2}}");
    assert_eq!(id(&again), "team-a.flash.2");
    for not_again in ["team-a.flash.1", "team-a.flash.x", "team-a.flash.100"] {
        let forged = format!("{new}\nstatus: {{campaignId: {not_again}}}");
        assert_eq!(id(&forged), "team-a.flash", "{not_again}");
    }
    // Failed before it was ever provisioned: a new campaign, not a legacy one.
    let failed = format!("{new}\nstatus: {{phase: Failed}}");
    assert_eq!(id(&failed), "team-a.flash");
}

#[test]
fn the_longest_name_in_the_longest_namespace_makes_a_campaign_id() {
    let (name, ns) = ("a".repeat(56), "n".repeat(63));
    let yaml = format!("metadata: {{name: {name}, namespace: {ns}}}\nspec: {{stock: 1}}");
    assert_eq!(
        plan(&yaml).unwrap().campaign.as_str(),
        format!("{ns}.{name}")
    );
}

#[test]
fn quantities() {
    for ok in ["1", "500m", "1.5", "256Mi", "2Gi", "100k"] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "m", "1.2.3", "lots", "5 Mi", "-1"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}

#[test]
fn durations() {
    assert_eq!(super::duration_secs("90s"), Some(90));
    assert_eq!(super::duration_secs("10m"), Some(600));
    assert_eq!(super::duration_secs("2h"), Some(7200));
    assert_eq!(super::duration_secs("5d"), None);
    assert_eq!(super::duration_secs(""), None);
}

#[test]
fn auth_defaults_and_refusals() {
    let p = plan(MINIMAL).unwrap();
    assert_eq!(
        (p.auth.issuer.as_str(), p.auth.audience.as_str()),
        ("stampede", "stampede")
    );
    assert_eq!(
        p.auth.keys,
        AuthKeys::Hs256 {
            name: "stampede-auth".into(),
            key: "hs256-secret".into()
        }
    );
    let with = |auth: &str| {
        plan(&MINIMAL.replace("{stock: 1200}", &format!("{{stock: 1200, auth: {auth}}}")))
    };
    let own = with("{hs256SecretRef: {name: tokens, key: k}}").unwrap();
    assert_eq!(
        own.auth.keys,
        AuthKeys::Hs256 {
            name: "tokens".into(),
            key: "k".into()
        }
    );
    let refused = [
        ("{issuer: ''}", "issuer"),
        ("{jwksUrl: 'https://id/jwks'}", "http://"),
        (
            "{jwksUrl: 'http://id/jwks', hs256SecretRef: {name: a, key: b}}",
            "at most one",
        ),
    ];
    for (auth, says) in refused {
        let e = with(auth).unwrap_err().to_string();
        assert!(e.contains("spec.auth") && e.contains(says), "{auth}: {e}");
    }
    let tests = "loadTests: [{name: pre, profile: smoke}]";
    let yaml = MINIMAL.replace(
        "{stock: 1200}",
        &format!("{{stock: 1200, auth: {{jwksUrl: 'http://id/jwks'}}, {tests}}}"),
    );
    let e = plan(&yaml).unwrap_err().to_string();
    assert!(e.contains("load tests need hs256SecretRef"), "{e}");
}
