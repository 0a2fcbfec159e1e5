//! Endpoints: where each service's ready replicas can be reached. Agents
//! read them to wire links and routers to fill backends; both long-poll.

use axum::extract::State;
use axum::Json;
use berth_model::endpoints::{self, EndpointsView};
use berth_model::project::unqualified;
use berth_model::{ClusterPod, Node, NodeCondition, Role, Service};
use futures_util::StreamExt;
use serde::Deserialize;

use super::extract::{self, Query};
use super::project::InProject;
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
    project: InProject,
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
    // Nodes and routers serve every project, under the cluster's names;
    // the admin reads one project's.
    let everything = matches!(project.caller, Caller::Node(_));
    if !everything {
        project.require(Role::ViewNoLogs)?;
    }
    let service = query.service.map(|s| project.qualify::<Service>(&s));
    let pods: Vec<ClusterPod> = pods
        .into_iter()
        .map(|p| p.object)
        .filter(|p| everything || project.holds(p))
        .filter(|p| service.is_none() || p.service == service)
        .collect();
    let mut services = endpoints::derive(&pods, &nodes, |node| {
        state.liveness.condition(node) == NodeCondition::Ready
    });
    if !everything {
        for service in &mut services {
            service.service = unqualified(&service.service).to_owned();
            for endpoint in &mut service.endpoints {
                endpoint.pod = unqualified(&endpoint.pod).to_owned();
            }
        }
    }
    Ok(Json(EndpointsView { revision, services }))
}
