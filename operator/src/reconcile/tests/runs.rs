//! Load-test runs through reconcile when the status it reads is behind: a test taken out
//! of the spec right after the reconcile that started it, before that reconcile's status
//! write reached the cache, still has its runners stopped, its shadow forgotten and its
//! stop told; a run under way is read, not applied again.

use http::Method;
use serde_json::{Value, json};
use stampede_core::ids::CampaignId;

use super::apiserver::{ApiServer, Cluster};
use super::pipeline::{CAMPAIGN, provisioned, ready, reconcile_once};
use crate::backends::fake::FakeBackends;
use crate::backends::{Shape, Stock};
use crate::crd::{CouponCampaignStatus, LoadTestStatus};
use crate::loadtest::{RUN_LABEL, SEGMENT_LABEL, TEST_LABEL, run_id};
use crate::validate::tests::{defaults, from_yaml};
use crate::validate::{CAMPAIGN_LABEL, validate};

/// `spring-sale`'s spec at generation 2, which took test `drop` out and kept `keep`.
const KEEP_ONLY: &str = "  loadTests:\n  - {name: keep, profile: smoke, duration: 60s}\n";

/// An unfinished runner Job of `test`'s run `run`, as the API server lists it.
fn runner(test: &str, run: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("spring-sale-{run}-0"),
            "namespace": "shop",
            "labels": {
                CAMPAIGN_LABEL: "spring-sale",
                TEST_LABEL: test,
                RUN_LABEL: run,
                SEGMENT_LABEL: "0",
            },
        },
        "status": { "active": 1 },
    })
}

#[tokio::test]
async fn a_test_taken_out_before_its_start_was_recorded_is_stopped_forgotten_and_told_once() {
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    let mut cc = from_yaml(&format!("{CAMPAIGN}{KEEP_ONLY}"));
    cc.metadata.generation = Some(2);
    let keep_run = run_id(&validate(&cc, &defaults()).unwrap(), &cc.spec.load_tests[0]);
    let keep_running = LoadTestStatus {
        name: "keep".into(),
        run: keep_run.clone(),
        phase: "Running".into(),
        segments: 1,
        ..Default::default()
    };
    let drop_running = LoadTestStatus {
        name: "drop".into(),
        run: "drop-0000beef".into(),
        ..keep_running.clone()
    };
    // What the cache may hold: the status before the write that recorded both runs (none
    // yet, or `keep` alone from an earlier write), the spec already without `drop`; or that
    // write itself, when it was in time.
    let reads = [
        vec![],
        vec![keep_running.clone()],
        vec![keep_running, drop_running],
    ];
    for read in reads {
        cc.status = Some(CouponCampaignStatus {
            observed_generation: Some(1),
            load_tests: read,
            ..Default::default()
        });
        let fake = provisioned().await;
        for test in ["keep", "drop"] {
            let shadow = id.shadow(test);
            fake.ensure_campaign(&shadow, 100, None, Shape::default())
                .await
                .unwrap();
        }
        let cluster = Cluster {
            jobs: vec![runner("keep", &keep_run), runner("drop", "drop-0000beef")],
            ..ready()
        };
        let (result, api, _) = reconcile_once(cc.clone(), cluster, &fake).await;
        assert!(result.is_ok(), "{result:?}");
        drop_stopped_forgotten_and_told_once(&api, &fake, &keep_run);
    }
}

/// `drop`'s runner deleted (`keep`'s not), its shadow gone (`keep`'s kept), one
/// `LoadTestStopped` for it, and the status with `keep`'s run alone.
fn drop_stopped_forgotten_and_told_once(api: &ApiServer, fake: &FakeBackends, keep_run: &str) {
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    let deleted: Vec<String> = api
        .find(Method::DELETE, "")
        .into_iter()
        .map(|c| c.path)
        .collect();
    assert_eq!(
        deleted,
        ["/apis/batch/v1/namespaces/shop/jobs/spring-sale-drop-0000beef-0"]
    );
    let campaigns = &fake.state().campaigns;
    assert!(
        !campaigns.contains_key(id.shadow("drop").as_str()),
        "drop's shadow forgotten"
    );
    assert!(
        campaigns.contains_key(id.shadow("keep").as_str()),
        "keep's run goes on"
    );
    let stopped: Vec<_> = api
        .find(Method::POST, "/events")
        .into_iter()
        .filter(|c| c.body["reason"] == "LoadTestStopped")
        .map(|c| c.body["note"].clone())
        .collect();
    let note = "load test drop stopped unjudged: run drop-0000beef, taken out of the spec";
    assert_eq!(stopped, [note], "told once, from its Job");
    let runs = api.status()["loadTests"].clone();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["run"], keep_run);
}

/// One reconcile of the spec that names `keep` alone, its run's runner Job (changed by
/// `job`) in the cluster and its shadow in Redis; the API server seen, and the run id.
async fn reconcile_keep_with(job: impl FnOnce(&mut Value)) -> (ApiServer, String) {
    let id = CampaignId::parse("shop.spring-sale").unwrap();
    let cc = from_yaml(&format!("{CAMPAIGN}{KEEP_ONLY}"));
    let run = run_id(&validate(&cc, &defaults()).unwrap(), &cc.spec.load_tests[0]);
    let fake = provisioned().await;
    fake.ensure_campaign(&id.shadow("keep"), 100, None, Shape::default())
        .await
        .unwrap();
    let mut runner = runner("keep", &run);
    job(&mut runner);
    let cluster = Cluster {
        jobs: vec![runner],
        ..ready()
    };
    let (result, api, _) = reconcile_once(cc, cluster, &fake).await;
    assert!(result.is_ok(), "{result:?}");
    (api, run)
}

/// A run under way is left as it is: its Jobs are not applied again (their pod template
/// cannot change, and one an earlier operator made, with another runner image, would be
/// refused), only read.
#[tokio::test]
async fn the_jobs_of_a_run_under_way_are_not_applied_again() {
    let (api, run) = reconcile_keep_with(|_| {}).await;
    let applied: Vec<String> = (api.calls().into_iter())
        .filter(|c| c.method == Method::PATCH && c.path.contains("/jobs/"))
        .map(|c| c.path)
        .collect();
    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(api.status()["loadTests"][0]["run"], run);
}

/// A runner that completed, whose pod (and with it the summary it ended with) a node drain
/// removed: the segment is an Error, not a run left unjudged until its Job expires and
/// then run again.
#[tokio::test]
async fn a_completed_runner_whose_pod_is_gone_is_an_error_not_a_wait() {
    let (api, _) = reconcile_keep_with(|job| {
        job["status"] = json!({ "conditions": [{ "type": "Complete", "status": "True" }] });
    })
    .await;
    let judged = &api.status()["loadTests"][0];
    assert_eq!(judged["verdict"], "Error", "{judged}");
    let reason = judged["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("removed before the operator read it"),
        "{reason}"
    );
}
