//! The filters: whether a pod may go to a node at all. A node that fails one
//! is out, whatever its score.

use super::request::{FixedPort, PodRequest};
use super::view::NodeState;

/// The first filter a node failed, in the order they are checked. Holds the
/// numbers a user needs to see why, so the explanation can be written
/// without looking at the node again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// No heartbeat within the grace period.
    NotReady,
    /// An operator took the node out of scheduling.
    Cordoned,
    /// A label of the pod's node selector is missing or different.
    SelectorMismatch,
    /// The node lacks a volume class the pod asks for.
    MissingVolumeClass,
    /// The pod needs more memory than is left; `free` is what is left.
    InsufficientMemory { free: u64 },
    /// The pod needs more CPU than is left; `free` is what is left.
    InsufficientCpu { free: u64 },
    /// Another pod on the node holds this fixed host port.
    HostPortInUse(FixedPort),
    /// The pod could not start there lately (a host port held by a
    /// process of the node).
    StartFailedThere,
}

/// Whether `pod` may go to `node`: ready, not cordoned, with room for its
/// memory and CPU, matching the node selector and with its fixed host ports
/// free.
///
/// This is the hot path, run once per node per pod: it allocates nothing,
/// tests the plain numbers before the maps, and says only yes or no.
/// [`check`] applies the same tests to say why not.
#[inline]
pub(super) fn fits(node: &NodeState, pod: &PodRequest) -> bool {
    node.ready
        && !node.cordoned
        && pod.memory_bytes <= node.free_memory()
        && pod.cpu_millis <= node.free_cpu()
        && (pod.node_selector.is_empty() || matches_selector(node, pod))
        && (pod.volume_classes.is_empty() || missing_volume_class(node, pod).is_none())
        && (pod.host_ports.is_empty() || port_in_use(node, pod).is_none())
        && (pod.avoid_nodes.is_empty() || !pod.avoid_nodes.contains(&node.name))
}

/// Like [`fits`], but names the first filter the node fails, in the order
/// a user reads them: liveness, cordon, selector, resources, ports, and
/// a recent failure to start there.
pub(super) fn check(node: &NodeState, pod: &PodRequest) -> Result<(), Rejection> {
    if !node.ready {
        return Err(Rejection::NotReady);
    }
    if node.cordoned {
        return Err(Rejection::Cordoned);
    }
    if !matches_selector(node, pod) {
        return Err(Rejection::SelectorMismatch);
    }
    if missing_volume_class(node, pod).is_some() {
        return Err(Rejection::MissingVolumeClass);
    }
    let free = node.free_memory();
    if pod.memory_bytes > free {
        return Err(Rejection::InsufficientMemory { free });
    }
    let free = node.free_cpu();
    if pod.cpu_millis > free {
        return Err(Rejection::InsufficientCpu { free });
    }
    if let Some(port) = port_in_use(node, pod) {
        return Err(Rejection::HostPortInUse(port));
    }
    if pod.avoid_nodes.contains(&node.name) {
        return Err(Rejection::StartFailedThere);
    }
    Ok(())
}

/// Whether the node carries every label of the pod's node selector.
fn matches_selector(node: &NodeState, pod: &PodRequest) -> bool {
    pod.node_selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value))
}

/// The first of the pod's volume classes the node does not have.
pub(super) fn missing_volume_class<'a>(node: &NodeState, pod: &'a PodRequest) -> Option<&'a str> {
    pod.volume_classes
        .iter()
        .find(|class| !node.volume_classes.contains_key(class.as_str()))
        .map(String::as_str)
}

/// The first of the pod's fixed host ports that a pod on the node holds.
fn port_in_use(node: &NodeState, pod: &PodRequest) -> Option<FixedPort> {
    if node.ports.is_empty() {
        return None;
    }
    pod.host_ports
        .iter()
        .find(|port| node.ports.contains_key(port))
        .copied()
}
