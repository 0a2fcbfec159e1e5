//! The latest resource sample of every node and pod, as heartbeats bring
//! them. Kept in memory only: a node samples every ~10 s and sends each
//! sample once, with usage in every heartbeat, so it is not worth a store
//! write.

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

    /// Replaces what `node` has left, keeping its pods' figures: a
    /// heartbeat that carries none because they did not change.
    pub fn record_usage(&self, node: &str, usage: Option<NodeUsage>) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node.to_owned())
            .or_default()
            .usage = usage;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_without_new_figures_keeps_the_pods_and_updates_usage() {
        let cache = MetricsCache::default();
        let usage = |bytes| {
            Some(NodeUsage {
                memory_available_bytes: bytes,
                ..NodeUsage::default()
            })
        };
        let pods = vec![PodMetrics {
            pod: "web-0".into(),
            ..PodMetrics::default()
        }];
        cache.record(
            "h1",
            NodeSample {
                usage: usage(100),
                pods: pods.clone(),
            },
        );
        cache.record_usage("h1", usage(50));
        let sample = &cache.snapshot()["h1"];
        assert_eq!(sample.pods, pods);
        assert_eq!(cache.memory_available("h1"), Some(50));
    }
}
