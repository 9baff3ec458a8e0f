//! Validate: a `CouponCampaign` in, a [`Plan`] (everything reconcile needs, defaults
//! applied, free of Kubernetes types) out. Pure; the API server's schema catches most of
//! this first, but an object stored under an older schema must not get past here.

use std::collections::BTreeMap;

use kube::ResourceExt;
use stampede_service::campaign::Window;
use stampede_service::ids::CampaignId;

use crate::Error;
use crate::crd::{AlertsSpec, Connection, CouponCampaign, DeletionPolicy, LoadTestSpec, Resources};

/// Operator-wide defaults for what a campaign does not name.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Redis URL.
    pub redis_url: String,
    /// Kafka brokers.
    pub kafka_brokers: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Image of `stampede-service` (issuer and writer).
    pub service_image: String,
    /// Image of the k6 load-test runners.
    pub k6_image: String,
}

/// Where a backing service is found: a value, or a Secret key the operator and the pods
/// both read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The value itself.
    Value(String),
    /// A key of a Secret in the campaign's namespace.
    Secret {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
}

/// Issuer settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerPlan {
    /// Image.
    pub image: String,
    /// HPA bounds.
    pub min_replicas: i32,
    /// HPA bounds.
    pub max_replicas: i32,
    /// HPA CPU target, percent.
    pub target_cpu: i32,
    /// Per-pod in-flight cap, when set.
    pub max_in_flight: Option<i32>,
    /// Container resources.
    pub resources: Resources,
}

/// Writer settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterPlan {
    /// Image.
    pub image: String,
    /// Pods.
    pub replicas: i32,
    /// Rows per batch.
    pub batch_rows: i32,
    /// Batch linger, ms.
    pub batch_linger_ms: i32,
    /// Container resources.
    pub resources: Resources,
}

/// Everything reconcile needs to know about one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Campaign id (the resource name).
    pub campaign: CampaignId,
    /// Namespace of the resource and its children.
    pub namespace: String,
    /// Stock to provision.
    pub stock: u64,
    /// Sale window, when the spec has one.
    pub window: Option<Window>,
    /// Held by the spec.
    pub paused: bool,
    /// Topic partitions.
    pub partitions: i32,
    /// Replication factor of new topics.
    pub replication_factor: i32,
    /// Redis.
    pub redis: Endpoint,
    /// Kafka brokers.
    pub kafka: Endpoint,
    /// PostgreSQL.
    pub database: Endpoint,
    /// Issuer.
    pub issuer: IssuerPlan,
    /// Writer.
    pub writer: WriterPlan,
    /// Alert thresholds.
    pub alerts: AlertsSpec,
    /// What deletion does.
    pub deletion_policy: DeletionPolicy,
    /// Load tests.
    pub load_tests: Vec<LoadTestSpec>,
}

/// Checks the campaign and applies defaults. Errors name the field.
pub fn validate(cc: &CouponCampaign, defaults: &Defaults) -> Result<Plan, Error> {
    let spec = &cc.spec;
    let bad = |m: String| Err(Error::InvalidSpec(m));
    let name = cc.name_any();
    let campaign = match CampaignId::parse(&name) {
        Ok(c) => c,
        Err(e) => return bad(format!("metadata.name {name:?} is not a campaign id: {e}")),
    };
    let Some(namespace) = cc.namespace() else {
        return bad("metadata.namespace is missing".into());
    };
    if spec.stock < 1 {
        return bad(format!("spec.stock must be at least 1, got {}", spec.stock));
    }
    let window = match &spec.window {
        None => None,
        Some(w) => Some(
            Window::from_rfc3339(w.opens_at.as_deref(), w.closes_at.as_deref())
                .map_err(|e| Error::InvalidSpec(format!("spec.window: {}", inner(e))))?,
        ),
    };
    let (k, i, w) = (&spec.kafka, &spec.issuer, &spec.writer);
    if k.partitions < 1 {
        return bad(format!(
            "spec.kafka.partitions must be at least 1, got {}",
            k.partitions
        ));
    }
    if k.replication_factor < 1 {
        return bad(format!(
            "spec.kafka.replicationFactor must be at least 1, got {}",
            k.replication_factor
        ));
    }
    if i.min_replicas < 1 || i.min_replicas > i.max_replicas {
        return bad(format!(
            "spec.issuer.minReplicas ({}) must be at least 1 and not exceed spec.issuer.maxReplicas ({})",
            i.min_replicas, i.max_replicas
        ));
    }
    if !(1..=100).contains(&i.target_cpu_utilization) {
        return bad(format!(
            "spec.issuer.targetCPUUtilization must be 1..=100, got {}",
            i.target_cpu_utilization
        ));
    }
    if w.replicas < 1 || w.batch_rows < 1 || w.batch_linger_ms < 0 {
        return bad(
            "spec.writer: replicas and batchRows must be at least 1, batchLingerMs at least 0"
                .into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for t in &spec.load_tests {
        if !seen.insert(t.name.as_str()) {
            return bad(format!(
                "spec.loadTests: the name {:?} is used twice",
                t.name
            ));
        }
        if t.parallelism < 1 {
            return bad(format!(
                "spec.loadTests[{}].parallelism must be at least 1",
                t.name
            ));
        }
        if let Some(d) = &t.duration
            && crate::loadtest::duration_secs(d).is_none()
        {
            return bad(format!(
                "spec.loadTests[{}].duration {d:?} is not a duration like 90s, 10m or 1h",
                t.name
            ));
        }
    }
    let issuer_resources = resources(
        "spec.issuer.resources",
        i.resources.as_ref(),
        ("250m", "128Mi"),
        ("2", "512Mi"),
    )?;
    let writer_resources = resources(
        "spec.writer.resources",
        w.resources.as_ref(),
        ("100m", "128Mi"),
        ("1", "512Mi"),
    )?;
    let image = i
        .image
        .clone()
        .unwrap_or_else(|| defaults.service_image.clone());
    Ok(Plan {
        campaign,
        namespace,
        stock: spec.stock as u64,
        window,
        paused: spec.paused,
        partitions: k.partitions,
        replication_factor: k.replication_factor,
        redis: endpoint("spec.redis", spec.redis.as_ref(), &defaults.redis_url)?,
        kafka: endpoint(
            "spec.kafka.brokers",
            k.brokers.as_ref(),
            &defaults.kafka_brokers,
        )?,
        database: endpoint(
            "spec.database",
            spec.database.as_ref(),
            &defaults.database_url,
        )?,
        writer: WriterPlan {
            image: w.image.clone().unwrap_or_else(|| image.clone()),
            replicas: w.replicas,
            batch_rows: w.batch_rows,
            batch_linger_ms: w.batch_linger_ms,
            resources: writer_resources,
        },
        issuer: IssuerPlan {
            image,
            min_replicas: i.min_replicas,
            max_replicas: i.max_replicas,
            target_cpu: i.target_cpu_utilization,
            max_in_flight: i.max_in_flight,
            resources: issuer_resources,
        },
        alerts: spec.alerts.clone(),
        deletion_policy: spec.deletion_policy,
        load_tests: spec.load_tests.clone(),
    })
}

fn inner(e: stampede_service::Error) -> String {
    match e {
        stampede_service::Error::InvalidInput(m) => m,
        other => other.to_string(),
    }
}

fn endpoint(field: &str, c: Option<&Connection>, default: &str) -> Result<Endpoint, Error> {
    match c {
        None => Ok(Endpoint::Value(default.to_owned())),
        Some(Connection {
            url: Some(u),
            secret_ref: None,
        }) if !u.trim().is_empty() => Ok(Endpoint::Value(u.clone())),
        Some(Connection {
            url: None,
            secret_ref: Some(s),
        }) if !s.name.is_empty() && !s.key.is_empty() => Ok(Endpoint::Secret {
            name: s.name.clone(),
            key: s.key.clone(),
        }),
        Some(_) => Err(Error::InvalidSpec(format!(
            "{field}: set exactly one of url and secretRef (with name and key)"
        ))),
    }
}

/// Fills cpu/memory requests and limits the spec leaves out, and rejects anything that is
/// not a Kubernetes quantity (the API server would refuse the Deployment later, less
/// clearly).
fn resources(
    field: &str,
    given: Option<&Resources>,
    requests: (&str, &str),
    limits: (&str, &str),
) -> Result<Resources, Error> {
    let mut r = given.cloned().unwrap_or_default();
    for (map, (cpu, mem), which) in [
        (&mut r.requests, requests, "requests"),
        (&mut r.limits, limits, "limits"),
    ] {
        for (k, v) in map.iter() {
            if !is_quantity(v) {
                return Err(Error::InvalidSpec(format!(
                    "{field}.{which}.{k}: {v:?} is not a quantity (e.g. 500m, 2, 256Mi)"
                )));
            }
        }
        map.entry("cpu".into()).or_insert_with(|| cpu.into());
        map.entry("memory".into()).or_insert_with(|| mem.into());
    }
    Ok(r)
}

fn is_quantity(v: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && SUFFIXES.contains(&suffix)
}

/// Labels every child carries; the selector uses the stable subset.
pub fn labels(plan: &Plan, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "stampede".into()),
        (
            "app.kubernetes.io/instance".into(),
            plan.campaign.to_string(),
        ),
        ("app.kubernetes.io/component".into(), component.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "stampede-operator".into(),
        ),
        ("stampede.dev/campaign".into(), plan.campaign.to_string()),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn defaults() -> Defaults {
        Defaults {
            redis_url: "redis://redis:6379".into(),
            kafka_brokers: "kafka:9092".into(),
            database_url: "postgres://db/stampede".into(),
            service_image: "stampede/service:test".into(),
            k6_image: "grafana/k6:test".into(),
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
        assert_eq!(p.campaign.as_str(), "spring-sale");
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

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            ("spec: {stock: 0}", "spec.stock"),
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
    fn names_that_are_not_campaign_ids_are_refused() {
        let long = "a".repeat(129);
        let yaml = format!("metadata: {{name: {long}, namespace: n}}\nspec: {{stock: 1}}");
        assert!(matches!(plan(&yaml), Err(Error::InvalidSpec(m)) if m.contains("metadata.name")));
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
}
