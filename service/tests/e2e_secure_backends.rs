//! The pipeline on authenticated backends (a private `STAMPEDE_STACK_AUTH=1` stack): Redis
//! with an ACL user, PostgreSQL over verified TLS, Kafka with SASL/SCRAM over TLS. Each
//! refuses a client without credentials; with the credentials, coupons issued over HTTP
//! are relayed and written by the real service binary. Nothing the binary logs, at any
//! level, on success or on a refused credential, carries a password. Slow (a JVM broker);
//! needs the Kafka jars (`scripts/deps`).

mod common;

use std::time::Duration;

use common::kit::{unique, url_password, with_password};
use common::role::{Role, service_command};
use common::secure::SecureStack;
use common::{TEST_SECRET, eventually, free_port, token};
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

    let logs = std::env::temp_dir().join(unique("secure-logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let secrets = Secrets::of(&stack);
    issue_and_write_every_coupon(&stack, &env, &logs, &secrets).await;
    refused_credentials_are_not_echoed(&env, &secrets, &logs).await;
    let _ = std::fs::remove_dir_all(&logs);
}

/// `serve` and `writer`, logging at debug level into `logs`, issue and write every coupon
/// and shut down; their logs carry none of `secrets`.
async fn issue_and_write_every_coupon(
    stack: &SecureStack,
    env: &[(&str, String)],
    logs: &std::path::Path,
    secrets: &Secrets,
) {
    let (api, ops, writer_ops) = (free_port(), free_port(), free_port());
    let listen = format!("127.0.0.1:{api}");
    let serve_args = [
        "serve",
        "--listen",
        &listen,
        "--metrics-listen",
        &format!("127.0.0.1:{ops}"),
    ];
    let serve_log = logs.join("serve.log");
    let mut serve = Role::start_logged(&serve_args, env, &serve_log);
    let writer_args = [
        "writer",
        "--metrics-listen",
        &format!("127.0.0.1:{writer_ops}"),
    ];
    let writer_log = logs.join("writer.log");
    let mut writer = Role::start_logged(&writer_args, env, &writer_log);
    issue_every_coupon(&listen).await;
    let rows = rows_in_postgres(&stack.var("STAMPEDE_DATABASE_URL")).await;
    assert_eq!(rows, N as i64);

    // Shut down too: what a role logs on its way out is searched as well.
    for role in [&mut serve, &mut writer] {
        assert!(role.terminate(Duration::from_secs(15)).is_some());
    }
    for (what, log) in [("serve", &serve_log), ("writer", &writer_log)] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains(" INFO "), "{what} logged:\n{text}");
        secrets.assert_absent(what, &text);
    }
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

/// The credentials no output may carry: the stack's passwords, the token key, and the
/// wrong passwords the refusal checks hand in.
struct Secrets(Vec<(&'static str, String)>);

/// Wrong passwords handed to the binary: refused, and never repeated back.
const WRONG_REDIS: &str = "wrong-redis-password-5e1f";
const WRONG_PG: &str = "wrong-pg-password-9c2d";
const WRONG_KAFKA: &str = "wrong-kafka-password-3b7a";

impl Secrets {
    fn of(stack: &SecureStack) -> Self {
        let password = |var: &str| url_password(&stack.var(var)).expect("a password");
        Self(vec![
            ("the Redis password", password("STAMPEDE_REDIS_URL")),
            ("the PostgreSQL password", password("STAMPEDE_DATABASE_URL")),
            (
                "the Kafka password",
                stack.var("STAMPEDE_KAFKA_SASL_PASSWORD"),
            ),
            ("the token key", TEST_SECRET.to_owned()),
            ("a refused Redis password", WRONG_REDIS.to_owned()),
            ("a refused PostgreSQL password", WRONG_PG.to_owned()),
            ("a refused Kafka password", WRONG_KAFKA.to_owned()),
        ])
    }

    fn assert_absent(&self, what: &str, text: &str) {
        for (name, value) in &self.0 {
            assert!(value.len() >= 8, "{name} is long enough to search for");
            assert!(
                !text.contains(value.as_str()),
                "{what} printed {name}:\n{text}"
            );
        }
    }
}

/// Commands and roles handed a wrong password or an unparseable URL fail, and their
/// errors name what failed without repeating the credential.
async fn refused_credentials_are_not_echoed(
    env: &[(&str, String)],
    secrets: &Secrets,
    logs: &std::path::Path,
) {
    let var = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    let db = var("STAMPEDE_DATABASE_URL");
    let bad_port = with_password(&db, WRONG_PG).replace("@127.0.0.1:", "@127.0.0.1:x");
    let one_shots: [(&str, &[&str], (&str, String)); 3] = [
        (
            "campaign create, wrong Redis password",
            &["campaign", "create", "--id", "refused", "--stock", "1"],
            (
                "STAMPEDE_REDIS_URL",
                with_password(&var("STAMPEDE_REDIS_URL"), WRONG_REDIS),
            ),
        ),
        (
            "migrate, wrong PostgreSQL password",
            &["migrate"],
            ("STAMPEDE_DATABASE_URL", with_password(&db, WRONG_PG)),
        ),
        (
            "migrate, unparseable database URL",
            &["migrate"],
            ("STAMPEDE_DATABASE_URL", bad_port),
        ),
    ];
    for (what, args, (k, v)) in one_shots {
        let out = service_command()
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(k, v)
            .env("STAMPEDE_LOG", "debug")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what} fails");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("error"), "{what} says why:\n{text}");
        secrets.assert_absent(what, &text);
    }
    refused_writer_is_not_echoed(env, secrets, logs).await;
}

/// A writer refused by the broker keeps retrying; its log is searched once the refusal
/// shows in it.
async fn refused_writer_is_not_echoed(
    env: &[(&str, String)],
    secrets: &Secrets,
    logs: &std::path::Path,
) {
    let mut refused_env = env.to_vec();
    refused_env.retain(|(k, _)| *k != "STAMPEDE_KAFKA_SASL_PASSWORD");
    refused_env.push(("STAMPEDE_KAFKA_SASL_PASSWORD", WRONG_KAFKA.to_owned()));
    let log = logs.join("refused-writer.log");
    let ops = format!("127.0.0.1:{}", free_port());
    let mut writer = Role::start_logged(&["writer", "--metrics-listen", &ops], &refused_env, &log);
    let text = eventually(
        "the broker's refusal in the log",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                text.to_lowercase()
                    .contains("authentication")
                    .then_some(text)
            }
        },
    )
    .await;
    writer.kill9();
    secrets.assert_absent("a writer refused by Kafka", &text);
}
