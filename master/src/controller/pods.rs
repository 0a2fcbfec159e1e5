//! The cluster's pods sorted out once a round for every planner. At 20,000
//! pods a pass over them costs more in memory reads (each pod is an
//! allocation of its own, its names others) than most planners do with
//! what they find: the planners made seven such passes a round, and
//! they were most of the master's CPU in `berth-bench cluster-sim`.

use berth_model::api::Versioned;
use berth_model::ClusterPod;
use rustc_hash::FxHashMap;

use super::Cluster;

/// A pod and its place in [`Cluster::pods`]: planners that gather pods
/// from several groups put their changes back in the cluster's order.
pub type Indexed<'a> = (usize, &'a Versioned<ClusterPod>);

/// The cluster's pods by what the planners look them up by, each group in
/// the cluster's order.
#[derive(Debug, Default)]
pub struct PodIndex<'a> {
    /// Pods of each service, by the service's name, whether or not the
    /// service exists.
    pub by_service: FxHashMap<&'a str, Vec<Indexed<'a>>>,
    /// Pods of no service.
    pub without_service: Vec<Indexed<'a>>,
    /// Pods of each job, by the job's name, whether or not the job exists.
    pub by_job: FxHashMap<&'a str, Vec<Indexed<'a>>>,
    /// Pods on no node.
    pub unbound: Vec<Indexed<'a>>,
    /// Pods being moved with their data.
    pub moving: Vec<Indexed<'a>>,
}

impl<'a> PodIndex<'a> {
    /// Sorts out the pods of `cluster` in one pass.
    pub fn of(cluster: &'a Cluster) -> Self {
        let mut index = Self::default();
        for (position, pod) in cluster.pods.iter().enumerate() {
            let pod: &Versioned<ClusterPod> = pod;
            let entry = (position, pod);
            let object = &pod.object;
            match object.service.as_deref() {
                Some(service) => index.by_service.entry(service).or_default().push(entry),
                None => index.without_service.push(entry),
            }
            if let Some(job) = object.job.as_deref() {
                index.by_job.entry(job).or_default().push(entry);
            }
            if object.node.is_none() {
                index.unbound.push(entry);
            }
            if object.moving.is_some() {
                index.moving.push(entry);
            }
        }
        index
    }

    /// The pods of service `name`.
    pub fn of_service(&self, name: &str) -> &[Indexed<'a>] {
        self.by_service
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The pods of job `name`.
    pub fn of_job(&self, name: &str) -> &[Indexed<'a>] {
        self.by_job.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

/// `changes`, each made for the pod at a position, in the cluster's order
/// of those pods.
pub fn in_cluster_order<T>(mut changes: Vec<(usize, T)>) -> Vec<T> {
    changes.sort_by_key(|(position, _)| *position);
    changes.into_iter().map(|(_, change)| change).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{cluster, ready, service, step};
    use super::*;

    /// The names in `group`, after checking each entry's position.
    fn names<'a>(cluster: &Cluster, group: &[Indexed<'a>]) -> Vec<&'a str> {
        for &(position, pod) in group {
            assert!(std::ptr::eq(&*cluster.pods[position], pod), "{position}");
        }
        let positions: Vec<usize> = group.iter().map(|&(p, _)| p).collect();
        assert!(
            positions.is_sorted(),
            "in the cluster's order: {positions:?}"
        );
        group
            .iter()
            .map(|(_, p)| p.object.spec.name.as_str())
            .collect()
    }

    #[test]
    fn every_pod_is_found_by_its_service_and_node_in_the_cluster_order() {
        let services = vec![service("web", 3, false), service("db", 1, false)];
        let mut cluster = cluster(services, ready(&["h1", "h2"]));
        step(&mut cluster);
        // One pod loses its node, one its service.
        let at = |c: &Cluster, name: &str| {
            c.pods
                .iter()
                .position(|p| p.object.spec.name == name)
                .expect("the pod")
        };
        let web1 = at(&cluster, "web-1");
        Arc::make_mut(&mut cluster.pods[web1]).object.node = None;
        let db0 = at(&cluster, "db-0");
        Arc::make_mut(&mut cluster.pods[db0]).object.service = None;

        let index = PodIndex::of(&cluster);
        let mut web = names(&cluster, index.of_service("web"));
        web.sort_unstable();
        assert_eq!(web, ["web-0", "web-1", "web-2"]);
        assert!(index.of_service("db").is_empty());
        assert_eq!(names(&cluster, &index.without_service), ["db-0"]);
        assert_eq!(names(&cluster, &index.unbound), ["web-1"]);
        assert!(index.moving.is_empty() && index.by_job.is_empty());
    }

    #[test]
    fn changes_gathered_from_groups_go_back_in_the_cluster_order() {
        assert_eq!(
            in_cluster_order(vec![(7, "c"), (0, "a"), (3, "b")]),
            ["a", "b", "c"]
        );
    }
}
