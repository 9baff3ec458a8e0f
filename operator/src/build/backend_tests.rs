//! Unit tests of how Kafka's SASL and TLS and the database's CA reach the pods: only
//! through the campaign's connection Secret.

use super::tests::{CAMPAIGN, env, find};
use super::*;
use crate::validate::tests::{defaults, from_yaml};
use crate::validate::validate;

#[test]
fn kafka_sasl_and_its_ca_reach_issuers_and_writers_only_through_the_connection_secret() {
    let cc = from_yaml(CAMPAIGN);
    let security = stampede_core::kafka::KafkaSecurity::from_parts(
        Some("SASL_SSL"),
        Some("SCRAM-SHA-512"),
        Some("stampede"),
        Some("s3cret-pw"),
        None,
        Some("-----BEGIN CERTIFICATE-----"),
    )
    .unwrap();
    let defaults = crate::validate::Defaults {
        kafka_security: security,
        ..defaults()
    };
    let plan = validate(&cc, &defaults).unwrap();
    let c = children(&plan, &OwnerReference::default());
    let data = c.connections.as_ref().unwrap().data.as_ref().unwrap();
    assert_eq!(data["kafka-sasl-password"].0, b"s3cret-pw");
    assert_eq!(data["kafka-security-protocol"].0, b"SASL_SSL");
    assert!(data.contains_key("kafka-ca-pem"));
    for d in [&c.issuer, &c.writer] {
        let env = env(d);
        assert!(
            !env.to_string().contains("s3cret-pw"),
            "never a plain value"
        );
        for (var, key) in [
            (
                "STAMPEDE_KAFKA_SECURITY_PROTOCOL",
                "kafka-security-protocol",
            ),
            ("STAMPEDE_KAFKA_SASL_MECHANISM", "kafka-sasl-mechanism"),
            ("STAMPEDE_KAFKA_SASL_USERNAME", "kafka-sasl-username"),
            ("STAMPEDE_KAFKA_SASL_PASSWORD", "kafka-sasl-password"),
            ("STAMPEDE_KAFKA_CA_PEM", "kafka-ca-pem"),
        ] {
            let from = &find(&env, var)["valueFrom"]["secretKeyRef"];
            assert_eq!(
                (from["name"].as_str(), from["key"].as_str()),
                (Some("spring-sale-connections"), Some(key))
            );
        }
    }
}

/// The operator's Kafka credentials are for the operator's brokers: a campaign that names
/// brokers of its own gets none of them (its author could read them off a broker of
/// theirs), and the operator presents none there.
#[test]
fn a_campaign_with_brokers_of_its_own_gets_none_of_the_operators_kafka_credentials() {
    let cc = from_yaml(&format!(
        "{CAMPAIGN}  kafka: {{brokers: {{url: 'kafka.team-a:9092'}}}}\n"
    ));
    let security = stampede_core::kafka::KafkaSecurity::from_parts(
        Some("SASL_PLAINTEXT"),
        Some("PLAIN"),
        Some("stampede"),
        Some("s3cret-pw"),
        None,
        None,
    )
    .unwrap();
    let defaults = crate::validate::Defaults {
        kafka_security: security,
        ..defaults()
    };
    let plan = validate(&cc, &defaults).unwrap();
    assert!(plan.kafka_security.is_none());
    let c = children(&plan, &OwnerReference::default());
    let data = c.connections.as_ref().unwrap().data.as_ref().unwrap();
    assert!(
        !data.contains_key("kafka-sasl-password"),
        "{:?}",
        data.keys()
    );
    for d in [&c.issuer, &c.writer] {
        assert!(!env(d).to_string().contains("STAMPEDE_KAFKA_SASL"));
    }
}

#[test]
fn the_default_databases_ca_file_reaches_the_writer_as_pem_and_leaves_the_url() {
    let cc = from_yaml(CAMPAIGN);
    let defaults = crate::validate::Defaults {
        database_url: "postgres://u:pw@db/s?sslmode=verify-full&sslrootcert=/op/ca.crt".into(),
        database_ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
        ..defaults()
    };
    let plan = validate(&cc, &defaults).unwrap();
    let c = children(&plan, &OwnerReference::default());
    let data = c.connections.as_ref().unwrap().data.as_ref().unwrap();
    assert_eq!(
        data["database-url"].0, b"postgres://u:pw@db/s?sslmode=verify-full",
        "the operator's file is not the pod's"
    );
    assert_eq!(data["database-ca-pem"].0, b"-----BEGIN CERTIFICATE-----");
    let env = env(&c.writer);
    let from = &find(&env, "STAMPEDE_DATABASE_CA_PEM")["valueFrom"]["secretKeyRef"];
    assert_eq!(from["key"], "database-ca-pem");
}
