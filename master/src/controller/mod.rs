//! The cluster controller: keeps every service at its replica count, places
//! pods that have no node, and moves the pods of stateless services off
//! nodes that stopped answering. [`plan`] is pure; [`run`] reads the store,
//! plans and commits, again and again.

pub mod liveness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_model::api::Versioned;
use berth_model::{ClusterPod, Node, NodeCondition, Service};
use tracing::{info, warn};

use crate::objects::{self, NODES, PODS, SERVICES};
use crate::scheduler::{decide, ClusterView, Placement, PodRequest};
use crate::store::{Op, Store};

use self::liveness::Liveness;

/// What the controller sees.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Services with their revisions.
    pub services: Vec<Versioned<Service>>,
    /// Pods with their revisions.
    pub pods: Vec<Versioned<ClusterPod>>,
    /// Nodes with their liveness.
    pub nodes: Vec<(Node, NodeCondition)>,
}

/// One change and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The store operation.
    pub op: Op,
    /// Why, for the log.
    pub reason: String,
}

/// The pod object of replica `index` of a service.
fn replica(service: &Service, index: u32) -> ClusterPod {
    let mut spec = service.template.clone();
    spec.name = format!("{}-{index}", service.name);
    ClusterPod {
        spec,
        service: Some(service.name.clone()),
        node: None,
        unschedulable_reason: None,
        status: None,
    }
}

fn replica_index(service: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(service)?.strip_prefix('-')?.parse().ok()
}

/// Plans the changes that bring the cluster to what its services ask for.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let mut changes = Vec::new();
    let condition: BTreeMap<&str, NodeCondition> = cluster
        .nodes
        .iter()
        .map(|(n, c)| (n.name.as_str(), *c))
        .collect();
    let ready = |node: &str| condition.get(node) == Some(&NodeCondition::Ready);
    // If every node is silent at once, the master is the one cut off:
    // moving everything would only make things worse.
    let any_ready = condition.values().any(|c| *c == NodeCondition::Ready);
    let services: BTreeMap<&str, &Versioned<Service>> = cluster
        .services
        .iter()
        .map(|s| (s.object.name.as_str(), s))
        .collect();

    let mut view = ClusterView::new();
    for (node, condition) in &cluster.nodes {
        view.upsert_node(node, *condition);
    }
    let mut removed: BTreeSet<&str> = BTreeSet::new();

    // Pods of stateless services on dead nodes are replaced elsewhere.
    for pod in &cluster.pods {
        let Some(node) = pod.object.node.as_deref() else {
            continue;
        };
        let service = pod.object.service.as_deref().and_then(|s| services.get(s));
        let stateful = service.is_some_and(|s| s.object.stateful);
        if any_ready && !ready(node) && service.is_some() && !stateful {
            changes.push(Change {
                op: objects::delete(PODS, &pod.object.spec.name, Some(pod.resource_version)),
                reason: format!(
                    "node {node} is not ready: replacing pod {}",
                    pod.object.spec.name
                ),
            });
            removed.insert(&pod.object.spec.name);
        } else {
            let request = PodRequest::from_cluster_pod(&pod.object, service.map(|s| &s.object));
            let _ = view.assign(node, &request);
        }
    }

    // Replica counts; pods of deleted services go.
    let mut new_pods = Vec::new();
    let mut by_service: BTreeMap<&str, Vec<&Versioned<ClusterPod>>> = BTreeMap::new();
    for pod in &cluster.pods {
        if let Some(service) = pod.object.service.as_deref() {
            by_service.entry(service).or_default().push(pod);
        }
    }
    for (name, pods) in &by_service {
        if !services.contains_key(name) {
            for pod in pods {
                if removed.insert(&pod.object.spec.name) {
                    changes.push(Change {
                        op: objects::delete(
                            PODS,
                            &pod.object.spec.name,
                            Some(pod.resource_version),
                        ),
                        reason: format!("service {name} deleted"),
                    });
                }
            }
        }
    }
    for service in &cluster.services {
        let name = service.object.name.as_str();
        let pods = by_service.get(name).cloned().unwrap_or_default();
        let mut live: Vec<&Versioned<ClusterPod>> = pods
            .iter()
            .copied()
            .filter(|p| !removed.contains(p.object.spec.name.as_str()))
            .collect();
        live.sort_by_key(|p| replica_index(name, &p.object.spec.name).unwrap_or(u32::MAX));
        let wanted = service.object.replicas as usize;
        if live.len() > wanted {
            for pod in live.drain(wanted..).rev() {
                removed.insert(&pod.object.spec.name);
                changes.push(Change {
                    op: objects::delete(PODS, &pod.object.spec.name, Some(pod.resource_version)),
                    reason: format!("service {name} scaled down to {wanted}"),
                });
            }
        }
        let used: BTreeSet<u32> = pods
            .iter()
            .filter_map(|p| replica_index(name, &p.object.spec.name))
            .collect();
        let mut index = 0;
        for _ in live.len()..wanted {
            while used.contains(&index)
                || new_pods
                    .iter()
                    .any(|p: &ClusterPod| p.spec.name == format!("{name}-{index}"))
            {
                index += 1;
            }
            new_pods.push(replica(&service.object, index));
            index += 1;
        }
    }

    // Place what has no node: new replicas and pods that could not be
    // placed before.
    let unplaced = cluster
        .pods
        .iter()
        .filter(|p| p.object.node.is_none() && !removed.contains(p.object.spec.name.as_str()))
        .map(|p| (Some(p.resource_version), p.object.clone()))
        .chain(new_pods.into_iter().map(|p| (None, p)));
    for (revision, mut pod) in unplaced {
        let service = pod
            .service
            .as_deref()
            .and_then(|s| services.get(s))
            .map(|s| &s.object);
        let request = PodRequest::from_cluster_pod(&pod, service);
        let reason = match decide(&view, &request) {
            Placement::Placed { node, reason } => {
                let _ = view.assign(&node, &request);
                pod.node = Some(node.clone());
                pod.unschedulable_reason = None;
                format!("pod {} placed on {node}: {reason}", pod.spec.name)
            }
            Placement::Unschedulable { reason } => {
                if revision.is_some()
                    && pod.unschedulable_reason.as_deref() == Some(reason.as_str())
                {
                    continue;
                }
                pod.unschedulable_reason = Some(reason.clone());
                format!("pod {} is unschedulable: {reason}", pod.spec.name)
            }
        };
        let op = match revision {
            Some(expected) => objects::update(PODS, &pod.spec.name, &pod, expected),
            None => objects::create(PODS, &pod.spec.name, &pod),
        };
        changes.push(Change { op, reason });
    }
    changes
}

/// Reads the cluster from the store with each node's liveness.
pub async fn read(store: &dyn Store, liveness: &Liveness) -> anyhow::Result<Cluster> {
    let (services, _) = objects::list::<Service>(store, SERVICES).await?;
    let (pods, _) = objects::list::<ClusterPod>(store, PODS).await?;
    let (nodes, _) = objects::list::<Node>(store, NODES).await?;
    let nodes = nodes.into_iter().map(|n| {
        let condition = liveness.condition(&n.object.name);
        (n.object, condition)
    });
    Ok(Cluster {
        services,
        pods,
        nodes: nodes.collect(),
    })
}

/// Plans and commits every `interval`, forever. A conflict (someone wrote
/// in between) just means the next round plans again from fresh state.
pub async fn run(store: Arc<dyn Store>, liveness: Arc<Liveness>, interval: Duration) {
    loop {
        match read(store.as_ref(), &liveness).await {
            Ok(cluster) => {
                let changes = plan(&cluster);
                if !changes.is_empty() {
                    for change in &changes {
                        info!(reason = %change.reason, "controller");
                    }
                    let ops = changes.into_iter().map(|c| c.op).collect();
                    if let Err(e) = store.apply(ops).await {
                        warn!(error = %e, "controller commit failed; planning again");
                    }
                }
            }
            Err(e) => warn!(error = %format!("{e:#}"), "controller cannot read the cluster"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::Capacity;

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            address: format!("{name}.lab"),
            labels: BTreeMap::new(),
            capacity: Capacity {
                memory_bytes: 8 << 30,
                cpu_millis: 8000,
            },
            unschedulable: false,
        }
    }

    fn service(name: &str, replicas: u32, stateful: bool) -> Versioned<Service> {
        let template = serde_json::from_str(
            r#"{"name":"t","containers":[{"name":"app","image":"local/busybox"}]}"#,
        )
        .unwrap();
        Versioned {
            resource_version: 1,
            object: Service {
                name: name.into(),
                replicas,
                stateful,
                node_selector: BTreeMap::new(),
                template,
            },
        }
    }

    /// Plans and applies the changes to the cluster, as a commit would.
    fn step(cluster: &mut Cluster) {
        let changes = plan(cluster);
        commit(cluster, &changes);
    }

    /// Applies planned creates and updates to the cluster, as a commit would.
    fn commit(cluster: &mut Cluster, changes: &[Change]) {
        for change in changes {
            match &change.op {
                Op::Create { value, .. } | Op::Update { value, .. } => {
                    let pod: ClusterPod = serde_json::from_slice(value).unwrap();
                    cluster.pods.retain(|p| p.object.spec.name != pod.spec.name);
                    cluster.pods.push(Versioned {
                        resource_version: 2,
                        object: pod,
                    });
                }
                Op::Delete { key, .. } => cluster
                    .pods
                    .retain(|p| format!("{PODS}{}", p.object.spec.name) != *key),
            }
        }
    }

    fn placement(cluster: &Cluster) -> BTreeMap<String, Option<String>> {
        cluster
            .pods
            .iter()
            .map(|p| (p.object.spec.name.clone(), p.object.node.clone()))
            .collect()
    }

    fn ready(names: &[&str]) -> Vec<(Node, NodeCondition)> {
        names
            .iter()
            .map(|n| (node(n), NodeCondition::Ready))
            .collect()
    }

    #[test]
    fn replicas_are_created_and_spread_then_nothing_more_is_done() {
        let mut cluster = Cluster {
            services: vec![service("web", 3, false)],
            pods: vec![],
            nodes: ready(&["h1", "h2", "h3"]),
        };
        let changes = plan(&cluster);
        commit(&mut cluster, &changes);
        let placed = placement(&cluster);
        assert_eq!(placed.len(), 3);
        let nodes: BTreeSet<_> = placed.values().flatten().collect();
        assert_eq!(nodes.len(), 3, "replicas not spread: {placed:?}");
        assert_eq!(
            plan(&cluster),
            vec![],
            "a converged cluster needs no change"
        );
    }

    #[test]
    fn pods_of_a_dead_node_are_replaced_unless_stateful() {
        let mut cluster = Cluster {
            services: vec![service("web", 3, false), service("db", 1, true)],
            pods: vec![],
            nodes: ready(&["h1", "h2", "h3"]),
        };
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
    fn nothing_moves_when_every_node_is_silent() {
        let mut cluster = Cluster {
            services: vec![service("web", 2, false)],
            pods: vec![],
            nodes: ready(&["h1", "h2"]),
        };
        step(&mut cluster);
        for n in &mut cluster.nodes {
            n.1 = NodeCondition::NotReady;
        }
        assert_eq!(plan(&cluster), vec![]);
    }

    #[test]
    fn scaling_down_removes_the_highest_replicas_and_deleting_cascades() {
        let mut cluster = Cluster {
            services: vec![service("web", 3, false)],
            pods: vec![],
            nodes: ready(&["h1", "h2"]),
        };
        step(&mut cluster);
        cluster.services[0].object.replicas = 1;
        step(&mut cluster);
        assert_eq!(placement(&cluster).keys().collect::<Vec<_>>(), ["web-0"]);
        cluster.services.clear();
        step(&mut cluster);
        assert!(cluster.pods.is_empty());
    }

    #[test]
    fn a_pod_that_fits_nowhere_says_why_once() {
        let mut big = service("big", 1, false);
        big.object.template.containers[0].resources.memory_bytes = Some(64 << 30);
        let mut cluster = Cluster {
            services: vec![big],
            pods: vec![],
            nodes: ready(&["h1"]),
        };
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
}
