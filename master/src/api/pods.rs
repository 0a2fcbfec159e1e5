//! Pods as the master manages them: listing, deleting (a service replaces
//! it), and moving one explicitly (the only way a stateful pod moves).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::{Move, Versioned};
use berth_model::ClusterPod;
use tracing::info;

use super::extract::{Body, Path, Query};
use super::watch::{self, WatchQuery};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::{self, commit, MoveError};
use crate::objects::{self, PODS};

/// A pod as users see it: secret values blanked. Only a node's own
/// assignments carry them.
fn redact(mut pod: ClusterPod) -> ClusterPod {
    pod.spec = pod.spec.redacted();
    pod
}

/// [`redact`], keeping the revision.
fn redacted(mut pod: Versioned<ClusterPod>) -> Versioned<ClusterPod> {
    pod.object = redact(pod.object);
    pod
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, format!("pod {name} not found"))
}

/// `GET /v1/pods`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiFailure> {
    require_admin(&caller)?;
    query.check()?;
    if query.watch {
        return watch::stream(&state, PODS, query.after, redact).await;
    }
    let (pods, _) = objects::list::<ClusterPod>(state.store.as_ref(), PODS).await?;
    Ok(Json(pods.into_iter().map(redacted).collect::<Vec<_>>()).into_response())
}

/// `GET /v1/pods/{name}`.
pub async fn get_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<ClusterPod>>, ApiFailure> {
    require_admin(&caller)?;
    objects::get::<ClusterPod>(state.store.as_ref(), PODS, &name)
        .await?
        .map(|p| Json(redacted(p)))
        .ok_or_else(|| not_found(&name))
}

/// `DELETE /v1/pods/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<ClusterPod>>, ApiFailure> {
    require_admin(&caller)?;
    let pod = objects::get::<ClusterPod>(state.store.as_ref(), PODS, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    state
        .store
        .apply(vec![objects::delete(
            PODS,
            &name,
            Some(pod.resource_version),
        )])
        .await?;
    Ok(Json(redacted(pod)))
}

/// `POST /v1/pods/{name}/move` `{"to": NODE}`: reassigns the pod; the old
/// node stops it and the new one starts it. The scheduler decides whether
/// the pod may go there: a node that fails one of its filters (not ready,
/// cordoned, short of memory, a host port taken, ...) is a 409 saying which.
pub async fn move_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Versioned<ClusterPod>>, ApiFailure> {
    require_admin(&caller)?;
    let request: Move = parse("move", &body)?;
    let cluster = controller::read(state.store.as_ref(), &state.liveness).await?;
    // A pod that does not exist is a 404 whatever the body names.
    let change = controller::plan_move(&cluster, &name, &request.to).map_err(|e| match e {
        MoveError::NoPod(_) => not_found(&name),
        MoveError::NoNode(_) => ApiFailure::field("to", e.to_string()),
        MoveError::Rejected { .. } => {
            ApiFailure::field_with_status(StatusCode::CONFLICT, "to", e.to_string())
        }
    })?;
    let moved = change.written_pod().ok_or_else(|| {
        ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a move that moves no pod",
        )
    })?;
    info!(reason = %change.reason(), "move");
    let revision = state.store.apply(commit::ops(&[change])).await?;
    Ok(Json(redacted(Versioned {
        resource_version: revision,
        object: moved,
    })))
}
