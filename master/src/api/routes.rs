//! Routes: DNS names that routers send to services. Creating, getting,
//! replacing and deleting them is [`super::resource`]'s, which checks a
//! route completely before it is stored, so a bad route never reaches a
//! router. Routers long-poll the routes they serve here and report the
//! ones HAProxy still refused.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::route::{RouteRejection, RoutesView};
use berth_model::{Event, EventKind, Role, Route};
use futures_util::StreamExt;
use serde::Deserialize;

use super::extract::{self, Body, Path, Query};
use super::project::InProject;
use super::{parse, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects::{self, ROUTES};

/// The routes router `node` serves. Every router serves every route for
/// now; sharding (a label selector on the router's node) goes here.
pub fn routes_for_router(routes: Vec<Route>, _node: &str) -> Vec<Route> {
    routes
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
    project: InProject,
    Query(query): Query<RoutesQuery>,
) -> Result<Json<RoutesView>, ApiFailure> {
    if !matches!(project.caller, Caller::Node(_)) {
        project.require(Role::ViewNoLogs)?;
    }
    let wait = extract::long_poll_wait(query.timeout)?;
    extract::int64("after", query.after)?;
    if let Some(after) = query.after {
        let mut watch = state.store.watch(ROUTES, after).await?;
        let _ = tokio::time::timeout(wait, watch.next()).await;
    }
    let (routes, revision) = objects::list::<Route>(state.store.as_ref(), ROUTES).await?;
    let routes: Vec<Route> = routes.into_iter().map(|r| r.object).collect();
    let routes = match &project.caller {
        Caller::Admin | Caller::User(_) => routes
            .into_iter()
            .filter(|r| project.holds(r))
            .map(|r| r.redacted().unqualified())
            .collect(),
        Caller::Node(node) => routes_for_router(routes, node),
    };
    Ok(Json(RoutesView { revision, routes }))
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
        Caller::User(_) => {
            return Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                "routers report rejections",
            ))
        }
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
