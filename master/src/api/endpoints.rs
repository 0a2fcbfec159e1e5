//! Endpoints: where each service's ready replicas can be reached. Agents
//! read them to wire links and routers to fill backends; both long-poll.

use axum::extract::State;
use axum::Json;
use berth_model::endpoints::{self, EndpointsView};
use berth_model::{ClusterPod, Node, NodeCondition};
use futures_util::StreamExt;
use serde::Deserialize;

use super::extract::{self, Query};
use super::{ApiFailure, AppState};
use crate::auth::Caller;
use crate::objects::{self, EVENTS, NODES, PODS};

/// `GET /v1/endpoints` query.
#[derive(Debug, Deserialize)]
pub struct EndpointsQuery {
    /// Only this service.
    service: Option<String>,
    /// Wait until pods, nodes or node conditions change after this
    /// revision (long poll).
    after: Option<u64>,
    /// How long to wait at most, in seconds (default 30).
    timeout: Option<u64>,
}

/// `GET /v1/endpoints[?service=S][&after=REV&timeout=SECS]` (admin or any
/// node): every service's endpoints. With `after`, answers once something
/// that can move an endpoint changed after that revision, or on timeout.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<EndpointsQuery>,
) -> Result<Json<EndpointsView>, ApiFailure> {
    let wait = extract::long_poll_wait(query.timeout)?;
    extract::int64("after", query.after)?;
    if let Some(after) = query.after {
        // A node going silent changes no pod at first, but the controller
        // records it as an event at once: waking on events catches it.
        let store = state.store.as_ref();
        let (mut pods, mut nodes, mut events) = (
            store.watch(PODS, after).await?,
            store.watch(NODES, after).await?,
            store.watch(EVENTS, after).await?,
        );
        let changed = async {
            tokio::select! {
                _ = pods.next() => {}
                _ = nodes.next() => {}
                _ = events.next() => {}
            }
        };
        let _ = tokio::time::timeout(wait, changed).await;
    }
    let store = state.store.as_ref();
    let (nodes, _) = objects::list::<Node>(store, NODES).await?;
    let (pods, revision) = objects::list::<ClusterPod>(store, PODS).await?;
    let nodes: Vec<Node> = nodes.into_iter().map(|n| n.object).collect();
    let pods: Vec<ClusterPod> = pods
        .into_iter()
        .map(|p| p.object)
        .filter(|p| query.service.is_none() || p.service == query.service)
        .collect();
    let services = endpoints::derive(&pods, &nodes, |node| {
        state.liveness.condition(node) == NodeCondition::Ready
    });
    Ok(Json(EndpointsView { revision, services }))
}
