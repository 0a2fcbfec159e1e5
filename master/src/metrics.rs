//! The latest resource sample of every node and pod, as heartbeats bring
//! them. Kept in memory only: a sample is a second old at most and the next
//! heartbeat replaces it, so it is not worth a store write.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use berth_model::metrics::{NodeUsage, PodMetrics};

/// Samples by node.
#[derive(Debug, Default)]
pub struct MetricsCache {
    nodes: RwLock<BTreeMap<String, NodeSample>>,
}

/// One node's latest sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSample {
    /// What the node has left.
    pub usage: Option<NodeUsage>,
    /// Its pods' figures.
    pub pods: Vec<PodMetrics>,
}

impl MetricsCache {
    /// Replaces `node`'s sample.
    pub fn record(&self, node: &str, sample: NodeSample) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned(), sample);
    }

    /// Every node's latest sample.
    pub fn snapshot(&self) -> BTreeMap<String, NodeSample> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Memory `node` reported available, if it reported.
    pub fn memory_available(&self, node: &str) -> Option<u64> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .and_then(|s| s.usage)
            .map(|u| u.memory_available_bytes)
    }
}
