//! The API's own description: an OpenAPI 3.0 document, written by hand in
//! `openapi.json` next to the handlers and served as is. Hand-written so
//! that it says what the wire types cannot (who may call what, which status
//! means what); `tests/openapi.rs` fails when a route in `router()` is
//! missing from it or one of its `$ref`s dangles.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, compiled in so that it always matches this build.
const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json` (no credential): the OpenAPI document of this API.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;

    #[test]
    fn the_document_is_openapi_3_0_json() {
        let document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON");
        let version = document["openapi"].as_str().expect("no openapi version");
        assert!(version.starts_with("3.0."), "{version}");
        assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
