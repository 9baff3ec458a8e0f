//! Names of a load test's run, shadow campaign, runner Jobs and scripts ConfigMap, and
//! how k6 splits a run into execution segments.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::build::runner_auth_env;
use crate::crd::{DEFAULT_AUTH_SECRET, DEFAULT_AUTH_SECRET_KEY, DEFAULT_TOKEN_CLAIM, LoadTestSpec};
use crate::validate::{AuthKeys, Plan};

/// The run id: the test's name and a hash of everything that shapes the run, so the same
/// spec always names the same Jobs and a changed one (or a new `runId`) starts a new run:
/// the test, the stock, and what the runners meet besides (the waiting room the shadow
/// gets, the tokens they sign); those two are hashed only when there or not the defaults,
/// so that the runs of campaigns without them kept their ids.
pub(crate) fn run_id(plan: &Plan, test: &LoadTestSpec) -> String {
    let mut h = DefaultHasher::new();
    (plan.campaign.as_str(), plan.stock).hash(&mut h);
    serde_json::to_string(test).unwrap_or_default().hash(&mut h);
    if let Some(room) = plan.waiting_room.as_ref().filter(|w| w.config.enabled) {
        serde_json::to_string(&room.config)
            .unwrap_or_default()
            .hash(&mut h);
    }
    if !default_auth(plan) {
        let auth = runner_auth_env(plan);
        serde_json::to_string(&auth)
            .unwrap_or_default()
            .hash(&mut h);
    }
    format!("{}-{:08x}", test.name, h.finish() as u32)
}

/// Whether the runners sign as every campaign does that names no `spec.auth`.
fn default_auth(plan: &Plan) -> bool {
    let a = &plan.auth;
    a.issuer == DEFAULT_TOKEN_CLAIM
        && a.audience == DEFAULT_TOKEN_CLAIM
        && matches!(&a.keys, AuthKeys::Hs256 { name, key }
            if name == DEFAULT_AUTH_SECRET && key == DEFAULT_AUTH_SECRET_KEY)
}

/// Name of a runner Job (at most 63 characters: it becomes a label value).
pub(crate) fn job_name(plan: &Plan, run: &str, segment: i32) -> String {
    let tail = format!("-{run}-{segment}");
    let keep = 63usize.saturating_sub(tail.len());
    let base: String = plan.name.chars().take(keep).collect();
    format!("{}{tail}", base.trim_end_matches(['.', '-']))
}

/// Name of the scripts ConfigMap.
pub(crate) fn config_map_name(plan: &Plan) -> String {
    format!("{}-k6", plan.name)
}

/// k6 execution segments for `n` runners, and the sequence they come from.
pub(crate) fn segments(n: i32) -> (Vec<String>, String) {
    let n = n.max(1);
    let point = |i: i32| match i {
        0 => "0".to_owned(),
        i if i == n => "1".to_owned(),
        i => format!("{i}/{n}"),
    };
    let segs = (0..n)
        .map(|i| format!("{}:{}", point(i), point(i + 1)))
        .collect();
    let seq = (0..=n).map(point).collect::<Vec<_>>().join(",");
    (segs, seq)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::run_id;
    use crate::loadtest::{DEFAULT_K6_IMAGE, jobs};
    use crate::validate::tests::{defaults, from_yaml};
    use crate::validate::validate;

    /// What the runners meet besides the test names a new run: a Job's pod template cannot
    /// change under the same name (the API server refuses), and a verdict against a shadow
    /// without the campaign's waiting room, or with other tokens, says nothing of it.
    #[test]
    fn run_ids_change_with_the_waiting_room_and_the_tokens_and_only_then() {
        let with = |extra: &str| {
            let cc = from_yaml(&format!(
                "
metadata: {{name: spring-sale, namespace: shop}}
spec:
  stock: 1200
{extra}
  loadTests:
  - {{name: preflight, profile: peak, parallelism: 3, rate: 900, duration: 2m, gate: true}}
"
            ));
            let plan = validate(&cc, &defaults()).unwrap();
            let test = cc.spec.load_tests[0].clone();
            let jobs = jobs(
                &plan,
                &test,
                "r",
                &OwnerReference::default(),
                DEFAULT_K6_IMAGE,
            );
            (run_id(&plan, &test), jobs, plan, test)
        };
        let (id, plain_jobs, plan, test) = with("");
        let old = {
            // The id before the waiting room and the tokens were hashed: unchanged for a
            // campaign that has neither (no run starts again on the operator's upgrade).
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            (plan.campaign.as_str(), plan.stock).hash(&mut h);
            serde_json::to_string(&test).unwrap().hash(&mut h);
            format!("{}-{:08x}", test.name, h.finish() as u32)
        };
        assert_eq!(id, old);
        for extra in [
            "  waitingRoom: {maxActive: 100, admitPerSecond: 50}",
            "  auth: {audience: shop-app}",
            "  auth: {hs256SecretRef: {name: shop-auth, key: k}}",
        ] {
            let (other, other_jobs, _, _) = with(extra);
            assert_ne!(other, id, "{extra}");
            let template = |j: &[Job]| serde_json::to_value(&j[0].spec.as_ref().unwrap().template);
            assert_ne!(
                template(&other_jobs).unwrap(),
                template(&plain_jobs).unwrap(),
                "{extra}"
            );
        }
    }
}
