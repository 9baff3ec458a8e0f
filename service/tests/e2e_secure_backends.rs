//! The pipeline on authenticated backends (a private `STAMPEDE_STACK_AUTH=1` stack): Redis
//! with an ACL user, PostgreSQL over verified TLS, Kafka with SASL/SCRAM over TLS. Each
//! refuses a client without credentials; with the credentials, coupons issued over HTTP
//! are relayed and written by the real service binary. Slow (a JVM broker); needs the
//! Kafka jars (`scripts/deps`).

mod common;

use std::time::Duration;

use common::role::{Role, service_command};
use common::secure::SecureStack;
use common::{eventually, free_port, token};
use stampede_core::kafka::{KafkaConfig, partition_count};

/// Coupons issued through the authenticated pipeline.
const N: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_on_authenticated_backends_that_refuse_anonymous_clients() {
    let stack = tokio::task::spawn_blocking(SecureStack::start)
        .await
        .unwrap();
    anonymous_clients_are_refused(&stack).await;
    let env: Vec<(&str, String)> = stack
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();

    // `campaign create` provisions stock and topics with the credentials.
    let create = service_command()
        .args([
            "campaign",
            "create",
            "--id",
            "secure",
            "--stock",
            &N.to_string(),
        ])
        .args(["--partitions", "1"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );

    let (api, ops, writer_ops) = (free_port(), free_port(), free_port());
    let listen = format!("127.0.0.1:{api}");
    let serve_args = [
        "serve",
        "--listen",
        &listen,
        "--metrics-listen",
        &format!("127.0.0.1:{ops}"),
    ];
    let _serve = Role::start(&serve_args, &env);
    let writer_args = [
        "writer",
        "--metrics-listen",
        &format!("127.0.0.1:{writer_ops}"),
    ];
    let _writer = Role::start(&writer_args, &env);
    issue_every_coupon(&listen).await;
    let rows = rows_in_postgres(&stack.var("STAMPEDE_DATABASE_URL")).await;
    assert_eq!(rows, N as i64);
}

/// Redis without its user, PostgreSQL without TLS and Kafka without SASL are refused.
async fn anonymous_clients_are_refused(stack: &SecureStack) {
    let redis_url = stack.var("STAMPEDE_REDIS_URL");
    let anonymous = format!("redis://{}", redis_url.rsplit_once('@').unwrap().1);
    let mut conn = redis::Client::open(anonymous)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    let err = ping.expect_err("Redis refuses a client without its user");
    assert!(err.to_string().contains("NOAUTH"), "{err}");

    let db = stack.var("STAMPEDE_DATABASE_URL");
    let plain = format!("{}?sslmode=disable", db.split_once('?').unwrap().0);
    let refused = stampede_core::db::connect(&plain, 1).await;
    assert!(
        refused.is_err(),
        "PostgreSQL refuses a connection without TLS"
    );

    let brokers = stack.var("STAMPEDE_KAFKA_BROKERS");
    let plaintext = KafkaConfig::new(brokers);
    let metadata = tokio::time::timeout(
        Duration::from_secs(20),
        partition_count(&plaintext, "stampede.secure"),
    )
    .await;
    assert!(
        !matches!(metadata, Ok(Ok(_))),
        "Kafka answers a plaintext client: {metadata:?}"
    );
}

/// Issues all `N` coupons over HTTP, one user each, waiting for the service to answer.
async fn issue_every_coupon(listen: &str) {
    let http = reqwest::Client::new();
    for n in 0..N {
        let user = format!("u{n}");
        let status = eventually("an issue answer", Duration::from_secs(30), || {
            let req = http
                .post(format!("http://{listen}/v1/campaigns/secure/issue"))
                .bearer_auth(token(&user))
                .send();
            async move { req.await.ok().map(|r| r.status().as_u16()) }
        })
        .await;
        assert_eq!(status, 201, "user {user}");
    }
}

/// Waits until PostgreSQL (over verified TLS, `url`) holds all `N` rows; their count.
async fn rows_in_postgres(url: &str) -> i64 {
    let pool = stampede_core::db::connect(url, 1)
        .await
        .expect("PostgreSQL over verified TLS");
    eventually(
        "every coupon in PostgreSQL",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM coupon_issuances WHERE campaign = 'secure'",
                )
                .fetch_one(&pool)
                .await
                .ok()?;
                (n == N as i64).then_some(n)
            }
        },
    )
    .await
}
