//! Secrets stay secret, on the real control plane: every connection reaches the campaign's
//! pods through `secretKeyRef` (the operator's own defaults through the campaign's
//! `<campaign>-connections` Secret), so the Deployments as stored by the API server — what
//! `kubectl get deploy -o yaml` prints — carry no credential; a campaign naming an image
//! the operator does not allow is refused with a condition, its pods never created; and the
//! API server refuses a campaign named like a load test's shadow campaign; a Secret of the
//! connection Secret's name that is not the campaign's is left alone. The operator
//! binary, logging at debug level, prints no password, nor do the events and statuses it
//! writes, whether the backends take its credentials or refuse them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use stampede_operator::crd::Phase;

/// Both Deployments of `name`, once the operator has applied them.
async fn deployments(c: &Cluster, name: &str) -> Vec<Deployment> {
    let mut found = Vec::new();
    for d in [format!("{name}-issuer"), format!("{name}-writer")] {
        let what = format!("Deployment {d}");
        let dep = eventually(&what, Duration::from_secs(30), || async {
            c.deployments().get_opt(&d).await.unwrap()
        })
        .await;
        found.push(dep);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_carries_a_credential_and_a_foreign_image_is_refused() {
    let c = Cluster::start().await;
    let name = unique("secrets");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    c.create(&name, &minimal_campaign(5)).await.unwrap();
    let database_url = stack_defaults().database_url;
    let credential = database_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo.to_owned())
        .expect("the stack's database URL has a user and password");
    every_credential_comes_from_the_connection_secret(&c, &name, &credential).await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.ns);
    let secret = secrets.get(&format!("{name}-connections")).await.unwrap();
    let data = secret.data.unwrap();
    // The pods get the URL without the stack's CA file (theirs is the PEM beside it).
    let (for_pods, ca_file) = stampede_core::db::split_root_cert(&database_url);
    assert_eq!(data["database-url"].0, for_pods.as_bytes());
    assert_eq!(data.contains_key("database-ca-pem"), ca_file.is_some());
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CouponCampaign", name.as_str())
    );

    // An image outside the allowed ones: refused with the field named, nothing deployed.
    let foreign = unique("foreign");
    let _forget_foreign = Forget(c.id(&foreign));
    let yaml = "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {name: x}\nspec: {stock: 5, issuer: {minReplicas: 1, image: 'evil/miner:1'}}\n";
    c.create(&foreign, yaml).await.unwrap();
    let s = c
        .status_until(&foreign, "Failed", |s| s.phase == Some(Phase::Failed))
        .await;
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.issuer.image"),
        "{}",
        ready.message
    );
    let issuer = c.deployments().get_opt(&format!("{foreign}-issuer")).await;
    assert!(issuer.unwrap().is_none(), "no pods for a refused image");
    op.stop().await;
}

/// A Secret under the name of the campaign's connection Secret that is not the campaign's
/// is left alone, and the campaign refused with a condition naming it: applied over, it
/// would have been merged with the campaign's credentials and deleted with the campaign;
/// so is any other object under a child's name (a Service here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_under_the_connection_secrets_name_is_left_alone() {
    let c = Cluster::start().await;
    let name = unique("taken");
    let _forget = Forget(c.id(&name));
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.ns);
    let taken = format!("{name}-connections");
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": taken },
        "stringData": { "mine": "keep" },
    }))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &theirs)
        .await
        .unwrap();
    let op = c.operator();
    c.create(&name, &minimal_campaign(5)).await.unwrap();
    let s = c
        .status_until(&name, "Failed", |s| s.phase == Some(Phase::Failed))
        .await;
    let ready = condition(&s, "Ready").unwrap();
    assert!(
        ready.message.contains(&format!("Secret {taken}")),
        "{}",
        ready.message
    );
    let kept = secrets.get(&taken).await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    let keys: Vec<String> = kept.data.unwrap_or_default().into_keys().collect();
    assert_eq!(keys, ["mine"], "nothing merged into it");
    let issuer = c.deployments().get_opt(&format!("{name}-issuer")).await;
    assert!(issuer.unwrap().is_none(), "nothing deployed");
    a_foreign_service_is_left_alone_too(&c, &name, &taken).await;
    op.stop().await;
}

/// The same for a Service under the issuers' Service's name; once it is gone, the campaign
/// goes on.
async fn a_foreign_service_is_left_alone_too(c: &Cluster, name: &str, secret: &str) {
    use k8s_openapi::api::core::v1::Service;
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.ns);
    let taken = format!("{name}-issuer");
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": taken },
        "spec": { "ports": [{ "port": 80 }], "selector": { "app": "mine" } },
    }))
    .unwrap();
    let post = kube::api::PostParams::default();
    services.create(&post, &theirs).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.ns);
    secrets.delete(secret, &Default::default()).await.unwrap();
    let refused = c
        .status_until(name, "refused for the Service", |s| {
            condition(s, "Ready").is_some_and(|r| r.message.contains(&format!("Service {taken}")))
        })
        .await;
    assert_eq!(refused.phase, Some(Phase::Failed));
    let kept = services.get(&taken).await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(kept.spec.unwrap().selector.unwrap()["app"], "mine");
    services.delete(&taken, &Default::default()).await.unwrap();
    c.status_until(name, "carried out once the name is free", |s| {
        s.phase.is_some_and(|p| p != Phase::Failed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_names_a_shadow_campaign_would_have_or_no_service_could_carry() {
    let c = Cluster::start().await;
    let err = c
        .create("flash.lt-smoke", &minimal_campaign(5))
        .await
        .expect_err("a shadow-like name is refused");
    assert!(err.to_string().contains(".lt-"), "{err}");
    // With its namespace, "lt-flash" would be the shadow-like id "<namespace>.lt-flash".
    let err = c
        .create("lt-flash", &minimal_campaign(5))
        .await
        .expect_err("a name starting lt- is refused");
    assert!(err.to_string().contains("start with 'lt-'"), "{err}");
    // A name its Services (`<name>-issuer`, a DNS label) could not carry: refused at the
    // door, not left without status by the operator's applies failing.
    for name in ["summer.sale".to_owned(), "a".repeat(57)] {
        let err = c
            .create(&name, &minimal_campaign(5))
            .await
            .expect_err("a name no Service could carry is refused");
        assert!(err.to_string().contains("DNS label"), "{name}: {err}");
    }
    c.create(&"a".repeat(56), &minimal_campaign(5))
        .await
        .unwrap();
}

/// No Deployment of `name` holds `credential` (nor Kafka's password): every URL and
/// broker list comes from the campaign's connection Secret.
async fn every_credential_comes_from_the_connection_secret(
    c: &Cluster,
    name: &str,
    credential: &str,
) {
    let kafka_password = std::env::var("STAMPEDE_KAFKA_SASL_PASSWORD").unwrap_or_default();
    for d in deployments(c, name).await {
        let stored = serde_json::to_string(&d).unwrap();
        for secret in [credential, kafka_password.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            assert!(!stored.contains(secret), "a credential in {stored}");
        }
        let env = &d.spec.template.spec.as_ref().unwrap().containers[0];
        for e in env.env.as_ref().unwrap() {
            if e.name.ends_with("_URL") || e.name.ends_with("_BROKERS") {
                let from = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref());
                let from = from.unwrap_or_else(|| panic!("{} is a plain value", e.name));
                assert_eq!(from.name, format!("{name}-connections"), "{}", e.name);
            }
        }
    }
}

/// A wrong Redis password handed to the operator: refused, and never repeated back.
const WRONG_REDIS: &str = "wrong-operator-redis-password-4d8e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_logs_events_and_statuses_carry_no_password() {
    let c = Cluster::start().await;
    let d = stack_defaults();
    assert!(
        url_password(&d.redis_url).is_some(),
        "needs the authenticated stack (STAMPEDE_STACK_AUTH=1, as `make test` runs it)"
    );
    let logs = std::env::temp_dir().join(unique("operator-logs"));
    std::fs::create_dir_all(&logs).unwrap();

    // Credentials accepted: a campaign provisioned, its children applied.
    let name = unique("quiet");
    let _forget = Forget(c.id(&name));
    let mut op = operator_binary(&c, &d.redis_url, &logs.join("accepted.log"));
    c.create(&name, &minimal_campaign(5)).await.unwrap();
    deployments(&c, &name).await;
    sigterm(&op);
    exit_within(&mut op, Duration::from_secs(15)).await;

    // Redis refuses the operator's password: the campaign says so, naming no password.
    let refused = unique("refused");
    let _forget_refused = Forget(c.id(&refused));
    let wrong = with_password(&d.redis_url, WRONG_REDIS);
    let mut op = operator_binary(&c, &wrong, &logs.join("refused.log"));
    c.create(&refused, &minimal_campaign(5)).await.unwrap();
    let s = c
        .status_until(&refused, "a Redis condition", |s| {
            condition(s, "Ready").is_some_and(|r| r.reason == "RedisUnavailable")
        })
        .await;
    assert!(
        !condition(&s, "Ready").unwrap().message.is_empty(),
        "the condition says why"
    );
    sigterm(&op);
    exit_within(&mut op, Duration::from_secs(15)).await;

    let secrets = passwords(&d.redis_url, &d.database_url);
    for log in ["accepted.log", "refused.log"] {
        let text = std::fs::read_to_string(logs.join(log)).unwrap();
        assert!(text.contains(" INFO "), "{log}:\n{text}");
        assert_none_in(&secrets, log, &text);
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(c.client.clone(), &c.ns);
    let events = events.list(&Default::default()).await.unwrap().items;
    assert!(!events.is_empty(), "the operator recorded events");
    assert_none_in(&secrets, "events", &serde_json::to_string(&events).unwrap());
    for n in [&name, &refused] {
        let status = c.campaigns().get(n).await.unwrap().status;
        let status = serde_json::to_string(&status).unwrap();
        assert_none_in(&secrets, "a campaign's status", &status);
    }
    let _ = std::fs::remove_dir_all(&logs);
}

/// `stampede-operator run` on the test's control plane, logging at debug level into `log`,
/// its credentials from the environment as the chart hands them over.
fn operator_binary(c: &Cluster, redis_url: &str, log: &std::path::Path) -> Reaped {
    let d = stack_defaults();
    // It logs to stdout and reports a fatal error on stderr: both go to the file.
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Command::new(env!("CARGO_BIN_EXE_stampede-operator"))
        .args(["run", "--listen", "127.0.0.1:0", "--resync-secs", "2"])
        .arg("--kubeconfig")
        .arg(&c.cp.kubeconfig)
        .args(["--service-image", &d.service_image])
        .args(["--k6-image", &d.k6_image])
        .env("STAMPEDE_REDIS_URL", redis_url)
        .env("STAMPEDE_DATABASE_URL", &d.database_url)
        .env("STAMPEDE_KAFKA_BROKERS", &d.kafka_brokers)
        .env("STAMPEDE_LOG", "debug")
        .stdout(out)
        .stderr(err)
        .spawn()
        .map(Reaped)
        .expect("starting stampede-operator")
}

/// The stack's Redis, PostgreSQL and Kafka passwords and the refused one.
fn passwords(redis_url: &str, database_url: &str) -> Vec<String> {
    let mut found = vec![WRONG_REDIS.to_owned()];
    found.extend(
        [redis_url, database_url]
            .into_iter()
            .filter_map(url_password),
    );
    found.extend(std::env::var("STAMPEDE_KAFKA_SASL_PASSWORD").ok());
    found.retain(|p| !p.is_empty());
    found
}

fn assert_none_in(secrets: &[String], what: &str, text: &str) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} carries a password:\n{text}"
        );
    }
}

#[test]
fn no_help_shows_a_credential_from_the_environment() {
    let vars = ["STAMPEDE_REDIS_URL", "STAMPEDE_DATABASE_URL"];
    assert_no_help_shows(env!("CARGO_BIN_EXE_stampede-operator"), &vars, 4);
}
