//! Events: the cluster's recent history, listed or followed live as
//! newline-delimited JSON.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::{Event, EventKind};
use futures_util::StreamExt;
use serde::Deserialize;
use tracing::warn;

use super::{require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects::{self, EVENTS};
use crate::store::{self, StoreError};

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events of this kind (`PodScheduled`; any case).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only events involving this node.
    node: Option<String>,
    /// Stream new events instead of listing the kept ones.
    #[serde(default)]
    watch: bool,
    /// With `watch`: stream the events committed after this store revision
    /// (default: from now on).
    after: Option<u64>,
}

/// Which events a request asks for.
#[derive(Debug)]
struct Filter {
    kind: Option<EventKind>,
    node: Option<String>,
}

impl Filter {
    fn matches(&self, event: &Event) -> bool {
        self.kind.is_none_or(|kind| event.kind == kind)
            && self
                .node
                .as_deref()
                .is_none_or(|node| event.node.as_deref() == Some(node))
    }
}

/// `GET /v1/events[?type=KIND][&node=NODE]` (admin): the kept events,
/// oldest first. With `watch=true[&after=REV]`: new events as they are
/// committed, one JSON object per line (`application/x-ndjson`), until the
/// client goes away.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    require_admin(&caller)?;
    let Query(query) = query.map_err(|e| ApiFailure::field("query", e.body_text()))?;
    let filter = Filter {
        kind: query
            .kind
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| ApiFailure::field("type", format!("{e}")))?,
        node: query.node,
    };
    if query.watch {
        return watch(&state, filter, query.after).await;
    }
    if query.after.is_some() {
        return Err(ApiFailure::field("after", "only valid with watch=true"));
    }
    let (events, _) = objects::list::<Event>(state.store.as_ref(), EVENTS).await?;
    // Keys sort by time, so the list is oldest first already.
    let events: Vec<Event> = events
        .into_iter()
        .map(|e| e.object)
        .filter(|e| filter.matches(e))
        .collect();
    Ok(Json(events).into_response())
}

/// The streaming half of [`list`].
async fn watch(
    state: &AppState,
    filter: Filter,
    after: Option<u64>,
) -> Result<Response, ApiFailure> {
    let after = match after {
        Some(after) => after,
        None => state.store.revision().await?,
    };
    // Opened before answering, so that a compacted `after` is a clean 410
    // rather than a stream that breaks at once.
    let changes = state.store.watch(EVENTS, after).await?;
    let lines = changes.filter_map(move |change| {
        let line = match change {
            // Deletes are pruning: history going away is not an event.
            Ok(change) if change.kind == store::EventKind::Delete => None,
            Ok(change) => match objects::decode::<Event>(&change.entry) {
                Ok(event) if filter.matches(&event.object) => Some(Ok(ndjson(&event.object))),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "skipping an event that does not decode");
                    None
                }
            },
            // Ends the body with an error, so that the client sees a broken
            // stream rather than a quiet end.
            Err(e) => Some(Err::<Bytes, StoreError>(e)),
        };
        std::future::ready(line)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// One event as a line of JSON.
fn ndjson(event: &Event) -> Bytes {
    let mut line = objects::encode(event);
    line.push(b'\n');
    Bytes::from(line)
}
