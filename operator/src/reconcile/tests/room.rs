//! `spec.waitingRoom` through reconcile: the room set in Redis, the issuers' token key from a
//! Secret, the status counters, and a room taken out of the spec turned off.

use http::Method;
use serde_json::Value;

use super::pipeline::{ready, reconciled};
use crate::backends::fake::FakeBackends;

const ROOM: &str = "  waitingRoom: {maxActive: 40, admitPerSecond: 20, sessionTtl: 90s}\n";

fn issuer_env(api: &super::apiserver::ApiServer) -> Vec<Value> {
    let applied = api.find(Method::PATCH, "deployments/spring-sale-issuer");
    let body = &applied.last().expect("the issuer applied").body;
    body["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_room_in_the_spec_is_set_in_redis_keyed_from_a_secret_and_reported() {
    let fake = FakeBackends::default();
    let (result, api, _) = reconciled(ROOM, ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    let room = fake.state().rooms["shop.spring-sale"];
    assert!(room.enabled);
    assert_eq!((room.max_active, room.admit_per_second), (40, 20));
    assert_eq!(room.session_ttl.as_secs(), 90);
    let env = issuer_env(&api);
    let key = env
        .iter()
        .find(|e| e["name"] == "STAMPEDE_WAITING_ROOM_KEY")
        .expect("the issuers get the room's key");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "stampede-auth");
    assert!(
        key.get("value").is_none(),
        "never a plain value in a pod spec"
    );
    let status = api.status();
    assert_eq!(status["waitingRoom"]["queued"], 0, "{status}");
}

#[tokio::test]
async fn a_room_taken_out_of_the_spec_is_turned_off() {
    let fake = FakeBackends::default();
    let (first, _, _) = reconciled(ROOM, ready(), &fake).await;
    assert!(first.is_ok(), "{first:?}");
    let (result, api, _) = reconciled("", ready(), &fake).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!fake.state().rooms["shop.spring-sale"].enabled);
    assert!(api.status().get("waitingRoom").is_none());
    assert!(
        !issuer_env(&api)
            .iter()
            .any(|e| e["name"] == "STAMPEDE_WAITING_ROOM_KEY")
    );
}
