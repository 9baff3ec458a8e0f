//! API errors mapped to safe JSON bodies: `{"error":"<code>","message":"…"}`.

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use stampede_core::Error;

/// The outcome label a handler leaves on its response for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct Outcome(pub &'static str);

/// An error answer: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u32>,
    www_authenticate: Option<&'static str>,
}

impl ApiError {
    /// An error answer with no Retry-After.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            www_authenticate: None,
        }
    }

    /// 401 `unauthenticated` or `invalid_token`, with the RFC 6750 challenge; nothing in
    /// the answer says why a token was refused.
    pub fn unauthorized(rejection: crate::auth::Rejection) -> Self {
        use crate::auth::Rejection;
        let (code, message, challenge) = match rejection {
            Rejection::Unauthenticated => (
                "unauthenticated",
                "send Authorization: Bearer <token>",
                "Bearer",
            ),
            Rejection::InvalidToken => (
                "invalid_token",
                "the bearer token is not valid",
                "Bearer error=\"invalid_token\"",
            ),
        };
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, message);
        e.www_authenticate = Some(challenge);
        e
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 503 `overloaded`, retry after a second.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .retry_after(1)
    }

    /// 429 `rate_limited`: the user or the client address is past its budget; retry when
    /// it has refilled. Counted by who was limited.
    pub fn rate_limited(
        by: super::limits::LimitedBy,
        wait: std::time::Duration,
        http: &crate::metrics::HttpMetrics,
    ) -> Self {
        http.rate_limited.with_label_values(&[by.label()]).inc();
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this {}; retry later", by.label()),
        )
        .retry_after(super::limits::retry_after_secs(wait))
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(max_body: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {max_body} bytes"),
        )
    }

    /// 408 `request_timeout`: the body did not arrive within `limit`.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {limit:?}"),
        )
    }

    /// 503 `timeout`: the answer took longer than `limit`; retry after a second (issuing
    /// is idempotent per user, so a retry returns the coupon if one was issued).
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {limit:?}; retry shortly"),
        )
        .retry_after(1)
    }

    /// Adds a Retry-After header.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(m) => Self::invalid(m),
            Error::CampaignNotFound(c) => Self::new(
                StatusCode::NOT_FOUND,
                "campaign_not_found",
                format!("campaign {c} does not exist"),
            ),
            Error::NoWaitingRoom(c) => Self::new(
                StatusCode::NOT_FOUND,
                "no_waiting_room",
                format!("campaign {c} has no waiting room: issue directly"),
            ),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "redis unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the coupon store is unavailable; retry shortly",
                )
                .retry_after(1)
            }
            e => {
                // The detail goes to the log, never to the client.
                tracing::error!(error = %e, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl ApiError {
    /// The JSON body alone, for answers cached and repeated.
    pub fn body_bytes(&self) -> Bytes {
        serde_json::to_vec(&json!({ "error": self.code, "message": self.message }))
            .expect("a map of strings serialises")
            .into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body_bytes(),
        )
            .into_response();
        if let Some(s) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(c) = self.www_authenticate {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp.extensions_mut().insert(Outcome(self.code));
        resp
    }
}

/// The URL's named segments, as `Path` reads them; one it cannot read (not UTF-8) is
/// answered as every error is, 400 `invalid_request` in JSON, not with axum's plain text.
pub struct Segments<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Segments<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Self(t)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}
