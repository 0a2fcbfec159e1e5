//! Links on a service: `POST /v1/services/{name}/links` adds one,
//! `DELETE /v1/services/{name}/links/{target}` removes them. Writing the
//! service is all the API does: the controller copies the links onto the
//! service's pods, and their nodes rewire them without restarting them.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::{Link, Role, Service};
use serde::Deserialize;

use berth_model::link::validate_links;
use berth_model::project::qualify_reference;
use berth_model::ValidationErrors;

use super::extract::{Body, Path, Query};
use super::project::Named;
use super::resource::{fetch, shown, written};
use super::{parse, ApiFailure, AppState};
use crate::objects::{self, SERVICES};
use crate::resource::service::link_target_problem;

/// The linked-to service must exist when the link is made (it may go
/// away later: the link then has no endpoints).
async fn require_target(state: &AppState, from: &str, target: &str) -> Result<(), ApiFailure> {
    match link_target_problem(state.store.as_ref(), from, target).await? {
        None => Ok(()),
        Some(problem) => Err(ApiFailure::field("service", problem)),
    }
}

/// Checks the last link of `service` (the one being added), naming the
/// fields as the request body spells them (`localPort`, not
/// `links[3].localPort`).
fn check_new_link(service: &Service) -> Result<(), ApiFailure> {
    let mut all = ValidationErrors::new();
    validate_links("links", &service.name, &service.links, &mut all);
    let new = format!("links[{}].", service.links.len() - 1);
    let mut errors = ValidationErrors::new();
    for e in all.errors() {
        match e.field.strip_prefix(&new) {
            Some(field) => errors.push(field, e.message.clone()),
            None if e.field == "links" => errors.push("service", e.message.clone()),
            None => {}
        }
    }
    errors
        .into_result()
        .map_err(|e| ApiFailure::invalid("link", e))
}

/// `POST /v1/services/{name}/links`: adds a link; the same link again is
/// a no-op. Running pods are rewired at once; the link's variables
/// (`<B>_HOST`, `<B>_PORT`, ...) reach them only when they are next
/// created, since a container's environment is fixed when it starts.
pub async fn add(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Service>>), ApiFailure> {
    named.project.require(Role::Edit)?;
    let link: Link = parse("link", &body)?;
    let name = named.qualified::<Service>();
    let current = fetch::<Service>(&state, &name).await?;
    // Judged as the project sees it, so that errors name what was sent.
    let mut seen = current.object.clone().unqualified();
    if seen.links.contains(&link) {
        return Ok((StatusCode::OK, Json(shown(current))));
    }
    seen.links.push(link);
    check_new_link(&seen)?;
    let updated = seen.qualified(&named.project.name);
    let target = updated
        .links
        .last()
        .map(|l| l.service.clone())
        .unwrap_or_default();
    require_target(&state, &name, &target).await?;
    let revision = state
        .store
        .apply(vec![objects::update(
            SERVICES,
            &name,
            &updated,
            current.resource_version,
        )])
        .await?;
    Ok((StatusCode::CREATED, written(updated, revision)))
}

/// `?port=`: which of the links to the target to remove (all without it).
#[derive(Debug, Deserialize)]
pub struct UnlinkQuery {
    port: Option<u16>,
}

/// `DELETE /v1/services/{name}/links/{target}[?port=P]`.
pub async fn remove(
    State(state): State<AppState>,
    named: Named,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<UnlinkQuery>,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let shown_target = params.get("target").cloned().unwrap_or_default();
    let target = qualify_reference(&named.project.name, &shown_target);
    let name = named.qualified::<Service>();
    let current = fetch::<Service>(&state, &name).await?;
    let mut updated = current.object.clone();
    updated
        .links
        .retain(|l| l.service != target || query.port.is_some_and(|p| p != l.port));
    if updated.links.len() == current.object.links.len() {
        return Err(ApiFailure::new(
            StatusCode::NOT_FOUND,
            format!("service {} has no such link to {shown_target}", named.name),
        ));
    }
    let revision = state
        .store
        .apply(vec![objects::update(
            SERVICES,
            &name,
            &updated,
            current.resource_version,
        )])
        .await?;
    Ok(written(updated, revision))
}
