//! Cluster-wide kinds that every user of any project (and the admin)
//! reads and only the cluster's admin writes: the shared template library
//! (`/v1/shared/templates`, so `berth new-app NAME` finds a template there
//! when the project has none of that name) and the network volumes
//! (`/v1/volumes`). Reads are served here, writes by the generic handlers
//! once the caller is known to be the admin.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;

use super::extract::{Body, Path, Query};
use super::project::{InProject, Named};
use super::resource::{self, UpdateQuery};
use super::{require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects;
use crate::resource::Resource;

/// Users and the admin read these kinds; a node's credential does not.
fn require_reader(caller: &Caller) -> Result<(), ApiFailure> {
    match caller {
        Caller::Admin | Caller::User(_) => Ok(()),
        Caller::Node(_) => Err(ApiFailure::forbidden()),
    }
}

fn as_admin(name: String) -> Named {
    Named {
        project: InProject::cluster_admin(),
        name,
    }
}

/// `GET /v1/<kind>`.
pub async fn list<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Versioned<R>>>, ApiFailure> {
    require_reader(&caller)?;
    let (objects, _) = objects::list::<R>(state.store.as_ref(), R::PREFIX).await?;
    Ok(Json(objects.into_iter().map(resource::shown).collect()))
}

/// `GET /v1/<kind>/{name}`.
pub async fn get<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    require_reader(&caller)?;
    resource::fetch::<R>(&state, &name)
        .await
        .map(|o| Json(resource::shown(o)))
}

/// `POST /v1/<kind>`: the admin only.
pub async fn create<R: Resource>(
    state: State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<Versioned<R>>), ApiFailure> {
    require_admin(&caller)?;
    resource::create::<R>(state, InProject::cluster_admin(), body).await
}

/// `PUT /v1/<kind>/{name}`: the admin only.
pub async fn update<R: Resource>(
    state: State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Query<UpdateQuery>,
    body: Body,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    require_admin(&caller)?;
    resource::update::<R>(state, as_admin(name), query, body).await
}

/// `DELETE /v1/<kind>/{name}`: the admin only.
pub async fn delete<R: Resource>(
    state: State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    require_admin(&caller)?;
    resource::delete::<R>(state, as_admin(name)).await
}
