//! Pods as the master manages them: listing, deleting (a service replaces
//! it) and watching are [`super::resource`]'s; moving one explicitly (the
//! only way a stateful pod moves) is theirs alone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::{Move, Versioned};
use berth_model::{ClusterPod, Role};
use tracing::info;

use super::extract::Body;
use super::project::Named;
use super::resource::{not_found, written};
use super::{parse, ApiFailure, AppState};
use crate::controller::{self, commit, MoveError};

/// `POST /v1/pods/{name}/move` `{"to": NODE}`: reassigns the pod; the old
/// node stops it and the new one starts it. The scheduler decides whether
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
    let cluster = controller::read(state.store.as_ref(), &state.liveness).await?;
    // A pod that does not exist is a 404 whatever the body names.
    let change = controller::plan_move(&cluster, &name, &request.to).map_err(|e| match e {
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
    let revision = state.store.apply(commit::ops(&[change])).await?;
    Ok(written(moved, revision))
}
