//! The token settings the issuer verifies with and the load-test runners mint with: the
//! HS256 secret always by `secretKeyRef`, never as a value in a pod spec.

use serde_json::{Value, json};

use crate::validate::{AuthKeys, Plan};

/// The issuer's `STAMPEDE_AUTH` and `STAMPEDE_JWT_*` variables.
pub(crate) fn issuer_auth_env(plan: &Plan) -> Vec<Value> {
    let mut env = vec![json!({ "name": "STAMPEDE_AUTH", "value": "jwt" })];
    env.extend(claims(plan));
    env.push(match &plan.auth.keys {
        AuthKeys::Hs256 { name, key } => secret(name, key),
        AuthKeys::JwksUrl(url) => json!({ "name": "STAMPEDE_JWT_JWKS_URL", "value": url }),
    });
    if let Some(room) = &plan.waiting_room {
        // The queue and admission tokens' key: every replica signs and verifies with it.
        let (name, key) = &room.key;
        env.push(json!({
            "name": "STAMPEDE_WAITING_ROOM_KEY",
            "valueFrom": { "secretKeyRef": { "name": name, "key": key } },
        }));
    }
    env
}

/// A runner's `STAMPEDE_JWT_*` variables (k6-jobs/lib.js mints each user's token with
/// them); none without an HS256 secret.
pub(crate) fn runner_auth_env(plan: &Plan) -> Vec<Value> {
    match &plan.auth.keys {
        AuthKeys::Hs256 { name, key } => {
            let mut env = claims(plan);
            env.push(secret(name, key));
            env
        }
        AuthKeys::JwksUrl(_) => Vec::new(),
    }
}

fn claims(plan: &Plan) -> Vec<Value> {
    vec![
        json!({ "name": "STAMPEDE_JWT_ISSUER", "value": plan.auth.issuer }),
        json!({ "name": "STAMPEDE_JWT_AUDIENCE", "value": plan.auth.audience }),
    ]
}

fn secret(name: &str, key: &str) -> Value {
    json!({
        "name": "STAMPEDE_JWT_HS256_SECRET",
        "valueFrom": { "secretKeyRef": { "name": name, "key": key } },
    })
}
