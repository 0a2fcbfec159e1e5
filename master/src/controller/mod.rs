//! The cluster controller: keeps every service at its replica count, places
//! pods that have no node, and moves the pods of stateless services off
//! nodes that stopped answering. [`plan`] is pure and made of one planner
//! per concern ([`replicas`], [`placement`]), each returning typed
//! [`Change`]s; [`run`] reads the store, plans and [`commit()`]s, again and
//! again, recording each change as an event in the same commit.

pub mod builds;
pub mod change;
pub mod commit;
pub mod cron;
pub mod drain;
pub mod events;
pub mod heartbeat;
pub mod images;
pub mod jobs;
pub mod links;
pub mod liveness;
pub mod moves;
pub mod placement;
pub mod pods;
pub mod replicas;
pub mod rollout;
pub mod shared_liveness;

#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_model::api::Versioned;
use berth_model::quota::Quota;
use berth_model::{
    Build, BuildConfig, ClusterPod, CronJob, Deployment, Event, EventKind, ImageStream, Job, Node,
    NodeCondition, Service,
};
use tracing::{info, warn};

use crate::instruments::Instruments;
use crate::mirror::{ClusterMirror, Objects};
use crate::objects::EVENTS;
use crate::store::remembering::Remembering;
use crate::store::{Op, Store};

pub use self::change::Change;
pub use self::commit::{commit, MAX_COMMIT_OPS};
pub use self::drain::{plan_drain, Drain};
pub use self::heartbeat::plan_heartbeat;
pub use self::placement::{plan_move, MoveError};
pub use self::pods::PodIndex;

use self::events::{NodeConditions, Retention};
use self::liveness::{EvictionGate, GateChange, Liveness};

/// How often old events are pruned: listing every event each round would
/// cost more than the rounds themselves.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// Most rounds in a row that follow at once, without the interval, because
/// the round before handed work on (see [`Change::hands_on`]): a plan that
/// keeps doing so, or keeps conflicting, still leaves the store a rest.
const MAX_PROMPT_ROUNDS: u32 = 4;

/// How long a round woken by a change waits for the changes that come
/// with it (a heartbeat's statuses, a burst of creates), so that a burst
/// costs one round rather than one per commit.
const CHANGE_SETTLE: Duration = Duration::from_millis(5);

/// The most a round woken by a change waits: a change is never held up
/// longer than this by the rounds before it.
const MAX_CHANGE_SETTLE: Duration = Duration::from_millis(50);

/// Most deletes in one pruning commit.
const PRUNE_BATCH: usize = MAX_COMMIT_OPS;

/// What the controller sees.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Services with their revisions (shared with the mirror, as pods).
    pub services: Vec<Arc<Versioned<Service>>>,
    /// Jobs with their revisions.
    pub jobs: Vec<Versioned<Job>>,
    /// Build configs with their revisions.
    pub build_configs: Vec<Versioned<BuildConfig>>,
    /// Builds with their revisions.
    pub builds: Vec<Versioned<Build>>,
    /// Every service's revisions (shared with the mirror, as pods).
    pub deployments: Vec<Arc<Versioned<Deployment>>>,
    /// Image streams with their revisions.
    pub image_streams: Vec<Versioned<ImageStream>>,
    /// Cron jobs with their revisions.
    pub cron_jobs: Vec<Versioned<CronJob>>,
    /// Pods with their revisions (shared with the mirror: a round copies
    /// no pod).
    pub pods: Vec<Arc<Versioned<ClusterPod>>>,
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
    /// Milliseconds since each node's last heartbeat, for the nodes this
    /// master heard from: a network-backed stateful pod moves only once its
    /// silent node has had time to fence it.
    pub silence_ms: BTreeMap<String, u64>,
    /// The quotas of the projects that have one, by project.
    pub quotas: BTreeMap<String, Quota>,
}

/// Plans the changes that bring the cluster to what its services ask for,
/// each with the event that tells users about it, in a fixed order:
/// evictions from dead nodes, deletes of replicas no service wants,
/// placements, then pods following their service's links. Each planner
/// sees what the ones before it delete.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let pods = PodIndex::of(cluster);
    let mut bound = placement::review(cluster, &pods);
    let mut changes = std::mem::take(&mut bound.evictions);
    changes.extend(replicas::orphans(cluster, &pods, &deleted(&changes)));
    let rollouts = rollout::plan(cluster, &pods, &deleted(&changes));
    changes.extend(rollouts.changes);
    // A pod the rollouts write is theirs this round: nothing else plans
    // a write of it that would conflict in the same commit.
    let removed: BTreeSet<String> = deleted(&changes)
        .into_iter()
        .chain(
            changes
                .iter()
                .filter_map(|c| Some(c.written_pod()?.spec.name)),
        )
        .collect();
    // A job's new attempts are written unplaced; the next round places them.
    let job_steps = jobs::plan(cluster, &pods, &removed);
    let removed: BTreeSet<String> = removed
        .into_iter()
        .chain(job_steps.iter().flat_map(Change::stopped_pods))
        .collect();
    changes.extend(job_steps);
    // A slot's new job is written alone; the next round starts its pods.
    changes.extend(cron::plan(cluster));
    // A build's new job likewise.
    changes.extend(builds::plan(cluster));
    // A tag's move is a new revision; the next round rolls it out.
    changes.extend(images::plan(cluster));
    changes.extend(placement::place(
        cluster,
        &pods,
        bound,
        &removed,
        rollouts.new,
    ));
    changes.extend(replicas::follow_links(cluster, &pods, &removed));
    // A move's step waits a round for a pod another planner writes.
    let written: BTreeSet<String> = changes
        .iter()
        .filter_map(|c| Some(c.written_pod()?.spec.name))
        .chain(deleted(&changes))
        .collect();
    changes.extend(moves::plan(cluster, &pods).into_iter().filter(|c| {
        c.written_pod()
            .is_some_and(|p| !written.contains(&p.spec.name))
    }));
    changes
}

/// The pods that `changes` delete.
fn deleted(changes: &[Change]) -> BTreeSet<String> {
    changes
        .iter()
        .filter_map(Change::deleted_pod)
        .map(str::to_owned)
        .collect()
}

/// The cluster as `objects` hold it, with each node's liveness.
pub fn cluster(objects: Objects, liveness: &Liveness) -> Cluster {
    let quotas = objects
        .projects
        .to_vec()
        .into_iter()
        .map(|p| p.object)
        .filter(|p| !p.quota.is_empty())
        .map(|p| (p.name, p.quota))
        .collect();
    let nodes = objects.nodes.to_vec();
    let memory_available = nodes
        .iter()
        .filter_map(|n| {
            let name = &n.object.name;
            Some((name.clone(), liveness.memory_available(name)?))
        })
        .collect();
    let silence_ms = nodes
        .iter()
        .filter_map(|n| {
            let name = &n.object.name;
            Some((name.clone(), liveness.since_last_ms(name)?))
        })
        .collect();
    let nodes = nodes.into_iter().map(|n| {
        let condition = liveness.condition(&n.object.name);
        (n.object, condition)
    });
    Cluster {
        services: objects.services.shared(),
        jobs: objects.jobs.to_vec(),
        build_configs: objects.build_configs.to_vec(),
        builds: objects.builds.to_vec(),
        deployments: objects.deployments.shared(),
        image_streams: objects.image_streams.to_vec(),
        cron_jobs: objects.cron_jobs.to_vec(),
        pods: objects.pods.shared(),
        nodes: nodes.collect(),
        now_ms: events::now_ms(),
        memory_available,
        evictions_held: false,
        silence_ms,
        quotas,
    }
}

/// Plans and commits at each change to the cluster and at least every
/// `interval`, forever; at once after a round that handed work on, and at
/// each cron slot. It reads the cluster from `mirror` once the mirror holds
/// its own commits. A conflict (someone wrote in between)
/// just means the next round plans again from fresh state.
/// Node Ready/NotReady transitions are recorded as events. When more than
/// `unhealthy_threshold` (0 to 1) of the nodes go silent at once,
/// evictions are held back, with an event that says why. Old events are
/// pruned by [`prune_events_forever`], a task of its own.
pub async fn run(
    store: Arc<dyn Store>,
    mirror: Arc<ClusterMirror>,
    liveness: Arc<Liveness>,
    interval: Duration,
    unhealthy_threshold: f64,
    instruments: Arc<Instruments>,
) {
    let store = Arc::new(Remembering::new(store));
    let mut conditions = NodeConditions::default();
    let mut gate = EvictionGate::new(liveness.grace(), unhealthy_threshold);
    let mut link_backends: Option<links::LinkBackends> = None;
    let mut prompt_rounds = 0;
    let mut woken_by_change = false;
    loop {
        // Enabled before the read, so that a change while the round runs
        // (its own commits included) brings the next round at once.
        let changed = mirror.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let round = std::time::Instant::now();
        let mut pause = interval;
        // Before the read: a change that lands while reading counts as
        // after it, which at worst brings a round more.
        let read_at = mirror.revision();
        let read = mirror.read_after(store.last_write()).await;
        let mut planned = Duration::ZERO;
        let mut settled = true;
        match read.map(|objects| cluster(objects, &liveness)) {
            Ok(mut cluster) => {
                cluster.evictions_held =
                    observe_gate(store.as_ref(), &mut gate, &liveness, &cluster).await;
                record_node_transitions(store.as_ref(), &mut conditions, &cluster).await;
                record_link_rewirings(store.as_ref(), &mut link_backends, &cluster).await;
                let changes = plan(&cluster);
                planned = round.elapsed();
                // A cron run or a job attempt takes a round per step (job,
                // pod, placement): those rounds follow at once.
                let hands_on = changes.iter().any(Change::hands_on);
                settled = changes.iter().all(Change::settles);
                commit(store.as_ref(), changes, &instruments).await;
                if hands_on && prompt_rounds < MAX_PROMPT_ROUNDS {
                    prompt_rounds += 1;
                    pause = Duration::ZERO;
                } else {
                    prompt_rounds = 0;
                }
                if let Some(slot) = cron::next_slot_ms(&cluster) {
                    let until = slot.saturating_sub(events::now_ms());
                    pause = pause.min(Duration::from_millis(until));
                }
            }
            Err(e) => warn!(error = %e, "controller cannot read the cluster"),
        }
        instruments.controller_rounds.observe(round.elapsed());
        let own = store.take_writes();
        let ended = tokio::time::Instant::now();
        let next_interval = tokio::time::sleep(pause);
        tokio::pin!(next_interval);
        woken_by_change = loop {
            tokio::select! {
                () = next_interval.as_mut() => break false,
                () = changed.as_mut() => {}
            }
            // Armed before looking, so that a change in between is not missed.
            changed.set(mirror.changed());
            changed.as_mut().enable();
            if settled && mirror.changed_only_by(read_at, &own) {
                continue;
            }
            let rest = rest_before_change_round(woken_by_change, planned, ended.elapsed());
            tokio::time::sleep(rest).await;
            break true;
        };
    }
}

/// How long a round woken by a change waits, `since_last` after the last
/// round ended. Always [`CHANGE_SETTLE`], for the changes that come with
/// this one. After a round that was itself woken by a change, as long as
/// that round spent reading and planning (not committing: that is the
/// store's time, not a core's), up to [`MAX_CHANGE_SETTLE`], less the time
/// since it ended: under a stream of changes the controller takes at most
/// about half a core, and what it plans on is batched. After a round of
/// the interval, or a quiet spell, a change waits no longer than it must.
fn rest_before_change_round(
    after_change_round: bool,
    planned: Duration,
    since_last: Duration,
) -> Duration {
    if !after_change_round {
        return CHANGE_SETTLE;
    }
    planned
        .clamp(CHANGE_SETTLE, MAX_CHANGE_SETTLE)
        .saturating_sub(since_last)
        .max(CHANGE_SETTLE)
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

/// Prunes events beyond `retention` every [`PRUNE_INTERVAL`], forever.
/// A task of its own, beside [`run`]'s: it lists and decodes every event
/// (tens of thousands at scale), and in the rounds' task that held up the
/// round after it.
pub async fn prune_events_forever(store: Arc<dyn Store>, retention: Retention) {
    loop {
        prune_events(store.as_ref(), &retention).await;
        tokio::time::sleep(PRUNE_INTERVAL).await;
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

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_change_after_a_quiet_spell_or_an_interval_round_waits_only_to_settle() {
        assert_eq!(
            rest_before_change_round(false, 80 * MS, Duration::ZERO),
            CHANGE_SETTLE
        );
        assert_eq!(
            rest_before_change_round(true, 80 * MS, 500 * MS),
            CHANGE_SETTLE
        );
    }

    #[test]
    fn a_stream_of_changes_leaves_the_controller_half_a_core_at_most() {
        assert_eq!(
            rest_before_change_round(true, 30 * MS, Duration::ZERO),
            30 * MS
        );
        assert_eq!(rest_before_change_round(true, 30 * MS, 10 * MS), 20 * MS);
        assert_eq!(
            rest_before_change_round(true, 300 * MS, Duration::ZERO),
            MAX_CHANGE_SETTLE
        );
        assert_eq!(
            rest_before_change_round(true, MS, Duration::ZERO),
            CHANGE_SETTLE
        );
    }

    /// A round that only placed pods is not followed by another for its
    /// own commits (it would plan everything again to find nothing); a
    /// commit of someone else's brings one at once.
    #[tokio::test]
    async fn own_placements_wake_no_round_and_others_commits_do() {
        use crate::mirror::tests::{following, scratch_store};
        use crate::objects::{self, DEPLOYMENTS, NODES, PODS, SERVICES};

        let (store, dir) = scratch_store("own-rounds");
        let (mirror, following) = following(&store).await;
        let liveness = Arc::new(Liveness::new(Duration::from_secs(60)));
        liveness.heartbeat("h1");
        let web = testing::service("web", 1, false).object;
        let revision = testing::complete(&web, 1).object;
        let written = store
            .apply(vec![
                objects::create(NODES, "h1", &testing::node("h1")),
                objects::create(SERVICES, "web", &web),
                objects::create(DEPLOYMENTS, &revision.name, &revision),
            ])
            .await
            .unwrap();
        mirror.read_after(written).await.unwrap();
        let instruments = Arc::new(Instruments::default());
        let controller = tokio::spawn(run(
            Arc::clone(&store),
            Arc::clone(&mirror),
            liveness,
            Duration::from_secs(60),
            1.0,
            Arc::clone(&instruments),
        ));
        let placed = async {
            loop {
                let (pods, _) = store.list(PODS).await.unwrap();
                if pods.iter().any(|p| {
                    serde_json::from_slice::<ClusterPod>(&p.value)
                        .unwrap()
                        .node
                        .is_some()
                }) {
                    break;
                }
                tokio::time::sleep(10 * MS).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), placed)
            .await
            .expect("web's pod placed");
        tokio::time::sleep(300 * MS).await;
        let rounds = instruments.controller_rounds.count();
        assert_eq!(rounds, 1, "a round after the one that placed the pod");
        let mut more = web.clone();
        more.replicas = 2;
        let at = store.get(&format!("{SERVICES}web")).await.unwrap().unwrap();
        store
            .apply(vec![objects::update(SERVICES, "web", &more, at.revision)])
            .await
            .unwrap();
        tokio::time::sleep(300 * MS).await;
        assert!(
            instruments.controller_rounds.count() > rounds,
            "no round for a scale-up"
        );
        controller.abort();
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// How long one round's plan takes at the scale of `berth-bench
/// cluster-sim --nodes 1000 --pods 20000`, settled: run it with
/// `cargo test --release -p berth-master --lib -- --ignored --nocapture
/// a_settled_round_at_scale` (and under `perf record` to profile it).
#[cfg(test)]
mod scale {
    use std::sync::Arc;
    use std::time::Instant;

    use berth_model::PodStatus;

    use super::plan;
    use super::testing::{cluster, node, service, step};
    use berth_model::NodeCondition;

    #[test]
    #[ignore = "a measurement, not a check: run it in release"]
    fn a_settled_round_at_scale() {
        let services = (0..200)
            .map(|i| service(&format!("sim-{i}"), 100, false))
            .collect();
        let nodes = (0..1000)
            .map(|i| (node(&format!("node-{i}")), NodeCondition::Ready))
            .collect();
        let mut cluster = cluster(services, nodes);
        step(&mut cluster);
        for pod in &mut cluster.pods {
            let p = &mut Arc::make_mut(pod).object;
            let status: PodStatus = serde_json::from_value(serde_json::json!({
                "name": p.spec.name, "phase": "Running", "slice": "s", "spec": p.spec,
                "containers": [{"name": "app", "unit": "u", "state": "active",
                    "subState": "running", "restarts": 0, "hostPorts": [], "ready": true}],
            }))
            .unwrap();
            p.status = Some(status);
            p.ready_since_ms = Some(cluster.now_ms);
        }
        cluster.now_ms += 60_000;
        assert_eq!(cluster.pods.len(), 20_000);
        assert!(plan(&cluster).is_empty(), "the cluster is settled");
        let rounds = 50;
        let started = Instant::now();
        for _ in 0..rounds {
            assert!(plan(&cluster).is_empty());
        }
        println!("plan: {:?} a round", started.elapsed() / rounds);
    }
}
