//! `GET /metrics`: the master's own figures in Prometheus's text format, and
//! the middleware that counts every request for it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_model::{ClusterPod, Node};
use futures_util::StreamExt;

use super::{require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::instruments::{ClusterGauges, RequestKey, Streaming};
use crate::objects::{self, NODES, PODS};

/// `GET /metrics` (admin): Prometheus scrapes it with the admin token as
/// its bearer credential.
pub async fn page(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiFailure> {
    require_admin(&caller)?;
    let (nodes, _) = objects::list::<Node>(state.store.as_ref(), NODES).await?;
    let (pods, _) = objects::list::<ClusterPod>(state.store.as_ref(), PODS).await?;
    let mut gauges = ClusterGauges::default();
    for node in nodes {
        let condition = state.liveness.condition(&node.object.name);
        *gauges
            .nodes_by_state
            .entry(label_of(&condition))
            .or_default() += 1;
    }
    for pod in pods {
        let phase = match (&pod.object.status, &pod.object.node) {
            (Some(status), _) => label_of(&status.phase),
            (None, None) => "Unscheduled".to_owned(),
            (None, Some(_)) => "Pending".to_owned(),
        };
        *gauges.pods_by_phase.entry(phase).or_default() += 1;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.instruments.render(&gauges),
    )
        .into_response())
}

/// An enum's name as the API spells it (`Ready`, `Running`).
fn label_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "Unknown".to_owned(),
    }
}

/// Counts a request by route template (never by raw path, which would let
/// any client grow the page without bound), and keeps the open-watch and
/// long-poll gauges: a watch counts until its stream ends.
pub async fn count_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let streaming = streaming_kind(request.uri().query().unwrap_or(""));
    let open = streaming.map(|kind| state.instruments.open_stream(kind));
    let response = next.run(request).await;
    let key = RequestKey {
        method,
        route,
        code: response.status().as_u16(),
    };
    state.instruments.request(key, started.elapsed());
    match (streaming, open) {
        (Some(Streaming::Watch), Some(open)) if response.status().is_success() => {
            let (parts, body) = response.into_parts();
            let body = body.into_data_stream().map(move |chunk| {
                let _still_open = &open;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(body))
        }
        _ => response,
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// `?watch=true` streams; `?after=REV` alone waits for a change.
fn streaming_kind(query: &str) -> Option<Streaming> {
    let (mut watch, mut after) = (false, false);
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "watch" => watch = value == "true",
            "after" => after = true,
            _ => {}
        }
    }
    match (watch, after) {
        (true, _) => Some(Streaming::Watch),
        (false, true) => Some(Streaming::LongPoll),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_and_long_polls_are_told_apart_by_their_query() {
        assert_eq!(streaming_kind("watch=true&after=3"), Some(Streaming::Watch));
        assert_eq!(streaming_kind("after=3"), Some(Streaming::LongPoll));
        assert_eq!(streaming_kind("watch=false"), None);
        assert_eq!(streaming_kind(""), None);
    }
}
