//! Which nodes are alive: the time of each node's last heartbeat, kept in
//! memory (heartbeats arrive every second; writing each one durably would
//! cost a disk sync per node per second for nothing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_model::NodeCondition;

/// Heartbeat times and the grace period after which a silent node is
/// NotReady.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    grace: Duration,
    last: Mutex<HashMap<String, Instant>>,
    /// The memory each node last reported available (its heartbeat's
    /// usage), which the scheduler does not place beyond.
    memory_available: Mutex<HashMap<String, u64>>,
}

impl Liveness {
    /// Starts tracking with a grace period (default 3 s).
    pub fn new(grace: Duration) -> Self {
        Self {
            started: Instant::now(),
            grace,
            last: Mutex::new(HashMap::new()),
            memory_available: Mutex::new(HashMap::new()),
        }
    }

    /// Records a heartbeat from `node` now.
    pub fn heartbeat(&self, node: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(node.to_owned(), Instant::now());
        }
    }

    /// Records the memory `node` measured available.
    pub fn report_memory_available(&self, node: &str, bytes: u64) {
        if let Ok(mut memory) = self.memory_available.lock() {
            memory.insert(node.to_owned(), bytes);
        }
    }

    /// The memory `node` last reported available, if it did.
    pub fn memory_available(&self, node: &str) -> Option<u64> {
        self.memory_available
            .lock()
            .ok()
            .and_then(|m| m.get(node).copied())
    }

    /// The node's condition now. A master that just started has heard from
    /// nobody yet: every node gets one grace period before it counts as
    /// NotReady, so a master restart never evicts anything.
    pub fn condition(&self, node: &str) -> NodeCondition {
        let now = Instant::now();
        let seen = self.last.lock().ok().and_then(|l| l.get(node).copied());
        let alive = match seen {
            Some(at) => now.duration_since(at) <= self.grace,
            None => now.duration_since(self.started) <= self.grace,
        };
        if alive {
            NodeCondition::Ready
        } else {
            NodeCondition::NotReady
        }
    }

    /// Milliseconds since the node's last heartbeat.
    pub fn since_last_ms(&self, node: &str) -> Option<u64> {
        let seen = self.last.lock().ok().and_then(|l| l.get(node).copied())?;
        u64::try_from(seen.elapsed().as_millis()).ok()
    }
}
