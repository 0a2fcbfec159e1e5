//! The cluster controller: keeps every service at its replica count, places
//! pods that have no node, and moves the pods of stateless services off
//! nodes that stopped answering. [`plan`] is pure; [`run`] reads the store,
//! plans and commits, again and again, recording each change as an event
//! in the same commit.

pub mod events;
pub mod links;
pub mod liveness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_model::api::Versioned;
use berth_model::link::{add_link_env, link_env};
use berth_model::{ClusterPod, Event, EventKind, Node, NodeCondition, Service};
use tracing::{info, warn};

use crate::instruments::Instruments;
use crate::objects::{self, EVENTS, NODES, PODS, SERVICES};
use crate::scheduler::{decide, ClusterView, Placement, PodRequest};
use crate::store::{Op, Store};

use self::events::{NodeConditions, Retention};
use self::liveness::{EvictionGate, GateChange, Liveness};

/// How often old events are pruned: listing every event each round would
/// cost more than the rounds themselves.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// Most operations in one commit: etcd refuses transactions of more than
/// 128 by default (`--max-txn-ops`), and one huge transaction would hold up
/// other writers anyway.
const MAX_COMMIT_OPS: usize = 100;

/// Most deletes in one pruning commit.
const PRUNE_BATCH: usize = MAX_COMMIT_OPS;

/// What the controller sees.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Services with their revisions.
    pub services: Vec<Versioned<Service>>,
    /// Pods with their revisions.
    pub pods: Vec<Versioned<ClusterPod>>,
    /// Nodes with their liveness.
    pub nodes: Vec<(Node, NodeCondition)>,
    /// The wall clock when the cluster was read, in Unix milliseconds: the
    /// time of the events planned (an input, so that [`plan`] stays pure).
    pub now_ms: u64,
    /// Memory each node measured available at its last heartbeat: the
    /// scheduler places no more than that on it.
    pub memory_available: BTreeMap<String, u64>,
    /// Evictions are held back: too many nodes went silent at once (see
    /// [`liveness::EvictionGate`]).
    pub evictions_held: bool,
}

/// One change, why, and the event that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The store operation.
    pub op: Op,
    /// Why, for the log.
    pub reason: String,
    /// What users see of it in `berth events`, committed with the change.
    pub event: Option<Event>,
}

/// An event about pod `pod` at `now_ms`.
fn pod_event(
    now_ms: u64,
    kind: EventKind,
    pod: &str,
    node: Option<&str>,
    reason: impl Into<String>,
) -> Event {
    Event {
        time_ms: now_ms,
        kind,
        object: format!("pod/{pod}"),
        node: node.map(str::to_owned),
        reason: reason.into(),
    }
}

/// Deleting `pod` (at the revision it was read) because of `kind`, with
/// the event users see: the log line and the event share one reason.
fn delete_pod(now_ms: u64, pod: &Versioned<ClusterPod>, kind: EventKind, reason: String) -> Change {
    let name = &pod.object.spec.name;
    Change {
        op: objects::delete(PODS, name, Some(pod.resource_version)),
        event: Some(pod_event(
            now_ms,
            kind,
            name,
            pod.object.node.as_deref(),
            &reason,
        )),
        reason,
    }
}

/// The pod object of replica `index` of a service, with its links and
/// their variables (`DB_HOST`, ... and what the linked services publish;
/// the template's own values win). `services` finds what linked services
/// publish.
fn replica(
    service: &Service,
    index: u32,
    services: &BTreeMap<&str, &Versioned<Service>>,
) -> ClusterPod {
    let mut spec = service.template.clone();
    spec.name = format!("{}-{index}", service.name);
    add_link_env(&mut spec, &service.env, &[]);
    for link in &service.links {
        let published = services
            .get(link.service.as_str())
            .map(|s| s.object.publish.as_slice())
            .unwrap_or_default();
        let (plain, secret) = link_env(link, published);
        add_link_env(&mut spec, &plain, &secret);
    }
    ClusterPod {
        spec,
        service: Some(service.name.clone()),
        node: None,
        unschedulable_reason: None,
        status: None,
        links: service.links.clone(),
        egress: service.egress,
        start_failed_on: Default::default(),
    }
}

/// Whether a pod carries its service's current links and policy.
fn links_current(pod: &ClusterPod, service: &Service) -> bool {
    pod.links == service.links && pod.egress == service.egress
}

fn replica_index(service: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(service)?.strip_prefix('-')?.parse().ok()
}

/// How long a node where a pod could not start for a cause of its own is
/// left out when placing that pod: the cause (a process holding a port)
/// may go away.
const START_FAILED_AVOID_MS: u64 = 5 * 60 * 1000;

/// Why a pod could not start on its node, when the cause is the node's
/// own, so that another node may do: a host port held there.
fn node_local_start_failure(pod: &ClusterPod) -> Option<String> {
    let failure = pod.status.as_ref()?.start_failure.as_ref()?;
    (failure.reason == EventKind::HostPortConflict.as_str()).then(|| failure.message.clone())
}

/// Plans the changes that bring the cluster to what its services ask for,
/// each with the event that tells users about it.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let mut changes = Vec::new();
    let condition: BTreeMap<&str, NodeCondition> = cluster
        .nodes
        .iter()
        .map(|(n, c)| (n.name.as_str(), *c))
        .collect();
    // A node whose engine is down is alive: its pods come back in place.
    let silent = |node: &str| {
        !matches!(
            condition.get(node),
            Some(NodeCondition::Ready | NodeCondition::EngineUnavailable)
        )
    };
    // If every node is silent at once, or too many went silent together,
    // the master is the one cut off: moving everything would only make
    // things worse.
    let may_evict = !cluster.evictions_held
        && condition
            .values()
            .any(|c| matches!(c, NodeCondition::Ready | NodeCondition::EngineUnavailable));
    let services: BTreeMap<&str, &Versioned<Service>> = cluster
        .services
        .iter()
        .map(|s| (s.object.name.as_str(), s))
        .collect();

    let mut view = ClusterView::new();
    for (node, condition) in &cluster.nodes {
        view.upsert_node(node, *condition);
    }
    for (node, bytes) in &cluster.memory_available {
        let _ = view.set_memory_available(node, *bytes);
    }
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    // Pods that could not start where they are, for a cause of that
    // node's own: placed again below, with why.
    let mut moved: Vec<(&Versioned<ClusterPod>, String)> = Vec::new();

    // Pods of stateless services on dead nodes are replaced elsewhere.
    for pod in &cluster.pods {
        let Some(node) = pod.object.node.as_deref() else {
            continue;
        };
        let service = pod.object.service.as_deref().and_then(|s| services.get(s));
        let stateful = service.is_some_and(|s| s.object.stateful);
        if may_evict && silent(node) && service.is_some() && !stateful {
            let name = &pod.object.spec.name;
            let mut change = delete_pod(
                cluster.now_ms,
                pod,
                EventKind::PodEvicted,
                format!("node {node} is not ready; the pod is replaced elsewhere"),
            );
            change.reason = format!("node {node} is not ready: replacing pod {name}");
            changes.push(change);
            removed.insert(name);
        } else if let Some(why) =
            node_local_start_failure(&pod.object).filter(|_| service.is_some() && !stateful)
        {
            moved.push((pod, format!("could not start on {node} ({why}); moved")));
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
                    let reason = format!("service {name} deleted");
                    changes.push(delete_pod(
                        cluster.now_ms,
                        pod,
                        EventKind::PodDeleted,
                        reason,
                    ));
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
                let reason = format!("service {name} scaled down to {wanted}");
                changes.push(delete_pod(
                    cluster.now_ms,
                    pod,
                    EventKind::PodDeleted,
                    reason,
                ));
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
            new_pods.push(replica(&service.object, index, &services));
            index += 1;
        }
    }

    // Place what has no node: new replicas and pods that could not be
    // placed before.
    let moved = moved
        .into_iter()
        .filter(|(p, _)| !removed.contains(p.object.spec.name.as_str()))
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
    let unplaced = cluster
        .pods
        .iter()
        .filter(|p| p.object.node.is_none() && !removed.contains(p.object.spec.name.as_str()))
        .map(|p| (Some(p.resource_version), p.object.clone(), None))
        .chain(moved)
        .chain(new_pods.into_iter().map(|p| (None, p, None)));
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
        let mut request = PodRequest::from_cluster_pod(&pod, service);
        request.avoid_nodes = pod
            .start_failed_on
            .iter()
            .filter(|(_, until)| **until > cluster.now_ms)
            .map(|(node, _)| node.clone())
            .collect();
        let name = &pod.spec.name;
        let (reason, event) = match decide(&view, &request) {
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
                    name,
                    Some(&node),
                    reason,
                ));
                pod.node = Some(node);
                pod.unschedulable_reason = None;
                (log, event)
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
                    name,
                    None,
                    &reason,
                ));
                pod.unschedulable_reason = Some(reason);
                (log, event)
            }
        };
        let op = match revision {
            Some(expected) => objects::update(PODS, &pod.spec.name, &pod, expected),
            None => objects::create(PODS, &pod.spec.name, &pod),
        };
        changes.push(Change { op, reason, event });
    }

    // Links added or removed since a placed pod was made: the pod object
    // follows (its spec does not, so the pod keeps running) and its node
    // rewires it.
    for pod in &cluster.pods {
        let name = pod.object.spec.name.as_str();
        let service = pod.object.service.as_deref().and_then(|s| services.get(s));
        let (Some(service), Some(_)) = (service, pod.object.node.as_deref()) else {
            continue;
        };
        if removed.contains(name) || links_current(&pod.object, &service.object) {
            continue;
        }
        let mut updated = pod.object.clone();
        updated.links = service.object.links.clone();
        updated.egress = service.object.egress;
        changes.push(Change {
            op: objects::update(PODS, name, &updated, pod.resource_version),
            reason: format!(
                "pod {name} follows the links of service {}",
                service.object.name
            ),
            event: None,
        });
    }
    changes
}

/// What draining a node decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drain {
    /// Deletes of the node's stateless pods; their services place them
    /// elsewhere.
    pub evictions: Vec<Op>,
    /// Names of the evicted pods.
    pub evicted: Vec<String>,
    /// Pods left on the node: stateful ones move only with `berth move`,
    /// and pods of no service have nothing to recreate them from.
    pub kept: Vec<String>,
}

/// Plans draining `node`: which of its pods go and which stay. Pure; the
/// API cordons the node and commits the evictions.
pub fn plan_drain(
    node: &str,
    pods: &[Versioned<ClusterPod>],
    services: &[Versioned<Service>],
) -> Drain {
    let stateless = |service: Option<&str>| {
        service.is_some_and(|s| {
            services
                .iter()
                .any(|v| v.object.name == s && !v.object.stateful)
        })
    };
    let mut drain = Drain::default();
    for pod in pods
        .iter()
        .filter(|p| p.object.node.as_deref() == Some(node))
    {
        let name = pod.object.spec.name.clone();
        if stateless(pod.object.service.as_deref()) {
            drain
                .evictions
                .push(objects::delete(PODS, &name, Some(pod.resource_version)));
            drain.evicted.push(name);
        } else {
            drain.kept.push(name);
        }
    }
    drain
}

/// Reads the cluster from the store with each node's liveness.
pub async fn read(store: &dyn Store, liveness: &Liveness) -> anyhow::Result<Cluster> {
    let (services, _) = objects::list::<Service>(store, SERVICES).await?;
    let (pods, _) = objects::list::<ClusterPod>(store, PODS).await?;
    let (nodes, _) = objects::list::<Node>(store, NODES).await?;
    let memory_available = nodes
        .iter()
        .filter_map(|n| {
            let name = &n.object.name;
            Some((name.clone(), liveness.memory_available(name)?))
        })
        .collect();
    let nodes = nodes.into_iter().map(|n| {
        let condition = liveness.condition(&n.object.name);
        (n.object, condition)
    });
    Ok(Cluster {
        services,
        pods,
        nodes: nodes.collect(),
        now_ms: events::now_ms(),
        memory_available,
        evictions_held: false,
    })
}

/// Plans and commits every `interval`, forever, keeping the default
/// [`Retention`] of events and holding evictions back at the default
/// unhealthy threshold.
pub async fn run(store: Arc<dyn Store>, liveness: Arc<Liveness>, interval: Duration) {
    run_with(
        store,
        liveness,
        interval,
        Retention::default(),
        liveness::DEFAULT_UNHEALTHY_THRESHOLD,
        Arc::new(Instruments::default()),
    )
    .await;
}

/// Plans and commits every `interval`, forever. A conflict (someone wrote
/// in between) just means the next round plans again from fresh state.
/// Node Ready/NotReady transitions are recorded as events, and events
/// beyond `retention` are pruned every [`PRUNE_INTERVAL`]. When more than
/// `unhealthy_threshold` (0 to 1) of the nodes go silent at once,
/// evictions are held back, with an event that says why.
pub async fn run_with(
    store: Arc<dyn Store>,
    liveness: Arc<Liveness>,
    interval: Duration,
    retention: Retention,
    unhealthy_threshold: f64,
    instruments: Arc<Instruments>,
) {
    let mut conditions = NodeConditions::default();
    let mut gate = EvictionGate::new(liveness.grace(), unhealthy_threshold);
    let mut link_backends: Option<links::LinkBackends> = None;
    let mut next_prune = tokio::time::Instant::now();
    loop {
        let round = std::time::Instant::now();
        match read(store.as_ref(), &liveness).await {
            Ok(mut cluster) => {
                cluster.evictions_held =
                    observe_gate(store.as_ref(), &mut gate, &liveness, &cluster).await;
                record_node_transitions(store.as_ref(), &mut conditions, &cluster).await;
                record_link_rewirings(store.as_ref(), &mut link_backends, &cluster).await;
                commit(store.as_ref(), plan(&cluster), &instruments).await;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "controller cannot read the cluster"),
        }
        instruments.controller_rounds.observe(round.elapsed());
        if tokio::time::Instant::now() >= next_prune {
            prune_events(store.as_ref(), &retention).await;
            next_prune = tokio::time::Instant::now() + PRUNE_INTERVAL;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Feeds this round's silences to the eviction gate and records when it
/// holds evictions back or lets them go again. Returns whether evictions
/// are held.
async fn observe_gate(
    store: &dyn Store,
    gate: &mut EvictionGate,
    liveness: &Liveness,
    cluster: &Cluster,
) -> bool {
    let silences: Vec<(String, Duration)> = cluster
        .nodes
        .iter()
        .map(|(n, _)| (n.name.clone(), liveness.silence(&n.name)))
        .collect();
    if let Some(change) = gate.observe(&silences, std::time::Instant::now()) {
        let (kind, reason) = match change {
            GateChange::Held(reason) => (EventKind::EvictionsHeld, reason),
            GateChange::Resumed(reason) => (EventKind::EvictionsResumed, reason),
        };
        warn!(kind = %kind, reason = %reason, "controller");
        let event = Event {
            time_ms: cluster.now_ms,
            kind,
            object: "cluster/evictions".to_owned(),
            node: None,
            reason,
        };
        // The gate holds regardless; a lost event only costs the story.
        if let Err(e) = store.apply(vec![events::record(&event)]).await {
            warn!(error = %e, "cannot record the eviction gate's event");
        }
    }
    gate.held()
}

/// Commits the node transitions since the last round as events. They are
/// remembered only once committed, so a failed commit is retried next
/// round rather than lost. They go in their own commit, before the plan's:
/// a plan that keeps conflicting must not hold up the news that a node
/// went silent.
async fn record_node_transitions(
    store: &dyn Store,
    conditions: &mut NodeConditions,
    cluster: &Cluster,
) {
    let transitions = conditions.transitions(&cluster.nodes, cluster.now_ms);
    if !transitions.is_empty() {
        for event in &transitions {
            info!(node = event.node.as_deref().unwrap_or_default(), kind = %event.kind, reason = %event.reason, "controller");
        }
        let ops = transitions.iter().map(events::record).collect();
        if let Err(e) = store.apply(ops).await {
            warn!(error = %e, "cannot record node events; trying again");
            return;
        }
    }
    conditions.remember(&cluster.nodes);
}

/// Records a `LinkRewired` event for every link whose ready backends
/// changed since the last round (the first round only remembers). Like
/// node transitions, they are remembered only once committed.
async fn record_link_rewirings(
    store: &dyn Store,
    previous: &mut Option<links::LinkBackends>,
    cluster: &Cluster,
) {
    let now = links::link_backends(cluster);
    if let Some(before) = previous.as_ref() {
        let rewired = links::rewired(before, &now, cluster.now_ms);
        if !rewired.is_empty() {
            for event in &rewired {
                info!(object = %event.object, reason = %event.reason, "controller");
            }
            if let Err(e) = store
                .apply(rewired.iter().map(events::record).collect())
                .await
            {
                warn!(error = %e, "cannot record link events; trying again");
                return;
            }
        }
    }
    *previous = Some(now);
}

/// Commits planned changes with their events, each change in the same
/// commit as its event, in commits of at most [`MAX_COMMIT_OPS`]. Every
/// change is a compare-and-swap of its own, so splitting a plan loses
/// nothing: a change that conflicts is planned again next round.
async fn commit(store: &dyn Store, changes: Vec<Change>, instruments: &Instruments) {
    let mut batch = Batch::default();
    for change in changes {
        info!(reason = %change.reason, "controller");
        if batch.ops.len() + 2 > MAX_COMMIT_OPS {
            std::mem::take(&mut batch).apply(store, instruments).await;
        }
        batch.ops.push(change.op);
        if let Some(event) = &change.event {
            match event.kind {
                EventKind::PodScheduled => batch.placed += 1,
                EventKind::PodUnschedulable => batch.unschedulable += 1,
                _ => {}
            }
            batch.ops.push(events::record(event));
        }
    }
    if !batch.ops.is_empty() {
        batch.apply(store, instruments).await;
    }
}

/// One commit's ops, and the scheduler decisions in it: counted once
/// committed, since a conflicting commit decided nothing.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    placed: u64,
    unschedulable: u64,
}

impl Batch {
    async fn apply(self, store: &dyn Store, instruments: &Instruments) {
        match store.apply(self.ops).await {
            Ok(_) => instruments.scheduler_decisions(self.placed, self.unschedulable),
            Err(e) => warn!(error = %e, "controller commit failed; planning again"),
        }
    }
}

/// Deletes the events beyond `retention`, oldest first, in batches.
async fn prune_events(store: &dyn Store, retention: &Retention) {
    let entries = match store.list(EVENTS).await {
        Ok((entries, _)) => entries,
        Err(e) => {
            warn!(error = %e, "cannot list events to prune them");
            return;
        }
    };
    let keys: Vec<(String, u64)> = entries.into_iter().map(|e| (e.key, e.revision)).collect();
    let deletes = events::prune(&keys, events::now_ms(), retention);
    if deletes.is_empty() {
        return;
    }
    let count = deletes.len();
    let mut batches = deletes.into_iter().peekable();
    while batches.peek().is_some() {
        let batch: Vec<Op> = batches.by_ref().take(PRUNE_BATCH).collect();
        if let Err(e) = store.apply(batch).await {
            warn!(error = %e, "cannot prune events; trying again later");
            return;
        }
    }
    info!(count, "pruned old events");
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::Capacity;

    /// The clock of every planned event.
    const NOW: u64 = 1_700_000_000_000;

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
                env: Vec::new(),
                links: Vec::new(),
                egress: Default::default(),
                publish: Vec::new(),
            },
        }
    }

    /// A cluster of `services` and `nodes` at [`NOW`], with no pods yet.
    fn cluster(services: Vec<Versioned<Service>>, nodes: Vec<(Node, NodeCondition)>) -> Cluster {
        Cluster {
            services,
            pods: vec![],
            nodes,
            now_ms: NOW,
            memory_available: BTreeMap::new(),
            evictions_held: false,
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
        let mut cluster = cluster(vec![service("web", 3, false)], ready(&["h1", "h2", "h3"]));
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
    fn nothing_moves_when_every_node_is_silent() {
        let mut cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        step(&mut cluster);
        for n in &mut cluster.nodes {
            n.1 = NodeCondition::NotReady;
        }
        assert_eq!(plan(&cluster), vec![]);
    }

    #[test]
    fn scaling_down_removes_the_highest_replicas_and_deleting_cascades() {
        let mut cluster = cluster(vec![service("web", 3, false)], ready(&["h1", "h2"]));
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

    /// The events of planned changes: kind, object and node.
    fn events(changes: &[Change]) -> Vec<(EventKind, String, Option<String>)> {
        changes
            .iter()
            .filter_map(|c| c.event.as_ref())
            .map(|e| (e.kind, e.object.clone(), e.node.clone()))
            .collect()
    }

    fn event(
        kind: EventKind,
        object: &str,
        node: Option<&str>,
    ) -> (EventKind, String, Option<String>) {
        (kind, object.to_owned(), node.map(str::to_owned))
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
        cluster.pods[0].object.status = Some(status.clone());

        let changes = plan(&cluster);
        let [(kind, object, node)] = events(&changes).try_into().unwrap();
        assert_eq!(
            (kind, object.as_str()),
            (EventKind::PodScheduled, "pod/web-0")
        );
        assert_ne!(node.as_deref(), Some(first.as_str()), "moved off {first}");
        let reason = &changes[0].event.as_ref().unwrap().reason;
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
        cluster.pods[0].object.status = Some(status);
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
            .filter_map(|c| c.event.as_ref())
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
            let event = change.event.as_ref().unwrap();
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
        cluster.services[0].object.replicas = 1;
        let last_web = cluster
            .pods
            .iter()
            .filter_map(|p| replica_index("web", &p.object.spec.name))
            .max()
            .map(|i| format!("web-{i}"))
            .unwrap();
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
            changes[0].event.as_ref().unwrap().reason,
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
        assert_eq!(
            changes[0].event.as_ref().unwrap().reason,
            "service db deleted"
        );
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
            changes[0].event.as_ref().unwrap().reason.starts_with("0/2"),
            "{changes:?}"
        );
    }
}
