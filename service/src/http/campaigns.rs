//! Campaign routes: issue, look up a coupon, show a campaign.

use axum::Json;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, Outcome, Segments};
use super::limits::LimitedBy;
use super::{App, AppState, identity, queue};
use stampede_core::coupon::Decision;
use stampede_core::ids::{CampaignId, UserId};

#[derive(Deserialize)]
struct IssueRequest {
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

/// The campaign a URL names, as clients name it and its id (what the data is kept under),
/// and who asks (the token's user; `None` with `--auth none`). Who asks is settled before
/// anything reaches Redis. 404 `campaign_not_found` for a campaign this issuer does not
/// serve, and for a load test's shadow campaign unless a load-test runner's token asks:
/// users never issue from one.
pub(super) fn campaign_and_caller(
    st: &App,
    raw: &str,
    parts: &Parts,
) -> Result<(CampaignId, CampaignId, Option<UserId>), ApiError> {
    let name = CampaignId::parse(raw)?;
    let (caller, shadows) = identity::caller(st, parts)?;
    let id = served(st, &name, shadows)?;
    Ok((name, id, caller))
}

/// The id behind `name`, if this issuer serves it (shadows only when `shadows`).
fn served(st: &App, name: &CampaignId, shadows: bool) -> Result<CampaignId, ApiError> {
    let id = (shadows || !name.is_load_test_shadow())
        .then(|| st.campaigns.resolve(name))
        .flatten();
    id.ok_or_else(|| stampede_core::Error::CampaignNotFound(name.to_string()).into())
}

/// Counts a request of `user` against its budget: 429 past it, before Redis is asked.
pub(super) fn check_user_budget(st: &App, user: &UserId) -> Result<(), ApiError> {
    st.limits
        .check_user(user.as_str())
        .map_err(|wait| ApiError::rate_limited(LimitedBy::User, wait, &st.metrics.http))
}

/// `POST /v1/campaigns/{c}/issue`.
pub async fn issue(
    State(st): State<AppState>,
    Segments(campaign): Segments<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (name, campaign, caller) = campaign_and_caller(&st, &campaign, &parts)?;
    let claimed =
        read_issue_request(&parts.headers, body, st.max_body_bytes, caller.is_some()).await?;
    let user = identity::issue_user(caller, claimed)?;
    // Before the budget: 410 says stop where 429 says retry, and the budget guards Redis,
    // which this answer never reaches (a holder's does, and is counted below).
    if let Some(body) = st.soldout.answer(&campaign, &user) {
        return Ok(sold_out_from_memory(body));
    }
    check_user_budget(&st, &user)?;
    let admission = queue::Admission::from_headers(&st, &parts.headers, &campaign, &user);
    let decisions = &st.metrics.issuance.decisions;
    let routed = st
        .store
        .issue_routed(&campaign, &user, admission.expires_ms, |target| {
            st.acked.handed(target.as_str())
        })
        .await?;
    let (decision, incarnation) = (routed.decision, routed.incarnation);
    let label = decision.label();
    if !matches!(decision, Decision::Unknown) {
        decisions
            .with_label_values(&[campaign.as_str(), label])
            .inc();
    }
    let (status, record) = match decision {
        Decision::Issued(r) => (StatusCode::CREATED, r),
        Decision::Already(r) => (StatusCode::OK, r),
        Decision::SoldOut(_) => {
            st.soldout.mark(&campaign, || sold_out(&name).body_bytes());
            return Err(sold_out(&name));
        }
        Decision::NotOpen => return Err(conflict("not_open", &name, "has not opened yet")),
        Decision::Closed => return Err(conflict("closed", &name, "is closed")),
        Decision::Paused => return Err(conflict("paused", &name, "is paused")),
        Decision::Suspended => return Err(suspended(&name)),
        Decision::AdmissionRequired => return Err(admission.refused(&st, &name)),
        Decision::Unknown | Decision::Sharded(_) => {
            return Err(stampede_core::Error::CampaignNotFound(name.to_string()).into());
        }
    };
    // An answer that hands out a coupon (new, or again after a 503) waits for the replicas.
    if let Some(fence) = &st.fence {
        fence.wait(&routed.target).await?;
    }
    if let Some(counter) = routed.counter {
        st.acked
            .record(routed.target.as_str(), &incarnation, counter);
    }
    let coupon = record.into_coupon(name.as_str(), user.as_str());
    let mut resp = (status, Json(coupon)).into_response();
    resp.extensions_mut().insert(Outcome(label));
    Ok(resp)
}

/// Checks content type and size, then parses `{"userId": …}`; the user id it names, if
/// any. With a token the body may be empty (and then needs no content type).
pub(super) async fn read_issue_request(
    headers: &HeaderMap,
    body: Body,
    max_body: usize,
    has_token: bool,
) -> Result<Option<String>, ApiError> {
    let too_large = || ApiError::payload_too_large(max_body);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large());
    }
    let bytes = to_bytes(body, max_body).await.map_err(|_| too_large())?;
    if has_token && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    let req: IssueRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("body must be {{\"userId\": \"…\"}}: {e}")))?;
    Ok(req.user_id)
}

pub(super) fn sold_out(campaign: &CampaignId) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "sold_out",
        format!("campaign {campaign} is sold out"),
    )
}

/// The 410 answered from memory: a cached body, nothing formatted per request.
fn sold_out_from_memory(body: Bytes) -> Response {
    let mut resp = (StatusCode::GONE, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut().insert(Outcome("sold_out"));
    resp
}

/// 503 `suspended`: Redis may have lost acknowledged coupons; nothing new is issued until
/// an admin has audited the campaign and lifted the suspension.
fn suspended(campaign: &CampaignId) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "suspended",
        format!("campaign {campaign} is suspended after a storage incident; retry later"),
    )
    .retry_after(30)
}

pub(super) fn conflict(code: &'static str, campaign: &CampaignId, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        code,
        format!("campaign {campaign} {what}"),
    )
}

/// `GET /v1/campaigns/{c}/users/{u}/coupon`: with tokens, only the token's own user.
pub async fn coupon(
    State(st): State<AppState>,
    Segments((campaign, user)): Segments<(String, String)>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (name, id, caller) = campaign_and_caller(&st, &campaign, &parts)?;
    let user = UserId::parse(&user)?;
    if caller.is_some_and(|c| c != user) {
        // Exactly the answer for a user without a coupon: no oracle for others' coupons.
        return Err(not_issued(&name, &user));
    }
    lookup(&st, (name, id), user).await
}

/// `GET /v1/campaigns/{c}/coupon`: the token's own coupon.
pub async fn own_coupon(
    State(st): State<AppState>,
    Segments(campaign): Segments<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (name, id, caller) = campaign_and_caller(&st, &campaign, &parts)?;
    let user = caller.ok_or_else(|| {
        ApiError::invalid("with --auth none name the user: GET /v1/campaigns/{c}/users/{u}/coupon")
    })?;
    lookup(&st, (name, id), user).await
}

/// The coupon `user` holds in campaign `(name, id)`.
async fn lookup(
    st: &App,
    (name, id): (CampaignId, CampaignId),
    user: UserId,
) -> Result<Response, ApiError> {
    check_user_budget(st, &user)?;
    let Some((record, holder)) = st.store.lookup(&id, &user).await? else {
        return Err(not_issued(&name, &user));
    };
    // A coupon shown is a coupon acknowledged: the issue that wrote it may still be waiting
    // for the replicas (or have failed with 503), and a failover now would lose it.
    if let Some(fence) = &st.fence {
        fence.wait(&holder).await?;
    }
    Ok(Json(record.into_coupon(name.as_str(), user.as_str())).into_response())
}

fn not_issued(campaign: &CampaignId, user: &UserId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_issued",
        format!("user {user} holds no coupon of campaign {campaign}"),
    )
}

/// `GET /v1/campaigns/{c}`.
pub async fn show(
    State(st): State<AppState>,
    Segments(campaign): Segments<String>,
) -> Result<Response, ApiError> {
    let name = CampaignId::parse(&campaign)?;
    // The view holds no user's data: shadows are shown to anyone (a runner's `setup`).
    let id = served(&st, &name, true)?;
    let snap = st
        .store
        .snapshot(&id)
        .await?
        .ok_or_else(|| stampede_core::Error::CampaignNotFound(name.to_string()))?;
    Ok(Json(snap.view(name.as_str())).into_response())
}
