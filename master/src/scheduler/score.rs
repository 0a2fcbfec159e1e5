//! Scoring: among the nodes that pass the filters, which one a pod goes to.

use std::cmp::Ordering;

/// What ranks a node that passed the filters, for one pod.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// The node's index in the view.
    pub(super) node: usize,
    /// Pods of the same service already on the node.
    pub(super) same_service: u32,
    /// Memory left on the node once the pod is placed.
    pub(super) free_memory_after: u64,
    /// The node's memory capacity, never 0 (see [`Candidate::new`]).
    pub(super) memory_capacity: u64,
    /// Pods assigned to the node, for a pod that asks for no memory (0
    /// otherwise).
    pub(super) pods: u32,
}

impl Candidate {
    pub(super) fn new(
        node: usize,
        same_service: u32,
        free_memory_after: u64,
        capacity: u64,
        pods: u32,
    ) -> Self {
        // A node without memory has no free fraction; 0/1 keeps the cross
        // multiplication in `cmp` meaningful where 0/0 would tie with any node.
        let (free_memory_after, memory_capacity) = if capacity == 0 {
            (0, 1)
        } else {
            (free_memory_after, capacity)
        };
        Self {
            node,
            same_service,
            free_memory_after,
            memory_capacity,
            pods,
        }
    }

    /// `Less` when `self` is the better node: fewer pods of the same service
    /// (spread replicas so one node failing takes few of them), then the
    /// larger fraction of memory left free (fill nodes evenly), then, for a
    /// pod that asks for no memory, fewer pods (a burst of jobs spreads
    /// too). Ties are left to the caller, which breaks them by node name.
    pub(super) fn cmp(&self, other: &Self) -> Ordering {
        self.same_service
            .cmp(&other.same_service)
            .then_with(|| {
                // free_a / cap_a > free_b / cap_b, in integers so that the
                // decision cannot depend on float rounding.
                let ours = u128::from(self.free_memory_after) * u128::from(other.memory_capacity);
                let theirs = u128::from(other.free_memory_after) * u128::from(self.memory_capacity);
                theirs.cmp(&ours)
            })
            .then_with(|| self.pods.cmp(&other.pods))
    }

    /// Free memory after placement in whole percent, rounded down.
    pub(super) fn free_memory_percent(&self) -> u128 {
        u128::from(self.free_memory_after) * 100 / u128::from(self.memory_capacity)
    }
}
