//! Which project a request is in: `/v1/projects/{project}/...`, or the
//! `default` project on the paths that name none (those of the API before
//! projects, which keep working). A project that does not exist is a 404
//! before anything else is looked at.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use berth_model::project::{in_project, qualify, DEFAULT_PROJECT};
use berth_model::Project;

use super::extract::Path;
use super::{ApiFailure, AppState};
use crate::resource::{self, Resource, Scope};

/// The request's project, which exists.
#[derive(Debug, Clone)]
pub struct InProject(pub String);

impl InProject {
    /// The cluster's name of `R` object `name` in this project.
    pub fn qualify<R: Resource>(&self, name: &str) -> String {
        match R::SCOPE {
            Scope::Cluster => name.to_owned(),
            Scope::Project => qualify(&self.0, name),
        }
    }

    /// Whether `object` belongs to this project.
    pub fn holds<R: Resource>(&self, object: &R) -> bool {
        match R::SCOPE {
            Scope::Cluster => true,
            Scope::Project => in_project(object.name(), &self.0),
        }
    }
}

impl FromRequestParts<AppState> for InProject {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = params(parts, state).await?;
        let Some(project) = params.get("project") else {
            return Ok(InProject(DEFAULT_PROJECT.to_owned()));
        };
        require_project(state, project).await?;
        Ok(InProject(project.clone()))
    }
}

/// A request about one object: its project and its name there (on
/// `/v1/projects/{project}`, the project itself).
#[derive(Debug, Clone)]
pub struct Named {
    /// The project.
    pub project: InProject,
    /// The object's name in it, as the path gives it.
    pub name: String,
}

impl Named {
    /// The cluster's name of the `R` object.
    pub fn qualified<R: Resource>(&self) -> String {
        self.project.qualify::<R>(&self.name)
    }
}

impl FromRequestParts<AppState> for Named {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let project = InProject::from_request_parts(parts, state).await?;
        let mut params = params(parts, state).await?;
        // `/v1/projects/{project}` names the project itself.
        let name = match params.remove("name") {
            Some(name) => name,
            None => project.0.clone(),
        };
        Ok(Named { project, name })
    }
}

async fn params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<HashMap<String, String>, ApiFailure> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state).await?;
    Ok(params)
}

/// A 404 unless project `name` exists; `default` always does.
pub async fn require_project(state: &AppState, name: &str) -> Result<(), ApiFailure> {
    if name == DEFAULT_PROJECT
        || resource::get::<Project>(state.store.as_ref(), name)
            .await?
            .is_some()
    {
        return Ok(());
    }
    Err(ApiFailure::new(
        StatusCode::NOT_FOUND,
        resource::not_found_message::<Project>(name),
    ))
}
