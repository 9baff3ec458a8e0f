//! A campaign created under the name of one deleted before whose rows PostgreSQL keeps
//! takes the id's next free form, pins it, and keeps it; one whose Secrets are missing
//! pins nothing until it can look.

use super::apiserver::Cluster;
use super::pipeline::{CAMPAIGN, provisioned, reconcile_once};
use crate::backends::fake::FakeBackends;
use crate::validate::tests::from_yaml;

/// The pipeline's campaign, created at a known time, with `status` (YAML, may be empty).
fn created(status: &str) -> crate::crd::CouponCampaign {
    let yaml = CAMPAIGN.replace(
        "  generation: 1\n",
        "  generation: 1\n  creationTimestamp: '2026-12-01T00:00:00Z'\n",
    );
    from_yaml(&format!("{yaml}{status}"))
}

#[tokio::test]
async fn a_campaign_created_again_takes_the_next_free_id_and_keeps_it() {
    let fake = FakeBackends::default();
    fake.state().rows_before = vec!["shop.spring-sale".into(), "shop.spring-sale.2".into()];
    let (result, api, _) = reconcile_once(created(""), Cluster::default(), &fake).await;
    result.unwrap();
    assert_eq!(api.status()["campaignId"], "shop.spring-sale.3");
    assert!(fake.state().topics.contains_key("shop.spring-sale.3"));
    assert!(fake.state().campaigns.contains_key("shop.spring-sale.3"));
    assert!(!fake.state().topics.contains_key("shop.spring-sale"));
    assert!(api.event_reasons().contains(&"FreshId".to_owned()));
    // Pinned: later reconciles keep it, whatever PostgreSQL now holds.
    fake.state().rows_before.push("shop.spring-sale.3".into());
    let pinned = created("status: {campaignId: shop.spring-sale.3}\n");
    let (result, api, _) = reconcile_once(pinned, Cluster::default(), &fake).await;
    result.unwrap();
    assert_eq!(api.status()["campaignId"], "shop.spring-sale.3");
}

#[tokio::test]
async fn a_fresh_name_keeps_its_id() {
    let fake = FakeBackends::default();
    fake.state().rows_before = vec!["shop.other".into()];
    let (result, api, _) = reconcile_once(created(""), Cluster::default(), &fake).await;
    result.unwrap();
    assert_eq!(api.status()["campaignId"], "shop.spring-sale");
    assert!(!api.event_reasons().contains(&"FreshId".to_owned()));
}

#[tokio::test]
async fn without_its_secrets_a_campaign_pins_no_id() {
    let fake = FakeBackends::default();
    fake.state().rows_before = vec!["shop.spring-sale".into()];
    let spec = "  redis: {secretRef: {name: backends, key: redis-url}}\n";
    let cc = created(spec);
    let (_, api, _) = reconcile_once(cc, Cluster::default(), &fake).await;
    assert_eq!(api.status()["campaignId"], serde_json::Value::Null);
    assert!(fake.state().topics.is_empty() && fake.state().campaigns.is_empty());
}

/// Deleting, under `Delete`, a campaign created again that never pinned an id leaves the
/// data a campaign of its name deleted before (and retained) left under the plain id.
#[tokio::test]
async fn deleting_an_unpinned_campaign_created_again_leaves_the_old_ones_data() {
    let fake = provisioned().await;
    fake.state().rows_before = vec!["shop.spring-sale".into()];
    let cc = CAMPAIGN.replace(
        "  generation: 1\n",
        "  generation: 1\n  creationTimestamp: '2026-12-01T00:00:00Z'\n  \
         deletionTimestamp: '2026-12-02T00:00:00Z'\n",
    );
    let cc = from_yaml(&format!("{cc}  deletionPolicy: Delete\n"));
    let (result, _, _) = reconcile_once(cc, Cluster::default(), &fake).await;
    result.unwrap();
    let state = fake.state();
    assert!(
        state.campaigns.contains_key("shop.spring-sale"),
        "the old stock kept"
    );
    assert_eq!(state.topics["shop.spring-sale"], 6, "the old topics kept");
    assert!(
        !state.campaigns["shop.spring-sale"].closed,
        "the old one untouched"
    );
}

/// Once PostgreSQL said the plain id is taken, an id it could not be asked about is not
/// settled on: the reconcile fails, to look again, and provisions nothing.
#[tokio::test]
async fn a_taken_id_is_never_settled_on() {
    let fake = FakeBackends::default();
    fake.state().rows_before = vec!["shop.spring-sale".into()];
    fake.state().rows_unreadable = vec!["shop.spring-sale.2".into()];
    let (result, _, _) = reconcile_once(created(""), Cluster::default(), &fake).await;
    assert!(result.is_err());
    assert!(fake.state().topics.is_empty() && fake.state().campaigns.is_empty());
}

/// A campaign deleted before whose data was kept (`Retain`, or a `Delete` whose drain timed
/// out) and that never wrote a row: closed in Redis, its holders and issued count there.
/// One created again under its name starts afresh under the next id, not closed, its stock
/// its own; an open campaign under the id (this one's, its status not yet written) is kept.
#[tokio::test]
async fn a_closed_campaign_kept_in_redis_is_not_taken_over() {
    use crate::backends::{Shape, Stock};
    use stampede_core::campaign::AdminAction;
    use stampede_core::ids::CampaignId;
    let fake = FakeBackends::default();
    let old = CampaignId::parse("shop.spring-sale").unwrap();
    fake.ensure_campaign(&old, 500, None, Shape::default())
        .await
        .unwrap();
    let (result, _, _) = reconcile_once(created(""), Cluster::default(), &fake).await;
    result.unwrap();
    assert!(
        !fake.state().campaigns.contains_key("shop.spring-sale.2"),
        "open: this campaign's own, kept"
    );
    fake.admin(&old, AdminAction::Close).await.unwrap();
    let (result, api, _) = reconcile_once(created(""), Cluster::default(), &fake).await;
    result.unwrap();
    assert_eq!(api.status()["campaignId"], "shop.spring-sale.2");
    let fresh = fake.state().campaigns["shop.spring-sale.2"].clone();
    assert!(!fresh.closed && fresh.issued == 0, "{fresh:?}");
    assert!(api.event_reasons().contains(&"FreshId".to_owned()));
}
