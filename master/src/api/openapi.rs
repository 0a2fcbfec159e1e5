//! The API's own description: an OpenAPI 3.0 document, written by hand in
//! `openapi.json` next to the handlers. Hand-written so that it says what
//! the wire types cannot (who may call what, which status means what);
//! `tests/openapi.rs` fails when a route in `router()` is missing from it
//! or one of its `$ref`s dangles. The paths of a project's objects are
//! written once, as the default project's, and served under
//! `/v1/projects/{project}` too.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};

/// The document, compiled in so that it always matches this build.
const DOCUMENT: &str = include_str!("openapi.json");

/// [`DOCUMENT`] with the project paths added.
static SERVED: LazyLock<String> = LazyLock::new(|| with_project_paths(DOCUMENT));

/// `GET /v1/openapi.json` (no credential): the OpenAPI document of this API.
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        SERVED.as_str(),
    )
}

/// Copies each path of [`super::PROJECT_PATHS`] under
/// `/v1/projects/{project}`, with the project as a path parameter, its own
/// operation ids, and a 404 for a project that does not exist.
fn with_project_paths(document: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(document) else {
        return document.to_owned();
    };
    let Some(paths) = document["paths"].as_object_mut() else {
        return document.to_string();
    };
    for suffix in super::PROJECT_PATHS {
        let Some(mut item) = paths.get(&format!("/v1{suffix}")).cloned() else {
            continue;
        };
        let project = json!({"$ref": "#/components/parameters/ProjectName"});
        let mut parameters = vec![project];
        if let Some(own) = item["parameters"].as_array() {
            parameters.extend(own.iter().cloned());
        }
        item["parameters"] = Value::Array(parameters);
        if let Some(operations) = item.as_object_mut() {
            for (method, operation) in operations.iter_mut() {
                if method == "parameters" {
                    continue;
                }
                if let Some(id) = operation["operationId"].as_str() {
                    operation["operationId"] = json!(format!("{id}InProject"));
                }
                if operation["responses"]["404"].is_null() {
                    operation["responses"]["404"] =
                        json!({"$ref": "#/components/responses/NotFound"});
                }
            }
        }
        paths.insert(format!("/v1/projects/{{project}}{suffix}"), item);
    }
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::{with_project_paths, DOCUMENT};

    #[test]
    fn the_document_is_openapi_3_0_json() {
        let document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON");
        let version = document["openapi"].as_str().expect("no openapi version");
        assert!(version.starts_with("3.0."), "{version}");
        assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }

    #[test]
    fn every_project_path_is_served_under_its_project_too() {
        let served: serde_json::Value =
            serde_json::from_str(&with_project_paths(DOCUMENT)).expect("JSON");
        for suffix in super::super::PROJECT_PATHS {
            let path = format!("/v1/projects/{{project}}{suffix}");
            let item = &served["paths"][&path];
            assert!(item.is_object(), "{path} is not served");
            assert_eq!(
                item["parameters"][0]["$ref"], "#/components/parameters/ProjectName",
                "{path}"
            );
        }
    }
}
