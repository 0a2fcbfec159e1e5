//! `GET /v1/metrics`: the latest resource figures of nodes and pods.

use axum::extract::State;
use axum::Json;
use berth_model::metrics::{ClusterMetrics, NodeMetrics, PodMetricsView};
use berth_model::project::{in_project, unqualified};
use berth_model::{Node, Role};

use super::project::InProject;
use super::{ApiFailure, AppState};
use crate::objects::{self, NODES};

/// `GET /v1/metrics` (admin).
pub async fn read(
    State(state): State<AppState>,
    scope: InProject,
) -> Result<Json<ClusterMetrics>, ApiFailure> {
    scope.require(Role::ViewNoLogs)?;
    let project = scope.name;
    let (nodes, _) = objects::list::<Node>(state.store.as_ref(), NODES).await?;
    let samples = state.metrics.snapshot();
    let mut answer = ClusterMetrics::default();
    for node in nodes {
        let node = node.object;
        let sample = samples.get(&node.name).cloned().unwrap_or_default();
        answer.nodes.push(NodeMetrics {
            node: node.name.clone(),
            capacity: node.capacity,
            usage: sample.usage.unwrap_or_default(),
        });
        // Every project sees the nodes; each its own pods.
        answer.pods.extend(
            sample
                .pods
                .into_iter()
                .filter(|metrics| in_project(&metrics.pod, &project))
                .map(|mut metrics| {
                    metrics.pod = unqualified(&metrics.pod).to_owned();
                    PodMetricsView {
                        node: node.name.clone(),
                        metrics,
                    }
                }),
        );
    }
    answer
        .pods
        .sort_by(|a, b| a.metrics.pod.cmp(&b.metrics.pod));
    Ok(Json(answer))
}
