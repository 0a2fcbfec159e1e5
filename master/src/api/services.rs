//! Services: replicated pod templates. Writing one is all the API does; the
//! controller creates, places and removes its pods. Listing, watching,
//! creating, updating and deleting them is [`super::resource`]'s; scaling
//! is theirs alone.

use axum::extract::State;
use axum::Json;
use berth_model::api::{Scale, Versioned};
use berth_model::cluster::validate_replicas;
use berth_model::{Event, EventKind, Role, Service};

use super::extract::Body;
use super::project::Named;
use super::resource::{fetch, require_admitted, written};
use super::{parse, ApiFailure, AppState};
use crate::controller::events;
use crate::objects::{self, SERVICES};

/// `POST /v1/services/{name}/scale`.
pub async fn scale(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let scale: Scale = parse("scale", &body)?;
    validate_replicas(scale.replicas).map_err(|e| ApiFailure::field("replicas", e))?;
    let name = named.qualified::<Service>();
    let current = fetch::<Service>(&state, &name).await?;
    let mut service = current.object;
    service
        .check_single_writer(scale.replicas)
        .map_err(|e| ApiFailure::field("replicas", e))?;
    let before = service.replicas;
    service.replicas = scale.replicas;
    require_admitted(&state, &service).await?;
    let mut ops = vec![objects::update(
        SERVICES,
        &name,
        &service,
        current.resource_version,
    )];
    // Recorded with the change itself, so the history cannot disagree
    // with the service.
    if before != service.replicas {
        ops.push(events::record(&Event {
            time_ms: events::now_ms(),
            kind: EventKind::ServiceScaled,
            object: format!("service/{name}"),
            node: None,
            reason: format!("scaled from {before} to {} replicas", service.replicas),
        }));
    }
    let revision = state.store.apply(ops).await?;
    Ok(written(service, revision))
}
