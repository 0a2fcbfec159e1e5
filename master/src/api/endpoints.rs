//! Endpoints: where each service's ready replicas can be reached. Agents
//! read them to wire links and routers to fill backends; both long-poll.

use axum::extract::State;
use axum::Json;
use berth_model::endpoints::{self, EndpointsView};
use berth_model::project::unqualified;
use berth_model::{ClusterPod, Node, NodeCondition, Role, Service};
use serde::Deserialize;

use super::extract::{self, Query};
use super::project::InProject;
use super::{ApiFailure, AppState};
use crate::auth::Caller;

/// `GET /v1/endpoints` query.
#[derive(Debug, Deserialize)]
pub struct EndpointsQuery {
    /// Only this service.
    service: Option<String>,
    /// Only these services, comma-separated (an agent asks for the
    /// services its pods link to). A long poll then wakes only for them.
    services: Option<String>,
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
    let mut only: Option<Vec<String>> = query.services.as_deref().map(|list| {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| project.qualify::<Service>(s))
            .collect()
    });
    if let Some(service) = &query.service {
        only.get_or_insert_with(Vec::new)
            .push(project.qualify::<Service>(service));
    }
    if let Some(after) = query.after {
        // A node going silent changes no pod at first, but the controller
        // records it as an event at once: the mirror wakes on that too.
        state
            .mirror
            .endpoints_changed(only.as_deref(), after, wait)
            .await;
    }
    let (nodes, pods, revision) = state
        .mirror
        .with(|objects| {
            let nodes: Vec<Node> = objects
                .nodes
                .to_vec()
                .into_iter()
                .map(|n| n.object)
                .collect();
            let pods: Vec<ClusterPod> = objects
                .pods
                .values()
                .filter(|p| {
                    only.as_ref()
                        .is_none_or(|only| p.service.as_ref().is_some_and(|s| only.contains(s)))
                })
                .cloned()
                .collect();
            (nodes, pods, state.mirror.revision())
        })
        .await;
    // Nodes and routers serve every project, under the cluster's names;
    // the admin reads one project's.
    let everything = matches!(project.caller, Caller::Node(_));
    if !everything {
        project.require(Role::ViewNoLogs)?;
    }
    let pods: Vec<ClusterPod> = pods
        .into_iter()
        .filter(|p| everything || project.holds(p))
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
