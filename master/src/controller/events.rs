//! Cluster events in the store: how they are keyed, which node transitions
//! become events, and how old ones are pruned.
//!
//! Events are written in the same commit as the change they describe, so
//! the history never claims something that did not happen (or misses
//! something that did).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_model::{Event, EventKind, Node, NodeCondition};

use crate::objects::{self, EVENTS};
use crate::store::Op;

/// Tells apart events of the same millisecond. Process-wide, so that the
/// controller and the API handlers never pick the same key.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The wall clock in milliseconds since the Unix epoch (0 if the clock is
/// before 1970, which only a broken host reports).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key of a new event at `time_ms`: `/events/<time>-<sequence>`, both
/// padded to 20 digits (the width of `u64::MAX`) so that key order is time
/// order, and a list of the prefix is the history oldest first.
pub fn key(time_ms: u64) -> String {
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{EVENTS}{time_ms:020}-{sequence:020}")
}

/// The time an event key was written at, if it is one.
fn key_time(key: &str) -> Option<u64> {
    let (time, _) = key.strip_prefix(EVENTS)?.split_once('-')?;
    time.parse().ok()
}

/// The store operation that records `event`.
pub fn record(event: &Event) -> Op {
    Op::Create {
        key: key(event.time_ms),
        value: objects::encode(event),
    }
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many events; the oldest go first.
    pub max_events: usize,
    /// Events older than this go.
    pub max_age: Duration,
}

impl Default for Retention {
    /// 10,000 events and one day: enough to see what happened overnight,
    /// small enough that listing them all stays cheap.
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The deletes that bring `events` (keys with revisions, in key order,
/// oldest first) within `retention` at `now_ms`.
pub fn prune(events: &[(String, u64)], now_ms: u64, retention: &Retention) -> Vec<Op> {
    let max_age_ms = u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX);
    let cutoff = now_ms.saturating_sub(max_age_ms);
    let excess = events.len().saturating_sub(retention.max_events);
    events
        .iter()
        .enumerate()
        // A key that is not an event's has no business under the prefix.
        .filter(|(i, (key, _))| *i < excess || key_time(key).is_none_or(|t| t < cutoff))
        .map(|(_, (key, revision))| Op::Delete {
            key: key.clone(),
            expected: Some(*revision),
        })
        .collect()
}

/// The condition of each node as last recorded, to turn liveness (which
/// only knows "now") into Ready and NotReady events. Kept in memory: after
/// a master restart every node gets a grace period anyway, and a node that
/// stays silent through it is reported then.
#[derive(Debug, Default)]
pub struct NodeConditions {
    /// `None` until the first round: what a master sees at start is not
    /// news.
    last: Option<BTreeMap<String, NodeCondition>>,
}

impl NodeConditions {
    /// Events for the nodes whose condition differs from the one last
    /// remembered. A node seen for the first time is news only once it is
    /// Ready: before its first heartbeat, a new node is not "lost".
    pub fn transitions(&self, nodes: &[(Node, NodeCondition)], now_ms: u64) -> Vec<Event> {
        let Some(last) = &self.last else {
            return Vec::new();
        };
        nodes
            .iter()
            .filter_map(|(node, condition)| {
                let (kind, reason) = match (last.get(&node.name), condition) {
                    (Some(before), now) if before == now => return None,
                    (None, NodeCondition::NotReady) => return None,
                    (_, NodeCondition::EngineUnavailable) => (
                        EventKind::NodeEngineUnavailable,
                        "heartbeats arrive, but the container engine does not answer; \
                         its pods are kept, not evicted",
                    ),
                    (None, NodeCondition::Ready) => {
                        (EventKind::NodeReady, "joined; heartbeats arrive")
                    }
                    (Some(NodeCondition::EngineUnavailable), NodeCondition::Ready) => {
                        (EventKind::NodeReady, "the container engine answers again")
                    }
                    (Some(_), NodeCondition::Ready) => {
                        (EventKind::NodeReady, "heartbeats arrive again")
                    }
                    (Some(_), NodeCondition::NotReady) => (
                        EventKind::NodeNotReady,
                        "no heartbeat within the grace period",
                    ),
                };
                Some(Event {
                    time_ms: now_ms,
                    kind,
                    object: format!("node/{}", node.name),
                    node: Some(node.name.clone()),
                    reason: reason.to_owned(),
                })
            })
            .collect()
    }

    /// Remembers the conditions once their events are committed; nodes
    /// that left the cluster are forgotten.
    pub fn remember(&mut self, nodes: &[(Node, NodeCondition)]) {
        self.last = Some(
            nodes
                .iter()
                .map(|(node, condition)| (node.name.clone(), *condition))
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use berth_model::Capacity;

    use super::*;

    fn node(name: &str, condition: NodeCondition) -> (Node, NodeCondition) {
        let node = Node {
            name: name.into(),
            address: name.into(),
            labels: BTreeMap::new(),
            capacity: Capacity::default(),
            unschedulable: false,
            unit_settings: None,
            volume_classes: Default::default(),
        };
        (node, condition)
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, &str)> {
        events.iter().map(|e| (e.kind, e.object.as_str())).collect()
    }

    #[test]
    fn keys_sort_by_time_then_order_of_writing() {
        let (a, b, c) = (key(999), key(1000), key(1000));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(key_time(&b), Some(1000));
        assert_eq!(key_time("/events/garbage"), None);
    }

    #[test]
    fn node_transitions_are_events_but_the_first_look_is_not() {
        let mut conditions = NodeConditions::default();
        let start = [
            node("h1", NodeCondition::Ready),
            node("h2", NodeCondition::NotReady),
        ];
        assert_eq!(conditions.transitions(&start, 1), vec![]);
        conditions.remember(&start);
        assert_eq!(conditions.transitions(&start, 2), vec![]);

        let later = [
            node("h1", NodeCondition::NotReady),
            node("h2", NodeCondition::Ready),
            node("h3", NodeCondition::NotReady),
        ];
        let events = conditions.transitions(&later, 3);
        assert_eq!(
            kinds(&events),
            [
                (EventKind::NodeNotReady, "node/h1"),
                (EventKind::NodeReady, "node/h2")
            ],
            "a new node is not news before its first heartbeat"
        );
        assert_eq!(events[0].node.as_deref(), Some("h1"));
        assert_eq!(events[0].time_ms, 3);
        conditions.remember(&later);

        let h3_up = [node("h3", NodeCondition::Ready)];
        assert_eq!(
            kinds(&conditions.transitions(&h3_up, 4)),
            [(EventKind::NodeReady, "node/h3")]
        );
    }

    #[test]
    fn pruning_drops_the_oldest_beyond_the_count_and_the_age() {
        let hour = 3_600_000;
        let now = 100 * hour;
        let events: Vec<(String, u64)> = [70 * hour, 80 * hour, 90 * hour, 95 * hour, 99 * hour]
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("{EVENTS}{t:020}-{i:020}"), i as u64 + 1))
            .collect();
        let deleted = |ops: Vec<Op>| -> Vec<u64> {
            ops.into_iter()
                .map(|op| match op {
                    Op::Delete {
                        expected: Some(r), ..
                    } => r,
                    other => panic!("not a delete: {other:?}"),
                })
                .collect()
        };
        let day = Retention::default();
        assert_eq!(deleted(prune(&events, now, &day)), [1], "older than a day");
        let three = Retention {
            max_events: 3,
            max_age: Duration::from_secs(24 * 3600),
        };
        assert_eq!(deleted(prune(&events, now, &three)), [1, 2]);
        let two = Retention {
            max_events: 2,
            ..three
        };
        assert_eq!(deleted(prune(&events, now, &two)), [1, 2, 3]);
        assert_eq!(prune(&events[2..], now, &day), vec![]);
    }
}
