//! The local API: JSON over HTTP on a root-only unix socket. Handlers parse
//! the request into a call on the [`Runtime`] and turn its answer into a
//! response; they never talk to systemd or Docker themselves.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_model::{ApiError, Pod, ValidationErrors, MAX_REQUEST_BODY_BYTES};
use serde::Deserialize;

use crate::journal;
use crate::runtime::{RequestError, Runtime};

/// The API's routes over a runtime.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/v1/pods", get(list_pods).post(create_pod))
        .route("/v1/pods/{name}", get(get_pod).delete(delete_pod))
        .route("/v1/pods/{name}/start", post(start_pod))
        .route("/v1/pods/{name}/stop", post(stop_pod))
        .route("/v1/pods/{name}/restart", post(restart_pod))
        .route("/v1/pods/{name}/logs", get(pod_logs))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into(), Vec::new()) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(runtime)
}

fn error(status: StatusCode, message: String, fields: Vec<berth_model::FieldError>) -> Response {
    (
        status,
        Json(ApiError {
            error: message,
            fields,
        }),
    )
        .into_response()
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            RequestError::Invalid(errors) | RequestError::PortTaken(errors) => {
                let fields = errors.errors().to_vec();
                error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid pod: {errors}"),
                    fields,
                )
            }
            RequestError::Conflict(message) => error(StatusCode::CONFLICT, message, Vec::new()),
            RequestError::NotFound(what) => error(
                StatusCode::NOT_FOUND,
                format!("pod {what} not found"),
                Vec::new(),
            ),
            failed @ RequestError::NotStarted { .. } => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                failed.to_string(),
                Vec::new(),
            ),
            RequestError::Failed(message) => {
                error(StatusCode::INTERNAL_SERVER_ERROR, message, Vec::new())
            }
        }
    }
}

/// Parses a JSON body into a pod; a parse error names the field where serde
/// can tell it (unknown field, wrong type) and the position.
fn parse_pod(body: &[u8]) -> Result<Pod, Response> {
    if body.len() > MAX_REQUEST_BODY_BYTES {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_REQUEST_BODY_BYTES} bytes"),
            Vec::new(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let mut errors = ValidationErrors::new();
        errors.push("body", format!("{e}"));
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid pod: {e}"),
            errors.errors().to_vec(),
        )
    })
}

async fn create_pod(State(runtime): State<Arc<Runtime>>, body: Bytes) -> Response {
    let pod = match parse_pod(&body) {
        Ok(pod) => pod,
        Err(response) => return response,
    };
    match runtime.create(pod, crate::store::Source::Local).await {
        Ok((status, true)) => (StatusCode::CREATED, Json(status)).into_response(),
        Ok((status, false)) => (StatusCode::OK, Json(status)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list_pods(
    State(runtime): State<Arc<Runtime>>,
    Query(query): Query<ListQuery>,
) -> Response {
    match runtime.list(query.all).await {
        Ok(pods) => Json(pods).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_pod(State(runtime): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    respond(runtime.get(&name).await)
}

async fn delete_pod(State(runtime): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    respond(runtime.delete(&name).await)
}

async fn start_pod(State(runtime): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    respond(runtime.start(&name).await)
}

async fn stop_pod(State(runtime): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    respond(runtime.stop(&name).await)
}

async fn restart_pod(State(runtime): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    respond(runtime.restart(&name).await)
}

/// `TIME CONTAINER | line`, the line escaped as `berth logs` escapes it.
fn format_local_line(entry: &journal::Entry) -> String {
    let container = entry
        .unit
        .as_deref()
        .and_then(crate::unit::name::container_of_unit)
        .map_or_else(|| entry.unit.clone().unwrap_or_default(), |(_, c)| c);
    format!(
        "{} {container} | {}\n",
        berth_model::logs::format_utc_micros(entry.realtime_us),
        berth_model::logs::escape_message(&entry.message)
    )
}

fn respond(result: Result<berth_model::PodStatus, RequestError>) -> Response {
    match result {
        Ok(status) => Json(status).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// The bytes each line was, instead of escaped text.
    #[serde(default)]
    raw: bool,
    tail: Option<u32>,
    container: Option<String>,
}

/// Streams the journal of the pod's units (`journalctl`), merged in time
/// order; with `follow`, until the client goes away.
async fn pod_logs(
    State(runtime): State<Arc<Runtime>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let units = match runtime.container_units(&name, query.container.as_deref()) {
        Ok(units) => units,
        Err(e) => return e.into_response(),
    };
    let mut child = match journal::unit_output(&units, query.tail, query.follow) {
        Ok(child) => child,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("running journalctl: {e}"),
                Vec::new(),
            )
        }
    };
    let Some(stdout) = child.stdout.take() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "journalctl has no stdout".into(),
            Vec::new(),
        );
    };
    // The child lives as long as the stream: dropping the response (the
    // client left) kills journalctl.
    let reader = tokio::io::BufReader::with_capacity(64 * 1024, stdout);
    let raw = query.raw;
    let stream = futures_util::stream::unfold(
        (reader, child, Vec::new()),
        move |(mut reader, child, mut scratch)| async move {
            match journal::next_entry(&mut reader, &mut scratch).await {
                Ok(Some(entry)) => {
                    let line = if raw {
                        let mut bytes = entry.message;
                        bytes.push(b'\n');
                        bytes
                    } else {
                        format_local_line(&entry).into_bytes()
                    };
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(line)),
                        (reader, child, scratch),
                    ))
                }
                Ok(None) | Err(_) => None,
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}
