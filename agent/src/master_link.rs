//! The agent's link to berth-master: joining with a one-time token, a
//! heartbeat every second with the state of the master's pods, and a long
//! poll on this node's assignments, applied through the same runtime as the
//! local API. With the master unreachable the agent keeps running what it
//! has and retries.
//!
//! The heartbeat is this node's liveness, so it never waits on Docker or
//! D-Bus: an observer looks at the pods on its own schedule, and the
//! heartbeat carries what it last knew, with Docker's condition (a Docker
//! restart is `EngineUnavailable`, not a dead node).

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use berth_client::error::report;
use berth_client::follow::Cursor;
use berth_client::{Backoff, NodeClient, Timeouts};
use berth_model::api::{Assignments, Heartbeat, JoinRequest};
use berth_model::endpoints::EndpointsView;
use berth_model::{Capacity, Node, PodStatus, UnitSettings};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::links;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// The node's joined credential; it lives in berth-client, which the router
/// shares.
pub use berth_client::Joined;

/// This host's capacity: memory from `/proc/meminfo`, CPUs from the kernel.
pub fn capacity() -> Capacity {
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
            })
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    Capacity {
        memory_bytes: memory_kib * 1024,
        cpu_millis: cpus * 1000,
    }
}

/// This host's name and the address others reach it at.
fn identity() -> (String, String) {
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let address = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() && !a.ip().is_loopback()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| name.clone());
    (name, address)
}

/// How long any request to the master may take, and how long the master
/// holds a long poll with nothing new.
const TIMEOUTS: Timeouts = Timeouts {
    request: Duration::from_secs(60),
    long_poll: Duration::from_secs(20),
};

/// Pauses between failed reads of the assignments or the endpoints.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));

/// How to get a node back whose credential is lost or refused, for logs and
/// errors. Its pods keep running meanwhile.
pub fn rejoin_hint(node: &str) -> String {
    format!(
        "an admin runs `berth node rejoin {node}` and this host \
         `berth-agent join URL --token TOKEN --ca-hash HASH --reuse-name` with the token it prints; \
         the pods here keep running meanwhile and are this node's again once it is back"
    )
}

/// Joins the master at `url` with a one-time `token` and saves the node's
/// credential in `state_dir`. `url` may list several masters
/// (`URL1,URL2,...`, HA masters sharing one store): the first that answers
/// takes the join, and the node talks to all of them from then on. An
/// `https` master needs `ca_hash` (printed in its join command); its CA is
/// then the only one this node trusts. With `reuse_name`, the node takes
/// over the cluster's node of its name (its credential was lost); the
/// master's token must allow that.
pub async fn join(
    url: &str,
    token: &str,
    ca_hash: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
    state_dir: &Path,
    reuse_name: bool,
) -> anyhow::Result<Joined> {
    let urls = berth_client::masters::split_list(url);
    let Some(first) = urls.first() else {
        bail!("no master URL given");
    };
    let mut failure = None;
    for url in &urls {
        match join_one(url, token, ca_hash, labels, reuse_name).await {
            Ok(mut joined) => {
                if urls.len() > 1 {
                    joined.urls = urls.clone();
                }
                joined.save(state_dir)?;
                return Ok(joined);
            }
            // A master that answered decided: the token is spent or bad.
            Err(e)
                if e.downcast_ref::<berth_client::Error>()
                    .is_some_and(|e| matches!(e, berth_client::Error::Answered { status, .. } if !status.is_server_error())) =>
            {
                return Err(e)
            }
            Err(e) => {
                warn!(master = %url, error = %format!("{e:#}"), "cannot join at this master; trying the next");
                failure = Some(e);
            }
        }
    }
    Err(failure.unwrap_or_else(|| anyhow::anyhow!("cannot join at {first}")))
}

/// Joins at one master.
async fn join_one(
    url: &str,
    token: &str,
    ca_hash: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
    reuse_name: bool,
) -> anyhow::Result<Joined> {
    let url = url.trim_end_matches('/').to_owned();
    let ca_pem = match (url.starts_with("https://"), ca_hash) {
        (true, Some(hash)) => Some(berth_client::ca::fetch_pinned(&url, hash).await?),
        (true, None) => bail!("an https master needs --ca-hash (it is part of the join command `berth node token` prints)"),
        (false, _) => None,
    };
    let (name, address) = identity();
    let node = Node {
        name,
        address,
        labels: labels.clone(),
        capacity: capacity(),
        unschedulable: false,
        // The first heartbeat reports them.
        unit_settings: None,
        volume_classes: Default::default(),
    };
    let request = JoinRequest {
        token: token.to_owned(),
        node,
        reuse_name,
    };
    Ok(berth_client::join(&url, ca_pem.as_deref(), &request, TIMEOUTS.request).await?)
}

/// How often the heartbeat goes out, whatever Docker and systemd do.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How often a heartbeat carries every pod's status; in between it carries
/// only those that changed since the master's last answer. A status the
/// master lost anyway (a store write that failed after it answered, a
/// master restored from a backup) is set right within this.
const FULL_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long one heartbeat may wait for the master's answer. The master
/// counts a heartbeat when it arrives, so a slow answer costs nothing; the
/// next one goes out when the interval is up, counted from when this one
/// went out, so two arrivals are never more than this apart (within the
/// master's 3 s grace even when every answer is late).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long Docker may take to answer a ping before it counts as
/// unavailable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one look at the pods may take; past it the heartbeat goes on
/// with what it knew.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the pods and Docker are looked at when nothing says they
/// changed (systemd's signals and Docker's events wake a look at once):
/// what no event announces, a hung Docker or a volume's size, shows within
/// this. While Docker is down or an image is being pulled (its progress is
/// in the pod's status), each second.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// What the heartbeat carries besides capacity and usage: the master's pods
/// as last seen, and whether Docker answered the last look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LastKnown {
    pods: Vec<PodStatus>,
    engine_unavailable: Option<String>,
}

/// The next [`LastKnown`] after one look: `engine` is Docker's answer to a
/// ping, `fresh` the statuses read (`None` when they could not be read in
/// time). Pods read keep being reported as last known when a look fails.
fn next_known(
    last: &LastKnown,
    engine: Result<(), String>,
    fresh: Option<Vec<PodStatus>>,
) -> LastKnown {
    LastKnown {
        pods: fresh.unwrap_or_else(|| last.pods.clone()),
        engine_unavailable: engine.err(),
    }
}

/// The statuses among `pods` that the master has not acknowledged as they
/// are: each pod's status costs its whole spec on the wire, and idle pods'
/// statuses do not change.
fn unacknowledged(pods: &[PodStatus], acked: &HashMap<String, PodStatus>) -> Vec<PodStatus> {
    pods.iter()
        .filter(|p| acked.get(&p.name) != Some(*p))
        .cloned()
        .collect()
}

/// What the master holds after it answered a heartbeat sent when `pods`
/// were the statuses: all of them (those left out it already held), but
/// those it said it did not record.
fn acknowledged(pods: &[PodStatus], unrecorded: &[String]) -> HashMap<String, PodStatus> {
    pods.iter()
        .filter(|p| !unrecorded.contains(&p.name))
        .map(|p| (p.name.clone(), p.clone()))
        .collect()
}

/// What the master holds of this node's report, as its answers said: a
/// heartbeat carries only what it lacks.
#[derive(Debug, Default)]
struct Acknowledged {
    /// Statuses by pod.
    statuses: HashMap<String, PodStatus>,
    /// The last known state whose statuses were all acknowledged: while it
    /// stays the latest, a heartbeat carries no status and compares none.
    whole: Option<Arc<LastKnown>>,
    /// The metrics sample.
    sample: Option<u64>,
}

impl Acknowledged {
    /// The master may hold nothing: everything goes out again.
    fn forget(&mut self) {
        *self = Self::default();
    }

    fn holds_whole(&self, last: &Arc<LastKnown>) -> bool {
        self.whole.as_ref().is_some_and(|w| Arc::ptr_eq(w, last))
    }

    /// The statuses of `last` the master lacks.
    fn lacking(&self, last: &Arc<LastKnown>) -> Vec<PodStatus> {
        if self.holds_whole(last) {
            return Vec::new();
        }
        unacknowledged(&last.pods, &self.statuses)
    }

    /// The master answered a heartbeat sent with `last` and metrics
    /// sample `sample`.
    fn answered(&mut self, last: &Arc<LastKnown>, sample: u64, unrecorded: &[String]) {
        self.sample = Some(sample);
        if self.holds_whole(last) {
            return;
        }
        self.statuses = acknowledged(&last.pods, unrecorded);
        self.whole = unrecorded.is_empty().then(|| Arc::clone(last));
    }
}

/// Whether the container engine is there: its systemd unit settled (not
/// restarting: its pods' units stop and start with it) and Docker answering
/// a ping, each within [`PING_TIMEOUT`].
async fn engine_condition(runtime: &Runtime) -> Result<(), String> {
    if let Some(unit) = runtime.engine_unit() {
        match tokio::time::timeout(PING_TIMEOUT, runtime.systemd().unsettled(unit)).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(doing))) => return Err(doing),
            // systemd not answering says nothing about Docker.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    match tokio::time::timeout(PING_TIMEOUT, runtime.docker().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("docker did not answer within {PING_TIMEOUT:?}")),
    }
}

/// Looks at Docker and at the master's pods when the status cache saw a
/// change or when `changed` (assignments applied), and at least every
/// [`LOOK_AT_LEAST_EVERY`], publishing what it saw. Every look is bounded
/// in time, so a hung Docker or D-Bus only makes the news older. The pods'
/// states come from the status cache, so idle pods cost nothing between
/// looks, and a look costs a ping of Docker and of its unit.
async fn observe_forever(
    runtime: &Runtime,
    changed: &Notify,
    known: &watch::Sender<Arc<LastKnown>>,
) {
    let mut engine_was_down = false;
    loop {
        let engine = engine_condition(runtime).await;
        if engine_was_down && engine.is_ok() {
            // Docker is back from a restart: its events while it went
            // down may be lost, so every state is read again.
            runtime.status_cache().flush();
        }
        engine_was_down = engine.is_err();
        let fresh = if engine.is_ok() {
            tokio::time::timeout(OBSERVE_TIMEOUT, runtime.master_pod_statuses())
                .await
                .ok()
                .map(|(pods, _)| pods)
        } else {
            None
        };
        known.send_if_modified(|current| {
            let next = next_known(current, engine, fresh);
            if let (None, Some(error)) = (&current.engine_unavailable, &next.engine_unavailable) {
                warn!(error = %error, "docker does not answer; the node reports EngineUnavailable");
            }
            // Unchanged, it stays the same `Arc`: the heartbeat then
            // compares nothing.
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
        let next_look = if engine_was_down || runtime.pulling() {
            HEARTBEAT_INTERVAL
        } else {
            LOOK_AT_LEAST_EVERY
        };
        tokio::select! {
            () = tokio::time::sleep(next_look) => {}
            () = changed.notified() => {}
            () = runtime.status_cache().changed() => {}
            // From then on, each second (see above).
            () = runtime.pull_began() => {}
        }
    }
}

/// Runs the heartbeat and the assignment loop forever.
pub async fn run(joined: Joined, runtime: Arc<Runtime>, metrics: Arc<Metrics>) {
    let master = match NodeClient::new(joined, TIMEOUTS) {
        Ok(master) => master,
        Err(e) => {
            warn!(error = %report(&e), "cannot build the master client; not following the master");
            return;
        }
    };
    // Applying assignments wakes the observer (and so the heartbeat), so
    // the master learns of a started pod at once rather than up to a
    // second later.
    let changed = Arc::new(Notify::new());
    // Links follow the assignments and the endpoints of linked services.
    let (assigned_links, assigned_rx) = watch::channel(links::Assigned::new());
    let (endpoints_tx, endpoints_rx) = watch::channel(None);
    let linker = links::Linker::new(
        runtime.docker().clone(),
        assigned_rx,
        endpoints_rx,
        Duration::from_secs(runtime.config().resync_interval_secs),
    );
    let linking = tokio::spawn(linker.run());
    let following = {
        let (master, assigned) = (master.clone(), assigned_links.subscribe());
        tokio::spawn(async move { endpoints(&master, assigned, &endpoints_tx).await })
    };
    let registry = {
        let (master, registry) = (master.clone(), Arc::clone(runtime.registry()));
        tokio::spawn(async move { registry.learn(&master).await })
    };
    let (known_tx, known_rx) = watch::channel(Arc::new(LastKnown::default()));
    let observer = {
        let (runtime, changed) = (Arc::clone(&runtime), Arc::clone(&changed));
        tokio::spawn(async move { observe_forever(&runtime, &changed, &known_tx).await })
    };
    let beat = {
        let master = master.clone();
        let settings = runtime.unit_settings().clone();
        let classes = runtime.config().volume_class_names();
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move {
            heartbeats(&master, &runtime, &metrics, &settings, &classes, known_rx).await
        })
    };
    let events = tokio::spawn(crate::container_events::run(
        master.http().clone(),
        master.joined().clone(),
        runtime.state_dir().to_owned(),
    ));
    let logs = tokio::spawn(crate::log_shipping::run(
        master.http().clone(),
        master.joined().clone(),
        runtime.config().state_dir.clone(),
    ));
    let (move_orders, orders_rx) = watch::channel(crate::volume_move::Orders::default());
    let moves = tokio::spawn(crate::volume_move::run(
        master.clone(),
        Arc::clone(&runtime),
        orders_rx,
    ));
    assignments(&master, &runtime, &changed, &assigned_links, &move_orders).await;
    moves.abort();
    beat.abort();
    registry.abort();
    observer.abort();
    linking.abort();
    following.abort();
    events.abort();
    logs.abort();
}

/// How often the node's capacity is read again.
const CAPACITY_REREAD: Duration = Duration::from_secs(60);

/// Sends a heartbeat every [`HEARTBEAT_INTERVAL`], and at once when the
/// observer saw something new. It never waits on Docker or D-Bus.
async fn heartbeats(
    master: &NodeClient,
    runtime: &Runtime,
    metrics: &Metrics,
    settings: &UnitSettings,
    volume_classes: &std::collections::BTreeMap<String, String>,
    mut known: watch::Receiver<Arc<LastKnown>>,
) {
    // When the master last took a heartbeat, and whether this node fenced
    // its network-backed pods since.
    let mut last_ok = tokio::time::Instant::now();
    let mut fenced = false;
    // Ticks count from each send, not from each answer: a heartbeat that
    // waited its whole timeout is followed at once, not a second later.
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Read again now and then, not each second: the standard library's CPU
    // count reads this process's cgroup files each time it is asked.
    let mut capacity_read = (capacity(), tokio::time::Instant::now());
    // What the master acknowledged, and when all goes out again.
    let mut acked = Acknowledged::default();
    let mut full_report_at = tokio::time::Instant::now();
    loop {
        if capacity_read.1.elapsed() >= CAPACITY_REREAD {
            capacity_read = (capacity(), tokio::time::Instant::now());
        }
        if tokio::time::Instant::now() >= full_report_at {
            acked.forget();
            full_report_at = tokio::time::Instant::now() + FULL_REPORT_EVERY;
        }
        let sample = metrics.latest_unless(acked.sample);
        let last = Arc::clone(&known.borrow_and_update());
        let beat = Heartbeat {
            capacity: capacity_read.0,
            pods: acked.lacking(&last),
            usage: sample.usage,
            metrics_unchanged: sample.pods.is_none(),
            metrics: sample.pods.unwrap_or_default(),
            engine_unavailable: last.engine_unavailable.clone(),
            unit_settings: Some(settings.clone()),
            volume_classes: volume_classes.clone(),
        };
        let sent = master.heartbeat(&beat, HEARTBEAT_TIMEOUT).await;
        match &sent {
            Ok(answer) => acked.answered(&last, sample.generation, &answer.unrecorded),
            // Whether the master took it is unknown, and the next master
            // to answer may be another: report everything again.
            Err(_) => acked.forget(),
        }
        if sent.is_ok() {
            last_ok = tokio::time::Instant::now();
            fenced = false;
        } else if !fenced
            && last_ok.elapsed() >= Duration::from_secs(berth_model::pod::NETWORK_FENCE_AFTER_SECS)
        {
            // Cut off long enough for the master to move the pods whose
            // data is on the network: stop them here first.
            fenced = true;
            let pods = runtime.fence_network_pods().await;
            if !pods.is_empty() {
                warn!(pods = ?pods, "fenced network-backed pods: the master is unreachable");
            }
        }
        match sent {
            Ok(_) => {}
            Err(e) if e.is_unauthorized() => {
                warn!(error = %e, "the master refused this node's credential; to rejoin, {}", rejoin_hint(master.node()));
            }
            Err(e @ berth_client::Error::Answered { .. }) => warn!(error = %e, "heartbeat refused"),
            Err(e) => warn!(error = %report(&e), "heartbeat failed; the master is unreachable"),
        }
        tokio::select! {
            _ = ticks.tick() => {}
            Ok(()) = known.changed() => {}
        }
    }
}

async fn assignments(
    master: &NodeClient,
    runtime: &Runtime,
    changed: &Notify,
    assigned_links: &watch::Sender<links::Assigned>,
    move_orders: &watch::Sender<crate::volume_move::Orders>,
) {
    // Until what runs here is adopted, a running pod of the master's could
    // look missing (a lost state directory) and be created twice.
    runtime.adopted().await;
    let path = format!("/v1/nodes/{}/assignments", master.node());
    let fetch = |after| master.get::<Assignments>(&path, after);
    let mut cursor = Cursor::new(RETRY);
    // The last assignments read, and when to apply them again though the
    // master has nothing new (a failed start's next try).
    let mut known: Vec<berth_model::Pod> = Vec::new();
    let mut moving_out: Vec<String> = Vec::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let fetched = match retry_at {
            Some(at) => tokio::select! {
                fetched = fetch(cursor.after()) => Some(fetched),
                () = tokio::time::sleep_until(at) => None,
            },
            None => Some(fetch(cursor.after()).await),
        };
        match fetched {
            Some(Ok(assigned)) => {
                cursor.read(assigned.revision);
                assigned_links.send_if_modified(|current| {
                    let new = links::assigned(&assigned.pods);
                    let modified = *current != new;
                    *current = new;
                    modified
                });
                known = assigned.pods.into_iter().map(|p| p.spec).collect();
                // A pod leaving with its data keeps its volumes here.
                moving_out = assigned
                    .moves
                    .iter()
                    .filter(|m| m.role == berth_model::MoveRole::Source)
                    .map(|m| m.pod.clone())
                    .collect();
                let orders = crate::volume_move::Orders {
                    moves: assigned.moves.clone(),
                    assigned: known.iter().map(|p| p.name.clone()).collect(),
                };
                move_orders.send_if_modified(|current| {
                    let modified = *current != orders;
                    if modified {
                        *current = orders;
                    }
                    modified
                });
            }
            // Time for a retry: the same assignments again.
            None => {}
            Some(Err(e)) => {
                // Unreachable master: keep everything running, try again.
                warn!(error = %report(&e), "cannot read assignments; keeping what runs");
                tokio::time::sleep(cursor.failed()).await;
                continue;
            }
        }
        let synced = runtime.sync_assigned(&known, &moving_out).await;
        changed.notify_one();
        for (pod, error) in &synced.failures {
            warn!(pod = %pod, error = %error, "applying an assignment failed; retrying");
        }
        retry_at = synced.retry_at.map(tokio::time::Instant::from_std);
    }
}

/// Follows `GET /v1/endpoints` with a long poll for the services this
/// node's pods link to, publishing each new view, so that a pod change
/// elsewhere wakes only the nodes that link to its service. With no link
/// on the node nothing is followed, and an empty view lets the linker
/// apply outbound policies. With the master unreachable the last view
/// stays: links keep their backends.
async fn endpoints(
    master: &NodeClient,
    mut assigned: watch::Receiver<links::Assigned>,
    views: &watch::Sender<Option<EndpointsView>>,
) {
    // The first assignments decide: until then the linker waits, and an
    // agent that just restarted unwires nothing.
    if assigned.changed().await.is_err() {
        return;
    }
    loop {
        let linked = linked_services(&assigned.borrow_and_update());
        let follow = async {
            if linked.is_empty() {
                views.send_if_modified(|view| {
                    let empty = view.is_none();
                    if empty {
                        *view = Some(EndpointsView {
                            revision: 0,
                            services: Vec::new(),
                        });
                    }
                    empty
                });
                return std::future::pending().await;
            }
            let path = format!("/v1/endpoints?services={}", linked.join(","));
            master
                .follow(&path, RETRY, views, |e| {
                    warn!(error = %report(e), "cannot read endpoints; links keep their backends");
                })
                .await;
        };
        let relinked = async {
            loop {
                if assigned.changed().await.is_err() {
                    return false;
                }
                if linked_services(&assigned.borrow()) != linked {
                    return true;
                }
            }
        };
        tokio::select! {
            () = follow => return,
            relinked = relinked => if !relinked { return },
        }
    }
}

/// The services that this node's pods link to, sorted.
fn linked_services(assigned: &links::Assigned) -> Vec<String> {
    let services: std::collections::BTreeSet<&String> = assigned
        .values()
        .flat_map(|pod| pod.links.iter().map(|link| &link.service))
        .collect();
    services.into_iter().cloned().collect()
}

/// Logs where the agent is joined.
pub fn announce(joined: &Joined) {
    info!(masters = ?joined.masters().urls(), node = %joined.node, "joined to a master");
}

/// Joins through the `[master]` section of the agent's config, retrying
/// until the master answers (at boot it may start after the agent), then
/// follows it. A refused token is final: it is reported and not retried.
pub async fn join_from_config(
    config: crate::config::AgentConfig,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
) {
    let Some(master) = config.master.clone() else {
        return;
    };
    let mut delay = Duration::from_secs(1);
    let joined = loop {
        match join(
            &master.urls().join(","),
            &master.token,
            master.ca_hash.as_deref(),
            &config.labels,
            &config.state_dir,
            false,
        )
        .await
        {
            Ok(joined) => break joined,
            Err(e)
                if e.downcast_ref::<berth_client::Error>()
                    .is_some_and(berth_client::Error::is_unauthorized) =>
            {
                warn!(error = %format!("{e:#}"), "the master refused the join token in the config; not joining. If this node lost its credential: {}", rejoin_hint(&identity().0));
                return;
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "joining the master from the config failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    announce(&joined);
    run(joined, runtime, metrics).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str) -> PodStatus {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "phase": "Running",
            "slice": format!("berth-{name}.slice"),
            "containers": [],
            "spec": {"name": name, "containers": [{"name": "c", "image": "i"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_docker_restart_keeps_the_last_known_pods_and_says_why() {
        let running = next_known(&LastKnown::default(), Ok(()), Some(vec![status("web-0")]));
        assert_eq!(running.pods, [status("web-0")]);
        assert_eq!(running.engine_unavailable, None);

        let restarting = next_known(
            &running,
            Err("docker: ping: connection refused".into()),
            None,
        );
        assert_eq!(restarting.pods, running.pods, "the last known status stays");
        assert_eq!(
            restarting.engine_unavailable.as_deref(),
            Some("docker: ping: connection refused")
        );

        let back = next_known(&restarting, Ok(()), Some(vec![status("web-0")]));
        assert_eq!(back, running);
    }

    #[test]
    fn a_look_that_timed_out_keeps_what_was_known() {
        let known = next_known(&LastKnown::default(), Ok(()), Some(vec![status("a")]));
        assert_eq!(next_known(&known, Ok(()), None), known);
    }

    #[test]
    fn only_statuses_the_master_has_not_acknowledged_go_out_again() {
        let mut restarted = status("b");
        restarted.phase = berth_model::PodPhase::Pending;
        let pods = [status("a"), status("b")];
        // Nothing acknowledged yet (the first heartbeat, a full report or
        // one after a failure): every status.
        assert_eq!(unacknowledged(&pods, &HashMap::new()), pods);
        let acked = acknowledged(&pods, &[]);
        assert_eq!(unacknowledged(&pods, &acked), []);
        let now = [status("a"), restarted.clone(), status("c")];
        assert_eq!(
            unacknowledged(&now, &acked),
            [restarted.clone(), status("c")],
            "a changed status and a new pod"
        );
        // The master did not record `c` (it does not know it yet): it goes
        // out again, the others do not.
        let acked = acknowledged(&now, &["c".to_owned()]);
        assert_eq!(unacknowledged(&now, &acked), [status("c")]);
    }

    #[test]
    fn a_heartbeat_carries_what_the_master_lacks_and_a_sample_once() {
        let known = |pods: Vec<PodStatus>| {
            Arc::new(LastKnown {
                pods,
                engine_unavailable: None,
            })
        };
        let mut acked = Acknowledged::default();
        let first = known(vec![status("a"), status("b")]);
        assert_eq!(acked.lacking(&first).len(), 2, "nothing acknowledged yet");
        acked.answered(&first, 7, &["b".to_owned()]);
        assert_eq!(acked.lacking(&first), [status("b")], "not recorded");
        assert_eq!(acked.sample, Some(7));
        acked.answered(&first, 7, &[]);
        assert_eq!(acked.lacking(&first), [], "all held");
        let mut restarted = status("a");
        restarted.phase = berth_model::PodPhase::Pending;
        let next = known(vec![restarted.clone(), status("b")]);
        assert_eq!(acked.lacking(&next), [restarted], "a new look, one change");
        acked.forget();
        assert_eq!(acked.lacking(&first).len(), 2, "a full report");
        assert_eq!(acked.sample, None);
    }

    #[test]
    fn the_rejoin_hint_names_the_node_and_both_commands() {
        let hint = rejoin_hint("h2");
        assert!(hint.contains("berth node rejoin h2"), "{hint}");
        assert!(hint.contains("--reuse-name"), "{hint}");
    }
}
