//! Pods as the master manages them: listing, deleting (a service replaces
//! it), and moving one explicitly (the only way a stateful pod moves).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::{Move, Versioned};
use berth_model::{ClusterPod, Node};

use super::extract::{Body, Path, Query};
use super::watch::{self, WatchQuery};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects::{self, NODES, PODS};

/// A pod as users see it: secret values blanked. Only a node's own
/// assignments carry them.
fn redact(pod: ClusterPod) -> ClusterPod {
    pod.redacted()
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
    let pod = objects::get::<ClusterPod>(state.store.as_ref(), PODS, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
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
    Ok(Json(redacted(Versioned {
        resource_version: revision,
        object: moved,
    })))
}
