//! Which pods each node runs, kept in memory from the cluster mirror's
//! pods (sharing its decoded objects, not holding a copy), so that a
//! node's assignment long poll wakes only for a change to its own pods and
//! answers without reading the store.
//!
//! Before, every long poll watched every pod and listed them all when
//! woken: each pod change cost a list of the whole cluster per node. A pod
//! status a node reports wakes no one: nodes do not read statuses from
//! their assignments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::api::{Assignments, Versioned};
use berth_model::{ClusterPod, MoveOrder};
use tokio::sync::{watch, Notify};

/// The index; see the module documentation.
#[derive(Debug)]
pub struct AssignmentIndex {
    state: Mutex<Index>,
    /// Whether the index has read the pods once (an empty store's
    /// revision is 0, so the revision cannot say it).
    loaded: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Index {
    /// The store revision every change up to which is applied.
    revision: u64,
    /// Every pod, by name, shared with the mirror.
    pods: HashMap<String, SharedPod>,
    /// Per node: the revision of the last change to its assignments, and
    /// who waits for the next one.
    nodes: HashMap<String, NodeEntry>,
}

/// A pod as the mirror holds it.
pub type SharedPod = Arc<Versioned<ClusterPod>>;

#[derive(Debug, Default)]
struct NodeEntry {
    changed: u64,
    waiters: Arc<Notify>,
    /// The pods that concern the node (see [`nodes_of`]): an answer looks
    /// at these, not at every pod in the cluster.
    pods: BTreeSet<String>,
}

impl Default for AssignmentIndex {
    fn default() -> Self {
        Self {
            state: Mutex::new(Index::default()),
            loaded: watch::channel(false).0,
        }
    }
}

impl AssignmentIndex {
    /// Replaces the whole index with `pods` as of `revision` (the mirror
    /// read the store anew). Every node is told, since anything may have
    /// changed while the mirror's watch was down.
    pub(crate) fn reset(&self, pods: impl Iterator<Item = SharedPod>, revision: u64) {
        let Ok(mut index) = self.state.lock() else {
            return;
        };
        index.pods = pods.map(|p| (p.object.spec.name.clone(), p)).collect();
        index.revision = revision;
        for entry in index.nodes.values_mut() {
            entry.pods.clear();
        }
        let concerns: Vec<(String, String)> = index
            .pods
            .values()
            .flat_map(|p| {
                nodes_of(Some(&p.object))
                    .into_iter()
                    .map(|n| (n, p.object.spec.name.clone()))
            })
            .collect();
        for (node, pod) in concerns {
            index.nodes.entry(node).or_default().pods.insert(pod);
        }
        for entry in index.nodes.values_mut() {
            entry.changed = revision;
            entry.waiters.notify_waiters();
        }
        drop(index);
        self.loaded.send_replace(true);
    }

    /// Applies one change the mirror applied: `pod` is the new value,
    /// `None` if deleted.
    pub(crate) fn apply(&self, name: &str, pod: Option<SharedPod>, revision: u64) {
        let Ok(mut index) = self.state.lock() else {
            return;
        };
        let before = match &pod {
            Some(pod) => index.pods.insert(name.to_owned(), Arc::clone(pod)),
            None => index.pods.remove(name),
        };
        index.revision = index.revision.max(revision);
        let before = before.as_ref().map(|p| &p.object);
        let pod = pod.as_ref().map(|p| &p.object);
        if !same_assignment(before, pod) {
            for node in nodes_of(before) {
                if let Some(entry) = index.nodes.get_mut(&node) {
                    entry.pods.remove(name);
                }
            }
            let now = nodes_of(pod);
            for node in &now {
                index
                    .nodes
                    .entry(node.clone())
                    .or_default()
                    .pods
                    .insert(name.to_owned());
            }
            for node in nodes_of(before).into_iter().chain(now) {
                let entry = index.nodes.entry(node).or_default();
                entry.changed = revision;
                entry.waiters.notify_waiters();
            }
        }
    }

    /// The pods assigned to `node`. With `after`, waits (up to `wait`)
    /// until they change after that revision.
    pub async fn assignments(&self, node: &str, after: Option<u64>, wait: Duration) -> Assignments {
        // The first read of the store comes before any answer.
        let mut loaded = self.loaded.subscribe();
        let _ = loaded.wait_for(|loaded| *loaded).await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let waiters = {
                let Ok(mut index) = self.state.lock() else {
                    break;
                };
                let entry = index.nodes.entry(node.to_owned()).or_default();
                match after {
                    Some(after) if entry.changed <= after => Arc::clone(&entry.waiters),
                    _ => break,
                }
            };
            let changed = waiters.notified();
            tokio::pin!(changed);
            // Registered before the index is looked at again, so a change
            // in between is not missed.
            changed.as_mut().enable();
            let still_unchanged = self.state.lock().ok().is_some_and(|index| {
                index
                    .nodes
                    .get(node)
                    .is_some_and(|e| after.is_some_and(|after| e.changed <= after))
            });
            if !still_unchanged {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        self.snapshot(node)
    }

    fn snapshot(&self, node: &str) -> Assignments {
        let Ok(index) = self.state.lock() else {
            return Assignments {
                revision: 0,
                pods: Vec::new(),
                moves: Vec::new(),
            };
        };
        let concerned: Vec<&ClusterPod> = index
            .nodes
            .get(node)
            .map(|entry| {
                entry
                    .pods
                    .iter()
                    .filter_map(|p| index.pods.get(p))
                    .map(|p| &p.object)
                    .collect()
            })
            .unwrap_or_default();
        let pods: BTreeMap<&String, &ClusterPod> = concerned
            .iter()
            .filter(|p| runs_on(p, node))
            .map(|p| (&p.spec.name, *p))
            .collect();
        let mut moves: Vec<MoveOrder> = concerned
            .iter()
            .filter_map(|p| MoveOrder::for_node(p, node))
            .collect();
        moves.sort_by(|a, b| a.pod.cmp(&b.pod));
        Assignments {
            revision: index.revision,
            pods: pods.into_values().cloned().collect(),
            moves,
        }
    }
}

/// Whether `pod` is `node`'s to run: bound there, and not stopped there
/// for a move with data whose copy is not yet verified.
fn runs_on(pod: &ClusterPod, node: &str) -> bool {
    pod.node.as_deref() == Some(node)
        && !pod
            .moving
            .as_ref()
            .is_some_and(|m| m.from == node && m.phase.before_copy_verified())
}

/// The nodes a pod concerns: its own and its move's two ends.
fn nodes_of(pod: Option<&ClusterPod>) -> Vec<String> {
    let Some(pod) = pod else {
        return Vec::new();
    };
    let mut nodes: Vec<String> = pod.node.iter().cloned().collect();
    if let Some(moving) = &pod.moving {
        nodes.push(moving.from.clone());
        nodes.push(moving.to.clone());
    }
    nodes
}

/// Whether a change leaves what a node runs as it was: the same pod on
/// the same node, differing at most in the status the node itself reported
/// and what the master derives from it (readiness, draining).
fn same_assignment(before: Option<&ClusterPod>, after: Option<&ClusterPod>) -> bool {
    match (before, after) {
        (None, None) => true,
        (Some(before), Some(after)) => {
            let mut before = before.clone();
            before.status.clone_from(&after.status);
            before.ready_since_ms = after.ready_since_ms;
            before.draining_since_ms = after.draining_since_ms;
            // A move's progress is for people; the nodes act on its phase.
            if let (Some(b), Some(a)) = (before.moving.as_mut(), after.moving.as_ref()) {
                if b.phase == a.phase {
                    b.clone_from(a);
                }
            }
            before == *after
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::{PodPhase, PodStatus};

    fn pod(name: &str, node: Option<&str>) -> SharedPod {
        shared(cluster_pod(name, node))
    }

    fn cluster_pod(name: &str, node: Option<&str>) -> ClusterPod {
        serde_json::from_value(serde_json::json!({
            "spec": {"name": name, "containers": [{"name": "app", "image": "local/busybox"}]},
            "node": node,
        }))
        .expect("a cluster pod")
    }

    fn shared(pod: ClusterPod) -> SharedPod {
        Arc::new(Versioned {
            resource_version: 1,
            object: pod,
        })
    }

    fn names(assignments: &Assignments) -> Vec<&str> {
        assignments
            .pods
            .iter()
            .map(|p| p.spec.name.as_str())
            .collect()
    }

    const NO_WAIT: Duration = Duration::from_millis(0);
    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_node_sees_only_its_own_pods() {
        let index = AssignmentIndex::default();
        index.reset(
            [pod("a", Some("h1")), pod("b", Some("h2")), pod("c", None)].into_iter(),
            7,
        );
        let h1 = index.assignments("h1", None, NO_WAIT).await;
        assert_eq!(names(&h1), ["a"]);
        assert_eq!(h1.revision, 7);
        assert!(index.assignments("h3", None, NO_WAIT).await.pods.is_empty());
    }

    #[tokio::test]
    async fn an_empty_store_answers_at_once() {
        // A fresh cluster's store is at revision 0 until its first write.
        let index = AssignmentIndex::default();
        index.reset(std::iter::empty(), 0);
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            index.assignments("h1", None, NO_WAIT),
        )
        .await
        .expect("an answer without waiting for a write");
        assert!(answer.pods.is_empty());
    }

    #[tokio::test]
    async fn a_change_to_another_node_does_not_answer_the_long_poll() {
        let index = Arc::new(AssignmentIndex::default());
        index.reset([pod("a", Some("h1"))].into_iter(), 7);
        let waiting = tokio::spawn({
            let index = Arc::clone(&index);
            async move { index.assignments("h1", Some(7), WAIT).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        index.apply("b", Some(pod("b", Some("h2"))), 8);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "h1 was woken by a pod of h2");
        index.apply("c", Some(pod("c", Some("h1"))), 9);
        let answer = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("h1 woken by its own pod")
            .expect("the poll");
        assert_eq!(names(&answer), ["a", "c"]);
        assert_eq!(answer.revision, 9);
    }

    #[tokio::test]
    async fn a_pod_moved_away_or_deleted_wakes_the_node_it_left() {
        let index = AssignmentIndex::default();
        index.reset([pod("a", Some("h1")), pod("b", Some("h1"))].into_iter(), 7);
        index.apply("a", Some(pod("a", Some("h2"))), 8);
        let h1 = index.assignments("h1", Some(7), NO_WAIT).await;
        assert_eq!(names(&h1), ["b"]);
        index.apply("b", None, 9);
        let h1 = index.assignments("h1", Some(8), NO_WAIT).await;
        assert!(h1.pods.is_empty());
        assert_eq!(h1.revision, 9);
    }

    #[tokio::test]
    async fn a_reported_status_wakes_no_one() {
        let index = Arc::new(AssignmentIndex::default());
        index.reset([pod("a", Some("h1"))].into_iter(), 7);
        let mut reported = cluster_pod("a", Some("h1"));
        reported.status = Some(PodStatus {
            name: "a".into(),
            phase: PodPhase::Running,
            slice: "berth-a.slice".into(),
            containers: Vec::new(),
            spec: reported.spec.clone(),
            start_failure: None,
            volumes: Vec::new(),
        });
        index.apply("a", Some(shared(reported)), 8);
        let started = tokio::time::Instant::now();
        let answer = index
            .assignments("h1", Some(7), Duration::from_millis(200))
            .await;
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "a status report answered the long poll"
        );
        // The answer, at the timeout, is current all the same.
        assert_eq!(answer.revision, 8);
        assert!(answer.pods[0].status.is_some());
    }
}
