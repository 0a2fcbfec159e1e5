//! `POST /v1/[projects/P/]export`: a project's services, with their
//! links and the routes to them, as a template (`berth template export`).
//! The master does it because only it sees the secrets: it tells which
//! of them are the same value (a password a database keeps and
//! publishes), so the copy generates one value for them; the answer
//! holds no secret (see `berth_model::template_export`).

use axum::extract::State;
use axum::Json;
use berth_model::template_export::{export as export_template, Parameterize};
use berth_model::{validate_dns_label, Role, Route, Service, Template};
use serde::Deserialize;

use super::extract::Body;
use super::project::InProject;
use super::resource::fetch;
use super::{parse, ApiFailure, AppState};
use crate::objects::{self, ROUTES};

/// What to export.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExportRequest {
    /// The template's name.
    name: String,
    /// The services, as the project calls them.
    services: Vec<String>,
    /// `image` and/or `replicas`: turned into parameters too.
    #[serde(default)]
    parameterize: Vec<String>,
}

/// `POST /v1/export`: the template, or a 400 naming the field, or the 404
/// of a service that does not exist.
pub async fn export(
    State(state): State<AppState>,
    in_project: InProject,
    Body(body): Body,
) -> Result<Json<Template>, ApiFailure> {
    in_project.require(Role::View)?;
    let request: ExportRequest = parse("export request", &body)?;
    validate_dns_label(&request.name).map_err(|e| ApiFailure::field("name", e.to_string()))?;
    if request.services.is_empty() {
        return Err(ApiFailure::field("services", "name at least one service"));
    }
    let mut parameterize = Parameterize::default();
    for (i, what) in request.parameterize.iter().enumerate() {
        match what.as_str() {
            "image" => parameterize.image = true,
            "replicas" => parameterize.replicas = true,
            other => {
                return Err(ApiFailure::field(
                    &format!("parameterize[{i}]"),
                    format!("{other:?} is not one of image, replicas"),
                ))
            }
        }
    }
    let mut services: Vec<Service> = Vec::new();
    for (i, name) in request.services.iter().enumerate() {
        if request.services[..i].contains(name) {
            return Err(ApiFailure::field(
                &format!("services[{i}]"),
                format!("{name} is named twice"),
            ));
        }
        if validate_dns_label(name).is_err() {
            return Err(ApiFailure::field(
                &format!("services[{i}]"),
                format!("{name:?} is not a service name"),
            ));
        }
        let service = fetch::<Service>(&state, &in_project.qualify::<Service>(name)).await?;
        services.push(service.object.unqualified());
    }
    let (routes, _) = objects::list::<Route>(state.store.as_ref(), ROUTES).await?;
    let routes: Vec<Route> = routes
        .into_iter()
        .map(|r| r.object)
        .filter(|r| in_project.holds(r))
        .map(Route::unqualified)
        .collect();
    Ok(Json(export_template(
        &request.name,
        &services,
        &routes,
        parameterize,
    )))
}
