//! Pods as the master manages them: listing, deleting (a service replaces
//! it) and watching are [`super::resource`]'s; moving one explicitly (the
//! only way a stateful pod moves) is theirs alone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::{Move, Versioned};
use berth_model::{ClusterPod, MoveReport, Role};
use tracing::info;

use super::extract::Body;
use super::project::Named;
use super::resource::{not_found, written};
use super::{parse, ApiFailure, AppState};
use crate::controller::{self, commit, MoveError};
use crate::store::StoreError;

/// `POST /v1/pods/{name}/move` `{"to": NODE, "keepSource": BOOL}`:
/// reassigns the pod; the old node stops it and the new one starts it. A
/// pod with named volumes moves with its data (see
/// [`controller::moves`]): it stays on its node until the copy is verified. The scheduler decides whether
/// the pod may go there: a node that fails one of its filters (not ready,
/// cordoned, short of memory, a host port taken, ...) is a 409 saying which.
pub async fn move_pod(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<ClusterPod>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let request: Move = parse("move", &body)?;
    let name = named.qualified::<ClusterPod>();
    let mut tries = 0;
    loop {
        let objects = state.mirror.with(Clone::clone).await;
        let cluster = controller::cluster(objects, &state.liveness);
        // A pod that does not exist is a 404 whatever the body names.
        let change = controller::plan_move(&cluster, &name, &request.to, request.keep_source)
            .map_err(|e| match e {
                MoveError::NoPod(_) => not_found::<ClusterPod>(&name),
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
        match state.store.apply(commit::ops(&[change])).await {
            Ok(revision) => return Ok(written(moved, revision)),
            // The pod changed after the mirror showed it (its node's
            // status, the controller's write): planned again once the
            // mirror holds that change.
            Err(StoreError::Conflict { found, .. }) if tries + 1 < MOVE_TRIES => {
                tries += 1;
                state.mirror.caught_up(found).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Tries of a move that races other writes of its pod.
const MOVE_TRIES: usize = 5;

/// `POST /v1/nodes/{name}/moves/{pod}` (the move's source node): how its
/// part of a move with data went; the pod's move record advances.
pub async fn move_report(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    super::extract::Path((node, pod)): super::extract::Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<()>, ApiFailure> {
    super::require_admin_or_node(&caller, &node)?;
    let report: MoveReport = parse("move report", &body)?;
    let store = state.store.as_ref();
    let current = crate::objects::get::<ClusterPod>(store, crate::objects::PODS, &pod)
        .await?
        .ok_or_else(|| not_found::<ClusterPod>(&pod))?;
    let now_ms = controller::events::now_ms();
    let next = controller::moves::apply_report(&current.object, &node, &report, now_ms)
        .map_err(|e| ApiFailure::field_with_status(StatusCode::CONFLICT, "pod", e.to_string()))?;
    if let Some((written, event)) = next {
        let change = controller::Change::UpdatePod {
            reason: format!("node {node} reports pod {pod}'s move"),
            pod: written,
            expected_revision: current.resource_version,
            event,
        };
        state.store.apply(commit::ops(&[change])).await?;
    }
    Ok(Json(()))
}
