//! Container logs: nodes ship batches of journal lines, users read them
//! merged across a service's pods, in pages or following.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::logs::{LogBatch, LogBatchAck, LogPage};
use berth_model::project::{qualify, unqualified, validate_qualified_name};
use berth_model::{validate_dns_label, ClusterPod, Job, Role, Service};
use serde::Deserialize;

use super::extract::{Body, Path, Query};
use super::project::InProject;
use super::{parse, require_admin_or_node, ApiFailure, AppState};
use crate::auth::Caller;
use crate::logs::{LogQuery, LogStore, Mode, Selection};
use crate::objects::{self, JOBS, PODS, SERVICES};

/// Longest a follower's request waits for new lines.
const MAX_WAIT_SECS: u64 = 30;

/// `POST /v1/nodes/{name}/logs` (admin or the node): stores a batch
/// durably, then acknowledges it.
pub async fn ship(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    Body(body): Body,
) -> Result<Json<LogBatchAck>, ApiFailure> {
    require_admin_or_node(&caller, &node)?;
    let batch: LogBatch = parse("log batch", &body)?;
    for (i, line) in batch.lines.iter().enumerate() {
        if validate_qualified_name(&line.pod).is_err() {
            return Err(ApiFailure::field(
                &format!("lines[{i}].pod"),
                "not a pod name",
            ));
        }
    }
    let logs = Arc::clone(&state.logs);
    let ack = tokio::task::spawn_blocking(move || logs.ingest(&node, &batch))
        .await
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(unavailable)?;
    Ok(Json(ack))
}

fn unavailable(e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The query string of `GET /v1/logs`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogsParams {
    /// A service (every pod of it) or a pod.
    target: String,
    container: Option<String>,
    /// Microseconds since the epoch.
    since: Option<u64>,
    grep: Option<String>,
    tail: Option<usize>,
    /// `time:id` from a previous page's `next`.
    from: Option<String>,
    newer_than: Option<u64>,
    /// Seconds a `newer-than` request waits for a line.
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/logs` (admin): one page of a service's or pod's lines.
pub async fn read(
    State(state): State<AppState>,
    in_project: InProject,
    Query(params): Query<LogsParams>,
) -> Result<Json<LogPage>, ApiFailure> {
    in_project.require(Role::View)?;
    let project = in_project.name;
    if params.wait > MAX_WAIT_SECS {
        return Err(ApiFailure::field(
            "wait",
            format!(
                "must be at most {MAX_WAIT_SECS} seconds, got {}",
                params.wait
            ),
        ));
    }
    for (field, value) in [("since", params.since), ("newer-than", params.newer_than)] {
        super::extract::int64(field, value)?;
    }
    let query = parse_query(&state, &project, &params).await?;
    let logs = Arc::clone(&state.logs);
    let mut arrived = logs.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(params.wait);
    loop {
        let page = run_query(&logs, &query).await?;
        let waiting = matches!(query.mode, Mode::NewerThan(_)) && page.lines.is_empty();
        if !waiting || tokio::time::Instant::now() >= deadline {
            return Ok(Json(unqualified_page(page)));
        }
        let query_again = tokio::time::timeout_at(deadline, arrived.changed()).await;
        if !matches!(query_again, Ok(Ok(()))) {
            return Ok(Json(unqualified_page(page)));
        }
    }
}

async fn run_query(logs: &Arc<LogStore>, query: &LogQuery) -> Result<LogPage, ApiFailure> {
    let (logs, query) = (Arc::clone(logs), query.clone());
    tokio::task::spawn_blocking(move || logs.query(&query))
        .await
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(unavailable)
}

/// The page as the project sees it: pods by their names there.
fn unqualified_page(mut page: LogPage) -> LogPage {
    for line in &mut page.lines {
        line.pod = unqualified(&line.pod).to_owned();
    }
    page
}

async fn parse_query(
    state: &AppState,
    project: &str,
    params: &LogsParams,
) -> Result<LogQuery, ApiFailure> {
    validate_dns_label(&params.target).map_err(|e| ApiFailure::field("target", e.to_string()))?;
    let target = qualify(project, &params.target);
    if let Some(container) = &params.container {
        validate_dns_label(container).map_err(|e| ApiFailure::field("container", e.to_string()))?;
    }
    let grep = params
        .grep
        .as_deref()
        .map(|re| {
            regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ApiFailure::field("grep", e.to_string()))
        })
        .transpose()?;
    let from = params
        .from
        .as_deref()
        .map(|from| {
            from.split_once(':')
                .and_then(|(t, i)| Some((t.parse().ok()?, i.parse().ok()?)))
                .ok_or_else(|| ApiFailure::field("from", "not a position from a page's `next`"))
        })
        .transpose()?;
    let mode = match (params.tail, params.newer_than, from) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(ApiFailure::field(
                "tail",
                "tail, from and newer-than exclude each other",
            ))
        }
        (Some(n), None, None) => Mode::Tail(n),
        (None, Some(after), None) => Mode::NewerThan(after),
        (None, None, from) => Mode::History { from },
    };
    // A job's attempts are named like a service's replicas: `<job>-<n>`.
    let is_service = objects::get::<Service>(state.store.as_ref(), SERVICES, &target)
        .await?
        .is_some()
        || objects::get::<Job>(state.store.as_ref(), JOBS, &target)
            .await?
            .is_some();
    let selection = if is_service {
        Selection::Service(target.clone())
    } else {
        Selection::Pod(target.clone())
    };
    // A pod that is gone keeps its lines readable; a name that never had
    // any is a typo, and says so.
    let is_pod = !is_service
        && objects::get::<ClusterPod>(state.store.as_ref(), PODS, &target)
            .await?
            .is_some();
    if !is_service && !is_pod {
        let any_line = LogQuery {
            selection: selection.clone(),
            container: None,
            since_us: None,
            grep: None,
            mode: Mode::Tail(1),
        };
        if run_query(&state.logs, &any_line).await?.lines.is_empty() {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no service or pod named {}, and no logs of one",
                    params.target
                ),
            ));
        }
    }
    Ok(LogQuery {
        selection,
        container: params.container.clone(),
        since_us: params.since,
        grep,
        mode,
    })
}
