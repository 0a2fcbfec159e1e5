//! Which project a request is in, and what its caller may do there:
//! `/v1/projects/{project}/...`, or the `default` project on the paths that
//! name none (those of the API before projects, which keep working).
//!
//! A project that does not exist is a 404 before anything else is looked
//! at, and so is one the calling user has no role in: names do not leak.
//! A role too weak for the request is a 403 naming the role it needs.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use berth_model::project::{in_project, qualify, DEFAULT_PROJECT};
use berth_model::{Project, Role};

use super::extract::Path;
use super::{ApiFailure, AppState};
use crate::auth::Caller;
use crate::resource::{self, Resource, Scope};

/// The request's project, which exists, and the caller's access to it.
#[derive(Debug, Clone)]
pub struct InProject {
    /// The project's name.
    pub name: String,
    /// Who calls.
    pub caller: Caller,
    /// The calling user's role in it (`None` for the admin and nodes).
    role: Option<Role>,
}

impl InProject {
    /// The cluster admin in the default project: for cluster-wide kinds
    /// whose handlers have checked the caller themselves.
    pub fn cluster_admin() -> Self {
        InProject {
            name: DEFAULT_PROJECT.to_owned(),
            caller: Caller::Admin,
            role: None,
        }
    }

    /// Where this project's API paths start: `/v1` for the default
    /// project, `/v1/projects/NAME` for the others.
    pub fn api_prefix(&self) -> String {
        if self.name == DEFAULT_PROJECT {
            "/v1".to_owned()
        } else {
            format!("/v1/projects/{}", self.name)
        }
    }

    /// The cluster's name of `R` object `name` in this project.
    pub fn qualify<R: Resource>(&self, name: &str) -> String {
        match R::SCOPE {
            Scope::Cluster => name.to_owned(),
            Scope::Project => qualify(&self.name, name),
        }
    }

    /// Whether `object` belongs to this project.
    pub fn holds<R: Resource>(&self, object: &R) -> bool {
        match R::SCOPE {
            Scope::Cluster => true,
            Scope::Project => in_project(object.name(), &self.name),
        }
    }

    /// Refuses a caller who may not do what needs `needed`: a user with a
    /// weaker role (403 naming the role), or a node.
    pub fn require(&self, needed: Role) -> Result<(), ApiFailure> {
        match (&self.caller, self.role) {
            (Caller::Admin, _) => Ok(()),
            (Caller::User(_), Some(role)) if role >= needed => Ok(()),
            (Caller::User(user), role) => Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {needed} role in project {}; {user} has {}",
                    self.name,
                    role.map_or("none".to_owned(), |r| r.to_string())
                ),
            )),
            (Caller::Node(_), _) => Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                "this credential may not do that",
            )),
        }
    }
}

impl FromRequestParts<AppState> for InProject {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let name = params(parts, state)
            .await?
            .remove("project")
            .unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
        let role = access(state, &caller, &name).await?;
        Ok(InProject { name, caller, role })
    }
}

/// The caller's role in project `name`; a 404 if it does not exist, or if
/// the caller is a user without a role in it.
async fn access(state: &AppState, caller: &Caller, name: &str) -> Result<Option<Role>, ApiFailure> {
    let not_found = || {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            resource::not_found_message::<Project>(name),
        )
    };
    // The default project always exists; only a user needs it read.
    if name == DEFAULT_PROJECT && !matches!(caller, Caller::User(_)) {
        return Ok(None);
    }
    let project = resource::get::<Project>(state.store.as_ref(), name)
        .await?
        .ok_or_else(not_found)?;
    match caller {
        Caller::User(user) => project.object.role_of(user).map(Some).ok_or_else(not_found),
        Caller::Admin | Caller::Node(_) => Ok(None),
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
        let name = match params(parts, state).await?.remove("name") {
            Some(name) => name,
            None => project.name.clone(),
        };
        // No object's name has a `.`: inside the cluster a dot separates a
        // project from a name, so `team.web` asked for in `default` would
        // reach project team's `web`.
        if name.contains('.') {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                format!("no object is named {name:?}: names have no \".\""),
            ));
        }
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
