//! A fake API server behind `tower_test::mock::pair`: it answers a `kube::Client` the way
//! kube-apiserver would for the calls reconcile makes (server-side apply echoes the
//! object, reads of what does not exist are 404) and records every request, so tests
//! assert on what the operator asked for.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::crd::CouponCampaign;

/// One request the operator made.
#[derive(Debug, Clone)]
pub(super) struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The body, as JSON (`Null` when empty).
    pub body: Value,
}

/// What the fake cluster holds besides the campaign.
#[derive(Debug, Clone, Default)]
pub(super) struct Cluster {
    /// The issuer and writer Deployments report every pod available.
    pub available: bool,
    /// Patches of this resource (e.g. `deployments`) are forbidden, as RBAC would.
    pub forbidden: Option<&'static str>,
    /// The Jobs there are: every list answers them all (whatever the selector).
    pub jobs: Vec<Value>,
}

/// The running fake; calls are recorded until it is dropped.
pub(super) struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// A client talking to a fake cluster holding `cc`.
    pub fn start(cc: &CouponCampaign, cluster: Cluster) -> (kube::Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let campaign = serde_json::to_value(cc).unwrap();
        let task = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let call = call(request).await;
                let (status, body) = answer(&call, &campaign, &cluster);
                recorded.lock().unwrap().push(call);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        (kube::Client::new(service, "default"), Self { calls, task })
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Requests with this method whose path ends with `suffix`.
    pub fn find(&self, method: Method, suffix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.ends_with(suffix))
            .collect()
    }

    /// The reasons of the events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.find(Method::POST, "/events")
            .iter()
            .map(|c| c.body["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The last status written.
    pub fn status(&self) -> Value {
        let writes = self.find(Method::PATCH, "/status");
        writes.last().expect("a status was written").body["status"].clone()
    }
}

async fn call(request: Request<Body>) -> Call {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    Call {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The answer kube-apiserver would give.
fn answer(call: &Call, campaign: &Value, cluster: &Cluster) -> (StatusCode, Value) {
    let name = call.path.rsplit('/').next().unwrap_or_default();
    let campaigns = call.path.contains("/couponcampaigns/");
    match call.method {
        Method::PATCH
            if cluster
                .forbidden
                .is_some_and(|r| call.path.contains(&format!("/{r}/"))) =>
        {
            let resource = cluster.forbidden.unwrap_or_default();
            (StatusCode::FORBIDDEN, forbidden(resource, name))
        }
        Method::PATCH if campaigns && call.path.ends_with("/status") => {
            let mut cc = campaign.clone();
            cc["status"] = call.body["status"].clone();
            (StatusCode::OK, cc)
        }
        // The finalizer's JSON patch: answer with the object as it was.
        Method::PATCH if campaigns => (StatusCode::OK, campaign.clone()),
        Method::PATCH => (StatusCode::OK, call.body.clone()),
        Method::POST => (StatusCode::CREATED, call.body.clone()),
        Method::GET if call.path.contains("/deployments/") && cluster.available => {
            (StatusCode::OK, deployment(name, campaign))
        }
        Method::GET if call.path.ends_with("/jobs") => (StatusCode::OK, list(&cluster.jobs)),
        Method::GET if call.path.ends_with("/pods") => (StatusCode::OK, list(&[])),
        Method::GET | Method::DELETE if call.path.contains("/jobs/") => {
            match cluster.jobs.iter().find(|j| j["metadata"]["name"] == name) {
                Some(job) => (StatusCode::OK, job.clone()),
                None => (StatusCode::NOT_FOUND, not_found(name)),
            }
        }
        _ => (StatusCode::NOT_FOUND, not_found(name)),
    }
}

fn list(items: &[Value]) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": items })
}

/// A Deployment the operator made: `campaign` owns it.
fn deployment(name: &str, campaign: &Value) -> Value {
    let owner = json!({
        "apiVersion": "stampede.dev/v1alpha1", "kind": "CouponCampaign",
        "name": campaign["metadata"]["name"], "uid": campaign["metadata"]["uid"],
        "controller": true,
    });
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "ownerReferences": [owner] },
        "spec": { "replicas": 1, "selector": {}, "template": {} },
        "status": { "availableReplicas": 1, "replicas": 1, "updatedReplicas": 1 },
    })
}

fn not_found(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!("{name} not found"),
        "reason": "NotFound",
        "code": 404,
    })
}

fn forbidden(resource: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!(
            "{resource} \"{name}\" is forbidden: User \"system:serviceaccount:stampede-system:stampede-operator\" cannot patch resource \"{resource}\""
        ),
        "reason": "Forbidden",
        "code": 403,
    })
}
