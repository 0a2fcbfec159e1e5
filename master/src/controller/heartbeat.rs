//! Heartbeats: what a node's report changes in the store. Pure; the API
//! records the node's liveness and commits the changes. Only what changed
//! is written: a heartbeat a second per node must not cost a disk sync
//! each. A node reports only the pods whose status changed since its last
//! answered heartbeat (and all of them every ~10 s): a pod it leaves out
//! is unchanged, so its stored status stays.

use std::sync::Arc;

use berth_model::api::{Heartbeat, Versioned};
use berth_model::{ClusterPod, Node};

use super::change::Change;

/// What one heartbeat changes, and which of its pods' statuses it leaves
/// unrecorded.
#[derive(Debug, Default, PartialEq)]
pub struct PlannedHeartbeat {
    /// The writes, in one transaction.
    pub changes: Vec<Change>,
    /// Reported pods whose status is not (and will not be) recorded: not
    /// known here, not assigned to the node, or reported with a spec they
    /// no longer have. The node reports them again, so a pod this master
    /// does not know yet (its view a little behind) is not missed.
    pub unrecorded: Vec<String>,
}

impl PlannedHeartbeat {
    /// The pods whose status the changes write: unrecorded after all if
    /// the write fails.
    pub fn written_pods(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().filter_map(|c| match c {
            Change::UpdatePod { pod, .. } => Some(pod.spec.name.as_str()),
            _ => None,
        })
    }
}

/// Plans what node `name`'s heartbeat `beat` changes: its capacity and
/// unit settings on `node` (its stored object, if it has one; an agent
/// too old to report unit settings leaves none, not stale ones), and the status of each of
/// `pods` (the stored pods its report names) that is assigned to it and
/// whose status differs. A pod no longer assigned to it is not its to
/// report on, nor is a spec it no longer has. A pod that turns ready is
/// marked ready since `now_ms`.
pub fn plan_heartbeat(
    name: &str,
    beat: &Heartbeat,
    node: Option<&Versioned<Node>>,
    pods: &[Arc<Versioned<ClusterPod>>],
    now_ms: u64,
) -> PlannedHeartbeat {
    let mut changes = Vec::new();
    let mut unrecorded = Vec::new();
    if let Some(node) = node.filter(|n| {
        n.object.capacity != beat.capacity
            || n.object.unit_settings != beat.unit_settings
            || n.object.volume_classes != beat.volume_classes
    }) {
        let mut updated = node.object.clone();
        updated.capacity = beat.capacity;
        updated.unit_settings.clone_from(&beat.unit_settings);
        updated.volume_classes.clone_from(&beat.volume_classes);
        let what = if node.object.capacity != beat.capacity {
            "capacity"
        } else if node.object.unit_settings != beat.unit_settings {
            "unit settings"
        } else {
            "set of volume classes"
        };
        changes.push(Change::UpdateNode {
            node: updated,
            expected_revision: node.resource_version,
            reason: format!("node {name} reports a new {what}"),
        });
    }
    for status in &beat.pods {
        let Some(pod) = pods.iter().find(|p| p.object.spec.name == status.name) else {
            unrecorded.push(status.name.clone());
            continue;
        };
        if pod.object.node.as_deref() != Some(name) {
            unrecorded.push(status.name.clone());
            continue;
        }
        if pod.object.status.as_ref() == Some(status) {
            continue;
        }
        // A report of the spec the pod had before it was replaced in place
        // (a recreate rollout) says nothing of the new one: the node has
        // not got to it yet.
        if status.spec != pod.object.spec.clone().redacted() {
            unrecorded.push(status.name.clone());
            continue;
        }
        let mut updated = pod.object.clone();
        updated.status = Some(status.clone());
        updated.ready_since_ms = if updated.reported_ready() {
            pod.object.ready_since_ms.or(Some(now_ms))
        } else {
            None
        };
        changes.push(Change::UpdatePod {
            pod: updated,
            expected_revision: pod.resource_version,
            reason: format!("node {name} reports pod {} anew", status.name),
            event: None,
        });
    }
    PlannedHeartbeat {
        changes,
        unrecorded,
    }
}

#[cfg(test)]
mod tests {
    use berth_model::{Capacity, PodStatus};

    use super::*;
    use crate::controller::testing::{cluster, ready, service, step};

    fn status(pod: &ClusterPod, phase: &str) -> PodStatus {
        serde_json::from_value(serde_json::json!({
            "name": pod.spec.name, "phase": phase, "slice": "s", "containers": [],
            "spec": pod.spec,
        }))
        .unwrap()
    }

    #[test]
    fn only_changed_states_of_the_nodes_own_pods_and_capacity_are_written() {
        let mut cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        step(&mut cluster);
        let (node, _) = cluster.nodes[0].clone();
        let node = Versioned {
            resource_version: 5,
            object: node,
        };
        let mine = cluster
            .pods
            .iter()
            .position(|p| p.object.node.as_deref() == Some("h1"))
            .unwrap();
        let theirs = 1 - mine;
        let beat = |capacity: Capacity, pods: Vec<PodStatus>| Heartbeat {
            capacity,
            pods,
            usage: None,
            metrics: Vec::new(),
            metrics_unchanged: false,
            engine_unavailable: None,
            unit_settings: None,
            volume_classes: Default::default(),
        };
        let running = status(&cluster.pods[mine].object, "Running");
        let report = beat(
            node.object.capacity,
            vec![
                running.clone(),
                status(&cluster.pods[theirs].object, "Running"),
            ],
        );
        let planned = plan_heartbeat("h1", &report, Some(&node), &cluster.pods, 0);
        assert_eq!(
            planned.unrecorded,
            [cluster.pods[theirs].object.spec.name.clone()],
            "the other node's pod is not h1's to report"
        );
        assert_eq!(
            plan_heartbeat("h1", &report, Some(&node), &[], 0).unrecorded,
            [
                running.name.clone(),
                cluster.pods[theirs].object.spec.name.clone()
            ],
            "pods this master does not know (yet) are reported again"
        );
        let changes = planned.changes;
        let mut expected = cluster.pods[mine].object.clone();
        expected.status = Some(running.clone());
        expected.ready_since_ms = Some(0);
        assert_eq!(
            changes.iter().map(Change::written_pod).collect::<Vec<_>>(),
            [Some(expected.clone())],
            "only h1's own pod: {changes:?}"
        );
        assert_eq!(changes[0].event(), None);

        Arc::make_mut(&mut cluster.pods[mine]).object = expected;
        assert_eq!(
            plan_heartbeat("h1", &report, Some(&node), &cluster.pods, 0).changes,
            [],
            "an unchanged state is not written again"
        );

        let grown = Capacity {
            memory_bytes: 16 << 30,
            ..node.object.capacity
        };
        let changes = plan_heartbeat(
            "h1",
            &beat(grown, vec![running]),
            Some(&node),
            &cluster.pods,
            0,
        )
        .changes;
        let [Change::UpdateNode {
            node: updated,
            expected_revision: 5,
            ..
        }] = changes.as_slice()
        else {
            panic!("{changes:?}");
        };
        assert_eq!(updated.capacity, grown);
        assert_eq!(
            plan_heartbeat("h1", &beat(grown, vec![]), None, &[], 0),
            PlannedHeartbeat::default(),
            "a node with no object has nothing to update"
        );
    }

    #[test]
    fn unit_settings_are_recorded_and_cleared_by_an_agent_too_old_to_send_them() {
        let cluster = cluster(Vec::new(), ready(&["h1"]));
        let (node, _) = cluster.nodes[0].clone();
        let node = Versioned {
            resource_version: 3,
            object: node,
        };
        let settings = berth_model::UnitSettings {
            shim_path: "/usr/lib/berth/berth-shim".into(),
            shim_environment: Vec::new(),
            ..Default::default()
        };
        let beat = |unit_settings| Heartbeat {
            capacity: node.object.capacity,
            pods: Vec::new(),
            usage: None,
            metrics: Vec::new(),
            metrics_unchanged: false,
            engine_unavailable: None,
            volume_classes: Default::default(),
            unit_settings,
        };
        let changes =
            plan_heartbeat("h1", &beat(Some(settings.clone())), Some(&node), &[], 0).changes;
        let [Change::UpdateNode { node: updated, .. }] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(updated.unit_settings.as_ref(), Some(&settings));
        let recorded = Versioned {
            resource_version: 4,
            object: updated.clone(),
        };
        assert_eq!(
            plan_heartbeat("h1", &beat(Some(settings)), Some(&recorded), &[], 0).changes,
            [],
            "the same settings are not written again"
        );
        let changes = plan_heartbeat("h1", &beat(None), Some(&recorded), &[], 0).changes;
        let [Change::UpdateNode { node: updated, .. }] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(updated.unit_settings, None, "an older agent's are unknown");
    }
}
