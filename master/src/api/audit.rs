//! Every change the admin or a user makes through the API is an `Audit`
//! event: who, what (method and route), and the object, in the event
//! stream of the object's project. Nodes' own traffic (heartbeats, reports,
//! log batches) is not audited: it is the cluster at work, not a person.

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use berth_model::project::{qualify, DEFAULT_PROJECT};
use berth_model::{Event, EventKind};
use serde_json::Value;
use tracing::warn;

use super::AppState;
use crate::auth;
use crate::controller::events;

/// Largest answer read back for the name of what it made. A change answers
/// at most the object it was sent (bodies are capped at
/// `MAX_REQUEST_BODY_BYTES`) and its status, far below this.
const MAX_READ_BACK: usize = 16 * berth_model::MAX_REQUEST_BODY_BYTES;

/// The middleware: runs the request, then records its audit event if it
/// changed something.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    // Who, without a store read: every heartbeat is a PUT, and the handler
    // authenticates the caller anyway. A token that only claims to be a
    // user's is refused there, and a refused change is not audited.
    let Some(who) = claimed_caller(&state, &request) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path().to_owned(), |m| m.as_str().to_owned());
    let path = parts.uri.path().to_owned();
    let response = next.run(Request::from_parts(parts, body)).await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Past the cap the client would get an empty body rather than a half
    // one; no endpoint that changes things answers that much.
    let bytes: axum::body::Bytes = to_bytes(body, MAX_READ_BACK).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let event = Event {
        time_ms: events::now_ms(),
        kind: EventKind::Audit,
        object: audited_object(&path, &answer),
        node: None,
        reason: format!("{who}: {method} {route}"),
    };
    if let Err(e) = state.store.apply(vec![events::record(&event)]).await {
        warn!(error = %e, object = %event.object, "could not record an audit event");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The admin, or the user a user's token names; `None` for nodes and
/// anything else, which change nothing worth auditing.
fn claimed_caller(state: &AppState, request: &Request) -> Option<String> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer)?;
    if let Some(user) = auth::user_of_token(token) {
        return Some(user.to_owned());
    }
    auth::same_secret(&auth::hash(token), &state.admin_token_hash).then(|| "admin".to_owned())
}

/// `kind/name` of what a change touched, the name qualified by its project
/// so that the event lands in that project's stream: from the path
/// (`/v1/projects/a/services/web/scale` is `service/a.web`), else from the
/// answer's name (a create).
fn audited_object(path: &str, answer: &Value) -> String {
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let (project, rest) = match segments.as_slice() {
        ["projects", project, rest @ ..] if !rest.is_empty() => (*project, rest),
        ["projects", project] => return format!("project/{project}"),
        rest => (DEFAULT_PROJECT, rest),
    };
    let kind = rest.first().map_or("api", |k| k.trim_end_matches('s'));
    let name = rest.get(1).map(|n| (*n).to_owned()).or_else(|| {
        [
            &answer["name"],
            &answer["spec"]["name"],
            &answer["user"]["name"],
        ]
        .into_iter()
        .find_map(|n| n.as_str().map(str::to_owned))
    });
    match name {
        Some(name) => format!("{kind}/{}", qualify(project, &name)),
        None if project == DEFAULT_PROJECT => kind.to_owned(),
        None => format!("{kind}/{project}.-"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::audited_object;

    #[test]
    fn the_object_comes_from_the_path_or_the_answer_qualified_by_its_project() {
        assert_eq!(
            audited_object("/v1/projects/a/services/web/scale", &json!({})),
            "service/a.web"
        );
        assert_eq!(
            audited_object("/v1/projects/a/services", &json!({"name": "web"})),
            "service/a.web"
        );
        assert_eq!(
            audited_object("/v1/services/web", &json!({})),
            "service/web"
        );
        assert_eq!(
            audited_object(
                "/v1/users",
                &json!({"user": {"name": "alice"}, "token": "x"})
            ),
            "user/alice"
        );
        assert_eq!(audited_object("/v1/projects/b", &json!({})), "project/b");
        assert_eq!(
            audited_object("/v1/join-tokens", &json!({"token": "x"})),
            "join-token"
        );
    }
}
