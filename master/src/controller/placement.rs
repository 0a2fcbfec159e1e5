//! Placement: pods without a node go where the scheduler's
//! [`decide`] says, pods that could not start on their node for a cause of
//! the node's own are placed again elsewhere, pods of stateless services
//! leave dead nodes (unless the eviction gate holds them), and a pod moves
//! on request only to a node that passes the scheduler's filters. Pure.

use std::collections::BTreeSet;

use berth_model::api::Versioned;
use berth_model::{ClusterPod, EventKind, Node, NodeCondition, Service};

use super::change::{pod_event, Change};
use super::pods::{in_cluster_order, PodIndex};
use super::replicas::{by_name, links_current};
use super::Cluster;
use crate::scheduler::{decide, ClusterView, Held, Placement, PodRequest};

/// How long a node where a pod could not start for a cause of its own is
/// left out when placing that pod: the cause (a process holding a port)
/// may go away.
pub const START_FAILED_AVOID_MS: u64 = 5 * 60 * 1000;

/// What placement makes of the pods already bound to nodes.
#[derive(Debug)]
pub struct Bound<'a> {
    /// Pods of stateless services deleted from dead nodes; their services
    /// replace them elsewhere.
    pub evictions: Vec<Change>,
    /// Pods that could not start where they are, for a cause of that
    /// node's own, with why: [`place`] places them again.
    moved: Vec<(&'a Versioned<ClusterPod>, String)>,
    /// The nodes with the pods that stay on them.
    view: ClusterView,
}

/// Looks at the pods bound to nodes: which are evicted from dead nodes,
/// which must be placed again, and what the rest hold of their nodes.
pub fn review<'a>(cluster: &'a Cluster, pods: &PodIndex<'a>) -> Bound<'a> {
    let services = by_name(cluster);
    let mut view = view(cluster);
    // Whether each of the view's nodes is silent, by its slot: each pod
    // then costs one lookup of its node. A node whose engine is down is
    // alive: its pods come back in place.
    let mut silent_at = vec![true; view.len()];
    for (node, condition) in &cluster.nodes {
        if let Some(slot) = view.slot_of(&node.name) {
            silent_at[slot] = !matches!(
                condition,
                NodeCondition::Ready | NodeCondition::EngineUnavailable
            );
        }
    }
    // If every node is silent at once, or too many went silent together,
    // the master is the one cut off: moving everything would only make
    // things worse.
    let may_evict = !cluster.evictions_held && silent_at.contains(&false);
    let mut evictions = Vec::new();
    let mut moved = Vec::new();
    // By service, so that each pod's service is looked up once a group.
    let groups = pods
        .by_service
        .iter()
        .map(|(name, group)| (Some(*name), services.get(name).copied(), group))
        .chain([(None, None, &pods.without_service)]);
    for (service_name, service, group) in groups {
        for &(position, pod) in group {
            let Some(node) = pod.object.node.as_deref() else {
                continue;
            };
            let slot = view.slot_of(node);
            let silent = slot.is_none_or(|i| silent_at[i]);
            let stateful = service.is_some_and(|s| s.object.stateful);
            // A stateful pod whose data is all on the network moves too,
            // once its node has fenced it (stopped it on its own, cut off
            // from the master): its volumes then have no writer left.
            let movable = !stateful
                || (pod.object.spec.network_backed()
                    && cluster
                        .silence_ms
                        .get(node)
                        .is_some_and(|&ms| ms >= fence_wait_ms(&pod.object.spec)));
            if may_evict && silent && service.is_some() && movable {
                let name = &pod.object.spec.name;
                let eviction = Change::DeletePod {
                    name: name.clone(),
                    expected_revision: pod.resource_version,
                    reason: format!("node {node} is not ready: replacing pod {name}"),
                    event: Some(pod_event(
                        cluster.now_ms,
                        EventKind::PodEvicted,
                        name,
                        Some(node),
                        format!("node {node} is not ready; the pod is replaced elsewhere"),
                    )),
                };
                evictions.push((position, eviction));
            } else if let Some(why) =
                node_local_start_failure(&pod.object).filter(|_| service.is_some() && !stateful)
            {
                let why = format!("could not start on {node} ({why}); moved");
                moved.push((position, (pod, why)));
            } else if let Some(slot) = slot {
                // The group's name is the pod's service, already at hand.
                let held = Held {
                    service: service_name,
                    ..Held::of(&pod.object)
                };
                view.hold_at(slot, &held);
            }
        }
    }
    Bound {
        evictions: in_cluster_order(evictions),
        moved: in_cluster_order(moved),
        view,
    }
}

/// How long a node must have been silent before its network-backed pod
/// may start elsewhere: the agent fences after
/// [`NETWORK_FENCE_AFTER_SECS`](berth_model::pod::NETWORK_FENCE_AFTER_SECS)
/// without reaching the master (noticed within one heartbeat and its
/// timeout, 3 s), then stops the pod's containers (each within its stop
/// timeout), with 2 s to spare.
pub fn fence_wait_ms(pod: &berth_model::Pod) -> u64 {
    let stop = pod
        .containers
        .iter()
        .map(|c| u64::from(c.stop_timeout_secs))
        .max()
        .unwrap_or(0);
    (berth_model::pod::NETWORK_FENCE_AFTER_SECS + 3 + stop + 2) * 1000
}

/// Places what has no node: pods that could not be placed before, pods
/// that could not start where they were, and `new` replicas. Pods in
/// `removed` are going and are not placed.
pub fn place(
    cluster: &Cluster,
    pods: &PodIndex<'_>,
    bound: Bound<'_>,
    removed: &BTreeSet<String>,
    new: Vec<ClusterPod>,
) -> Vec<Change> {
    let services = by_name(cluster);
    let Bound {
        moved, mut view, ..
    } = bound;
    let mut changes = Vec::new();
    let moved = moved
        .into_iter()
        .filter(|(p, _)| !removed.contains(&p.object.spec.name))
        .map(|(p, why)| {
            let mut pod = p.object.clone();
            if let Some(node) = pod.node.take() {
                pod.start_failed_on
                    .insert(node, cluster.now_ms + START_FAILED_AVOID_MS);
            }
            pod.start_failed_on
                .retain(|_, until| *until > cluster.now_ms);
            pod.status = None;
            (Some(p.resource_version), pod, Some(why))
        });
    let mut unplaced: Vec<_> = pods
        .unbound
        .iter()
        .map(|&(_, p)| p)
        .filter(|p| p.object.waiting_for.is_none())
        .filter(|p| !removed.contains(&p.object.spec.name))
        .map(|p| (Some(p.resource_version), p.object.clone(), None))
        .chain(moved)
        .chain(new.into_iter().map(|p| (None, p, None)))
        .collect();
    // The queue for room: by priority, then first come first placed.
    unplaced.sort_by_key(|(_, pod, _)| (pod.priority, pod.queued_ms.unwrap_or(0)));
    for (revision, mut pod, moved_because) in unplaced {
        let service = pod
            .service
            .as_deref()
            .and_then(|s| services.get(s))
            .map(|s| &s.object);
        let mut links_changed = false;
        if let Some(service) = service {
            links_changed = !links_current(&pod, service);
            pod.links = service.links.clone();
            pod.egress = service.egress;
        }
        let request = request(&pod, service, cluster.now_ms);
        let name = pod.spec.name.clone();
        let change = match decide(&view, &request) {
            Placement::Placed { node, reason } => {
                let reason = match &moved_because {
                    Some(why) => format!("{why}: {reason}"),
                    None => reason,
                };
                let _ = view.assign(&node, &request);
                let log = format!("pod {name} placed on {node}: {reason}");
                let event = Some(pod_event(
                    cluster.now_ms,
                    EventKind::PodScheduled,
                    &name,
                    Some(&node),
                    reason,
                ));
                match revision {
                    Some(expected_revision) => Change::BindPod {
                        pod,
                        node,
                        expected_revision,
                        reason: log,
                        event,
                    },
                    None => Change::CreatePod {
                        pod: super::change::bound(&pod, &node),
                        reason: log,
                        event,
                    },
                }
            }
            Placement::Unschedulable { reason } => {
                // Unchanged, it was written (and reported) before: each
                // round would otherwise rewrite the pod and repeat the event.
                // A moved pod's reason names the node it left out.
                if revision.is_some()
                    && moved_because.is_none()
                    && !links_changed
                    && pod.unschedulable_reason.as_deref() == Some(reason.as_str())
                {
                    continue;
                }
                let log = format!("pod {name} is unschedulable: {reason}");
                let event = Some(pod_event(
                    cluster.now_ms,
                    EventKind::PodUnschedulable,
                    &name,
                    None,
                    &reason,
                ));
                pod.unschedulable_reason = Some(reason);
                match revision {
                    Some(expected_revision) => Change::UpdatePod {
                        pod,
                        expected_revision,
                        reason: log,
                        event,
                    },
                    None => Change::CreatePod {
                        pod,
                        reason: log,
                        event,
                    },
                }
            }
        };
        changes.push(change);
    }
    changes
}

/// Why a pod cannot move where it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// There is no such pod.
    #[error("pod {0} not found")]
    NoPod(String),
    /// There is no such node.
    #[error("no node named {0}")]
    NoNode(String),
    /// The node fails one of the scheduler's filters; `reason` is the
    /// scheduler's, as for a pod that fits nowhere.
    #[error("pod {pod} cannot go to {node}: {reason}")]
    Rejected {
        /// The pod asked to move.
        pod: String,
        /// Where it was asked to go.
        node: String,
        /// Why not, e.g. `0/1 nodes fit: 1 cordoned`.
        reason: String,
    },
}

/// Plans moving pod `name` to node `to` on request (the only way a
/// stateful pod moves): the scheduler decides, with only `to` to choose
/// from, so a move passes the same filters as any placement (ready, not
/// cordoned, node selector, memory, CPU, host ports). The old node stops
/// the pod and the new one starts it, with no status yet.
pub fn plan_move(
    cluster: &Cluster,
    name: &str,
    to: &str,
    keep_source: bool,
) -> Result<Change, MoveError> {
    let pod = cluster
        .pods
        .iter()
        .find(|p| p.object.spec.name == name)
        .ok_or_else(|| MoveError::NoPod(name.to_owned()))?;
    let (node, condition) = cluster
        .nodes
        .iter()
        .find(|(n, _)| n.name == to)
        .ok_or_else(|| MoveError::NoNode(to.to_owned()))?;
    let services = by_name(cluster);
    let service_of = |pod: &ClusterPod| {
        pod.service
            .as_deref()
            .and_then(|s| services.get(s))
            .map(|s| &s.object)
    };
    let mut view = ClusterView::new();
    view.upsert_node(node, *condition);
    if let Some(bytes) = cluster.memory_available.get(to) {
        let _ = view.set_memory_available(to, *bytes);
    }
    // What else holds the node; the pod itself does not count against a
    // move to where it already is.
    for other in cluster
        .pods
        .iter()
        .filter(|p| p.object.node.as_deref() == Some(to) && p.object.spec.name != name)
    {
        let request = PodRequest::from_cluster_pod(&other.object, service_of(&other.object));
        let _ = view.assign(to, &request);
    }
    let mut moved = pod.object.clone();
    // The ports its old node gave it are not its to keep.
    let from = moved.node.take();
    moved.status = None;
    let request = request(&moved, service_of(&moved), cluster.now_ms);
    match decide(&view, &request) {
        Placement::Placed { node, reason } => {
            if let Some(from) = from.as_deref().filter(|f| *f != node) {
                if super::moves::carries_data(&pod.object) {
                    return move_with_data(
                        cluster,
                        pod,
                        from,
                        node_object(cluster, &node)?,
                        keep_source,
                    );
                }
            }
            let reason = match from {
                Some(from) => format!("moved from {from} on request: {reason}"),
                None => format!("moved on request: {reason}"),
            };
            Ok(Change::BindPod {
                reason: format!("pod {name} placed on {node}: {reason}"),
                event: Some(pod_event(
                    cluster.now_ms,
                    EventKind::PodScheduled,
                    name,
                    Some(&node),
                    reason,
                )),
                pod: moved,
                node,
                expected_revision: pod.resource_version,
            })
        }
        Placement::Unschedulable { reason } => Err(MoveError::Rejected {
            pod: name.to_owned(),
            node: to.to_owned(),
            reason,
        }),
    }
}

fn node_object<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a Node, MoveError> {
    cluster
        .nodes
        .iter()
        .map(|(n, _)| n)
        .find(|n| n.name == name)
        .ok_or_else(|| MoveError::NoNode(name.to_owned()))
}

/// A pod with named volumes moves with its data: it stays bound to its
/// source, which must be ready to stop it and send the volumes.
fn move_with_data(
    cluster: &Cluster,
    pod: &Versioned<ClusterPod>,
    from: &str,
    to: &Node,
    keep_source: bool,
) -> Result<Change, MoveError> {
    let name = &pod.object.spec.name;
    let reject = |reason: String| MoveError::Rejected {
        pod: name.clone(),
        node: to.name.clone(),
        reason,
    };
    if let Some(moving) = &pod.object.moving {
        return Err(reject(format!(
            "it is moving to {} already ({})",
            moving.to, moving.phase
        )));
    }
    let source_ready = cluster
        .nodes
        .iter()
        .any(|(n, c)| n.name == from && *c == NodeCondition::Ready);
    if !source_ready {
        return Err(reject(format!(
            "its node {from} is not ready, and its named volumes' data is there"
        )));
    }
    let (moving, event) = super::moves::begin(&pod.object, from, to, keep_source, cluster.now_ms);
    Ok(Change::UpdatePod {
        reason: format!("pod {name} moves from {from} to {} with its data", to.name),
        pod: moving,
        expected_revision: pod.resource_version,
        event: Some(event),
    })
}

/// The scheduler's view of the cluster's nodes, with nothing on them yet.
fn view(cluster: &Cluster) -> ClusterView {
    let mut view = ClusterView::new();
    for (node, condition) in &cluster.nodes {
        view.upsert_node(node, *condition);
    }
    for (node, bytes) in &cluster.memory_available {
        let _ = view.set_memory_available(node, *bytes);
    }
    view
}

/// What `pod` asks of a node at `now_ms`: the nodes where it could not
/// start lately are left out until their wait is over.
fn request(pod: &ClusterPod, service: Option<&Service>, now_ms: u64) -> PodRequest {
    let mut request = PodRequest::from_cluster_pod(pod, service);
    request.avoid_nodes = pod
        .start_failed_on
        .iter()
        .filter(|(_, until)| **until > now_ms)
        .map(|(node, _)| node.clone())
        .collect();
    request
}

/// Why a pod could not start on its node, when the cause is the node's
/// own, so that another node may do: a host port held there.
fn node_local_start_failure(pod: &ClusterPod) -> Option<String> {
    let failure = pod.status.as_ref()?.start_failure.as_ref()?;
    (failure.reason == berth_model::EventKind::HostPortConflict.as_str())
        .then(|| failure.message.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::collections::{BTreeMap, BTreeSet};

    use berth_model::{Capacity, EventKind, Node, NodeCondition};

    use super::super::replicas::replica_index;
    use super::super::testing::*;
    use super::super::{plan, Cluster};
    use super::{plan_move, MoveError, START_FAILED_AVOID_MS};

    #[test]
    fn pods_of_a_dead_node_are_replaced_unless_stateful() {
        let mut cluster = cluster(
            vec![service("web", 3, false), service("db", 1, true)],
            ready(&["h1", "h2", "h3"]),
        );
        step(&mut cluster);
        let on_h3: Vec<String> = cluster
            .pods
            .iter()
            .filter(|p| p.object.node.as_deref() == Some("h3"))
            .map(|p| p.object.spec.name.clone())
            .collect();
        cluster.nodes[2].1 = NodeCondition::NotReady;
        step(&mut cluster);
        for pod in &cluster.pods {
            if pod.object.service.as_deref() == Some("web") {
                assert_ne!(
                    pod.object.node.as_deref(),
                    Some("h3"),
                    "{} still on the dead node",
                    pod.object.spec.name
                );
            } else if on_h3.contains(&pod.object.spec.name) {
                assert_eq!(
                    pod.object.node.as_deref(),
                    Some("h3"),
                    "the stateful pod was moved"
                );
            }
        }
        assert_eq!(
            cluster
                .pods
                .iter()
                .filter(|p| p.object.service.as_deref() == Some("web"))
                .count(),
            3
        );
    }

    #[test]
    fn a_network_backed_stateful_pod_moves_once_its_node_had_time_to_fence_it() {
        let mut db = service("db", 1, true);
        db.object.template.volumes = vec![berth_model::Volume::on_network(
            "data",
            berth_model::NetworkKind::Glusterfs,
            "h9",
            "/v1",
        )];
        db.object.template.containers[0].volume_mounts = vec![berth_model::VolumeMount {
            volume: "data".into(),
            path: "/data".into(),
            read_only: false,
        }];
        let wait = super::fence_wait_ms(&db.object.template);
        assert_eq!(wait, (5 + 3 + 10 + 2) * 1000);
        let mut cluster = cluster(vec![db], ready(&["h1", "h2"]));
        step(&mut cluster);
        let first = cluster.pods[0].object.node.clone().expect("placed");
        let i = cluster
            .nodes
            .iter()
            .position(|n| n.0.name == first)
            .unwrap();
        cluster.nodes[i].1 = NodeCondition::NotReady;
        // Silent, but not yet for long enough to have fenced the pod; or
        // never heard from by this master: the pod stays.
        for silence in [Some(wait - 1), None] {
            cluster.silence_ms = silence.map(|ms| (first.clone(), ms)).into_iter().collect();
            assert_eq!(plan(&cluster), vec![], "{silence:?}");
        }
        cluster.silence_ms = [(first.clone(), wait)].into();
        step(&mut cluster);
        step(&mut cluster);
        assert_eq!(cluster.pods.len(), 1);
        let moved = cluster.pods[0].object.node.as_deref();
        assert!(
            moved.is_some() && moved != Some(first.as_str()),
            "{moved:?}"
        );
    }

    #[test]
    fn nothing_moves_when_every_node_is_silent() {
        let mut cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        step(&mut cluster);
        for n in &mut cluster.nodes {
            n.1 = NodeCondition::NotReady;
        }
        assert_eq!(plan(&cluster), vec![]);
    }

    #[test]
    fn a_pod_that_fits_nowhere_says_why_once() {
        let mut big = service("big", 1, false);
        big.object.template.containers[0].resources.memory_bytes = Some(64 << 30);
        let mut cluster = cluster(vec![big], ready(&["h1"]));
        step(&mut cluster);
        let pod = &cluster.pods[0].object;
        assert_eq!(pod.node, None);
        assert!(
            pod.unschedulable_reason
                .as_deref()
                .is_some_and(|r| r.contains("memory")),
            "{pod:?}"
        );
        assert_eq!(
            plan(&cluster),
            vec![],
            "the same reason is not written again"
        );
        cluster.nodes.push((
            Node {
                capacity: Capacity {
                    memory_bytes: 128 << 30,
                    cpu_millis: 8000,
                },
                ..node("h2")
            },
            NodeCondition::Ready,
        ));
        step(&mut cluster);
        assert_eq!(
            cluster.pods[0].object.node.as_deref(),
            Some("h2"),
            "retried when the cluster changed"
        );
    }

    #[test]
    fn no_pod_is_evicted_while_evictions_are_held_or_from_a_node_whose_engine_restarts() {
        let mut cluster = cluster(vec![service("web", 3, false)], ready(&["h1", "h2", "h3"]));
        step(&mut cluster);
        let before = placement(&cluster);
        assert_eq!(before.len(), 3);

        cluster.nodes[1].1 = NodeCondition::EngineUnavailable;
        assert_eq!(plan(&cluster), [], "a node restarting Docker is alive");

        cluster.nodes[1].1 = NodeCondition::NotReady;
        cluster.nodes[2].1 = NodeCondition::NotReady;
        cluster.evictions_held = true;
        assert_eq!(plan(&cluster), [], "evictions are held");

        cluster.evictions_held = false;
        step(&mut cluster);
        assert!(placement(&cluster)
            .values()
            .all(|n| n.as_deref() == Some("h1")));
    }

    #[test]
    fn a_pod_whose_host_port_is_held_on_its_node_moves_and_that_node_waits() {
        let mut cluster = cluster(vec![service("web", 1, false)], ready(&["h1", "h2"]));
        step(&mut cluster);
        let first = cluster.pods[0].object.node.clone().unwrap();
        let failure = berth_model::StartFailure {
            reason: "HostPortConflict".to_owned(),
            message: "host port 30000/tcp is already in use".to_owned(),
            attempts: 1,
            next_attempt_ms: NOW + 2000,
        };
        let mut status: berth_model::PodStatus = serde_json::from_value(serde_json::json!({
            "name": "web-0", "phase": "Pending", "slice": "s", "containers": [],
            "spec": cluster.pods[0].object.spec,
        }))
        .unwrap();
        status.start_failure = Some(failure.clone());
        Arc::make_mut(&mut cluster.pods[0]).object.status = Some(status.clone());

        let changes = plan(&cluster);
        let [(kind, object, node)] = events(&changes).try_into().unwrap();
        assert_eq!(
            (kind, object.as_str()),
            (EventKind::PodScheduled, "pod/web-0")
        );
        assert_ne!(node.as_deref(), Some(first.as_str()), "moved off {first}");
        let reason = &changes[0].event().unwrap().reason;
        assert!(
            reason.starts_with(&format!("could not start on {first} (host port 30000/tcp")),
            "{reason}"
        );
        commit(&mut cluster, &changes);
        let moved = &cluster.pods[0].object;
        assert_eq!(
            moved.start_failed_on.get(&first),
            Some(&(NOW + START_FAILED_AVOID_MS))
        );
        assert_eq!(moved.status, None);

        // Held on the second node too: it waits, and tries again once the
        // wait is over.
        Arc::make_mut(&mut cluster.pods[0]).object.status = Some(status);
        step(&mut cluster);
        let waiting = &cluster.pods[0].object;
        assert_eq!(waiting.node, None);
        assert!(
            waiting
                .unschedulable_reason
                .as_deref()
                .is_some_and(|r| r.contains("2 where it could not start lately")),
            "{waiting:?}"
        );
        cluster.now_ms = NOW + START_FAILED_AVOID_MS + 1;
        step(&mut cluster);
        assert!(
            cluster.pods[0].object.node.is_some(),
            "{:?}",
            cluster.pods[0]
        );
    }

    #[test]
    fn every_placement_is_an_event_at_the_planned_time() {
        let cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        let changes = plan(&cluster);
        let placed: BTreeMap<String, Option<String>> = changes
            .iter()
            .filter_map(|c| c.event())
            .map(|e| (e.object.clone(), e.node.clone()))
            .collect();
        assert_eq!(
            events(&changes)
                .iter()
                .map(|(kind, object, _)| (*kind, object.as_str()))
                .collect::<Vec<_>>(),
            [
                (EventKind::PodScheduled, "pod/web-0"),
                (EventKind::PodScheduled, "pod/web-1")
            ]
        );
        assert_eq!(
            placed.values().flatten().collect::<BTreeSet<_>>().len(),
            2,
            "each event names its node: {placed:?}"
        );
        for change in &changes {
            let event = change.event().unwrap();
            assert_eq!(event.time_ms, NOW);
            assert!(event.reason.contains("nodes fit"), "{event:?}");
        }
    }

    #[test]
    fn evictions_and_deletions_are_events_naming_the_node() {
        let mut cluster = cluster(
            vec![service("web", 2, false), service("db", 1, false)],
            ready(&["h1", "h2"]),
        );
        step(&mut cluster);
        let node_of = |cluster: &Cluster, pod: &str| {
            cluster
                .pods
                .iter()
                .find(|p| p.object.spec.name == pod)
                .and_then(|p| p.object.node.clone())
        };

        // h2 goes silent: its pods are evicted and placed again on h1.
        let h2_pods: Vec<String> = cluster
            .pods
            .iter()
            .filter(|p| p.object.node.as_deref() == Some("h2"))
            .map(|p| p.object.spec.name.clone())
            .collect();
        assert!(!h2_pods.is_empty());
        cluster.nodes[1].1 = NodeCondition::NotReady;
        let changes = plan(&cluster);
        let all = events(&changes);
        let (evicted, replaced) = all.split_at(h2_pods.len());
        let evicted_pods: Vec<_> = h2_pods
            .iter()
            .map(|p| event(EventKind::PodEvicted, &format!("pod/{p}"), Some("h2")))
            .collect();
        assert_eq!(evicted, evicted_pods);
        assert_eq!(replaced.len(), h2_pods.len(), "{changes:?}");
        for (kind, object, node) in replaced {
            assert_eq!(
                (*kind, node.as_deref()),
                (EventKind::PodScheduled, Some("h1")),
                "{object}"
            );
        }
        commit(&mut cluster, &changes);

        // Scaling down and deleting a service delete pods, on their node.
        first_service(&mut cluster).replicas = 1;
        let last_web = cluster
            .pods
            .iter()
            .filter_map(|p| replica_index("web", &p.object.spec.name))
            .max()
            .map(|i| format!("web-{i}"))
            .unwrap();
        // They drain first, out of traffic, then go.
        let changes = plan(&cluster);
        assert_eq!(events(&changes), []);
        commit(&mut cluster, &changes);
        cluster.now_ms += berth_model::deployment::DRAIN_MS;
        let changes = plan(&cluster);
        assert_eq!(
            events(&changes),
            [event(
                EventKind::PodDeleted,
                &format!("pod/{last_web}"),
                node_of(&cluster, &last_web).as_deref()
            )]
        );
        assert_eq!(
            changes[0].event().unwrap().reason,
            "service web scaled down to 1"
        );
        commit(&mut cluster, &changes);
        cluster.services.retain(|s| s.object.name != "db");
        let db_node = node_of(&cluster, "db-0");
        let changes = plan(&cluster);
        assert_eq!(
            events(&changes),
            [event(EventKind::PodDeleted, "pod/db-0", db_node.as_deref())]
        );
        assert_eq!(changes[0].event().unwrap().reason, "service db deleted");
    }

    #[test]
    fn unschedulable_is_reported_once_per_reason() {
        let mut big = service("big", 1, false);
        big.object.template.containers[0].resources.memory_bytes = Some(64 << 30);
        let mut cluster = cluster(vec![big], ready(&["h1"]));
        let changes = plan(&cluster);
        assert_eq!(
            events(&changes),
            [event(EventKind::PodUnschedulable, "pod/big-0", None)]
        );
        commit(&mut cluster, &changes);
        assert_eq!(plan(&cluster), vec![], "the same reason is no news");

        // Another node that does not fit either changes the reason.
        cluster.nodes.push((node("h2"), NodeCondition::Ready));
        let changes = plan(&cluster);
        assert_eq!(
            events(&changes),
            [event(EventKind::PodUnschedulable, "pod/big-0", None)]
        );
        assert!(
            changes[0].event().unwrap().reason.starts_with("0/2"),
            "{changes:?}"
        );
    }

    /// Where pod `name` is.
    fn node_of(cluster: &Cluster, name: &str) -> String {
        cluster
            .pods
            .iter()
            .find(|p| p.object.spec.name == name)
            .and_then(|p| p.object.node.clone())
            .unwrap()
    }

    /// Why moving `pod` to `to` is refused, if it is.
    fn refusal(cluster: &Cluster, pod: &str, to: &str) -> String {
        match plan_move(cluster, pod, to, false) {
            Err(MoveError::Rejected { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_move_is_bound_by_the_scheduler_to_the_node_asked_for() {
        let mut cluster = cluster(vec![service("db", 1, true)], ready(&["h1", "h2"]));
        step(&mut cluster);
        let from = node_of(&cluster, "db-0");
        let to = if from == "h1" { "h2" } else { "h1" };
        let change = plan_move(&cluster, "db-0", to, false).unwrap();
        let [(kind, object, node)] = events(std::slice::from_ref(&change)).try_into().unwrap();
        assert_eq!(
            (kind, object.as_str(), node.as_deref()),
            (EventKind::PodScheduled, "pod/db-0", Some(to))
        );
        let reason = &change.event().unwrap().reason;
        assert!(
            reason.starts_with(&format!("moved from {from} on request: 1/1 nodes fit")),
            "{reason}"
        );
        commit(&mut cluster, &[change]);
        assert_eq!(node_of(&cluster, "db-0"), to);
        assert_eq!(cluster.pods[0].object.status, None);
        assert_eq!(plan(&cluster), [], "the controller leaves a moved pod be");

        assert_eq!(
            plan_move(&cluster, "db-1", to, false),
            Err(MoveError::NoPod("db-1".to_owned()))
        );
        assert_eq!(
            plan_move(&cluster, "db-0", "h9", false),
            Err(MoveError::NoNode("h9".to_owned()))
        );
    }

    #[test]
    fn a_move_to_a_node_that_fails_a_filter_says_which() {
        let mut big = service("big", 1, true);
        big.object.template.containers[0].resources.memory_bytes = Some(6 << 30);
        let mut other = big.clone();
        other.object.name = "other".to_owned();
        let mut cluster = cluster(vec![big, other], ready(&["h1", "h2", "h3"]));
        step(&mut cluster);
        let (big_on, other_on) = (node_of(&cluster, "big-0"), node_of(&cluster, "other-0"));
        assert_ne!(big_on, other_on);
        assert_eq!(
            refusal(&cluster, "big-0", &other_on),
            "0/1 nodes fit: 1 insufficient memory (needs 6Gi, 2Gi free)"
        );

        let free = ["h1", "h2", "h3"]
            .into_iter()
            .find(|n| *n != big_on && *n != other_on)
            .unwrap();
        let index = cluster
            .nodes
            .iter()
            .position(|(n, _)| n.name == free)
            .unwrap();
        cluster.nodes[index].0.unschedulable = true;
        assert_eq!(
            refusal(&cluster, "big-0", free),
            "0/1 nodes fit: 1 cordoned"
        );
        cluster.nodes[index].0.unschedulable = false;
        cluster.nodes[index].1 = NodeCondition::NotReady;
        assert_eq!(
            refusal(&cluster, "big-0", free),
            "0/1 nodes fit: 1 not ready"
        );
        cluster.nodes[index].1 = NodeCondition::Ready;
        cluster.memory_available.insert(free.to_owned(), 1 << 30);
        assert_eq!(
            refusal(&cluster, "big-0", free),
            "0/1 nodes fit: 1 insufficient memory (needs 6Gi, 1Gi free)",
            "what the node measured available counts"
        );
        cluster.memory_available.clear();
        assert!(plan_move(&cluster, "big-0", free, false).is_ok());
        assert!(
            plan_move(&cluster, "big-0", &big_on, false).is_ok(),
            "the pod does not count against the node it is on"
        );
    }

    #[test]
    fn a_move_to_a_node_holding_its_host_port_is_refused() {
        let with_port = |name: &str| {
            let mut service = service(name, 1, false);
            service.object.template.containers[0].ports = vec![berth_model::Port {
                container_port: 80,
                protocol: Default::default(),
                host_port: Some(30080),
            }];
            service
        };
        let mut cluster = cluster(vec![with_port("a"), with_port("b")], ready(&["h1", "h2"]));
        step(&mut cluster);
        let b_on = node_of(&cluster, "b-0");
        assert_ne!(node_of(&cluster, "a-0"), b_on);
        assert_eq!(
            refusal(&cluster, "a-0", &b_on),
            "no node has host port 30080 free"
        );
    }
}
