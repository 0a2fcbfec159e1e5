//! A service's deployments (its revisions) and the rollout verbs: undo,
//! pause, resume, promote, cancel and restart. The controller's rollout
//! planner does the work; these only write what it reads, each as one
//! compare-and-swap that a concurrent controller round makes the request
//! retry.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::deployment::{Cause, DeploymentPhase, Trigger};
use berth_model::{Deployment, Role, Service};
use serde::{Deserialize, Serialize};

use super::extract::{Body, Query};
use super::project::Named;
use super::resource::{fetch, shown};
use super::{parse, ApiFailure, AppState};
use crate::controller::events;
use crate::objects::{self, DEPLOYMENTS, SERVICES};
use crate::resource::deployment::of_service;
use crate::store::{Op, StoreError};

/// Longest `?wait=` on a deployment.
const MAX_WAIT_SECS: u64 = 30;

/// Tries of a write that races the controller.
const WRITE_TRIES: usize = 5;

/// `GET /v1/services/{name}/deployments`: its revisions, oldest first.
pub async fn list(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Vec<Versioned<Deployment>>>, ApiFailure> {
    named.project.require(Role::ViewNoLogs)?;
    let service = named.qualified::<Service>();
    fetch::<Service>(&state, &service).await?;
    let deployments = of_service(state.store.as_ref(), &service).await?;
    Ok(Json(deployments.into_iter().map(shown).collect()))
}

/// `GET .../deployments/{revision}` query.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Wait up to this many seconds (at most 30) for the rollout to end.
    wait: Option<u64>,
}

/// `GET /v1/services/{name}/deployments/{revision}[?wait=SECS]`: one
/// revision; with `wait`, answers once it is over or the time is up.
pub async fn get(
    State(state): State<AppState>,
    named: Named,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    named.project.require(Role::ViewNoLogs)?;
    let revision: u64 = params
        .get("revision")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| ApiFailure::field("revision", "must be a revision number"))?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiFailure::field(
            "wait",
            format!("must be at most {MAX_WAIT_SECS} seconds, got {wait}"),
        ));
    }
    let name = Deployment::name_of(&named.qualified::<Service>(), revision);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let deployment = fetch::<Deployment>(&state, &name).await?;
        if deployment.object.status.phase.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(shown(deployment)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST .../rollback` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollback {
    /// The revision to return to; by default the last complete one before
    /// the latest.
    #[serde(default)]
    pub to_revision: Option<u64>,
}

/// What a rollback did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The new revision that returns to the old template.
    pub deployment: Versioned<Deployment>,
    /// The image triggers turned off (`STREAM:TAG -> container`), so that
    /// the next push does not replace the rollback.
    pub triggers_disabled: Vec<String>,
}

/// `POST /v1/services/{name}/rollback`: a new revision with an earlier
/// one's template, written with the service in one commit. Its image
/// triggers are turned off.
pub async fn rollback(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<RolledBack>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let request: Rollback = if body.is_empty() {
        Rollback::default()
    } else {
        parse("rollback", &body)?
    };
    let name = named.qualified::<Service>();
    let by = named.project.caller.to_string();
    for _ in 0..WRITE_TRIES {
        let current = fetch::<Service>(&state, &name).await?;
        let deployments = of_service(state.store.as_ref(), &name).await?;
        let latest = deployments.last().map_or(0, |d| d.object.revision);
        let back = match request.to_revision {
            Some(revision) => {
                let found = deployments.iter().find(|d| d.object.revision == revision);
                let Some(found) = found else {
                    return Err(ApiFailure::field_with_status(
                        StatusCode::NOT_FOUND,
                        "toRevision",
                        format!(
                            "revision {revision} of {} is not in its history ({})",
                            named.name,
                            kept(&deployments)
                        ),
                    ));
                };
                if revision == latest {
                    return Err(ApiFailure::field_with_status(
                        StatusCode::CONFLICT,
                        "toRevision",
                        format!("revision {revision} is the latest one"),
                    ));
                }
                found
            }
            None => deployments
                .iter()
                .rev()
                .filter(|d| d.object.revision != latest)
                .find(|d| d.object.status.phase == DeploymentPhase::Complete)
                .ok_or_else(|| {
                    ApiFailure::new(
                        StatusCode::CONFLICT,
                        format!(
                            "{} has no earlier complete revision to return to",
                            named.name
                        ),
                    )
                })?,
        };
        let mut service = current.object.clone();
        service.template = back.object.template.clone();
        service.env = back.object.env.clone();
        let mut triggers_disabled = Vec::new();
        for trigger in &mut service.triggers {
            if let Trigger::ImageChange(image) = trigger {
                if image.automatic {
                    image.automatic = false;
                    triggers_disabled.push(format!("{} -> {}", image.from, image.container));
                }
            }
        }
        let cause = Cause::Rollback {
            to_revision: back.object.revision,
            automatic: false,
        };
        let deployment = Deployment::begin(&service, latest + 1, cause, &by, events::now_ms());
        let ops = vec![
            objects::update(SERVICES, &name, &service, current.resource_version),
            objects::create(DEPLOYMENTS, &deployment.name, &deployment),
        ];
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok(Json(RolledBack {
                    deployment: shown(Versioned {
                        resource_version: revision,
                        object: deployment,
                    }),
                    triggers_disabled,
                }))
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy(&named.name))
}

/// `POST /v1/services/{name}/restart`: a new revision of the service's
/// template as it is (new pods, rolled out by its strategy); also how a
/// change made without the configChange trigger rolls out.
pub async fn restart(
    State(state): State<AppState>,
    named: Named,
) -> Result<(StatusCode, Json<Versioned<Deployment>>), ApiFailure> {
    named.project.require(Role::Edit)?;
    let name = named.qualified::<Service>();
    let by = named.project.caller.to_string();
    for _ in 0..WRITE_TRIES {
        let current = fetch::<Service>(&state, &name).await?;
        let latest = of_service(state.store.as_ref(), &name)
            .await?
            .last()
            .map_or(0, |d| d.object.revision);
        let deployment = Deployment::begin(
            &current.object,
            latest + 1,
            Cause::Manual,
            &by,
            events::now_ms(),
        );
        // The service is rewritten unchanged so that a concurrent change
        // to it conflicts instead of slipping between revisions.
        let ops = vec![
            objects::update(SERVICES, &name, &current.object, current.resource_version),
            objects::create(DEPLOYMENTS, &deployment.name, &deployment),
        ];
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(shown(Versioned {
                        resource_version: revision,
                        object: deployment,
                    })),
                ))
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy(&named.name))
}

/// `POST /v1/services/{name}/pause`: the running rollout stops where it
/// is until resumed.
pub async fn pause(
    state: State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    running_rollout(state, named, |d| d.status.paused = true).await
}

/// `POST /v1/services/{name}/resume`.
pub async fn resume(
    state: State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    running_rollout(state, named, |d| d.status.paused = false).await
}

/// `POST /v1/services/{name}/promote`: a canary goes on to every replica.
pub async fn promote(
    state: State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    running_rollout(state, named, |d| d.status.promoted = true).await
}

/// `POST /v1/services/{name}/cancel`: the running rollout ends
/// `Cancelled`, and the last complete revision serves again.
pub async fn cancel(
    state: State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    let by = named.project.caller.to_string();
    running_rollout(state, named, move |d| {
        d.status.phase = DeploymentPhase::Cancelled;
        d.status.reason = Some(format!("cancelled by {by}"));
        d.status.ended_ms = Some(events::now_ms());
    })
    .await
}

/// Changes the service's running rollout (its latest deployment), or
/// answers 409 when none runs.
async fn running_rollout(
    State(state): State<AppState>,
    named: Named,
    change: impl Fn(&mut Deployment),
) -> Result<Json<Versioned<Deployment>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let name = named.qualified::<Service>();
    fetch::<Service>(&state, &name).await?;
    for _ in 0..WRITE_TRIES {
        let deployments = of_service(state.store.as_ref(), &name).await?;
        let Some(latest) = deployments.last() else {
            return Err(no_rollout(&named.name, "it has no revision yet"));
        };
        if latest.object.status.phase != DeploymentPhase::Running {
            return Err(no_rollout(
                &named.name,
                &format!(
                    "revision {} is {}",
                    latest.object.revision, latest.object.status.phase
                ),
            ));
        }
        let mut deployment = latest.object.clone();
        change(&mut deployment);
        let op: Op = objects::update(
            DEPLOYMENTS,
            &deployment.name,
            &deployment,
            latest.resource_version,
        );
        match state.store.apply(vec![op]).await {
            Ok(revision) => {
                return Ok(Json(shown(Versioned {
                    resource_version: revision,
                    object: deployment,
                })))
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy(&named.name))
}

fn no_rollout(service: &str, why: &str) -> ApiFailure {
    ApiFailure::new(
        StatusCode::CONFLICT,
        format!("no rollout of {service} is running: {why}"),
    )
}

fn busy(service: &str) -> ApiFailure {
    ApiFailure::new(
        StatusCode::CONFLICT,
        format!("{service} kept changing while this was written; try again"),
    )
}

/// The revisions kept, as `2, 3, 5`.
fn kept(deployments: &[Versioned<Deployment>]) -> String {
    let revisions: Vec<String> = deployments
        .iter()
        .map(|d| d.object.revision.to_string())
        .collect();
    if revisions.is_empty() {
        "none kept".to_owned()
    } else {
        format!("kept: {}", revisions.join(", "))
    }
}
