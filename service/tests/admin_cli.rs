//! The `campaign` admin commands, run as the real binary against real Redis.

mod common;

use std::process::Output;

use common::RedisServer;
use common::role::service_command;
use common::stack::{drop_topics, kafka_config, stack_kafka};
use serde_json::Value;
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::kafka::partition_count;

/// Runs the binary with `args` (split at spaces).
fn cli(redis: &RedisServer, args: &str) -> Output {
    service_command()
        .args(args.split_whitespace())
        .env("STAMPEDE_REDIS_URL", redis.url())
        .output()
        .unwrap()
}

fn ok_json(redis: &RedisServer, args: &str) -> Value {
    let out = cli(redis, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails_naming(redis: &RedisServer, args: &str, needle: &str) {
    let out = cli(redis, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: stderr does not name {needle:?}: {err}"
    );
}

#[tokio::test]
async fn campaign_commands_round_trip() {
    let redis = RedisServer::start().await;
    let created = ok_json(&redis, "campaign create --id cli --stock 5");
    assert_eq!(created["provision"]["outcome"], "created");
    let again = ok_json(&redis, "campaign create --id cli --stock 5");
    assert_eq!(again["provision"]["outcome"], "unchanged");
    let restocked = ok_json(&redis, "campaign restock --id cli --add 3");
    assert_eq!(restocked["total"], 8);
    ok_json(&redis, "campaign pause --id cli");
    let shown = ok_json(&redis, "campaign show --id cli");
    assert_eq!(shown["state"], "paused");
    assert_eq!(shown["stock"]["total"], 8);
    ok_json(&redis, "campaign resume --id cli");
    ok_json(&redis, "campaign close --id cli");
    assert_eq!(ok_json(&redis, "campaign show --id cli")["state"], "closed");
    ok_json(&redis, "campaign reopen --id cli");
    assert_eq!(ok_json(&redis, "campaign show --id cli")["state"], "open");

    let windowed = ok_json(
        &redis,
        "campaign create --id w --stock 1 --opens-at 2099-01-01T00:00:00Z --closes-at 2099-01-02T00:00:00+09:00",
    );
    assert_eq!(windowed["provision"]["outcome"], "created");
    let shown = ok_json(&redis, "campaign show --id w");
    assert_eq!(shown["state"], "scheduled");
    assert_eq!(shown["window"]["opensAt"], "2099-01-01T00:00:00Z");
    assert_eq!(shown["window"]["closesAt"], "2099-01-01T15:00:00Z");
}

#[tokio::test]
async fn bad_flags_are_refused_by_name_and_change_nothing() {
    let redis = RedisServer::start().await;
    ok_json(&redis, "campaign create --id x --stock 5");
    fails_naming(&redis, "campaign create --id x --stock 0", "--stock");
    fails_naming(&redis, "campaign create --id x --stock -1", "--stock");
    fails_naming(
        &redis,
        "campaign create --id z --stock 10000000000001",
        "--stock",
    );
    fails_naming(
        &redis,
        "campaign restock --id x --add 10000000000000",
        "at most",
    );
    fails_naming(&redis, "campaign create --id x --stock 4", "never shrink");
    fails_naming(&redis, "campaign create --id Bad --stock 1", "--id");
    fails_naming(
        &redis,
        "campaign create --id y --stock 1 --opens-at soon",
        "opensAt",
    );
    fails_naming(
        &redis,
        "campaign create --id y --stock 1 --opens-at 2099-01-02T00:00:00Z --closes-at 2099-01-01T00:00:00Z",
        "closesAt",
    );
    fails_naming(&redis, "campaign restock --id x --add 0", "--add");
    fails_naming(&redis, "campaign restock --id ghost --add 1", "not found");
    fails_naming(&redis, "campaign show --id ghost", "not found");
    let shown = ok_json(&redis, "campaign show --id x");
    assert_eq!(shown["stock"]["total"], 5);
    let out = cli(&redis, "campaign show --id y");
    assert!(!out.status.success(), "a refused create must not create y");
}

#[tokio::test]
async fn create_provisions_topics_that_only_grow() {
    let redis = RedisServer::start().await;
    let id = common::unique("topics");
    let create = |p: &str| {
        ok_json(
            &redis,
            &format!("campaign create --id {id} --stock 5 --partitions {p}"),
        )
    };
    let first = create("2");
    assert_eq!(first["kafka"]["topic"], format!("stampede.{id}"));
    assert_eq!(
        first["kafka"]["deadLetterTopic"],
        format!("stampede-dlq.{id}")
    );
    assert_eq!(first["kafka"]["partitions"], 2);
    let grown = create("4");
    assert_eq!(
        (
            grown["kafka"]["partitionsBefore"].as_i64(),
            grown["kafka"]["partitions"].as_i64()
        ),
        (Some(2), Some(4))
    );
    let kept = create("3");
    assert_eq!(kept["kafka"]["partitions"], 4, "partitions never shrink");
    assert_eq!(kept["kafka"]["decreaseRefused"], true);
    assert_eq!(kept["provision"]["outcome"], "unchanged");
    let zero = format!("campaign create --id {id} --stock 5 --partitions 0");
    fails_naming(&redis, &zero, "--partitions");
    // A create refused for its stock grows no topic on the way.
    let shrink = format!("campaign create --id {id} --stock 4 --partitions 8");
    fails_naming(&redis, &shrink, "never shrink");
    assert_eq!(
        create("4")["kafka"]["partitionsBefore"],
        4,
        "grown by a refusal"
    );
    drop_topics(&stack_kafka(), &id);
}

#[tokio::test]
async fn a_sharded_campaign_is_created_shown_restocked_and_keeps_its_shards() {
    let redis = RedisServer::start().await;
    let id = common::unique("sharded");
    let created = ok_json(
        &redis,
        &format!("campaign create --id {id} --stock 9 --shards 3"),
    );
    assert_eq!(created["provision"]["outcome"], "created");
    let shown = ok_json(&redis, &format!("campaign show --id {id}"));
    assert_eq!(shown["stock"]["total"], 9);
    let buckets = shown["shards"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{shown}");
    assert!(buckets.iter().all(|b| b["total"] == 3), "{shown}");
    assert_eq!(shown["shards"]["problems"], serde_json::json!([]));
    let restocked = ok_json(&redis, &format!("campaign restock --id {id} --add 3"));
    assert_eq!(restocked["total"], 12);
    fails_naming(
        &redis,
        &format!("campaign restock --id {id} --add 10000000000000"),
        "--add",
    );
    let shown = ok_json(&redis, &format!("campaign show --id {id}"));
    assert_eq!(shown["shards"]["stock"], 12);
    fails_naming(
        &redis,
        &format!("campaign create --id {id} --stock 12 --shards 2 --partitions 8"),
        "shards cannot change",
    );
    fails_naming(
        &redis,
        &format!("campaign create --id {id}-z --stock 9 --shards 0"),
        "shards",
    );
    fails_naming(
        &redis,
        &format!("campaign create --id {id}-y --stock 2 --shards 3"),
        "at least the number of shards",
    );
    // A refused create changes nothing: no topic made, none grown.
    let kafka = kafka_config(&stack_kafka());
    let partitions = |c: String| {
        let kafka = kafka.clone();
        async move {
            partition_count(&kafka, &format!("stampede.{c}"))
                .await
                .unwrap()
        }
    };
    assert_eq!(partitions(id.clone()).await, 6, "the topic was grown");
    assert_eq!(partitions(format!("{id}-z")).await, 0, "a topic was made");
    assert_eq!(partitions(format!("{id}-y")).await, 0, "a topic was made");
    drop_topics(&stack_kafka(), &id);
}

/// Redis lost everything and an issuer wrote the campaign's suspension flags alone: an
/// admin command says to provision it again first, instead of failing on a reply it cannot
/// read.
#[tokio::test]
async fn admin_on_a_campaign_that_is_only_its_suspension_says_to_provision_it() {
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    let flags = [
        ("suspended", "1"),
        ("suspended_epoch", "e"),
        ("acked_high", "7"),
    ];
    let _: () = redis::cmd("HSET")
        .arg(common::key("lost", "meta"))
        .arg(&flags[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    for cmd in ["unsuspend", "close"] {
        fails_naming(
            &redis,
            &format!("campaign {cmd} --id lost"),
            "provision it again",
        );
    }
}

#[tokio::test]
async fn forget_removes_a_closed_drained_campaign_and_refuses_otherwise() {
    let redis = RedisServer::start().await;
    let id = common::unique("forget");
    ok_json(&redis, &format!("campaign create --id {id} --stock 3"));
    let store = common::store(&redis).await;
    let campaign = CampaignId::parse(&id).unwrap();
    let holder = UserId::parse("holder").unwrap();
    store.issue(&campaign, &holder).await.unwrap();
    let forget = format!("campaign forget --id {id}");
    fails_naming(&redis, &forget, "is open");
    ok_json(&redis, &format!("campaign close --id {id}"));
    // Nothing relays here: the coupon is still in the outbox, not yet in Kafka.
    fails_naming(&redis, &forget, "1 issuances");
    let show = format!("campaign show --id {id}");
    assert_eq!(
        ok_json(&redis, &show)["stock"]["issued"],
        1,
        "refusals change nothing"
    );
    let gone = ok_json(&redis, &format!("{forget} --force"));
    assert_eq!(gone["issued"], 1);
    assert!(gone["removedKeys"].as_u64().unwrap() > 0, "{gone}");
    assert!(store.snapshot(&campaign).await.unwrap().is_none());
    assert!(!store.registry().await.unwrap().contains(&id));
    fails_naming(&redis, &show, "not found");
    fails_naming(&redis, &forget, "not found");
    // What an interrupted cleanup can leave: the id in the registry, no campaign behind it.
    let _: () = redis::cmd("SADD")
        .arg(stampede_core::keys::REGISTRY)
        .arg(&id)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    ok_json(&redis, &forget);
    assert!(!store.registry().await.unwrap().contains(&id));

    // A load test's shadow never sold anything real: it goes open, once its outbox is empty.
    let shadow = campaign.shadow("smoke");
    store.ensure_campaign(&shadow, 10, None).await.unwrap();
    ok_json(&redis, &format!("campaign forget --id {shadow}"));
    assert!(store.snapshot(&shadow).await.unwrap().is_none());
    drop_topics(&stack_kafka(), &id);
}

#[test]
fn no_help_shows_a_credential_from_the_environment() {
    let bin = service_command()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let vars = [
        "STAMPEDE_REDIS_URL",
        "STAMPEDE_DATABASE_URL",
        "STAMPEDE_JWT_HS256_SECRET",
        "STAMPEDE_WAITING_ROOM_KEY",
    ];
    common::assert_no_help_shows(&bin, &vars, 15);
}
