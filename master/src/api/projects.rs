//! Removing a project removes everything in it, in one commit: its
//! services, routes (with their claims) and pods, whose nodes then stop
//! them. `default` stays: the paths without a project serve it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::project::{in_project, DEFAULT_PROJECT};
use berth_model::{ClusterPod, Event, EventKind, Project, Route, Service};

use super::project::Named;
use super::resource::{fetch, shown};
use super::{require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects;
use crate::resource::{self, Resource};
use crate::store::{Op, Store, StoreError};

/// `DELETE /v1/projects/{project}`: answers the project as it was.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    named: Named,
) -> Result<Json<Versioned<Project>>, ApiFailure> {
    require_admin(&caller)?;
    if named.name == DEFAULT_PROJECT {
        return Err(ApiFailure::field_with_status(
            StatusCode::CONFLICT,
            "name",
            "the default project cannot be removed: the paths without a project serve it",
        ));
    }
    let project = fetch::<Project>(&state, &named.name).await?;
    let store = state.store.as_ref();
    let mut ops = resource::delete_ops(&project.object, project.resource_version);
    let mut removed = 0;
    for op in contents_of::<Service>(store, &named.name)
        .await?
        .into_iter()
        .chain(contents_of::<Route>(store, &named.name).await?)
        .chain(contents_of::<ClusterPod>(store, &named.name).await?)
    {
        removed += 1;
        ops.extend(op);
    }
    ops.push(events::record(&Event {
        time_ms: events::now_ms(),
        kind: EventKind::ProjectDeleted,
        object: format!("project/{}", named.name),
        node: None,
        reason: format!("removed with the {removed} objects in it"),
    }));
    state.store.apply(ops).await?;
    Ok(Json(shown(project)))
}

/// The delete ops of each `R` object of `project`.
async fn contents_of<R: Resource>(
    store: &dyn Store,
    project: &str,
) -> Result<Vec<Vec<Op>>, StoreError> {
    let (objects, _) = objects::list::<R>(store, R::PREFIX).await?;
    Ok(objects
        .into_iter()
        .filter(|o| in_project(o.object.name(), project))
        .map(|o| resource::delete_ops(&o.object, o.resource_version))
        .collect())
}
