//! Events: the cluster's recent history, listed or followed live as
//! newline-delimited JSON.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::{EventBatch, ReportedEvent, MAX_EVENT_BATCH, MAX_REPORTED_EVENT_ID_LEN};
use berth_model::project::{in_project, unqualified};
use berth_model::{Event, EventKind, Role, ValidationErrors};
use futures_util::StreamExt;
use serde::Deserialize;
use tracing::warn;

use super::extract::{self, Path, Query};
use super::project::InProject;
use super::{parse, require_admin_or_node, ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects::{self, EVENTS};
use crate::store::{self, Op, StoreError};

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
    /// Only events committed after this store revision; with `watch`, the
    /// stream starts there instead of now.
    after: Option<u64>,
}

/// Which events a request asks for.
#[derive(Debug)]
struct Filter {
    kind: Option<EventKind>,
    node: Option<String>,
    /// Events of this project's objects only (the default project's take
    /// in the nodes' and the projects' own).
    project: String,
}

/// The event as its project sees it: its object's name unqualified.
fn shown(mut event: Event) -> Event {
    if let Some((kind, name)) = event.object.split_once('/') {
        event.object = format!("{kind}/{}", unqualified(name));
    }
    event
}

impl Filter {
    fn matches(&self, event: &Event) -> bool {
        let (_, name) = event.object.split_once('/').unwrap_or(("", &event.object));
        in_project(name, &self.project)
            && self.kind.is_none_or(|kind| event.kind == kind)
            && self
                .node
                .as_deref()
                .is_none_or(|node| event.node.as_deref() == Some(node))
    }
}

/// `GET /v1/events[?type=KIND][&node=NODE][&after=REV]` (admin): the kept
/// events, oldest first. With `watch=true[&after=REV]`: new events as they are
/// committed, one JSON object per line (`application/x-ndjson`), until the
/// client goes away.
pub async fn list(
    State(state): State<AppState>,
    in_project: InProject,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiFailure> {
    in_project.require(Role::ViewNoLogs)?;
    let project = in_project.name;
    extract::int64("after", query.after)?;
    let filter = Filter {
        kind: query
            .kind
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| ApiFailure::field("type", format!("{e}")))?,
        node: query.node,
        project,
    };
    if query.watch {
        return watch(&state, filter, query.after).await;
    }
    let (events, _) = objects::list::<Event>(state.store.as_ref(), EVENTS).await?;
    // Keys sort by time, so the list is oldest first already.
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| query.after.is_none_or(|after| e.resource_version > after))
        .map(|e| e.object)
        .filter(|e| filter.matches(e))
        .map(shown)
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
                Ok(event) if filter.matches(&event.object) => {
                    Some(Ok(ndjson(&shown(event.object))))
                }
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

/// Longest reason a node may report.
const MAX_REASON_LEN: usize = 4096;

/// The kinds a node may report: what happens to its containers, and why
/// a pod could not start there.
fn node_may_report(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ContainerStarted
            | EventKind::ContainerExited
            | EventKind::ContainerOomKilled
            | EventKind::ContainerUnhealthy
            | EventKind::ContainerRestarted
            | EventKind::ImagePullFailed
            | EventKind::HostPortConflict
            | EventKind::StartFailed
            | EventKind::PodRefused
    )
}

/// Every problem of a batch, naming the field (`events[3].id`).
fn check_batch(batch: &EventBatch) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    if batch.events.len() > MAX_EVENT_BATCH {
        errors.push(
            "events",
            format!("at most {MAX_EVENT_BATCH} events per batch"),
        );
    }
    for (i, reported) in batch.events.iter().enumerate() {
        let at = format!("events[{i}]");
        let id_ok = !reported.id.is_empty()
            && reported.id.len() <= MAX_REPORTED_EVENT_ID_LEN
            && reported
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            errors.push(
                format!("{at}.id"),
                format!("must be 1 to {MAX_REPORTED_EVENT_ID_LEN} of [A-Za-z0-9_-]"),
            );
        }
        let event = &reported.event;
        if !node_may_report(event.kind) {
            errors.push(
                format!("{at}.event.kind"),
                format!("a node may not report {} events", event.kind),
            );
        }
        let pod = event.object.strip_prefix("pod/").unwrap_or_default();
        if berth_model::project::validate_qualified_name(pod).is_err() {
            errors.push(format!("{at}.event.object"), "must be pod/<name>");
        }
        if event.reason.len() > MAX_REASON_LEN {
            errors.push(
                format!("{at}.event.reason"),
                format!("at most {MAX_REASON_LEN} bytes"),
            );
        }
    }
    errors.into_result()
}

/// The key of an event `node` reported: time first like every event key
/// (so the history stays in time order and is pruned by age), then the
/// node and its id, which makes a resent event land on the same key.
pub fn reported_key(node: &str, reported: &ReportedEvent) -> String {
    format!(
        "{EVENTS}{:020}-n-{node}-{}",
        reported.event.time_ms, reported.id
    )
}

/// `POST /v1/nodes/{name}/events` (the node): events the node observed.
/// Events already kept (same node and id) are skipped, so a batch may be
/// sent again safely; the answer counts the ones newly recorded.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    extract::Body(body): extract::Body,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    require_admin_or_node(&caller, &node)?;
    let batch: EventBatch = parse("event batch", &body)?;
    check_batch(&batch).map_err(|errors| ApiFailure::invalid("event batch", errors))?;
    let store = state.store.as_ref();
    let mut recorded = 0;
    // Small transactions (etcd refuses more than 128 operations in one).
    for chunk in batch.events.chunks(100) {
        // Two sends of the same batch may race: one loses with "already
        // exists" and looks again.
        for _ in 0..3 {
            let mut ops = Vec::new();
            for reported in chunk {
                let key = reported_key(&node, reported);
                if store.get(&key).await?.is_some() {
                    continue;
                }
                let mut event = reported.event.clone();
                event.node = Some(node.clone());
                ops.push(Op::Create {
                    key,
                    value: objects::encode(&event),
                });
            }
            let count = ops.len();
            if count == 0 {
                break;
            }
            match store.apply(ops).await {
                Ok(_) => {
                    recorded += count;
                    break;
                }
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(serde_json::json!({ "recorded": recorded })))
}
