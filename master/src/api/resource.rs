//! The handlers every kind shares: list (or watch), get, create, update and
//! delete, for the admin, each object redacted on its way out. What differs
//! between kinds is said by their [`Resource`] impl; their own verbs
//! (scale, links, move, rejected) use the helpers here. A project's kind
//! is served in its project ([`InProject`]): names are qualified on the way
//! in and unqualified on the way out.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::Versioned;
use berth_model::{FieldError, ImageStream, Role};

use super::extract::{Body, Query};
use super::project::{InProject, Named};
use super::watch::{self, WatchQuery};
use super::{parse, ApiFailure, AppState};
use crate::objects;
use crate::resource::{self, Resource, Settings, Update};
use crate::store::StoreError;

impl AppState {
    /// What completing and checking objects of `project` may consult;
    /// `shared` is [`AppState::shared_with`] the project.
    pub fn settings<'a>(&'a self, project: &'a str, shared: &'a BTreeSet<String>) -> Settings<'a> {
        Settings {
            host_ports: &self.host_ports,
            network_volume_servers: &self.network_volume_servers,
            route_suffix: &self.route_suffix,
            project,
            registry: self.registry.as_deref().map(|r| r.address.as_str()),
            shared,
        }
    }

    /// The repositories (`PROJECT/STREAM`) of other projects' image
    /// streams shared with `project`, read from the store now, so that a
    /// revoked share refuses the next object at once.
    pub async fn shared_with(&self, project: &str) -> Result<BTreeSet<String>, ApiFailure> {
        if self.registry.is_none() {
            return Ok(BTreeSet::new());
        }
        let streams = resource::list::<ImageStream>(self.store.as_ref()).await?;
        Ok(streams
            .into_iter()
            .filter(|s| s.object.status.shared_with.iter().any(|p| p == project))
            .map(|s| {
                let (owner, stream) = berth_model::project::split_qualified(&s.object.name);
                crate::registry::repository(owner, stream)
            })
            .collect())
    }
}

/// The 404 of an object that does not exist, named as its project calls
/// it.
pub fn not_found<R: Resource>(name: &str) -> ApiFailure {
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        resource::not_found_message::<R>(berth_model::project::unqualified(name)),
    )
}

/// Object `name` (qualified) of kind `R`, or its 404.
pub async fn fetch<R: Resource>(state: &AppState, name: &str) -> Result<Versioned<R>, ApiFailure> {
    resource::get::<R>(state.store.as_ref(), name)
        .await?
        .ok_or_else(|| not_found::<R>(name))
}

/// The object as its project's users see it, with its revision.
pub fn shown<R: Resource>(object: Versioned<R>) -> Versioned<R> {
    object.map(|o| o.redacted().unqualified())
}

/// The answer of a written object, redacted.
pub fn written<R: Resource>(object: R, resource_version: u64) -> Json<Versioned<R>> {
    Json(shown(Versioned {
        resource_version,
        object,
    }))
}

/// Writes what `cancelled` makes of object `name` (qualified), or answers
/// it as it is when `cancelled` says there is nothing to cancel (cancelled
/// already, or over). The controller writes such objects every round: a
/// cancel that loses that race reads the object again.
pub async fn cancel<R: Resource>(
    state: &AppState,
    name: &str,
    cancelled: impl Fn(&R) -> Option<R>,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    const TRIES: usize = 6;
    for _ in 0..TRIES {
        let current = fetch::<R>(state, name).await?;
        let Some(object) = cancelled(&current.object) else {
            return Ok(Json(shown(current)));
        };
        let op = objects::update(R::PREFIX, name, &object, current.resource_version);
        match state.store.apply(vec![op]).await {
            Ok(revision) => return Ok(written(object, revision)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiFailure::new(
        StatusCode::CONFLICT,
        format!("the {} kept changing; try again", R::KIND),
    ))
}

fn invalid<R: Resource>(errors: berth_model::ValidationErrors) -> ApiFailure {
    ApiFailure::invalid(R::KIND, errors)
}

fn claim_taken<R: Resource>(object: &R, claim: &str, holder: Option<&str>) -> ApiFailure {
    let FieldError { field, message } = object.claim_taken(claim, holder);
    ApiFailure::field_with_status(StatusCode::CONFLICT, &field, message)
}

/// Refuses the claims another object holds, naming it.
pub async fn require_free<R: Resource>(
    store: &dyn crate::store::Store,
    object: &R,
    claims: &[String],
) -> Result<(), ApiFailure> {
    for claim in claims {
        if let Some(held) = store.get(claim).await? {
            let holder = String::from_utf8_lossy(&held.value);
            return Err(claim_taken(object, claim, Some(&holder)));
        }
    }
    Ok(())
}

/// Refuses what its project does not allow (a 403 naming the quota).
pub async fn require_admitted<R: Resource>(state: &AppState, object: &R) -> Result<(), ApiFailure> {
    match object.admit(state.store.as_ref()).await? {
        None => Ok(()),
        Some(refusal) => Err(ApiFailure::new(StatusCode::FORBIDDEN, refusal)),
    }
}

/// A commit that lost a race for a claim says whose it is, like the check
/// before it.
fn commit_failure<R: Resource>(object: &R, e: StoreError) -> ApiFailure {
    match e {
        StoreError::AlreadyExists(key) if object.claims().contains(&key) => {
            claim_taken(object, &key, None)
        }
        e => e.into(),
    }
}

/// `GET /v1/<kind>[?watch=true&after=REV]`: every object, or a stream of
/// their changes.
pub async fn list<R: Resource>(
    State(state): State<AppState>,
    project: InProject,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiFailure> {
    project.require(Role::ViewNoLogs)?;
    query.check()?;
    if query.watch {
        return watch::stream(&state, R::PREFIX, query.after, move |object: R| {
            project
                .holds(&object)
                .then(|| object.redacted().unqualified())
        })
        .await;
    }
    let (objects, _) = objects::list::<R>(state.store.as_ref(), R::PREFIX).await?;
    let shown: Vec<_> = objects
        .into_iter()
        .filter(|o| project.holds(&o.object))
        .map(shown)
        .collect();
    Ok(Json(shown).into_response())
}

/// `GET /v1/<kind>/{name}`.
pub async fn get<R: Resource>(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    named.project.require(Role::ViewNoLogs)?;
    fetch::<R>(&state, &named.qualified::<R>())
        .await
        .map(|o| Json(shown(o)))
}

/// `POST /v1/<kind>`: creates an object; the same object again is a no-op
/// (200), another one of the same name a 409.
pub async fn create<R: Resource>(
    State(state): State<AppState>,
    in_project: InProject,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<R>>), ApiFailure> {
    in_project.require(R::WRITE_ROLE)?;
    let project = in_project.name;
    let shared = state.shared_with(&project).await?;
    let settings = state.settings(&project, &shared);
    let object = parse::<R>(R::KIND, &body)?.complete(&settings);
    object.validate(&settings).map_err(invalid::<R>)?;
    let object = object.qualified(&project);
    object
        .check_references(state.store.as_ref())
        .await?
        .into_result()
        .map_err(invalid::<R>)?;
    let store = state.store.as_ref();
    let object = object.resolve(store).await?.map_err(invalid::<R>)?;
    if let Some(existing) = resource::get::<R>(store, object.name()).await? {
        if existing.object == object {
            return Ok((StatusCode::OK, Json(shown(existing))));
        }
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            resource::exists_message::<R>(berth_model::project::unqualified(object.name())),
        ));
    }
    require_admitted(&state, &object).await?;
    require_free(state.store.as_ref(), &object, &object.claims()).await?;
    let mut ops = resource::create_ops(&object);
    let by = in_project.caller.to_string();
    ops.extend(object.consequences(None, store, &by).await?);
    let revision = store
        .apply(ops)
        .await
        .map_err(|e| commit_failure(&object, e))?;
    Ok((StatusCode::CREATED, written(object, revision)))
}

/// `PUT /v1/<kind>/{name}`: replaces the object in one commit, so watchers
/// never see it missing; with [`Update::IfUnchanged`], only if nobody
/// changed it since the `resourceVersion` the body carries. Secrets sent
/// blank keep their stored values; an object equal to the stored one is
/// answered as it is, unwritten.
pub async fn update<R: Resource>(
    State(state): State<AppState>,
    Named { project, name }: Named,
    Query(query): Query<UpdateQuery>,
    Body(body): Body,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    project.require(R::WRITE_ROLE)?;
    let shared = state.shared_with(&project.name).await?;
    let settings = state.settings(&project.name, &shared);
    let (object, expected) = match R::UPDATE {
        Update::IfUnchanged => {
            let versioned: Versioned<R> =
                parse(&format!("{} with resourceVersion", R::KIND), &body)?;
            (versioned.object, Some(versioned.resource_version))
        }
        Update::Replace => (parse::<R>(R::KIND, &body)?, None),
    };
    let object = object.complete(&settings);
    if object.name() != name {
        return Err(ApiFailure::field(
            "name",
            format!("does not match the path ({name})"),
        ));
    }
    object.validate(&settings).map_err(invalid::<R>)?;
    let object = object.qualified(&project.name);
    let current = fetch::<R>(&state, &project.qualify::<R>(&name)).await?;
    let object = object
        .with_secrets_from(&current.object)
        .resolve(state.store.as_ref())
        .await?
        .map_err(invalid::<R>)?;
    let expected = expected.unwrap_or(current.resource_version);
    // The same object again, at the revision stored, writes nothing: no
    // new revision, no event, nothing for watchers (`berth apply` of a
    // file whose only news could be secrets). A stale revision is still
    // refused below.
    if object == current.object && expected == current.resource_version {
        return Ok(Json(shown(current)));
    }
    if !query.force {
        object
            .check_replacement(&current.object, state.store.as_ref())
            .await?
            .into_result()
            .map_err(ApiFailure::conflicts)?;
    }
    require_admitted(&state, &object).await?;
    let (mut ops, taken) = resource::update_ops(&current.object, &object, expected);
    require_free(state.store.as_ref(), &object, &taken).await?;
    let by = project.caller.to_string();
    ops.extend(
        object
            .consequences(Some(&current.object), state.store.as_ref(), &by)
            .await?,
    );
    let revision = state
        .store
        .apply(ops)
        .await
        .map_err(|e| commit_failure(&object, e))?;
    Ok(written(object, revision))
}

/// `PUT /v1/<kind>/{name}` query.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UpdateQuery {
    /// Replace it even if other objects would suffer (a route whose port
    /// goes); they are reported broken.
    #[serde(default)]
    pub force: bool,
}

/// `DELETE /v1/<kind>/{name}`: answers the object as it was.
pub async fn delete<R: Resource>(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Versioned<R>>, ApiFailure> {
    named.project.require(R::WRITE_ROLE)?;
    let mut tries = 0;
    loop {
        let current = fetch::<R>(&state, &named.qualified::<R>()).await?;
        current
            .object
            .check_removal(state.store.as_ref())
            .await?
            .into_result()
            .map_err(ApiFailure::conflicts)?;
        let deleted = state
            .store
            .apply(resource::delete_ops(
                &current.object,
                current.resource_version,
            ))
            .await;
        match deleted {
            Ok(_) => return Ok(Json(shown(current))),
            // The delete asked for no revision: one the controller wrote
            // in between (a pod's status, a rollout's drain) is read
            // again and deleted, rather than refused.
            Err(StoreError::Conflict { .. }) if tries + 1 < DELETE_TRIES => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Tries of a delete that races the controller's writes of the object.
const DELETE_TRIES: usize = 5;
