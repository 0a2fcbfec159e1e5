//! The scheduler's picture of the cluster: nodes, and what is already placed
//! on them. The master keeps one [`ClusterView`] and updates it as pods are
//! assigned, removed and nodes come and go, so that placing a pod costs one
//! pass over the nodes and never a rebuild.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use berth_model::{Capacity, Node, NodeCondition};

use super::request::{FixedPort, Held, PodRequest};

/// Why the view refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The node is not (or no longer) in the view.
    #[error("node {0} is not in the cluster view")]
    UnknownNode(String),
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone)]
pub(super) struct NodeState {
    pub(super) name: String,
    pub(super) labels: BTreeMap<String, String>,
    /// The volume classes the node offers, with their directories.
    pub(super) volume_classes: BTreeMap<String, String>,
    pub(super) capacity: Capacity,
    pub(super) ready: bool,
    pub(super) cordoned: bool,
    /// Sum of the requests of the pods assigned here.
    pub(super) requested: Capacity,
    pub(super) pods: u32,
    /// Fixed host ports in use, with how many pods hold each: a count, not
    /// a set, so that unassigning one of two pods that were (wrongly) given
    /// the same port does not free it.
    pub(super) ports: FxHashMap<FixedPort, u32>,
    /// Memory the node measured available at its last heartbeat: a node
    /// whose memory went to other things takes no pod that needs it.
    pub(super) memory_available: Option<u64>,
}

impl NodeState {
    /// Memory not yet requested, and no more than the node measured
    /// available; 0 when the node is overcommitted.
    pub(super) fn free_memory(&self) -> u64 {
        let unrequested = self
            .capacity
            .memory_bytes
            .saturating_sub(self.requested.memory_bytes);
        self.memory_available
            .map_or(unrequested, |available| unrequested.min(available))
    }

    /// CPU not yet requested; 0 when the node is overcommitted.
    pub(super) fn free_cpu(&self) -> u64 {
        self.capacity
            .cpu_millis
            .saturating_sub(self.requested.cpu_millis)
    }
}

/// How many pods of one service each node holds, indexed like
/// `ClusterView::nodes`.
///
/// Kept per service rather than per node so that scoring a pod looks up its
/// service once and then reads one integer per node, instead of hashing the
/// service name for every node.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceSpread {
    /// Grown on demand: a missing entry means 0.
    per_node: Vec<u32>,
    total: u64,
}

impl ServiceSpread {
    pub(super) fn count(&self, node: usize) -> u32 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    fn set(&mut self, node: usize, count: u32) {
        if node >= self.per_node.len() {
            if count == 0 {
                return;
            }
            self.per_node.resize(node + 1, 0);
        }
        self.per_node[node] = count;
    }

    fn add(&mut self, node: usize) {
        let count = self.count(node);
        self.set(node, count + 1);
        self.total += 1;
    }

    /// Mirrors `Vec::swap_remove` on the nodes: the last node moves to
    /// `node`'s index.
    fn swap_remove(&mut self, node: usize, last: usize) {
        self.total -= u64::from(self.count(node));
        let moved = self.count(last);
        if node != last {
            self.set(node, moved);
        }
        self.per_node.truncate(last);
    }
}

/// A node's capacity and what is placed on it, as reported by
/// [`ClusterView::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeUsage {
    /// What the node offers.
    pub capacity: Capacity,
    /// Sum of the requests of the pods assigned to it.
    pub requested: Capacity,
    /// How many pods are assigned to it.
    pub pods: u32,
}

/// The nodes, their state and what is placed on them.
///
/// The view is bookkeeping, not policy: [`ClusterView::assign`] records a
/// placement even if it overcommits the node (pods found running after a
/// restart of the master must be counted wherever they are); only
/// [`decide`](super::decide) applies the filters.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// In no particular order: removal swaps the last node into the gap,
    /// so that indices into [`ServiceSpread`] stay valid cheaply.
    pub(super) nodes: Vec<NodeState>,
    /// Indices into `nodes`, sorted by node name: [`decide`](super::decide)
    /// walks nodes in this order so ties go to the first name and no
    /// decision depends on the order nodes were added in.
    pub(super) order: Vec<usize>,
    index: FxHashMap<String, usize>,
    pub(super) services: FxHashMap<String, ServiceSpread>,
}

impl ClusterView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node, or updates its labels, capacity, cordon flag and
    /// condition while keeping what is placed on it.
    pub fn upsert_node(&mut self, node: &Node, condition: NodeCondition) {
        let ready = condition == NodeCondition::Ready;
        if let Some(&i) = self.index.get(&node.name) {
            let state = &mut self.nodes[i];
            state.labels.clone_from(&node.labels);
            state.volume_classes.clone_from(&node.volume_classes);
            state.capacity = node.capacity;
            state.cordoned = node.unschedulable;
            state.ready = ready;
            return;
        }
        let i = self.nodes.len();
        let at = self
            .order
            .partition_point(|&j| self.nodes[j].name < node.name);
        self.order.insert(at, i);
        self.index.insert(node.name.clone(), i);
        self.nodes.push(NodeState {
            name: node.name.clone(),
            labels: node.labels.clone(),
            volume_classes: node.volume_classes.clone(),
            capacity: node.capacity,
            ready,
            cordoned: node.unschedulable,
            requested: Capacity::default(),
            pods: 0,
            ports: FxHashMap::default(),
            memory_available: None,
        });
    }

    /// Records the memory a node measured available (from its heartbeat).
    pub fn set_memory_available(&mut self, node: &str, bytes: u64) -> Result<(), ViewError> {
        let i = self.slot(node)?;
        self.nodes[i].memory_available = Some(bytes);
        Ok(())
    }

    /// Records a node's liveness, as heartbeats arrive or stop.
    pub fn set_condition(&mut self, node: &str, condition: NodeCondition) -> Result<(), ViewError> {
        let i = self.slot(node)?;
        self.nodes[i].ready = condition == NodeCondition::Ready;
        Ok(())
    }

    /// Removes a node and forgets what was placed on it. Returns whether it
    /// was there.
    pub fn remove_node(&mut self, node: &str) -> bool {
        let Some(i) = self.index.remove(node) else {
            return false;
        };
        let last = self.nodes.len() - 1;
        self.nodes.swap_remove(i);
        self.order.retain(|&j| j != i);
        if i != last {
            self.index.insert(self.nodes[i].name.clone(), i);
            for j in &mut self.order {
                if *j == last {
                    *j = i;
                }
            }
        }
        for spread in self.services.values_mut() {
            spread.swap_remove(i, last);
        }
        self.services.retain(|_, spread| spread.total > 0);
        true
    }

    /// Records that `pod` runs on `node`.
    pub fn assign(&mut self, node: &str, pod: &PodRequest) -> Result<(), ViewError> {
        self.hold(node, &pod.held())
    }

    /// Records that a pod holding `pod` runs on `node`.
    pub fn hold(&mut self, node: &str, pod: &Held<'_>) -> Result<(), ViewError> {
        let i = self.slot(node)?;
        self.hold_at(i, pod);
        Ok(())
    }

    /// Where `node` is in the view, for [`hold_at`](Self::hold_at): a
    /// round that counts thousands of pods looks each node up once per
    /// pod, not once per question. Valid until a node is removed.
    pub fn slot_of(&self, node: &str) -> Option<usize> {
        self.index.get(node).copied()
    }

    /// Records that a pod holding `pod` runs on the node at `slot` (from
    /// [`slot_of`](Self::slot_of)).
    pub fn hold_at(&mut self, i: usize, pod: &Held<'_>) {
        let state = &mut self.nodes[i];
        state.requested.memory_bytes = state
            .requested
            .memory_bytes
            .saturating_add(pod.memory_bytes);
        state.requested.cpu_millis = state.requested.cpu_millis.saturating_add(pod.cpu_millis);
        state.pods += 1;
        for port in &pod.host_ports {
            *state.ports.entry(*port).or_insert(0) += 1;
        }
        if let Some(service) = pod.service {
            // Look up before inserting so the hot path allocates no key.
            if let Some(spread) = self.services.get_mut(service) {
                spread.add(i);
            } else {
                let mut spread = ServiceSpread::default();
                spread.add(i);
                self.services.insert(service.to_owned(), spread);
            }
        }
    }

    /// Records that `pod` no longer runs on `node`. Taking away more than was
    /// assigned leaves counts at zero rather than wrapping around.
    pub fn unassign(&mut self, node: &str, pod: &PodRequest) -> Result<(), ViewError> {
        let i = self.slot(node)?;
        let state = &mut self.nodes[i];
        state.requested.memory_bytes = state
            .requested
            .memory_bytes
            .saturating_sub(pod.memory_bytes);
        state.requested.cpu_millis = state.requested.cpu_millis.saturating_sub(pod.cpu_millis);
        state.pods = state.pods.saturating_sub(1);
        for port in &pod.host_ports {
            if let Some(holders) = state.ports.get_mut(port) {
                *holders -= 1;
                if *holders == 0 {
                    state.ports.remove(port);
                }
            }
        }
        if let Some(service) = &pod.service {
            if let Some(spread) = self.services.get_mut(service.as_str()) {
                let count = spread.count(i);
                if count > 0 {
                    spread.set(i, count - 1);
                    spread.total -= 1;
                }
                if spread.total == 0 {
                    self.services.remove(service.as_str());
                }
            }
        }
        Ok(())
    }

    /// How many nodes the view holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the view holds no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node's capacity and what is placed on it.
    pub fn usage(&self, node: &str) -> Option<NodeUsage> {
        let state = &self.nodes[*self.index.get(node)?];
        Some(NodeUsage {
            capacity: state.capacity,
            requested: state.requested,
            pods: state.pods,
        })
    }

    /// How many pods of `service` are assigned to `node`.
    pub fn service_pods(&self, node: &str, service: &str) -> u32 {
        match (self.index.get(node), self.services.get(service)) {
            (Some(&i), Some(spread)) => spread.count(i),
            _ => 0,
        }
    }

    /// Whether a pod on `node` holds the fixed host port.
    pub fn host_port_in_use(&self, node: &str, port: FixedPort) -> bool {
        self.index
            .get(node)
            .is_some_and(|&i| self.nodes[i].ports.contains_key(&port))
    }

    fn slot(&self, node: &str) -> Result<usize, ViewError> {
        self.index
            .get(node)
            .copied()
            .ok_or_else(|| ViewError::UnknownNode(node.to_owned()))
    }
}
