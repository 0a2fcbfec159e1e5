//! Pods as the master manages them: listing, deleting (a service replaces
//! it) and watching are [`super::resource`]'s; moving one explicitly (the
//! only way a stateful pod moves) is theirs alone.

use axum::extract::State;
use axum::Json;
use berth_model::api::{Move, Versioned};
use berth_model::{ClusterPod, Node};

use super::extract::{Body, Path};
use super::resource::{fetch, written};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects::{self, NODES, PODS};

/// `POST /v1/pods/{name}/move` `{"to": NODE}`: reassigns the pod; the old
/// node stops it and the new one starts it.
pub async fn move_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Versioned<ClusterPod>>, ApiFailure> {
    require_admin(&caller)?;
    let request: Move = parse("move", &body)?;
    // A pod that does not exist is a 404 whatever the body names.
    let pod = fetch::<ClusterPod>(&state, &name).await?;
    if objects::get::<Node>(state.store.as_ref(), NODES, &request.to)
        .await?
        .is_none()
    {
        return Err(ApiFailure::field(
            "to",
            format!("no node named {}", request.to),
        ));
    }
    let mut moved = pod.object.clone();
    moved.node = Some(request.to);
    moved.status = None;
    let revision = state
        .store
        .apply(vec![objects::update(
            PODS,
            &name,
            &moved,
            pod.resource_version,
        )])
        .await?;
    Ok(written(moved, revision))
}
