//! Each process serves only its own campaigns: two campaigns on one Redis, each with its
//! own database, relay and writer (the real binaries, scoped the way the operator scopes
//! them). A relay never relays the other campaign; a writer's drift gauges never judge the
//! other campaign against the wrong database. Slow; needs `scripts/stack up`.

mod common;

use std::time::Duration;

use common::kit::free_port;
use common::pipeline::{Fixture, issue_range, provision, writer_config};
use common::role::Role;
use common::stack::{drop_topics, fresh_database, stack_database, wait_rows};
use common::unique;

/// One campaign's own relay and writer, as the operator deploys them.
struct Owner {
    campaign: String,
    db: String,
    relay_metrics: u16,
    writer_metrics: u16,
    _relay: Role,
    _writer: Role,
}

impl Owner {
    /// Starts `campaign`'s relay (only it) and writer (its topic into `db`).
    fn start(f: &Fixture, campaign: &str, db: String) -> Self {
        let (relay_metrics, writer_metrics) = (free_port(), free_port());
        let w = writer_config(&f.brokers, &db, campaign);
        let base = [
            ("STAMPEDE_KAFKA_BROKERS", f.brokers.clone()),
            ("STAMPEDE_REDIS_URL", f.redis.url()),
        ];
        let mut relay_env = base.to_vec();
        relay_env.push(("STAMPEDE_RELAY_CAMPAIGNS", campaign.to_owned()));
        relay_env.push(("STAMPEDE_RELAY_CONSUMER", format!("relay-{campaign}")));
        let relay_listen = format!("127.0.0.1:{relay_metrics}");
        let relay = Role::start(&["relay", "--metrics-listen", &relay_listen], &relay_env);
        let mut writer_env = base.to_vec();
        writer_env.push(("STAMPEDE_DATABASE_URL", db.clone()));
        writer_env.push(("STAMPEDE_WRITER_GROUP", w.group.clone()));
        writer_env.push(("STAMPEDE_WRITER_TOPICS", w.topics.clone()));
        writer_env.push(("STAMPEDE_AUDIT_INTERVAL_MS", "200".into()));
        writer_env.push(("STAMPEDE_UNPERSISTED_GRACE_SECS", "1".into()));
        let writer_listen = format!("127.0.0.1:{writer_metrics}");
        let writer = Role::start(&["writer", "--metrics-listen", &writer_listen], &writer_env);
        Self {
            campaign: campaign.to_owned(),
            db,
            relay_metrics,
            writer_metrics,
            _relay: relay,
            _writer: writer,
        }
    }
}

/// The metrics text on `port`, once it answers.
async fn metrics(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    common::eventually(&url.clone(), Duration::from_secs(20), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.ok()?.text().await.ok() }
    })
    .await
}

/// Waits until `owner`'s writer exports its campaign's unpersisted gauge at 0 and then
/// checks that none of its metrics mentions `other`.
async fn assert_only_its_own(owner: &Owner, other: &str) {
    let gauge = format!(
        "stampede_unpersisted_issuances{{campaign=\"{}\"}} 0",
        owner.campaign
    );
    let what = format!("{}'s writer reports its gauge at 0", owner.campaign);
    common::eventually(&what, Duration::from_secs(30), || async {
        metrics(owner.writer_metrics)
            .await
            .contains(&gauge)
            .then_some(())
    })
    .await;
    for (role, port) in [
        ("writer", owner.writer_metrics),
        ("relay", owner.relay_metrics),
    ] {
        let text = metrics(port).await;
        let foreign: Vec<&str> = text.lines().filter(|l| l.contains(other)).collect();
        assert!(
            foreign.is_empty(),
            "{}'s {role} serves {other} too: {foreign:?}",
            owner.campaign
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_campaigns_on_two_databases_each_served_only_by_its_own() {
    const N: usize = 300;
    let f = Fixture::new("own-a", N as u64, 1).await;
    let b = unique("own-b");
    provision(&f.store, &f.brokers, &b, N as u64, 1).await;
    let a = Owner::start(&f, &f.campaign, f.db.clone());
    let b = Owner::start(&f, &b, fresh_database(&stack_database()).await);

    issue_range(&f.store, &a.campaign, 0..N).await;
    issue_range(&f.store, &b.campaign, 0..N).await;
    for owner in [&a, &b] {
        let pool = stampede_core::db::connect(&owner.db, 1).await.unwrap();
        let rows = wait_rows(&pool, &owner.campaign, N as i64, Duration::from_secs(60)).await;
        assert_eq!(
            rows, N as i64,
            "{} lands in its own database",
            owner.campaign
        );
        let other = if owner.campaign == a.campaign {
            &b.campaign
        } else {
            &a.campaign
        };
        let strays = common::stack::count_rows(&pool, other).await;
        assert_eq!(
            strays, 0,
            "{other} never lands in {}'s database",
            owner.campaign
        );
    }
    assert_only_its_own(&a, &b.campaign).await;
    assert_only_its_own(&b, &a.campaign).await;
    drop_topics(&f.brokers, &b.campaign);
}
