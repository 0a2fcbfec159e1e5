//! Links: a pod of service A reaches service B at 127.0.0.1:<port> in its
//! own network namespace, wherever B's ready pods run, rewired live.
//!
//! The master's assignments say which of this node's pods link where
//! ([`Assigned`]); a long poll on `GET /v1/endpoints` says where B's ready
//! pods are. [`plan`] turns both into the rules each pod's namespace
//! should hold (pure), and the [`Linker`] converges every pod's namespace
//! to them: at once when either input changes, and all of them every
//! resync interval, which brings back rules someone flushed. The work
//! happens on a thread inside the pod's namespace ([`netns`]): berth's
//! nftables table there (`ip berth`, rules in [`plan`], messages in
//! [`nft`]) is read and changed over netlink ([`netlink`]), each change
//! one transaction, with no process spawned; nothing is written into the
//! host's own namespace.

pub mod netlink;
pub mod netns;
pub mod nft;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::endpoints::EndpointsView;
use berth_model::{ClusterPod, EgressPolicy, Link, Protocol};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::docker::Docker;
use crate::reconcile::desired::network_container_name;

use self::netlink::Nftables;
use self::netns::Namespace;
use self::nft::{Change, Dump};
use self::plan::{changes, desired, Backend, Observed, PodWiring, TABLE};

/// One of this node's pods with links or an outbound policy, as the master
/// assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedLinks {
    /// The Docker container that owns the pod's network namespace.
    pub network_container: String,
    /// The pod's links.
    pub links: Vec<Link>,
    /// The pod's outbound policy.
    pub egress: EgressPolicy,
}

/// This node's master pods by name.
pub type Assigned = BTreeMap<String, AssignedLinks>;

/// What the master's assignments say about links.
pub fn assigned(pods: &[ClusterPod]) -> Assigned {
    pods.iter()
        .map(|pod| {
            (
                pod.spec.name.clone(),
                AssignedLinks {
                    network_container: network_container_name(&pod.spec),
                    links: pod.links.clone(),
                    egress: pod.egress,
                },
            )
        })
        .collect()
}

/// The ready TCP backends of `link` in `view`, as addresses the rules can
/// hold (an endpoint whose node address is not an IPv4 address is skipped
/// with a warning: a DNAT rule needs one).
pub fn backends(view: &EndpointsView, link: &Link) -> Vec<Backend> {
    view.service(&link.service)
        .into_iter()
        .flat_map(|s| s.ready_on(link.port))
        .filter(|e| e.protocol == Protocol::Tcp)
        .filter_map(|e| match e.address.parse::<Ipv4Addr>() {
            Ok(address) => Some(Backend {
                address,
                port: e.port,
            }),
            Err(_) => {
                warn!(address = %e.address, node = %e.node, "endpoint address is not IPv4; skipped");
                None
            }
        })
        .collect()
}

/// What one pod should have, from its assignment and the endpoints.
pub fn wiring(pod: &AssignedLinks, view: &EndpointsView) -> PodWiring {
    let links = pod
        .links
        .iter()
        .map(|link| (link.clone(), backends(view, link)))
        .collect();
    PodWiring::new(links, pod.egress)
}

/// Why a pod could not be wired.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// nf_tables refused a change or could not be read.
    #[error(transparent)]
    Nftables(#[from] netlink::NetlinkError),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// route_localnet could not be read or set.
    #[error("route_localnet: {0}")]
    RouteLocalnet(std::io::Error),
}

/// Reads berth's table back: its chains' rule tags and its sets'
/// elements.
fn read_table(nft: &mut Nftables) -> Result<Observed, LinkError> {
    let mut observed = Observed::default();
    let ours =
        |what: &Dump, attrs: &_| nft::object_name(what, attrs).filter(|(table, _)| table == TABLE);
    observed.table = nft
        .dump(TABLE, &Dump::Tables)?
        .iter()
        .any(|t| ours(&Dump::Tables, t).is_some());
    if !observed.table {
        return Ok(observed);
    }
    for chain in nft.dump(TABLE, &Dump::Chains)? {
        if let Some((_, name)) = ours(&Dump::Chains, &chain) {
            observed.chains.insert(name, Vec::new());
        }
    }
    for rule in nft.dump(TABLE, &Dump::Rules)? {
        if let Some((table, chain, userdata)) = nft::rule(&rule) {
            if table == TABLE {
                observed.chains.entry(chain).or_default().push(userdata);
            }
        }
    }
    let sets: Vec<String> = nft
        .dump(TABLE, &Dump::Sets)?
        .iter()
        .filter_map(|s| ours(&Dump::Sets, s).map(|(_, name)| name))
        .collect();
    for set in sets {
        let elements = nft
            .dump(TABLE, &Dump::Elements(set.clone()))?
            .iter()
            .flat_map(nft::elements)
            .collect();
        observed.sets.insert(set, elements);
    }
    Ok(observed)
}

/// Converges the calling thread's namespace to `wiring`; returns how many
/// changes were applied (in one transaction), if any had to be: compared
/// in full with `previous`, the wiring it is known to hold, or without it
/// with the table read back.
fn converge_here(
    wiring: &PodWiring,
    previous: Option<&PodWiring>,
) -> Result<Option<usize>, LinkError> {
    if let Some(previous) = previous {
        let before = Observed::of(desired(previous).as_ref());
        return apply_here(&changes(desired(wiring).as_ref(), &before));
    }
    let mut nft = Nftables::open()?;
    let desired = desired(wiring);
    let observed = read_table(&mut nft)?;
    let localnet = wiring.on_loopback();
    let current = netns::route_localnet().map_err(LinkError::RouteLocalnet)?;
    // On before the rules that need it, off after they are gone.
    if localnet && !current {
        netns::set_route_localnet(true).map_err(LinkError::RouteLocalnet)?;
    }
    let changes = changes(desired.as_ref(), &observed);
    nft.apply(TABLE, &changes)?;
    if !localnet && current {
        netns::set_route_localnet(false).map_err(LinkError::RouteLocalnet)?;
    }
    Ok((!changes.is_empty()).then_some(changes.len()))
}

/// Applies `changes` to the calling thread's namespace in one transaction;
/// how many, if any.
fn apply_here(changes: &[Change]) -> Result<Option<usize>, LinkError> {
    Nftables::open()?.apply(TABLE, changes)?;
    Ok((!changes.is_empty()).then_some(changes.len()))
}

/// Converges `namespace` to `wiring` (from `previous`, what it was last
/// converged to, when that is known to hold). The wirings are shared, not
/// copied: a pod may hold tens of thousands of links. `previous` is used
/// only while the `route_localnet` it was converged with still fits. The
/// changes that follow from the changed links alone are planned here, on
/// the caller's thread, where the new wiring was just built and is still
/// in cache, and applied from there too (microseconds of work); only the
/// full comparison, which is heavy, runs on the namespace's thread.
pub async fn converge(
    namespace: &Namespace,
    wiring: Arc<PodWiring>,
    previous: Option<Arc<PodWiring>>,
) -> Result<Option<usize>, LinkError> {
    let previous = previous.filter(|p| p.on_loopback() == wiring.on_loopback());
    if let Some(changes) = previous
        .as_deref()
        .and_then(|p| plan::changes_since(p, &wiring))
    {
        return netns::run_here(namespace, || apply_here(&changes))?;
    }
    netns::run_in(namespace, move || {
        converge_here(&wiring, previous.as_deref())
    })
    .await?
}

/// A pod's namespace and the wiring last converged there.
#[derive(Debug)]
struct Converged {
    namespace: Namespace,
    wiring: Arc<PodWiring>,
}

/// Keeps every assigned pod's namespace wired.
#[derive(Debug)]
pub struct Linker {
    docker: Docker,
    assigned: watch::Receiver<Assigned>,
    endpoints: watch::Receiver<Option<EndpointsView>>,
    resync_interval: Duration,
}

impl Linker {
    /// A linker over the assignments and endpoints the master link feeds.
    pub fn new(
        docker: Docker,
        assigned: watch::Receiver<Assigned>,
        endpoints: watch::Receiver<Option<EndpointsView>>,
        resync_interval: Duration,
    ) -> Self {
        Self {
            docker,
            assigned,
            endpoints,
            resync_interval,
        }
    }

    /// Runs forever. A pod is converged when its wiring or its namespace
    /// (the owning container's PID) changed since it was last converged,
    /// and every pod is checked again every resync interval. A pod that
    /// could not be converged is tried again each second; with none, the
    /// linker sleeps until a change or the next resync.
    pub async fn run(mut self) {
        let mut converged: HashMap<String, Converged> = HashMap::new();
        let mut last_full: Option<Instant> = None;
        let mut starts = Box::pin(self.docker.container_starts());
        loop {
            let full = last_full.is_none_or(|t| t.elapsed() >= self.resync_interval);
            // Until the first endpoints arrive nothing is touched: an agent
            // that just restarted must not unwire running pods.
            let view = self.endpoints.borrow_and_update().clone();
            let assigned = self.assigned.borrow_and_update().clone();
            let mut unsettled = false;
            if let Some(view) = view {
                if full {
                    last_full = Some(Instant::now());
                }
                converged.retain(|pod, _| assigned.contains_key(pod));
                for (pod, links) in &assigned {
                    unsettled |= !self
                        .converge_pod(pod, links, &view, full, &mut converged)
                        .await;
                }
            }
            let next_round = if unsettled {
                Duration::from_secs(1)
            } else {
                last_full.map_or(self.resync_interval, |t| {
                    self.resync_interval.saturating_sub(t.elapsed())
                })
            };
            tokio::select! {
                _ = self.assigned.changed() => {}
                _ = self.endpoints.changed() => {}
                started = starts.next() => match started {
                    // A new namespace: what was converged is gone with the
                    // old one.
                    Some(Ok(pod)) => { converged.remove(&pod); }
                    Some(Err(e)) => {
                        warn!(error = %e, "watching container starts; resubscribing");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        starts = Box::pin(self.docker.container_starts());
                    }
                    None => starts = Box::pin(self.docker.container_starts()),
                },
                () = tokio::time::sleep(next_round) => {}
            }
        }
    }

    /// Converges one pod if it needs it; whether it is settled (false: try
    /// again soon).
    async fn converge_pod(
        &self,
        pod: &str,
        links: &AssignedLinks,
        view: &EndpointsView,
        full: bool,
        converged: &mut HashMap<String, Converged>,
    ) -> bool {
        let wiring = Arc::new(wiring(links, view));
        let last = converged.get(pod);
        if !full && last.is_some_and(|c| c.wiring == wiring) {
            return true;
        }
        // A pod without links needs one look (to clear what a previous
        // agent may have left); once found clean it stays clean: only
        // berth writes these chains, and a restart brings a fresh
        // namespace.
        if wiring.is_empty()
            && (last.is_some_and(|c| c.wiring.is_empty()) || (!full && last.is_none()))
        {
            return true;
        }
        // Between full rounds the namespace last converged is still the
        // pod's (a container start, which brings a new one, drops it), and
        // so is the wiring it holds, which differs from the new one (or
        // this returned above). A full round asks Docker again, and reads
        // everything back (someone may have flushed it).
        let (namespace, previous, rewired) = match converged.remove(pod) {
            Some(held) if !full => (held.namespace, Some(held.wiring), true),
            last => {
                let Some(namespace) = self.namespace(pod, links).await else {
                    return false;
                };
                let rewired = last
                    .is_some_and(|c| c.namespace.pid() == namespace.pid() && c.wiring != wiring);
                (namespace, None, rewired)
            }
        };
        match converge(&namespace, Arc::clone(&wiring), previous).await {
            Ok(changed) => {
                match changed {
                    Some(changes) if rewired => info!(pod, changes, "links rewired"),
                    Some(changes) => info!(pod, changes, "links converged"),
                    None => {}
                }
                converged.insert(pod.to_owned(), Converged { namespace, wiring });
                true
            }
            Err(e) => {
                warn!(pod, error = %e, "wiring the pod's links failed; retrying");
                false
            }
        }
    }

    /// The namespace of the pod's network container as Docker reports it
    /// now, opened; `None` (with a warning if that is an error) when the
    /// container is not running.
    async fn namespace(&self, pod: &str, links: &AssignedLinks) -> Option<Namespace> {
        let pid = match self.docker.inspect(&links.network_container).await {
            Ok(Some(state)) if state.running => state.pid,
            Ok(_) => None,
            Err(e) => {
                warn!(pod, error = %e, "cannot find the pod's network namespace");
                None
            }
        }?;
        Namespace::of(pid)
            .map_err(|e| warn!(pod, error = %e, "cannot open the pod's network namespace"))
            .ok()
    }
}
