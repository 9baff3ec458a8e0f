//! Tenant isolation on a real control plane with the stack's real Redis and Kafka: two
//! namespaces each with a campaign of the same name get their own stock, topics and
//! issuance, each issuer serves only its own, and deleting one (deletionPolicy Delete)
//! leaves the other whole; created again, with the deleted one's rows kept in
//! PostgreSQL, it takes a fresh id.

mod common;

use std::time::Duration;

use common::*;
use kube::api::DeleteParams;
use stampede_core::ids::{CampaignId, UserId};
use stampede_operator::crd::{CouponCampaignStatus, Phase};

fn spec(stock: u32) -> String {
    format!(
        "apiVersion: stampede.dev/v1alpha1\nkind: CouponCampaign\nmetadata: {{name: x}}\n\
         spec: {{stock: {stock}, deletionPolicy: Delete, issuer: {{minReplicas: 1}}}}\n"
    )
}

fn issued(s: &CouponCampaignStatus) -> i64 {
    s.stock.as_ref().map_or(-1, |st| st.issued)
}

/// The value of env `name` in the first container of Deployment `deployment`.
async fn env_of(c: &Cluster, deployment: &str, name: &str) -> Option<String> {
    let d = c.deployments().get(deployment).await.unwrap();
    let pod = d.spec.template.spec?;
    let env = pod.containers.into_iter().next()?.env?;
    env.into_iter().find(|e| e.name == name)?.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_campaigns_in_two_namespaces_never_touch() {
    let a = Cluster::start().await;
    let b = a.tenant().await;
    let name = unique("flash");
    let (ida, idb) = (a.id(&name), b.id(&name));
    let _forget = (Forget(ida.clone()), Forget(idb.clone()));
    let op = a.operator();
    a.create(&name, &spec(5)).await.unwrap();
    b.create(&name, &spec(7)).await.unwrap();
    for (c, id) in [(&a, &ida), (&b, &idb)] {
        c.mark_campaign_available(&name).await;
        let s = c
            .status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
            .await;
        assert_eq!(s.campaign_id.as_deref(), Some(id.as_str()));
        let issuer = format!("{name}-issuer");
        let served = env_of(c, &issuer, "STAMPEDE_CAMPAIGNS").await;
        assert_eq!(served, Some(format!("{name}={id}")), "serves only its own");
        assert!(partitions(&format!("stampede.{id}")).await > 0, "own topic");
    }
    assert_eq!(snapshot(&ida).await.unwrap().total, 5);
    assert_eq!(snapshot(&idb).await.unwrap().total, 7);

    // Both issue, each from its own stock; then A's campaign is deleted with its data.
    let store = store().await;
    for (id, users) in [(&ida, 2), (&idb, 3)] {
        let id = CampaignId::parse(id).unwrap();
        for u in 0..users {
            let user = UserId::parse(&format!("u{u}")).unwrap();
            store.issue(&id, &user).await.unwrap();
        }
    }
    a.status_until(&name, "2 issued", |s| issued(s) == 2).await;
    b.status_until(&name, "3 issued", |s| issued(s) == 3).await;

    deleted_with_its_outbox_drained(&a, &name, [&ida, &idb]).await;
    assert!(snapshot(&ida).await.is_none(), "A's keys deleted");
    eventually("A's topic deleted", Duration::from_secs(30), || {
        let t = format!("stampede.{ida}");
        async move { (partitions(&t).await == 0).then_some(()) }
    })
    .await;

    // B's campaign is whole: stock, holders, topic, status.
    let snap = snapshot(&idb).await.expect("B's keys kept");
    assert_eq!((snap.total, snap.issued), (7, 3));
    assert!(
        partitions(&format!("stampede.{idb}")).await > 0,
        "B's topic kept"
    );
    let s = b.campaigns().get(&name).await.unwrap().status.unwrap();
    assert_eq!((s.phase, issued(&s)), (Some(Phase::Open), 3));
    created_again_under_a_fresh_id(&a, &name, &ida).await;
    op.stop().await;
}

/// A's campaign created again, PostgreSQL keeping the deleted one's rows (its writer
/// wrote them before the deletion went ahead): under its id the new rows would be refused
/// as the old ones', so it gets `<id>.2`, its own stock, topic and issuers.
async fn created_again_under_a_fresh_id(a: &Cluster, name: &str, old: &str) {
    migrate_stack_database().await;
    let pool = stampede_core::db::connect(&stack_defaults().database_url, 1)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM coupon_issuances WHERE campaign = $1")
        .bind(old)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "the deleted campaign's writer left its rows");
    let fresh = format!("{old}.2");
    let _forget = Forget(fresh.clone());
    a.create(name, &spec(5)).await.unwrap();
    a.mark_campaign_available(name).await;
    let s = a
        .status_until(name, "Open again", |s| s.phase == Some(Phase::Open))
        .await;
    assert_eq!(s.campaign_id.as_deref(), Some(fresh.as_str()));
    let served = env_of(a, &format!("{name}-issuer"), "STAMPEDE_CAMPAIGNS").await;
    assert_eq!(served, Some(format!("{name}={fresh}")));
    assert!(
        partitions(&format!("stampede.{fresh}")).await > 0,
        "own topic"
    );
    assert_eq!(snapshot(&fresh).await.unwrap().total, 5);
    a.events_until(name, &["FreshId"]).await;
    let cleanup = "DELETE FROM coupon_issuances WHERE campaign = $1 OR campaign = $2";
    sqlx::query(cleanup)
        .bind(old)
        .bind(&fresh)
        .execute(&pool)
        .await
        .unwrap();
}

/// Deletes `name` of `c` (deletionPolicy Delete) while a relay and a writer take the issuances of
/// `ids`, and waits until the object is gone.
async fn deleted_with_its_outbox_drained(c: &Cluster, name: &str, ids: [&String; 2]) {
    let pipeline = StackPipeline::start(ids.map(String::clone).into());
    c.campaigns()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    gone_from_the_api(c, "the campaign gone", name, Duration::from_secs(40)).await;
    pipeline.stop().await;
}
