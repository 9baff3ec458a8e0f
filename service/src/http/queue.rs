//! Waiting-room routes (issue #16): join a campaign's line, poll it, and the admission an
//! issue request of a campaign with a waiting room must carry. Tokens are verified here,
//! before Redis; the line itself is one script call per join or poll
//! (`stampede_core::store`, `lua/queue.lua`). See docs/waiting-room.md.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::campaigns::{
    campaign_and_caller, check_user_budget, conflict, read_issue_request, sold_out,
};
use super::error::{ApiError, Outcome, Segments};
use super::scope::CampaignScope;
use super::{App, AppState, identity};
use stampede_core::clock::{format_ms, now_ms};
use stampede_core::ids::{CampaignId, UserId};
use stampede_core::store::{QueueAnswer, QueueStatus, Store};
use stampede_core::waiting_room::token::{Claims, TokenKey, TokenKind};

/// The header a poll carries its queue token in (or `?token=`).
pub const QUEUE_TOKEN_HEADER: &str = "x-stampede-queue-token";
/// The header an issue request carries its admission token in.
pub const ADMISSION_HEADER: &str = "x-stampede-admission";

/// `POST /v1/campaigns/{c}/queue`: joins the line (again: the same place and token).
pub async fn join(
    State(st): State<AppState>,
    Segments(campaign): Segments<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (name, id, caller) = campaign_and_caller(&st, &campaign, &parts)?;
    let claimed =
        read_issue_request(&parts.headers, body, st.max_body_bytes, caller.is_some()).await?;
    let user = identity::issue_user(caller, claimed)?;
    check_user_budget(&st, &user)?;
    let key = signing_key(&st, &name, &id).await?;
    let score = key.pre_open_score(id.as_str(), user.as_str());
    let answer = (st.store.queue_join(&id, &user, score).await).map_err(|e| named(e, &name))?;
    observe(&st, &id, &answer);
    if answer.status == QueueStatus::SoldOut {
        return Err(sold_out(&name));
    }
    let created = answer.created;
    let mut resp = respond(key, &name, &id, &user, &answer)?;
    if created {
        *resp.status_mut() = StatusCode::CREATED;
    }
    Ok(resp)
}

/// `GET /v1/campaigns/{c}/queue` with the queue token: where its user stands now.
pub async fn poll(
    State(st): State<AppState>,
    Segments(campaign): Segments<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (name, id, caller) = campaign_and_caller(&st, &campaign, &parts)?;
    let key = signing_key(&st, &name, &id).await?;
    let raw = queue_token(&parts.headers, parts.uri.query()).ok_or_else(|| {
        ApiError::invalid(format!(
            "send the queue token as {QUEUE_TOKEN_HEADER} or ?token= (POST …/queue gives one)"
        ))
    })?;
    let claims = key
        .verify(raw, TokenKind::Queue)
        .filter(|c| c.campaign == id.as_str())
        .ok_or_else(|| bad_token("the queue token is not valid for this campaign"))?;
    let user = UserId::parse(&claims.user)?;
    if caller.is_some_and(|c| c != user) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "user_mismatch",
            "the queue token is not the bearer token's subject's",
        ));
    }
    check_user_budget(&st, &user)?;
    if claims.expired(now_ms()) {
        return Ok(status_only(QueueStatus::Expired));
    }
    let answer =
        (st.store.queue_poll(&id, &user, &claims.ticket).await).map_err(|e| named(e, &name))?;
    observe(&st, &id, &answer);
    respond(key, &name, &id, &user, &answer)
}

/// The store names a campaign by its id, which holds its tenant's namespace; the client
/// knows it by the name in its URL, and is answered in those terms.
fn named(e: stampede_core::Error, name: &CampaignId) -> ApiError {
    use stampede_core::Error;
    match e {
        Error::CampaignNotFound(_) => Error::CampaignNotFound(name.to_string()),
        Error::NoWaitingRoom(_) => Error::NoWaitingRoom(name.to_string()),
        e => e,
    }
    .into()
}

/// The key to sign with, or 503 `waiting_room_unavailable` when this service has none and
/// the campaign has a waiting room (404 `no_waiting_room` when it has none either).
async fn signing_key<'a>(
    st: &'a App,
    name: &CampaignId,
    id: &CampaignId,
) -> Result<&'a TokenKey, ApiError> {
    if let Some(key) = &st.waiting_room_key {
        return Ok(key);
    }
    match st.store.waiting_room(id).await? {
        Some(room) if room.enabled => Err(unconfigured(name)),
        _ => Err(stampede_core::Error::NoWaitingRoom(name.to_string()).into()),
    }
}

fn unconfigured(name: &CampaignId) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "waiting_room_unavailable",
        format!(
            "campaign {name} has a waiting room but this service has no waiting-room key \
             (--waiting-room-key-file); retry later"
        ),
    )
    .retry_after(30)
}

fn bad_token(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", message)
}

/// The queue token from its header, else from `?token=` (base64url and '.': never
/// percent-encoded).
fn queue_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let header = headers
        .get(QUEUE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    let param = || {
        query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    };
    header.or_else(param).filter(|t| !t.is_empty())
}

/// Counts what one join or poll saw and did.
fn observe(st: &App, id: &CampaignId, a: &QueueAnswer) {
    let m = &st.metrics.waiting_room;
    let label = [id.as_str()];
    m.admitted.with_label_values(&label).inc_by(a.admitted_now);
    m.lapsed.with_label_values(&label).inc_by(a.lapsed_now);
    m.queued.with_label_values(&label).set(a.queued as i64);
    m.active.with_label_values(&label).set(a.active as i64);
    m.open.with_label_values(&label).set(i64::from(a.admitting));
}

fn status_label(status: QueueStatus) -> &'static str {
    match status {
        QueueStatus::Waiting => "waiting",
        QueueStatus::Admitted => "admitted",
        QueueStatus::SoldOut => "sold_out",
        QueueStatus::Expired => "expired",
        QueueStatus::Issued => "issued",
        QueueStatus::Closed => "closed",
    }
}

fn status_only(status: QueueStatus) -> Response {
    let label = status_label(status);
    let mut resp = Json(json!({ "status": label })).into_response();
    resp.extensions_mut().insert(Outcome(label));
    resp
}

/// The answer a client sees: its place and tokens, signed here.
fn respond(
    key: &TokenKey,
    name: &CampaignId,
    id: &CampaignId,
    user: &UserId,
    a: &QueueAnswer,
) -> Result<Response, ApiError> {
    let claims = |kind, ticket: &str, expires_ms| Claims {
        kind,
        campaign: id.to_string(),
        user: user.to_string(),
        ticket: ticket.to_owned(),
        expires_ms,
    };
    let mut body = match a.status {
        QueueStatus::Closed => return Err(conflict("closed", name, "is closed")),
        QueueStatus::Waiting | QueueStatus::Admitted => json!({
            "status": status_label(a.status),
            "queueToken": key.sign(&claims(TokenKind::Queue, &a.ticket, a.token_expires_ms)),
            "expiresAt": format_ms(a.token_expires_ms),
        }),
        other => return Ok(status_only(other)),
    };
    if a.status == QueueStatus::Admitted {
        let admission = claims(TokenKind::Admission, "", a.admission_expires_ms);
        body["admissionToken"] = key.sign(&admission).into();
        body["admissionExpiresAt"] = format_ms(a.admission_expires_ms).into();
    } else {
        add_waiting_view(&mut body, a);
    }
    let mut resp = Json(body).into_response();
    resp.extensions_mut()
        .insert(Outcome(status_label(a.status)));
    Ok(resp)
}

/// Adds what a waiting user learns: place, a wait estimate (the time to the opening, then
/// the place at the admission rate: a floor, as admissions also wait for free slots), when
/// to poll again, and the stock left, which no stock-blind waiting room can say.
fn add_waiting_view(body: &mut Value, a: &QueueAnswer) {
    let rate = u64::from(a.admit_per_second.max(1));
    let to_opening = (a.opens_ms - a.now_ms).max(0) as u64 / 1_000;
    let ahead_of_stock = a.remaining.saturating_sub(a.active);
    body["position"] = a.position.into();
    body["estimatedWaitSeconds"] = (to_opening + a.position.div_ceil(rate)).into();
    body["pollAfterSeconds"] = (a.queue_ttl.as_secs() / 3).clamp(1, 5).into();
    body["queued"] = a.queued.into();
    body["remainingStock"] = a.remaining.into();
    body["withinStock"] = (a.position <= ahead_of_stock).into();
}

/// The admission an issue request carries (`X-Stampede-Admission`): its expiry when the
/// token is this user's for this campaign and live. Whether one is needed is the issue
/// script's to say (only a campaign with a waiting room does), so a bad one is not refused
/// here, only never passed on.
pub struct Admission {
    /// The verified admission's expiry, Unix ms.
    pub expires_ms: Option<i64>,
    sent: bool,
}

impl Admission {
    /// Reads and verifies the header.
    pub fn from_headers(st: &App, headers: &HeaderMap, id: &CampaignId, user: &UserId) -> Self {
        let raw = headers.get(ADMISSION_HEADER).and_then(|v| v.to_str().ok());
        let expires_ms = match (&st.waiting_room_key, raw) {
            (Some(key), Some(raw)) => key
                .verify(raw, TokenKind::Admission)
                .filter(|c| c.campaign == id.as_str() && c.user == user.as_str())
                .filter(|c| !c.expired(now_ms()))
                .map(|c| c.expires_ms),
            _ => None,
        };
        Self {
            expires_ms,
            sent: raw.is_some(),
        }
    }

    /// The answer when the campaign wanted an admission this request did not bring.
    pub fn refused(&self, st: &App, name: &CampaignId) -> ApiError {
        if st.waiting_room_key.is_none() {
            return unconfigured(name);
        }
        let message = if self.sent {
            format!(
                "the admission is not valid for this user and campaign, or has lapsed; \
                 poll GET /v1/campaigns/{name}/queue"
            )
        } else {
            format!(
                "campaign {name} has a waiting room: join POST /v1/campaigns/{name}/queue \
                 and send the admission token as X-Stampede-Admission"
            )
        };
        ApiError::new(StatusCode::FORBIDDEN, "admission_required", message)
    }
}

/// Logs once, loudly, when campaigns this service serves have a waiting room and it has
/// no key to sign their tokens with (each such request answers 503 meanwhile).
pub async fn warn_rooms_without_key(store: Store, scope: CampaignScope) {
    let ids = match scope.ids() {
        Some(ids) => ids,
        None => match store.registry().await {
            Ok(all) => all
                .iter()
                .filter_map(|c| CampaignId::parse(c).ok())
                .collect(),
            Err(_) => return,
        },
    };
    let mut with_rooms = Vec::new();
    for id in ids.iter().take(1_000) {
        if let Ok(Some(room)) = store.waiting_room(id).await
            && room.enabled
        {
            with_rooms.push(id.to_string());
        }
    }
    if !with_rooms.is_empty() {
        tracing::error!(
            campaigns = ?with_rooms,
            "WAITING ROOMS WITHOUT A KEY: these campaigns have a waiting room but no \
             --waiting-room-key-file (STAMPEDE_WAITING_ROOM_KEY_FILE) or \
             STAMPEDE_WAITING_ROOM_KEY is set; their queue and issue requests answer 503 \
             waiting_room_unavailable"
        );
    }
}
