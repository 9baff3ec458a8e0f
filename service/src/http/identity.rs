//! Who a request speaks for: the verified token's user, or with `--auth none` the body's.

use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use super::App;
use super::error::ApiError;
use stampede_core::ids::UserId;

/// Who a request speaks for, as [`verify`] found it before the handler ran (the client
/// budget asks it of a shadow campaign's requests), so that the token is verified once.
#[derive(Clone)]
pub struct Verified(pub (Option<UserId>, bool));

/// [`verify`] of the request, or what was found already ([`Verified`]).
pub fn caller(st: &App, parts: &Parts) -> Result<(Option<UserId>, bool), ApiError> {
    match parts.extensions.get::<Verified>() {
        Some(Verified(found)) => Ok(found.clone()),
        None => verify(st, &parts.headers),
    }
}

/// The token's user (`None` when the service runs with `--auth none`), and whether the
/// caller may reach load tests' shadow campaigns: a load-test runner's token, or anyone
/// with `--auth none` (local rehearsal).
pub fn verify(st: &App, headers: &HeaderMap) -> Result<(Option<UserId>, bool), ApiError> {
    match &st.auth {
        Some(verifier) => verifier
            .caller(headers)
            .map(|c| (Some(c.user), c.load_test))
            .map_err(ApiError::unauthorized),
        None => Ok((None, true)),
    }
}

/// The user an issue request is for: the token's (a body `userId` may repeat it, never
/// differ from it), or without tokens the body's.
pub fn issue_user(caller: Option<UserId>, body: Option<String>) -> Result<UserId, ApiError> {
    match (caller, body) {
        (Some(user), None) => Ok(user),
        (Some(user), Some(named)) if named == user.as_str() => Ok(user),
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "user_mismatch",
            "the body's userId is not the token's subject; send no userId, or the token's own",
        )),
        (None, Some(named)) => Ok(UserId::parse(&named)?),
        (None, None) => Err(ApiError::invalid("body must be {\"userId\": \"…\"}")),
    }
}
