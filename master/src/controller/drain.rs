//! Draining a node: which of its pods go and which stay. Pure; the API
//! cordons the node and commits the evictions.

use std::sync::Arc;

use berth_model::api::Versioned;
use berth_model::{ClusterPod, Service};

use super::change::Change;

/// What draining a node decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drain {
    /// Deletes of the node's stateless pods; their services place them
    /// elsewhere.
    pub evictions: Vec<Change>,
    /// Names of the evicted pods.
    pub evicted: Vec<String>,
    /// Pods left on the node: stateful ones move only with `berth move`,
    /// and pods of no service have nothing to recreate them from.
    pub kept: Vec<String>,
}

/// Plans draining `node`: which of its pods go and which stay.
pub fn plan_drain(
    node: &str,
    pods: &[Arc<Versioned<ClusterPod>>],
    services: &[Arc<Versioned<Service>>],
) -> Drain {
    let stateless = |service: Option<&str>| {
        service.is_some_and(|s| {
            services
                .iter()
                .any(|v| v.object.name == s && !v.object.stateful)
        })
    };
    let mut drain = Drain::default();
    for pod in pods
        .iter()
        .filter(|p| p.object.node.as_deref() == Some(node))
    {
        let name = pod.object.spec.name.clone();
        if stateless(pod.object.service.as_deref()) {
            drain.evictions.push(Change::DeletePod {
                name: name.clone(),
                expected_revision: pod.resource_version,
                reason: format!("node {node} drained: evicting pod {name}"),
                event: None,
            });
            drain.evicted.push(name);
        } else {
            drain.kept.push(name);
        }
    }
    drain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::{cluster, ready, service, step};

    #[test]
    fn stateless_pods_are_evicted_and_the_rest_kept() {
        let mut cluster = cluster(
            vec![service("web", 1, false), service("db", 1, true)],
            ready(&["h1"]),
        );
        step(&mut cluster);
        let mut bare = cluster.pods[0].clone();
        Arc::make_mut(&mut bare).object.spec.name = "bare".to_owned();
        Arc::make_mut(&mut bare).object.service = None;
        cluster.pods.push(bare);
        let drain = plan_drain("h1", &cluster.pods, &cluster.services);
        assert_eq!(drain.evicted, ["web-0"]);
        assert_eq!(drain.kept.len(), 2, "{drain:?}");
        assert!(drain.kept.iter().any(|p| p == "db-0"), "{drain:?}");
        assert!(drain.kept.iter().any(|p| p == "bare"), "{drain:?}");
        let [Change::DeletePod {
            name,
            expected_revision: 2,
            ..
        }] = drain.evictions.as_slice()
        else {
            panic!("{drain:?}");
        };
        assert_eq!(name, "web-0");
        assert_eq!(
            plan_drain("h2", &cluster.pods, &cluster.services),
            Drain::default()
        );
    }
}
