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
