//! Build: the child objects of one campaign, as pure functions of its [`Plan`]. Reconcile
//! server-side-applies exactly what these return.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stampede_service::issuance::topic;

use crate::crd::Resources;
use crate::validate::{Endpoint, Plan, labels};

/// The issuer's container port (HTTP API, /metrics, /healthz, /readyz).
pub const ISSUER_PORT: i32 = 8080;
/// The writer's metrics/health port.
pub const WRITER_PORT: i32 = 9466;
/// Non-root user the pods run as.
const RUN_AS: i64 = 65532;

/// Name of the issuer Deployment, Service, HPA and PDB.
pub fn issuer_name(plan: &Plan) -> String {
    format!("{}-issuer", plan.campaign)
}

/// Name of the writer Deployment.
pub fn writer_name(plan: &Plan) -> String {
    format!("{}-writer", plan.campaign)
}

/// Every child object of a campaign.
#[derive(Debug, Clone)]
pub struct Children {
    /// Issuer Deployment (replicas left to the HPA).
    pub issuer: Deployment,
    /// ClusterIP Service in front of the issuers.
    pub service: Service,
    /// autoscaling/v2 HPA on CPU.
    pub hpa: HorizontalPodAutoscaler,
    /// Keeps issuers up through voluntary disruptions.
    pub pdb: PodDisruptionBudget,
    /// Writer Deployment.
    pub writer: Deployment,
}

/// Builds every child, each owned by the campaign (`owner`).
pub fn children(plan: &Plan, owner: &OwnerReference) -> Children {
    Children {
        issuer: issuer_deployment(plan, owner),
        service: issuer_service(plan, owner),
        hpa: issuer_hpa(plan, owner),
        pdb: issuer_pdb(plan, owner),
        writer: writer_deployment(plan, owner),
    }
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    // Only reachable through a bug in the literals below; unit tests build every child.
    serde_json::from_value(v).expect("child object literal matches its type")
}

fn metadata(plan: &Plan, name: &str, component: &str, owner: &OwnerReference) -> Value {
    json!({
        "name": name,
        "namespace": plan.namespace,
        "labels": labels(plan, component),
        "ownerReferences": [owner],
    })
}

fn selector(plan: &Plan, component: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": plan.campaign.as_str(),
        "app.kubernetes.io/component": component,
    })
}

fn env_var(name: &str, e: &Endpoint) -> Value {
    match e {
        Endpoint::Value(v) => json!({ "name": name, "value": v }),
        Endpoint::Secret { name: s, key } => json!({
            "name": name,
            "valueFrom": { "secretKeyRef": { "name": s, "key": key } },
        }),
    }
}

fn resources(r: &Resources) -> Value {
    json!({ "requests": r.requests, "limits": r.limits })
}

/// A pod template with the hardening every Stampede pod gets: non-root, read-only root
/// filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp, no
/// service-account token, probes on /healthz and /readyz.
fn pod_template(
    plan: &Plan,
    component: &str,
    image: &str,
    args: &[&str],
    env: Vec<Value>,
    port: i32,
    res: &Resources,
) -> Value {
    json!({
        "metadata": {
            "labels": labels(plan, component),
            // For Prometheus setups that scrape pods by annotation.
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": port.to_string(),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [{
                "name": component,
                "image": image,
                "args": args,
                "env": env,
                "ports": [{ "name": "http", "containerPort": port, "protocol": "TCP" }],
                "resources": resources(res),
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "privileged": false,
                    "capabilities": { "drop": ["ALL"] },
                },
                "livenessProbe": {
                    "httpGet": { "path": "/healthz", "port": "http" },
                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": { "path": "/readyz", "port": "http" },
                    "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 2,
                },
            }],
        },
    })
}

fn pod_name_env(var: &str) -> Value {
    json!({ "name": var, "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } })
}

/// The issuer Deployment. No `replicas`: the HPA owns that field.
pub fn issuer_deployment(plan: &Plan, owner: &OwnerReference) -> Deployment {
    let name = issuer_name(plan);
    let mut env = vec![
        json!({ "name": "STAMPEDE_LISTEN", "value": format!("0.0.0.0:{ISSUER_PORT}") }),
        env_var("STAMPEDE_REDIS_URL", &plan.redis),
        env_var("STAMPEDE_KAFKA_BROKERS", &plan.kafka),
        // A restarted pod keeps its name's pending outbox entries; others claim them.
        pod_name_env("STAMPEDE_RELAY_CONSUMER"),
    ];
    if let Some(n) = plan.issuer.max_in_flight {
        env.push(json!({ "name": "STAMPEDE_MAX_IN_FLIGHT", "value": n.to_string() }));
    }
    let i = &plan.issuer;
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, &name, "issuer", owner),
        "spec": {
            "selector": { "matchLabels": selector(plan, "issuer") },
            "strategy": { "type": "RollingUpdate",
                          "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "25%" } },
            "template": pod_template(plan, "issuer", &i.image, &["serve"], env, ISSUER_PORT, &i.resources),
        },
    }))
}

/// The ClusterIP Service in front of the issuers.
pub fn issuer_service(plan: &Plan, owner: &OwnerReference) -> Service {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan, "issuer"),
            "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }],
        },
    }))
}

/// autoscaling/v2 HPA on average CPU utilisation.
pub fn issuer_hpa(plan: &Plan, owner: &OwnerReference) -> HorizontalPodAutoscaler {
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

/// At most one issuer down at a time for voluntary disruptions.
pub fn issuer_pdb(plan: &Plan, owner: &OwnerReference) -> PodDisruptionBudget {
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(plan, &issuer_name(plan), "issuer", owner),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector(plan, "issuer") },
        },
    }))
}

/// The writer Deployment: one consumer group per campaign over the campaign's topic.
pub fn writer_deployment(plan: &Plan, owner: &OwnerReference) -> Deployment {
    let w = &plan.writer;
    let env = vec![
        json!({ "name": "STAMPEDE_METRICS_LISTEN", "value": format!("0.0.0.0:{WRITER_PORT}") }),
        env_var("STAMPEDE_REDIS_URL", &plan.redis),
        env_var("STAMPEDE_KAFKA_BROKERS", &plan.kafka),
        env_var("STAMPEDE_DATABASE_URL", &plan.database),
        json!({ "name": "STAMPEDE_WRITER_TOPICS", "value": topic(plan.campaign.as_str()) }),
        json!({ "name": "STAMPEDE_WRITER_GROUP", "value": format!("stampede-writer.{}", plan.campaign) }),
        json!({ "name": "STAMPEDE_BATCH_ROWS", "value": w.batch_rows.to_string() }),
        json!({ "name": "STAMPEDE_BATCH_LINGER_MS", "value": w.batch_linger_ms.to_string() }),
    ];
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, &writer_name(plan), "writer", owner),
        "spec": {
            "replicas": w.replicas,
            "selector": { "matchLabels": selector(plan, "writer") },
            "template": pod_template(plan, "writer", &w.image, &["writer"], env, WRITER_PORT, &w.resources),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{defaults, from_yaml};
    use crate::validate::validate;

    const CAMPAIGN: &str = "
apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: spring-sale, namespace: shop, uid: 0a1b2c3d}
spec:
  stock: 1200
  redis: {secretRef: {name: redis-conn, key: url}}
  issuer: {minReplicas: 3, maxReplicas: 12, targetCPUUtilization: 60, maxInFlight: 512}
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

    fn env(d: &Deployment) -> Value {
        let spec = d.spec.template.spec.as_ref().unwrap();
        serde_json::to_value(&spec.containers[0].env).unwrap()
    }

    fn find<'a>(env: &'a Value, name: &str) -> &'a Value {
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
        assert_eq!(
            find(&env, "STAMPEDE_REDIS_URL")["valueFrom"]["secretKeyRef"]["name"],
            "redis-conn"
        );
    }

    #[test]
    fn writer_consumes_only_its_campaign_topic() {
        let (_, c) = built();
        assert_eq!(c.writer.spec.replicas, Some(2));
        let env = env(&c.writer);
        assert_eq!(
            find(&env, "STAMPEDE_WRITER_TOPICS")["value"],
            "stampede.spring-sale"
        );
        assert_eq!(find(&env, "STAMPEDE_BATCH_ROWS")["value"], "2000");
        assert_eq!(
            find(&env, "STAMPEDE_DATABASE_URL")["value"],
            "postgres://db/stampede"
        );
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
}
