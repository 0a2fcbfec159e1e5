//! The scheduler: which node a pod goes to.
//!
//! [`decide`] is a pure function of a [`ClusterView`] and a [`PodRequest`]:
//! no I/O, no clock, no randomness, so the same cluster and pod always give
//! the same [`Placement`], and tests need nothing but values. The caller
//! records the decision with [`ClusterView::assign`] and writes it to the
//! store; the view is updated in place rather than rebuilt per pod, so a
//! decision costs one pass over the nodes.
//!
//! A node is a candidate if it passes every filter (`filters.rs`):
//! ready, not cordoned, carrying the pod's node selector labels, with room
//! for the pod's memory and CPU limits (memory also within what the node
//! last measured available, see [`ClusterView::set_memory_available`]), and
//! with its fixed host ports free.
//! Candidates are ranked (`score.rs`) by fewest pods of the pod's
//! service, then by the largest fraction of memory left free, then by name.

mod filters;
mod reason;
mod request;
mod score;
mod view;

#[cfg(test)]
mod tests;

pub use request::{FixedPort, Held, PodRequest};
pub use view::{ClusterView, NodeUsage, ViewError};

use std::cmp::Ordering;

use score::Candidate;

/// Where a pod goes, or why it cannot go anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The pod goes to `node`.
    Placed {
        /// The chosen node's name.
        node: String,
        /// Why this node, for events and `berth describe`.
        reason: String,
    },
    /// No node passes the filters.
    Unschedulable {
        /// Why, counted per cause over all nodes, e.g. `0/3 nodes fit:
        /// 1 not ready, 1 cordoned, 1 insufficient memory (needs 64Mi,
        /// 32Mi free)`.
        reason: String,
    },
}

/// Chooses the node for `pod`. Does not record the choice: call
/// [`ClusterView::assign`] before deciding the next pod, so pods decided in
/// one batch see each other, and [`ClusterView::unassign`] if the binding
/// is then not committed.
pub fn decide(cluster: &ClusterView, pod: &PodRequest) -> Placement {
    // Looked up once here, so the loop reads one integer per node.
    let spread = pod
        .service
        .as_deref()
        .and_then(|service| cluster.services.get(service));
    let mut best: Option<Candidate> = None;
    let mut fitting = 0;
    // In name order, and only a strictly better node replaces the best so
    // far: ties go to the first name without comparing strings.
    for &i in &cluster.order {
        let node = &cluster.nodes[i];
        if !filters::fits(node, pod) {
            continue;
        }
        fitting += 1;
        let candidate = Candidate::new(
            i,
            spread.map_or(0, |spread| spread.count(i)),
            // `fits` guarantees the pod's memory is free.
            node.free_memory() - pod.memory_bytes,
            node.capacity.memory_bytes,
            // Memory spreads pods that ask for some; those that ask for
            // none (a burst of jobs) would all tie, and go by count.
            if pod.memory_bytes == 0 { node.pods } else { 0 },
        );
        let better = match &best {
            None => true,
            Some(current) => candidate.cmp(current) == Ordering::Less,
        };
        if better {
            best = Some(candidate);
        }
    }
    match best {
        Some(winner) => Placement::Placed {
            node: cluster.nodes[winner.node].name.clone(),
            reason: reason::placed(fitting, cluster.nodes.len(), pod, &winner),
        },
        None => Placement::Unschedulable {
            reason: reason::unschedulable(cluster, pod),
        },
    }
}
