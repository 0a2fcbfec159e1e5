//! `/v1/shared/templates`: the shared template library. Every user of
//! any project (and the admin) reads it, so `berth new-app NAME` finds a
//! template there when the project has none of that name; only the
//! cluster's admin writes it. Reads are served here, writes by the
//! generic handlers once the caller is known to be the admin.

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
use crate::resource::template::SharedTemplate;
use crate::resource::Resource;

/// Users and the admin read the library; a node's credential does not.
fn require_reader(caller: &Caller) -> Result<(), ApiFailure> {
    match caller {
        Caller::Admin | Caller::User(_) => Ok(()),
        Caller::Node(_) => Err(ApiFailure::forbidden()),
    }
}

/// `GET /v1/shared/templates`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Versioned<SharedTemplate>>>, ApiFailure> {
    require_reader(&caller)?;
    let (templates, _) =
        objects::list::<SharedTemplate>(state.store.as_ref(), SharedTemplate::PREFIX).await?;
    Ok(Json(templates))
}

/// `GET /v1/shared/templates/{name}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<SharedTemplate>>, ApiFailure> {
    require_reader(&caller)?;
    resource::fetch::<SharedTemplate>(&state, &name)
        .await
        .map(Json)
}

/// `POST /v1/shared/templates`: the admin only.
pub async fn create(
    state: State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<Versioned<SharedTemplate>>), ApiFailure> {
    require_admin(&caller)?;
    resource::create::<SharedTemplate>(state, InProject::cluster_admin(), body).await
}

/// `PUT /v1/shared/templates/{name}`: the admin only.
pub async fn update(
    state: State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Query<UpdateQuery>,
    body: Body,
) -> Result<Json<Versioned<SharedTemplate>>, ApiFailure> {
    require_admin(&caller)?;
    let named = Named {
        project: InProject::cluster_admin(),
        name,
    };
    resource::update::<SharedTemplate>(state, named, query, body).await
}

/// `DELETE /v1/shared/templates/{name}`: the admin only.
pub async fn delete(
    state: State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<SharedTemplate>>, ApiFailure> {
    require_admin(&caller)?;
    let named = Named {
        project: InProject::cluster_admin(),
        name,
    };
    resource::delete::<SharedTemplate>(state, named).await
}
