//! Routes: DNS names that routers send to services. The API checks a route
//! completely before it is stored (hostname, path, certificate against key,
//! no other route on the same host and path), so a bad route is refused
//! here and never reaches a router. Routers long-poll the routes they
//! serve and report the ones HAProxy still refused.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::route::{RouteRejection, RoutesView};
use berth_model::{Event, EventKind, Route, ValidationErrors};
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::extract::{self, Body, Path, Query};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects::{self, ROUTES, ROUTE_CLAIMS};
use crate::store::Op;

/// Checks a route as a whole: the model's rules, then whether its
/// certificate and key belong together.
fn validate(route: &Route) -> Result<(), ApiFailure> {
    let mut errors = match route.validate() {
        Ok(()) => ValidationErrors::new(),
        Err(errors) => errors,
    };
    if let Some(tls) = &route.tls {
        if let (Some(certificate), Some(key)) = (&tls.certificate, &tls.key) {
            if errors.is_empty() {
                if let Err((field, message)) = check_key_pair(certificate, key) {
                    errors.push(field, message);
                }
            }
        }
    }
    errors
        .into_result()
        .map_err(|e| ApiFailure::invalid("route", e))
}

/// Whether `key` is the private key of the first certificate in
/// `certificate` (both PEM): the router would otherwise serve a TLS
/// handshake no client can complete.
fn check_key_pair(certificate: &str, key: &str) -> Result<(), (&'static str, String)> {
    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("tls.certificate", format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(("tls.certificate", "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| ("tls.key", format!("not a PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ("tls.key", format!("unsupported private key: {e}")))?;
    match rustls::sign::CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err((
            "tls.key",
            "does not match the certificate's public key".into(),
        )),
        Err(e) => Err(("tls.certificate", format!("cannot be used: {e}"))),
    }
}

/// The claim key of a route's host and path.
fn claim(route: &Route) -> String {
    objects::key(ROUTE_CLAIMS, &format!("{}{}", route.host, route.path))
}

/// Fills in what the master decides: the generated hostname.
fn complete(mut route: Route, suffix: &str) -> Route {
    if route.host.is_empty() {
        route.host = Route::generated_host(&route.service, suffix);
    }
    route
}

/// The routes router `node` serves. Every router serves every route for
/// now; sharding (a label selector on the router's node) goes here.
pub fn routes_for_router(routes: Vec<Route>, _node: &str) -> Vec<Route> {
    routes
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, format!("route {name} not found"))
}

fn host_taken(route: &Route) -> ApiFailure {
    ApiFailure::field(
        "host",
        format!("another route already serves {}{}", route.host, route.path),
    )
}

/// Query of `GET /v1/routes`.
#[derive(Debug, Deserialize)]
pub struct RoutesQuery {
    /// Wait until a route changes after this revision (long poll).
    after: Option<u64>,
    /// How long to wait at most, in seconds (default 30).
    timeout: Option<u64>,
}

/// `GET /v1/routes[?after=REV&timeout=SECS]`: for the admin, every route
/// with private keys blanked; for a node's router, the routes it serves,
/// keys included. With `after`, waits until a route changes after that
/// revision.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RoutesQuery>,
) -> Result<Json<RoutesView>, ApiFailure> {
    let wait = extract::long_poll_wait(query.timeout)?;
    extract::int64("after", query.after)?;
    if let Some(after) = query.after {
        let mut watch = state.store.watch(ROUTES, after).await?;
        let _ = tokio::time::timeout(wait, watch.next()).await;
    }
    let (routes, revision) = objects::list::<Route>(state.store.as_ref(), ROUTES).await?;
    let routes: Vec<Route> = routes.into_iter().map(|r| r.object).collect();
    let routes = match &caller {
        Caller::Admin => routes.into_iter().map(Route::redacted).collect(),
        Caller::Node(node) => routes_for_router(routes, node),
    };
    Ok(Json(RoutesView { revision, routes }))
}

/// `GET /v1/routes/{name}` (admin).
pub async fn get_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<Route>>, ApiFailure> {
    require_admin(&caller)?;
    let mut route = objects::get::<Route>(state.store.as_ref(), ROUTES, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    route.object = route.object.redacted();
    Ok(Json(route))
}

/// `POST /v1/routes` (admin): creates a route; the same route again is a
/// no-op.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Route>>), ApiFailure> {
    require_admin(&caller)?;
    let route = complete(parse("route", &body)?, &state.route_suffix);
    validate(&route)?;
    let store = state.store.as_ref();
    if let Some(existing) = objects::get::<Route>(store, ROUTES, &route.name).await? {
        if existing.object == route {
            let mut existing = existing;
            existing.object = existing.object.redacted();
            return Ok((StatusCode::OK, Json(existing)));
        }
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            format!(
                "route {} exists with a different spec (replace it with --replace)",
                route.name
            ),
        ));
    }
    if store.get(&claim(&route)).await?.is_some() {
        return Err(host_taken(&route));
    }
    // The claim is created with the route: a concurrent route on the same
    // host and path fails the whole commit.
    let revision = store
        .apply(vec![
            objects::create(ROUTES, &route.name, &route),
            Op::Create {
                key: claim(&route),
                value: route.name.clone().into_bytes(),
            },
        ])
        .await
        .map_err(|e| match e {
            crate::store::StoreError::AlreadyExists(key) if key.starts_with(ROUTE_CLAIMS) => {
                host_taken(&route)
            }
            e => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(Versioned {
            resource_version: revision,
            object: route.redacted(),
        }),
    ))
}

/// `PUT /v1/routes/{name}` (admin): replaces a route in one commit, so
/// routers never see it missing.
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Versioned<Route>>, ApiFailure> {
    require_admin(&caller)?;
    let route = complete(parse("route", &body)?, &state.route_suffix);
    if route.name != name {
        return Err(ApiFailure::field(
            "name",
            format!("does not match the path ({name})"),
        ));
    }
    validate(&route)?;
    let store = state.store.as_ref();
    let current = objects::get::<Route>(store, ROUTES, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let mut ops = vec![objects::update(
        ROUTES,
        &name,
        &route,
        current.resource_version,
    )];
    if claim(&current.object) != claim(&route) {
        if store.get(&claim(&route)).await?.is_some() {
            return Err(host_taken(&route));
        }
        ops.push(Op::Delete {
            key: claim(&current.object),
            expected: None,
        });
        ops.push(Op::Create {
            key: claim(&route),
            value: route.name.clone().into_bytes(),
        });
    }
    let revision = store.apply(ops).await?;
    Ok(Json(Versioned {
        resource_version: revision,
        object: route.redacted(),
    }))
}

/// `DELETE /v1/routes/{name}` (admin).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<Route>>, ApiFailure> {
    require_admin(&caller)?;
    let store = state.store.as_ref();
    let current = objects::get::<Route>(store, ROUTES, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    store
        .apply(vec![
            objects::delete(ROUTES, &name, Some(current.resource_version)),
            Op::Delete {
                key: claim(&current.object),
                expected: None,
            },
        ])
        .await?;
    let mut current = current;
    current.object = current.object.redacted();
    Ok(Json(current))
}

/// `POST /v1/routes/{name}/rejected` (a node's router): HAProxy refused the
/// route; recorded as a `RouteRejected` event.
pub async fn rejected(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<StatusCode, ApiFailure> {
    let rejection: RouteRejection = parse("route rejection", &body)?;
    let node = match caller {
        Caller::Node(node) => Some(node),
        Caller::Admin => None,
    };
    let reason: String = rejection.reason.chars().take(2000).collect();
    state
        .store
        .apply(vec![events::record(&Event {
            time_ms: events::now_ms(),
            kind: EventKind::RouteRejected,
            object: format!("route/{name}"),
            node,
            reason,
        })])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("test certificate");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let (cert_a, key_a) = pair("a.example.test");
        let (_, key_b) = pair("b.example.test");
        assert_eq!(check_key_pair(&cert_a, &key_a), Ok(()));
        let (field, message) = check_key_pair(&cert_a, &key_b).expect_err("mismatch");
        assert_eq!(field, "tls.key");
        assert!(message.contains("does not match"), "{message}");
        let (field, _) = check_key_pair("-----BEGIN CERTIFICATE-----\nxx\n", &key_a)
            .expect_err("garbage certificate");
        assert_eq!(field, "tls.certificate");
    }

    #[test]
    fn routes_without_a_host_get_a_generated_one() {
        let route: Route =
            serde_json::from_str(r#"{"name":"web","service":"web"}"#).expect("route");
        assert_eq!(
            complete(route, "apps.example.test").host,
            "web-default.apps.example.test"
        );
    }
}
