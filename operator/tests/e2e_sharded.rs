//! A sharded campaign (`spec.shards`) through the operator on a real control plane and the
//! stack's Redis (its cluster with `make test-cluster`): the buckets are provisioned, stock
//! sold in any bucket reaches the status, a restock is shared out, the API server refuses
//! a change of `shards`, and `deletionPolicy: Delete` removes every bucket.

mod common;

use std::time::Duration;

use common::*;
use kube::api::DeleteParams;
use serde_json::json;
use stampede_core::ids::{CampaignId, UserId};
use stampede_operator::crd::Phase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_campaign_is_provisioned_sold_restocked_and_deleted_with_its_buckets() {
    let c = Cluster::start().await;
    let name = unique("shards");
    let _forget = Forget(c.id(&name));
    let op = c.operator();
    let yaml = minimal_campaign(9).replace("spec: {", "spec: {shards: 3, deletionPolicy: Delete, ");
    c.create(&name, &yaml).await.unwrap();
    c.mark_campaign_available(&name).await;
    c.status_until(&name, "Open", |s| s.phase == Some(Phase::Open))
        .await;
    let store = store().await;
    let id = CampaignId::parse(&c.id(&name)).unwrap();
    let buckets = store.buckets(&id).await.unwrap().expect("three buckets");
    assert_eq!(buckets.len(), 3);
    for i in 0..12 {
        store
            .issue(&id, &UserId::parse(&format!("u{i}")).unwrap())
            .await
            .unwrap();
    }
    let s = c
        .status_until(&name, "SoldOut", |s| s.phase == Some(Phase::SoldOut))
        .await;
    assert_eq!(s.stock.unwrap().issued, 9, "all of it, from every bucket");
    c.patch_spec(&name, json!({ "stock": 15 })).await.unwrap();
    let s = c
        .status_until(&name, "restocked and Open", |s| {
            s.phase == Some(Phase::Open) && s.stock.as_ref().is_some_and(|st| st.total == 15)
        })
        .await;
    assert_eq!(s.stock.unwrap().remaining, 6);
    let ledger = store.shard_ledger(&id).await.unwrap().unwrap();
    assert!(ledger.problems.is_empty(), "{ledger:?}");
    assert_eq!(ledger.stock, 15);

    let refused = c
        .patch_spec(&name, json!({ "shards": 2 }))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("shards is fixed"), "{refused}");
    deleted_with_its_buckets(&c, &name, &id, &buckets[0]).await;
    op.stop().await;
}

/// `deletionPolicy: Delete` removes the campaign and every bucket once their outboxes
/// are in PostgreSQL: a relay and a writer (scoped to this campaign) take them there.
async fn deleted_with_its_buckets(c: &Cluster, name: &str, id: &CampaignId, first: &CampaignId) {
    c.campaigns()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let pipeline = StackPipeline::start([id.to_string()].into());
    let store = store().await;
    eventually("the buckets gone", Duration::from_secs(60), || {
        let (store, id, first) = (store.clone(), id.clone(), first.clone());
        async move {
            let left = store.buckets(&id).await.ok()?;
            let snap = store.snapshot(&first).await.ok()?;
            (left.is_none() && snap.is_none()).then_some(())
        }
    })
    .await;
    pipeline.stop().await;
}
