//! The HTTP API: routes, shared state and the metrics layer.

mod admission;
mod campaigns;
pub mod error;
mod identity;
pub mod limits;
mod queue;
pub mod scope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use admission::InFlight;
use error::{ApiError, Outcome};
use limits::LimitedBy;
pub use limits::Limits;
pub use queue::warn_rooms_without_key;

use crate::epoch::AckedSeqs;
use crate::metrics::Metrics;
use crate::soldout::SoldOutCache;
use stampede_core::store::Store;
use stampede_core::store::fence::ReplicaFence;

/// What every handler shares, behind one `Arc` so each extraction is one refcount bump.
pub type AppState = Arc<App>;

/// The shared parts of the service.
pub struct App {
    /// Redis.
    pub store: Store,
    /// With `--durability replica`: what a new coupon's answer waits for.
    pub fence: Option<ReplicaFence>,
    /// The highest seq answered per campaign (reported when Redis loses writes).
    pub acked: AckedSeqs,
    /// Campaigns answered sold-out from memory.
    pub soldout: SoldOutCache,
    /// Metrics.
    pub metrics: Metrics,
    /// The in-flight cap.
    pub in_flight: InFlight,
    /// Per-user and per-client budgets.
    pub limits: Limits,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive (408 after).
    pub body_timeout: Duration,
    /// How long a request may take from its headers to its answer.
    pub request_timeout: Duration,
    /// Verifies bearer tokens; `None` with `--auth none` (the body names the user).
    pub auth: Option<Arc<crate::auth::Verifier>>,
    /// The campaigns served and the ids behind the names in URLs.
    pub campaigns: scope::CampaignScope,
    /// Signs and verifies waiting-room tokens; `None`: rooms answer 503.
    pub waiting_room_key: Option<stampede_core::waiting_room::token::TokenKey>,
    /// Cancelled once the process was told to stop: /readyz then says 503 `draining`.
    pub draining: tokio_util::sync::CancellationToken,
}

/// Builds the public API router with the HTTP contract in the README.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/campaigns/{campaign}/issue", post(campaigns::issue))
        .route(
            "/v1/campaigns/{campaign}/queue",
            post(queue::join).get(queue::poll),
        )
        .route(
            "/v1/campaigns/{campaign}/users/{user}/coupon",
            get(campaigns::coupon),
        )
        .route(
            "/v1/campaigns/{campaign}/coupon",
            get(campaigns::own_coupon),
        )
        .route("/v1/campaigns/{campaign}", get(campaigns::show))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Builds the operations router for the listener of its own (`--metrics-listen`):
/// /metrics, /healthz and /readyz, never on the public port and never under the in-flight
/// cap (a probe is not shed when users flood the API).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    if st.draining.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down: send new requests to another replica",
        ));
    }
    st.store.ping().await?;
    Ok(match st.auth {
        Some(_) => "ready",
        None => crate::auth::INSECURE_READY,
    })
}

/// Whether a `/v1/campaigns/{c}/…` path names a load test's shadow campaign (its runners,
/// proven by their token, are exempt from the client budget).
fn is_shadow_route(path: &str) -> bool {
    path.strip_prefix("/v1/campaigns/")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|c| c.contains(stampede_core::ids::SHADOW_MARK))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Admits API requests under the in-flight cap, and records every request by route
/// template and outcome. One middleware for both keeps the hot path to a single layer.
async fn track(
    State(st): State<AppState>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = path.as_ref().map_or("unmatched", |p| p.as_str());
    // Everything on this router is API (operations have their own listener); unmatched
    // routes are answered 404 without a slot.
    let resp = if route.starts_with("/v1/") {
        admit(&st, req, next).await
    } else {
        next.run(req).await
    };
    let outcome = resp.extensions().get::<Outcome>().map_or_else(
        || {
            if resp.status().is_success() {
                "ok"
            } else {
                "error"
            }
        },
        |o| o.0,
    );
    let m = &st.metrics.http;
    m.requests.with_label_values(&[route, outcome]).inc();
    m.duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Reads the body first, bounded in size and time, and only then takes an in-flight slot:
/// a client trickling its body holds its own connection, never a slot others need. The
/// handler then runs under the slot until the request's overall deadline.
async fn admit(st: &App, req: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + st.request_timeout;
    let (mut parts, body) = req.into_parts();
    // A runner pod sends its whole stampede from one address, so a shadow campaign's
    // runner is exempt: once its token says it is one (the path alone is anyone's to write).
    // What the token says is kept for the handler, which then does not verify it again.
    let verified = (is_shadow_route(parts.uri.path()))
        .then(|| identity::verify(st, &parts.headers).ok())
        .flatten();
    let runner = verified.as_ref().is_some_and(|(_, shadows)| *shadows);
    if let Some(found) = verified {
        parts.extensions.insert(identity::Verified(found));
    }
    if !runner {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Err(wait) = st.limits.check_client(&parts.headers, peer) {
            return ApiError::rate_limited(LimitedBy::Client, wait, &st.metrics.http)
                .into_response();
        }
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A body declared too large is refused by the handler without being read.
    let body = if declared.is_some_and(|n| n > st.max_body_bytes) {
        body
    } else {
        match tokio::time::timeout(st.body_timeout, to_bytes(body, st.max_body_bytes)).await {
            Ok(Ok(bytes)) => Body::from(bytes),
            Ok(Err(_)) => return ApiError::payload_too_large(st.max_body_bytes).into_response(),
            Err(_) => return ApiError::body_timeout(st.body_timeout).into_response(),
        }
    };
    let req = Request::from_parts(parts, body);
    let Some(_slot) = st.in_flight.try_acquire(&st.metrics.http.in_flight) else {
        st.metrics.http.shed.inc();
        return ApiError::overloaded().into_response();
    };
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::request_timeout(st.request_timeout).into_response(),
    }
}
