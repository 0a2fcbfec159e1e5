//! Services: replicated pod templates. Writing one is all the API does; the
//! controller creates, places and removes its pods.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::{Scale, Versioned};
use berth_model::limits::MAX_REPLICAS;
use berth_model::{Event, EventKind, Service, ValidationErrors};

use super::extract::{Body, Path, Query};
use super::watch::{self, WatchQuery};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects::{self, SERVICES};

pub(super) fn validate(
    service: &Service,
    host_ports: &berth_model::HostPortPolicy,
) -> Result<(), ApiFailure> {
    let mut errors = service.validate().err().unwrap_or_default();
    host_ports.check(&service.template, "template.", &mut errors);
    errors
        .into_result()
        .map_err(|e| ApiFailure::invalid("service", e))
}

/// A service as users see it: secret values blanked.
fn redact(service: Service) -> Service {
    service.redacted()
}

/// [`redact`], keeping the revision.
pub(super) fn redacted(mut service: Versioned<Service>) -> Versioned<Service> {
    service.object = redact(service.object);
    service
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, format!("service {name} not found"))
}

/// `GET /v1/services`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiFailure> {
    require_admin(&caller)?;
    query.check()?;
    if query.watch {
        return watch::stream(&state, SERVICES, query.after, redact).await;
    }
    let (services, _) = objects::list::<Service>(state.store.as_ref(), SERVICES).await?;
    Ok(Json(services.into_iter().map(redacted).collect::<Vec<_>>()).into_response())
}

/// `POST /v1/services`: creates a service; the same service again is a no-op.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Service>>), ApiFailure> {
    require_admin(&caller)?;
    let service: Service = parse("service", &body)?;
    validate(&service, &state.host_ports)?;
    // Linked-to services must exist when the links are made, as with
    // `POST .../links` (they may go away later: a link then has no
    // endpoints).
    let mut missing = ValidationErrors::new();
    for (i, link) in service.links.iter().enumerate() {
        if objects::get::<Service>(state.store.as_ref(), SERVICES, &link.service)
            .await?
            .is_none()
        {
            missing.push(
                format!("links[{i}].service"),
                format!("service {} not found", link.service),
            );
        }
    }
    missing
        .into_result()
        .map_err(|e| ApiFailure::invalid("service", e))?;
    if let Some(existing) =
        objects::get::<Service>(state.store.as_ref(), SERVICES, &service.name).await?
    {
        if existing.object == service {
            return Ok((StatusCode::OK, Json(redacted(existing))));
        }
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            format!("service {} exists with a different spec", service.name),
        ));
    }
    let revision = state
        .store
        .apply(vec![objects::create(SERVICES, &service.name, &service)])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(redacted(Versioned {
            resource_version: revision,
            object: service,
        })),
    ))
}

/// `GET /v1/services/{name}`.
pub async fn get_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    require_admin(&caller)?;
    objects::get::<Service>(state.store.as_ref(), SERVICES, &name)
        .await?
        .map(|s| Json(redacted(s)))
        .ok_or_else(|| not_found(&name))
}

/// `PUT /v1/services/{name}` with `resourceVersion`: replaces the service if
/// nobody changed it since it was read.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    require_admin(&caller)?;
    let versioned: Versioned<Service> = parse("service with resourceVersion", &body)?;
    if versioned.object.name != name {
        return Err(ApiFailure::field(
            "name",
            format!("does not match the path ({name})"),
        ));
    }
    validate(&versioned.object, &state.host_ports)?;
    let revision = state
        .store
        .apply(vec![objects::update(
            SERVICES,
            &name,
            &versioned.object,
            versioned.resource_version,
        )])
        .await?;
    Ok(Json(redacted(Versioned {
        resource_version: revision,
        object: versioned.object,
    })))
}

/// `POST /v1/services/{name}/scale`.
pub async fn scale(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    require_admin(&caller)?;
    let scale: Scale = parse("scale", &body)?;
    if scale.replicas > MAX_REPLICAS {
        return Err(ApiFailure::field(
            "replicas",
            format!("must be at most {MAX_REPLICAS}"),
        ));
    }
    let current = objects::get::<Service>(state.store.as_ref(), SERVICES, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let mut service = current.object;
    let before = service.replicas;
    service.replicas = scale.replicas;
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
    Ok(Json(redacted(Versioned {
        resource_version: revision,
        object: service,
    })))
}

/// `DELETE /v1/services/{name}`: its pods go with it.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<Service>>, ApiFailure> {
    require_admin(&caller)?;
    let current = objects::get::<Service>(state.store.as_ref(), SERVICES, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    state
        .store
        .apply(vec![objects::delete(
            SERVICES,
            &name,
            Some(current.resource_version),
        )])
        .await?;
    Ok(Json(redacted(current)))
}
