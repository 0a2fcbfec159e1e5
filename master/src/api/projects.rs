//! Projects' own verbs. Users list the projects they have a role in, and
//! a person (not a robot) may create one, becoming its admin. Removing a
//! project removes everything in it, in one commit: its services, routes
//! (with their claims) and pods, whose nodes then stop them. `default`
//! stays: the paths without a project serve it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::project::{in_project, DEFAULT_PROJECT};
use berth_model::{
    BuildConfig, ClusterPod, CronJob, Event, EventKind, ImageStream, Job, Project, Role, Route,
    Service, User,
};

use super::extract::Body;
use super::project::Named;
use super::resource::{fetch, shown, written};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects::{self, PROJECTS};
use crate::resource::{self, Resource};
use crate::store::{Op, Store, StoreError};

/// `GET /v1/projects`: the admin's all; a user's, those it has a role in.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Versioned<Project>>>, ApiFailure> {
    let (projects, _) = objects::list::<Project>(state.store.as_ref(), PROJECTS).await?;
    let visible = |p: &Project| match &caller {
        Caller::Admin => true,
        Caller::User(user) => p.role_of(user).is_some(),
        Caller::Node(_) => false,
    };
    if matches!(caller, Caller::Node(_)) {
        require_admin(&caller)?;
    }
    Ok(Json(
        projects
            .into_iter()
            .filter(|p| visible(&p.object))
            .map(shown)
            .collect(),
    ))
}

/// `POST /v1/projects`: the admin, or a person, who becomes its admin; the
/// same project again is a no-op.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Project>>), ApiFailure> {
    let mut project: Project = parse(Project::KIND, &body)?;
    project
        .validate()
        .map_err(|e| ApiFailure::invalid(Project::KIND, e))?;
    match &caller {
        Caller::Admin => {}
        Caller::User(user) => {
            let account = fetch::<User>(&state, user).await?;
            if account.object.robot {
                return Err(ApiFailure::new(
                    StatusCode::FORBIDDEN,
                    "robot accounts cannot create projects: a project admin adds them to one",
                ));
            }
            project.members.insert(user.clone(), Role::Admin);
        }
        Caller::Node(_) => require_admin(&caller)?,
    }
    let store = state.store.as_ref();
    if let Some(existing) = resource::get::<Project>(store, &project.name).await? {
        // Known to its members only: anyone else learns nothing of it.
        let member = match &caller {
            Caller::User(user) => existing.object.role_of(user).is_some(),
            _ => true,
        };
        if member && existing.object == project {
            return Ok((StatusCode::OK, Json(shown(existing))));
        }
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            resource::exists_message::<Project>(&project.name),
        ));
    }
    let revision = store.apply(resource::create_ops(&project)).await?;
    Ok((StatusCode::CREATED, written(project, revision)))
}

/// `PUT /v1/projects/{project}`: its admins change its description,
/// grants and members; its quota is the cluster admin's to set.
pub async fn update(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<Project>>, ApiFailure> {
    if !matches!(named.project.caller, Caller::Admin) {
        let sent: Versioned<Project> = parse("project with resourceVersion", &body)?;
        let current = fetch::<Project>(&state, &named.name).await?;
        if sent.object.quota != current.object.quota {
            return Err(ApiFailure::field_with_status(
                StatusCode::FORBIDDEN,
                "quota",
                "only the cluster's admin sets a project's quota",
            ));
        }
    }
    super::resource::update::<Project>(
        State(state),
        named,
        super::extract::Query(Default::default()),
        Body(body),
    )
    .await
}

/// `DELETE /v1/projects/{project}`: answers the project as it was.
pub async fn delete(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Project>>, ApiFailure> {
    named.project.require(Role::Admin)?;
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
        .chain(contents_of::<Job>(store, &named.name).await?)
        .chain(contents_of::<CronJob>(store, &named.name).await?)
        .chain(contents_of::<ImageStream>(store, &named.name).await?)
        // Its builds go with it: the controller forgets a config's builds.
        .chain(contents_of::<BuildConfig>(store, &named.name).await?)
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
