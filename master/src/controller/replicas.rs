//! Replicas: every service keeps its replica count, pods of deleted
//! services go, and placed pods follow their service's links. Pure.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::api::Versioned;
use berth_model::link::{add_link_env, link_env};
use berth_model::{ClusterPod, EventKind, Service};

use super::change::Change;
use super::Cluster;

/// What the replica counts decide.
#[derive(Debug, Default)]
pub struct Replicas {
    /// Pods deleted: their service went away or shrank.
    pub deletes: Vec<Change>,
    /// New replicas, not yet placed: placement binds them.
    pub new: Vec<ClusterPod>,
}

/// Plans the replica counts: deletes the pods of deleted services and
/// the highest replicas beyond a service's count, and makes the missing
/// ones. Pods in `removed` are going already (evicted) and count for
/// nothing.
pub fn plan(cluster: &Cluster, removed: &BTreeSet<String>) -> Replicas {
    let services = by_name(cluster);
    let mut removed = removed.clone();
    let mut replicas = Replicas::default();
    let mut by_service: BTreeMap<&str, Vec<&Versioned<ClusterPod>>> = BTreeMap::new();
    for pod in &cluster.pods {
        if let Some(service) = pod.object.service.as_deref() {
            by_service.entry(service).or_default().push(pod);
        }
    }
    for (name, pods) in &by_service {
        if !services.contains_key(name) {
            for pod in pods {
                if removed.insert(pod.object.spec.name.clone()) {
                    replicas.deletes.push(Change::delete_pod(
                        cluster.now_ms,
                        &pod.object,
                        pod.resource_version,
                        EventKind::PodDeleted,
                        format!("service {name} deleted"),
                    ));
                }
            }
        }
    }
    for service in &cluster.services {
        let name = service.object.name.as_str();
        let pods = by_service.get(name).cloned().unwrap_or_default();
        let mut live: Vec<&Versioned<ClusterPod>> = pods
            .iter()
            .copied()
            .filter(|p| !removed.contains(&p.object.spec.name))
            .collect();
        live.sort_by_key(|p| replica_index(name, &p.object.spec.name).unwrap_or(u32::MAX));
        let wanted = service.object.replicas as usize;
        if live.len() > wanted {
            for pod in live.drain(wanted..).rev() {
                removed.insert(pod.object.spec.name.clone());
                replicas.deletes.push(Change::delete_pod(
                    cluster.now_ms,
                    &pod.object,
                    pod.resource_version,
                    EventKind::PodDeleted,
                    format!("service {name} scaled down to {wanted}"),
                ));
            }
        }
        let used: BTreeSet<u32> = pods
            .iter()
            .filter_map(|p| replica_index(name, &p.object.spec.name))
            .collect();
        let mut index = 0;
        for _ in live.len()..wanted {
            while used.contains(&index)
                || replicas
                    .new
                    .iter()
                    .any(|p| p.spec.name == format!("{name}-{index}"))
            {
                index += 1;
            }
            replicas
                .new
                .push(replica(&service.object, index, &services));
            index += 1;
        }
    }
    replicas
}

/// Links added or removed since a placed pod was made: the pod object
/// follows (its spec does not, so the pod keeps running) and its node
/// rewires it. Pods in `removed` are going anyway.
pub fn follow_links(cluster: &Cluster, removed: &BTreeSet<String>) -> Vec<Change> {
    let services = by_name(cluster);
    let mut changes = Vec::new();
    for pod in &cluster.pods {
        let name = pod.object.spec.name.as_str();
        let service = pod.object.service.as_deref().and_then(|s| services.get(s));
        let (Some(service), Some(_)) = (service, pod.object.node.as_deref()) else {
            continue;
        };
        if removed.contains(name) || links_current(&pod.object, &service.object) {
            continue;
        }
        let mut updated = pod.object.clone();
        updated.links = service.object.links.clone();
        updated.egress = service.object.egress;
        changes.push(Change::UpdatePod {
            pod: updated,
            expected_revision: pod.resource_version,
            reason: format!(
                "pod {name} follows the links of service {}",
                service.object.name
            ),
            event: None,
        });
    }
    changes
}

/// The cluster's services by name.
pub(super) fn by_name(cluster: &Cluster) -> BTreeMap<&str, &Versioned<Service>> {
    cluster
        .services
        .iter()
        .map(|s| (s.object.name.as_str(), s))
        .collect()
}

/// The pod object of replica `index` of a service, with its links and
/// their variables (`DB_HOST`, ... and what the linked services publish;
/// the template's own values win). `services` finds what linked services
/// publish.
fn replica(
    service: &Service,
    index: u32,
    services: &BTreeMap<&str, &Versioned<Service>>,
) -> ClusterPod {
    let mut spec = service.template.clone();
    spec.name = format!("{}-{index}", service.name);
    add_link_env(&mut spec, &service.env, &[]);
    for link in &service.links {
        let published = services
            .get(link.service.as_str())
            .map(|s| s.object.publish.as_slice())
            .unwrap_or_default();
        let (plain, secret) = link_env(link, published);
        add_link_env(&mut spec, &plain, &secret);
    }
    ClusterPod {
        service: Some(service.name.clone()),
        links: service.links.clone(),
        egress: service.egress,
        ..ClusterPod::unplaced(spec)
    }
}

/// Whether a pod carries its service's current links and policy.
pub(super) fn links_current(pod: &ClusterPod, service: &Service) -> bool {
    pod.links == service.links && pod.egress == service.egress
}

/// The replica index in a pod's name (`web-2` of `web` is 2).
pub(super) fn replica_index(service: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(service)?.strip_prefix('-')?.parse().ok()
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
        cluster.services[0].object.replicas = 1;
        step(&mut cluster);
        assert_eq!(placement(&cluster).keys().collect::<Vec<_>>(), ["web-0"]);
        cluster.services.clear();
        step(&mut cluster);
        assert!(cluster.pods.is_empty());
    }
}
