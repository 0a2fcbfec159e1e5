//! axum's extractors with the API's own rejections: a bad query string,
//! path or body answers the JSON `ApiError` naming what is wrong, like
//! every other error, instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiFailure;

/// The query string, parsed into `T`; a 400 about `query` when it does not
/// parse, with the parameter at fault in the message.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| Query(query))
            .map_err(|e| ApiFailure::field("query", e.body_text()))
    }
}

/// The path parameters, parsed into `T`; a 400 about `path` when they do
/// not parse (a percent-encoding that is not UTF-8).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(path)| Path(path))
            .map_err(|e| ApiFailure::field_with_status(e.status(), "path", e.body_text()))
    }
}

/// The request body, whole; a 413 about `body` past the route's limit.
/// Handlers parse it themselves with [`super::parse`], which names the
/// position of a JSON error.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|e| {
                let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "larger than this endpoint accepts".to_owned()
                } else {
                    e.body_text()
                };
                ApiFailure::field_with_status(e.status(), "body", message)
            })
    }
}

/// Checks a long poll's `timeout` (seconds, at most 300, 30 by default)
/// and says how long to wait.
pub fn long_poll_wait(timeout: Option<u64>) -> Result<std::time::Duration, ApiFailure> {
    const MAX_SECS: u64 = 300;
    let secs = timeout.unwrap_or(30);
    if secs > MAX_SECS {
        return Err(ApiFailure::field(
            "timeout",
            format!("must be at most {MAX_SECS} seconds, got {secs}"),
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Checks that an integer query parameter fits the document's `int64`: a
/// larger one is refused rather than read as a revision no store reaches.
pub fn int64(field: &str, value: Option<u64>) -> Result<(), ApiFailure> {
    match value {
        Some(value) if value > i64::MAX as u64 => Err(ApiFailure::field(
            field,
            format!("must be at most {}, got {value}", i64::MAX),
        )),
        _ => Ok(()),
    }
}
