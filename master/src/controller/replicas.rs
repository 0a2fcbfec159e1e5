//! Replicas: pods of deleted services go, and placed pods follow their
//! service's links. Pure.

use std::collections::BTreeSet;

use berth_model::api::Versioned;
use berth_model::{ClusterPod, EventKind, Service};
use rustc_hash::FxHashMap;

use super::change::Change;
use super::pods::{in_cluster_order, PodIndex};
use super::Cluster;

/// Deletes the pods of services that no longer exist. Pods in `removed`
/// are going already (evicted). How many pods a service has, and of which
/// revision, is its rollout's to decide ([`super::rollout`]).
pub fn orphans(cluster: &Cluster, pods: &PodIndex<'_>, removed: &BTreeSet<String>) -> Vec<Change> {
    let services = by_name(cluster);
    let changes = pods
        .by_service
        .iter()
        .filter(|(service, _)| !services.contains_key(*service))
        .flat_map(|(service, group)| group.iter().map(move |entry| (*service, entry)))
        .filter(|(_, (_, pod))| !removed.contains(&pod.object.spec.name))
        .map(|(service, (position, pod))| {
            let change = Change::delete_pod(
                cluster.now_ms,
                &pod.object,
                pod.resource_version,
                EventKind::PodDeleted,
                format!("service {service} deleted"),
            );
            (*position, change)
        })
        .collect();
    in_cluster_order(changes)
}

/// Links added or removed since a placed pod was made: the pod object
/// follows (its spec does not, so the pod keeps running) and its node
/// rewires it. Pods in `removed` are going anyway.
pub fn follow_links(
    cluster: &Cluster,
    pods: &PodIndex<'_>,
    removed: &BTreeSet<String>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for service in &cluster.services {
        for &(position, pod) in pods.of_service(&service.object.name) {
            let name = pod.object.spec.name.as_str();
            if pod.object.node.is_none()
                || removed.contains(name)
                || links_current(&pod.object, &service.object)
            {
                continue;
            }
            let mut updated = pod.object.clone();
            updated.links = service.object.links.clone();
            updated.egress = service.object.egress;
            let change = Change::UpdatePod {
                pod: updated,
                expected_revision: pod.resource_version,
                reason: format!(
                    "pod {name} follows the links of service {}",
                    service.object.name
                ),
                event: None,
            };
            changes.push((position, change));
        }
    }
    in_cluster_order(changes)
}

/// The cluster's services by name, hashed: every planner looks up each
/// pod's service, 20,000 times a round at scale, where an ordered map's
/// string compares cost more than the planning itself.
pub(super) type ServicesByName<'a> = FxHashMap<&'a str, &'a Versioned<Service>>;

/// The cluster's services by name.
pub(super) fn by_name(cluster: &Cluster) -> ServicesByName<'_> {
    cluster
        .services
        .iter()
        .map(|s| (s.object.name.as_str(), &**s))
        .collect()
}

/// Whether a pod carries its service's current links and policy.
pub(super) fn links_current(pod: &ClusterPod, service: &Service) -> bool {
    pod.links == service.links && pod.egress == service.egress
}

/// The replica index in a pod's name (`web-2` of `web` is 2).
pub(super) fn replica_index(service: &str, pod: &str) -> Option<u32> {
    Service::replica_index(service, pod)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::plan;
    use super::super::testing::*;

    #[test]
    fn replicas_are_created_and_spread_then_nothing_more_is_done() {
        let mut cluster = cluster(vec![service("web", 3, false)], ready(&["h1", "h2", "h3"]));
        let changes = plan(&cluster);
        commit(&mut cluster, &changes);
        let placed = placement(&cluster);
        assert_eq!(placed.len(), 3);
        let nodes: BTreeSet<_> = placed.values().flatten().collect();
        assert_eq!(nodes.len(), 3, "replicas not spread: {placed:?}");
        assert_eq!(
            plan(&cluster),
            vec![],
            "a converged cluster needs no change"
        );
    }

    #[test]
    fn scaling_down_removes_the_highest_replicas_and_deleting_cascades() {
        let mut cluster = cluster(vec![service("web", 3, false)], ready(&["h1", "h2"]));
        step(&mut cluster);
        first_service(&mut cluster).replicas = 1;
        step(&mut cluster);
        let mut draining: Vec<_> = cluster
            .pods
            .iter()
            .filter(|p| p.object.draining_since_ms.is_some())
            .map(|p| p.object.spec.name.as_str())
            .collect();
        draining.sort();
        assert_eq!(draining, ["web-1", "web-2"], "they leave traffic first");
        cluster.now_ms += berth_model::deployment::DRAIN_MS;
        step(&mut cluster);
        assert_eq!(placement(&cluster).keys().collect::<Vec<_>>(), ["web-0"]);
        cluster.services.clear();
        step(&mut cluster);
        assert!(cluster.pods.is_empty());
    }
}
