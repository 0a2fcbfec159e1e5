//! Heartbeats shared between masters (etcd backend): an agent's heartbeat
//! may reach any master, but only the leader judges liveness. Each master
//! writes what it heard of a node to `/heartbeats/<node>` at most every
//! quarter grace period (not on every heartbeat: a write per node per
//! second would load etcd for nothing), and the leader follows those keys
//! with a watch, counting each write as a heartbeat heard when it arrives
//! (its own clock, so the masters' clocks need not agree).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::liveness::Liveness;
use crate::store::etcd::EtcdStore;
use crate::store::{EventKind, Store};

/// Where the heard heartbeats are kept, one key per node.
pub const HEARTBEATS: &str = "/heartbeats/";

/// What a master heard in a node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeardHeartbeat {
    /// The memory the node measured available, if it said.
    pub memory_available: Option<u64>,
    /// Why its container engine does not answer, if it does not.
    pub engine_error: Option<String>,
}

/// A master's writer of heard heartbeats.
#[derive(Debug)]
pub struct HeartbeatSharing {
    store: EtcdStore,
    throttle: Throttle,
    /// Whether this master leads: the leader counts what it hears itself,
    /// and a new leader judges nothing written before its term, so the
    /// leader's writes would be read by no one (at 1,000 nodes and the
    /// default grace, 1,333 etcd writes a second).
    leading: AtomicBool,
}

/// When each node's heartbeat was last written.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    written: Mutex<HashMap<String, Instant>>,
}

impl HeartbeatSharing {
    /// Shares heartbeats through `store`, each node's at most four times
    /// per `grace`: the leader then always has one from within the grace
    /// period of a node that beats every second.
    pub fn new(store: EtcdStore, grace: Duration) -> Self {
        Self {
            store,
            throttle: Throttle::new(grace / 4),
            leading: AtomicBool::new(false),
        }
    }

    /// Tells whether this master leads from now on.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// Writes `heard` for `node` if due, in the background: the agent's
    /// heartbeat does not wait for etcd.
    pub fn share(self: &Arc<Self>, node: &str, heard: HeardHeartbeat) {
        if self.leading.load(Ordering::Relaxed) || !self.throttle.due(node, Instant::now()) {
            return;
        }
        let sharing = Arc::clone(self);
        let key = format!("{HEARTBEATS}{node}");
        tokio::spawn(async move {
            let value = match serde_json::to_vec(&heard) {
                Ok(value) => value,
                Err(e) => return warn!(error = %e, key, "encoding a heard heartbeat"),
            };
            if let Err(e) = sharing.store.put(&key, value).await {
                warn!(error = %e, key, "sharing a heartbeat with the other masters failed");
            }
        });
    }
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a heartbeat of `node` heard at `now` is to be written, and
    /// if so, notes it as written.
    fn due(&self, node: &str, now: Instant) -> bool {
        let Ok(mut written) = self.written.lock() else {
            return true;
        };
        match written.get(node) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                written.insert(node.to_owned(), now);
                true
            }
        }
    }
}

/// The leader's side: counts every heartbeat another master (or this one)
/// shares from now on as heard, until the watch fails (then it reopens
/// from the current revision; a gap costs at most one missed write).
pub async fn follow(store: Arc<dyn Store>, liveness: Arc<Liveness>) {
    loop {
        if let Err(e) = follow_once(store.as_ref(), &liveness).await {
            warn!(error = %e, "following shared heartbeats failed; following again");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow_once(
    store: &dyn Store,
    liveness: &Liveness,
) -> Result<(), crate::store::StoreError> {
    let from = store.revision().await?;
    let mut changes = store.watch(HEARTBEATS, from).await?;
    while let Some(change) = changes.next().await {
        let change = change?;
        if change.kind != EventKind::Put {
            continue;
        }
        let Some(node) = change.entry.key.strip_prefix(HEARTBEATS) else {
            continue;
        };
        let heard: HeardHeartbeat = match serde_json::from_slice(&change.entry.value) {
            Ok(heard) => heard,
            Err(e) => {
                warn!(error = %e, key = change.entry.key, "a shared heartbeat that does not parse");
                continue;
            }
        };
        liveness.heartbeat(node);
        liveness.report_engine(node, heard.engine_error);
        if let Some(bytes) = heard.memory_available {
            liveness.report_memory_available(node, bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_node_is_written_at_most_four_times_per_grace() {
        let sharing = Throttle::new(Duration::from_secs(3) / 4);
        let t0 = Instant::now();
        assert!(sharing.due("n1", t0));
        assert!(!sharing.due("n1", t0 + Duration::from_millis(500)));
        assert!(
            sharing.due("n2", t0 + Duration::from_millis(500)),
            "per node"
        );
        assert!(sharing.due("n1", t0 + Duration::from_millis(750)));
    }
}
