//! Scheduling throughput with durable bindings, in-process: no lab, no HTTP.
//!
//! N unplaced pods are created in a fresh embedded store, then placed on
//! simulated nodes: each pod is decided, its binding (the pod with `node`
//! set) is written with compare-and-swap on the revision it was read at, and
//! the writes are committed in batches through `Store::apply`, which returns
//! only once the batch is durable. The baseline places the same pods
//! round-robin through exactly the same write path, in its own fresh store,
//! so the ratio shows what the scheduler's decisions cost on top of the
//! writes any placer has to make.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_master::scheduler::{decide, ClusterView, FixedPort, Placement, PodRequest};
use berth_master::store::embedded::EmbeddedStore;
use berth_master::store::{Op, Store};
use berth_model::{
    Capacity, ClusterPod, Container, Node, NodeCondition, Pod, Port, Protocol, Resources,
    RestartPolicy, Service,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Pods per service: enough that spreading has work to do.
const REPLICAS: usize = 5;
/// Zones the nodes are labelled with; some services select one.
const ZONES: usize = 4;
/// The target from DESIGN.md.
const TARGET_PODS_PER_SEC: f64 = 10_000.0;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods to place.
    pub pods: usize,
    /// Bindings per `Store::apply`.
    pub batch: usize,
    /// Times each placer is measured; the median run is reported.
    pub rounds: usize,
    /// Where the stores go; must not exist, removed at the end.
    pub dir: PathBuf,
}

/// Runs the benchmark and prints the figures.
pub fn run(config: &Config) -> Result<()> {
    ensure!(config.nodes > 0, "--nodes must be at least 1");
    ensure!(config.pods > 0, "--pods must be at least 1");
    ensure!(config.batch > 0, "--batch must be at least 1");
    ensure!(config.rounds > 0, "--rounds must be at least 1");
    // Refuse to reuse a directory: it is deleted at the end, and a store
    // left over from an earlier run would already hold the pods.
    ensure!(
        !config.dir.exists(),
        "{} already exists; remove it or pass another --dir",
        config.dir.display()
    );
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let _cleanup = RemoveOnDrop(config.dir.clone());

    // One thread is enough: placing is sequential, and the store does its
    // blocking work on its own writer thread and tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let workload = Workload::new(config.nodes, config.pods);
    let mut round_robin = Vec::new();
    let mut scheduler = Vec::new();
    runtime.block_on(async {
        for round in 0..config.rounds {
            let dir = config.dir.join(format!("round-{round}"));
            let baseline = || async {
                let placer = RoundRobin::new(&workload.nodes);
                measure(&dir.join("round-robin"), &workload, config.batch, placer)
                    .await
                    .context("round-robin placer")
            };
            let berth = || async {
                let placer = Scheduler::new(&workload);
                measure(&dir.join("scheduler"), &workload, config.batch, placer)
                    .await
                    .context("scheduler")
            };
            // Alternate which goes first, so that neither always meets the
            // warmer page cache or the busier disk.
            if round % 2 == 1 {
                scheduler.push(berth().await?);
                round_robin.push(baseline().await?);
            } else {
                round_robin.push(baseline().await?);
                scheduler.push(berth().await?);
            }
        }
        anyhow::Ok(())
    })?;
    let (Some(round_robin), Some(scheduler)) = (median(round_robin), median(scheduler)) else {
        bail!("no rounds were run");
    };

    println!(
        "scheduling {} pods on {} nodes, durable bindings in batches of {}, median of {} rounds:",
        config.pods, config.nodes, config.batch, config.rounds
    );
    for (name, run) in [
        ("round-robin placer", &round_robin),
        ("berth scheduler", &scheduler),
    ] {
        println!(
            "  {name:<20} {:9.0} pods/s  ({:6.3} s total, {:6.3} s deciding, {:6.3} s committing)",
            run.pods_per_sec(),
            run.total.as_secs_f64(),
            run.deciding.as_secs_f64(),
            run.committing.as_secs_f64(),
        );
    }
    println!(
        "  decisions alone      {:9.0} pods/s",
        config.pods as f64 / scheduler.deciding.as_secs_f64().max(1e-9)
    );
    let ratio = scheduler.pods_per_sec() / round_robin.pods_per_sec();
    let verdict = if scheduler.pods_per_sec() >= TARGET_PODS_PER_SEC {
        "meets"
    } else {
        "misses"
    };
    println!(
        "  ratio scheduler/round-robin {ratio:.2}x; scheduler {verdict} the target of {TARGET_PODS_PER_SEC:.0} pods/s"
    );
    println!(
        "  scheduler placement: most pods of one service on a node {}, busiest node at {:.1}% of its memory",
        scheduler.check.most_replicas_on_one_node, scheduler.check.busiest_memory_percent
    );
    println!(
        "  bindings breaking a filter: scheduler {}, round-robin {}",
        scheduler.check.violations, round_robin.check.violations
    );
    ensure!(
        scheduler.check.violations == 0,
        "the scheduler made {} bindings that break a filter",
        scheduler.check.violations
    );
    Ok(())
}

/// The simulated cluster and the pods to place.
#[derive(Debug)]
struct Workload {
    nodes: Vec<Node>,
    services: HashMap<String, Service>,
    pods: Vec<ClusterPod>,
}

impl Workload {
    fn new(nodes: usize, pods: usize) -> Self {
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                name: format!("node-{i:04}"),
                address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                labels: BTreeMap::from([("zone".to_owned(), format!("zone-{}", i % ZONES))]),
                capacity: Capacity {
                    memory_bytes: 64 * GIB,
                    cpu_millis: 32_000,
                },
                unschedulable: false,
                unit_settings: None,
                volume_classes: Default::default(),
            })
            .collect();
        let mut services = HashMap::new();
        let pods = (0..pods)
            .map(|i| {
                let s = i / REPLICAS;
                let name = format!("svc-{s:05}");
                let pod = Pod {
                    name: format!("{name}-{}", i % REPLICAS),
                    containers: vec![container(s)],
                    volumes: Vec::new(),
                    build: None,
                };
                services
                    .entry(name.clone())
                    .or_insert_with(|| service(s, &name, &pod));
                ClusterPod {
                    service: Some(name),
                    ..ClusterPod::unplaced(pod)
                }
            })
            .collect();
        Self {
            nodes,
            services,
            pods,
        }
    }
}

/// A container whose size varies with the service, so nodes fill unevenly
/// and "least loaded" has something to choose between.
fn container(service: usize) -> Container {
    // Every tenth service publishes a fixed host port, so the port filter
    // is exercised and replicas of those services may never share a node.
    let host_port = match service % 10 {
        0 => Some(8000 + (service / 10 % 100) as u16),
        _ => None,
    };
    Container {
        name: "app".to_owned(),
        image: "registry.example/app:1.0".to_owned(),
        command: vec!["/app".to_owned()],
        args: Vec::new(),
        env: Vec::new(),
        secret_env: Vec::new(),
        ports: vec![Port {
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_port,
        }],
        volume_mounts: Vec::new(),
        resources: Resources {
            memory_bytes: Some((64 + 64 * (service % 16) as u64) * MIB),
            cpu_millis: Some(50 + 50 * (service % 10) as u32),
            pids_limit: None,
        },
        restart: RestartPolicy::Always,
        stop_timeout_secs: 10,
        probes: Default::default(),
        security: Default::default(),
    }
}

/// Every fourth service is pinned to a zone.
fn service(s: usize, name: &str, template: &Pod) -> Service {
    let node_selector = match s % 4 {
        0 => BTreeMap::from([("zone".to_owned(), format!("zone-{}", s / 4 % ZONES))]),
        _ => BTreeMap::new(),
    };
    Service {
        name: name.to_owned(),
        labels: Default::default(),
        replicas: REPLICAS as u32,
        stateful: false,
        node_selector,
        template: template.clone(),
        env: Vec::new(),
        links: Vec::new(),
        egress: Default::default(),
        publish: Vec::new(),
        generated_env: Vec::new(),
        strategy: Default::default(),
        triggers: berth_model::deployment::default_triggers(),
    }
}

/// Chooses a node for each pod, in order.
trait Placer {
    /// The node for `pod`, or why there is none.
    fn place(&mut self, pod: &ClusterPod) -> Result<String, String>;
}

/// The baseline: the next node in turn, whatever it holds.
#[derive(Debug)]
struct RoundRobin {
    nodes: Vec<String>,
    next: usize,
}

impl RoundRobin {
    fn new(nodes: &[Node]) -> Self {
        Self {
            nodes: nodes.iter().map(|node| node.name.clone()).collect(),
            next: 0,
        }
    }
}

impl Placer for RoundRobin {
    fn place(&mut self, _pod: &ClusterPod) -> Result<String, String> {
        let node = self.nodes[self.next % self.nodes.len()].clone();
        self.next += 1;
        Ok(node)
    }
}

/// berth's scheduler over a view kept up to date as pods are placed, as
/// the master keeps it.
#[derive(Debug)]
struct Scheduler<'a> {
    view: ClusterView,
    services: &'a HashMap<String, Service>,
}

impl<'a> Scheduler<'a> {
    fn new(workload: &'a Workload) -> Self {
        let mut view = ClusterView::new();
        for node in &workload.nodes {
            view.upsert_node(node, NodeCondition::Ready);
        }
        Self {
            view,
            services: &workload.services,
        }
    }
}

impl Placer for Scheduler<'_> {
    fn place(&mut self, pod: &ClusterPod) -> Result<String, String> {
        let service = pod
            .service
            .as_deref()
            .and_then(|name| self.services.get(name));
        let request = PodRequest::from_cluster_pod(pod, service);
        match decide(&self.view, &request) {
            Placement::Placed { node, .. } => {
                // Recorded at once: the next pod of the batch must see it.
                self.view
                    .assign(&node, &request)
                    .map_err(|error| error.to_string())?;
                Ok(node)
            }
            Placement::Unschedulable { reason } => Err(reason),
        }
    }
}

/// What one placer achieved.
#[derive(Debug)]
struct Run {
    pods: usize,
    total: Duration,
    deciding: Duration,
    committing: Duration,
    check: Check,
}

impl Run {
    fn pods_per_sec(&self) -> f64 {
        self.pods as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// The run with the median total time (the slower middle one of an even
/// count), or `None` without runs.
fn median(mut runs: Vec<Run>) -> Option<Run> {
    runs.sort_by_key(|run| run.total);
    let middle = runs.len() / 2;
    runs.into_iter().nth(middle)
}

/// Creates the workload's pods unplaced in a fresh store at `dir`, then
/// times placing and binding all of them.
async fn measure(
    dir: &Path,
    workload: &Workload,
    batch: usize,
    mut placer: impl Placer,
) -> Result<Run> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("store.db");
    let store =
        EmbeddedStore::open(&path).with_context(|| format!("opening {}", path.display()))?;

    // Setup, not timed: the pods exist before the scheduler sees them.
    for chunk in workload.pods.chunks(1000) {
        let mut ops = Vec::with_capacity(chunk.len());
        for pod in chunk {
            ops.push(Op::Create {
                key: pod_key(&pod.spec.name),
                value: serde_json::to_vec(pod).context("encoding a pod")?,
            });
        }
        store.apply(ops).await.context("creating the pods")?;
    }
    // What the master would hold from its watch: decoded pods and the
    // revisions to compare-and-swap on.
    let (entries, _) = store.list("/pods/").await.context("listing the pods")?;
    let mut pods = Vec::with_capacity(entries.len());
    for entry in entries {
        let pod: ClusterPod = serde_json::from_slice(&entry.value)
            .with_context(|| format!("decoding {}", entry.key))?;
        pods.push((entry.key, entry.revision, pod));
    }
    ensure!(
        pods.len() == workload.pods.len(),
        "the store lists {} pods, {} were created",
        pods.len(),
        workload.pods.len()
    );
    // Listing is in key order; place in creation order, as pods arrive.
    let order: HashMap<&str, usize> = workload
        .pods
        .iter()
        .enumerate()
        .map(|(i, pod)| (pod.spec.name.as_str(), i))
        .collect();
    pods.sort_by_key(|(_, _, pod)| order.get(pod.spec.name.as_str()).copied());

    let mut deciding = Duration::ZERO;
    let mut committing = Duration::ZERO;
    let start = Instant::now();
    for chunk in pods.chunks_mut(batch) {
        let decided = Instant::now();
        for (_, _, pod) in chunk.iter_mut() {
            match placer.place(pod) {
                Ok(node) => pod.node = Some(node),
                Err(reason) => bail!("{} is unschedulable: {reason}", pod.spec.name),
            }
        }
        deciding += decided.elapsed();
        // Encoding counts as committing: it is part of the write path that
        // both placers share.
        let committed = Instant::now();
        let mut ops = Vec::with_capacity(chunk.len());
        for (key, revision, pod) in chunk.iter() {
            ops.push(Op::Update {
                key: key.clone(),
                value: serde_json::to_vec(pod).context("encoding a binding")?,
                expected: *revision,
            });
        }
        store.apply(ops).await.context("committing bindings")?;
        committing += committed.elapsed();
    }
    let total = start.elapsed();

    let check = check(&store, workload).await?;
    // Closed before its files go, and gone before the next run, so the
    // runs do not pile up on disk.
    drop(store);
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(Run {
        pods: pods.len(),
        total,
        deciding,
        committing,
        check,
    })
}

fn pod_key(name: &str) -> String {
    format!("/pods/{name}")
}

/// What the store holds after a run, read back from it.
#[derive(Debug)]
struct Check {
    most_replicas_on_one_node: u32,
    busiest_memory_percent: f64,
    /// Bindings that break a filter: a node's memory or CPU overcommitted,
    /// a fixed host port bound twice on a node, a node selector ignored.
    violations: usize,
}

/// Reads every pod back, checks it is bound and counts the bindings that
/// break the filters; not timed.
async fn check(store: &EmbeddedStore, workload: &Workload) -> Result<Check> {
    let (entries, _) = store.list("/pods/").await.context("listing the bindings")?;
    ensure!(
        entries.len() == workload.pods.len(),
        "{} pods in the store, {} created",
        entries.len(),
        workload.pods.len()
    );
    let nodes: HashMap<&str, &Node> = workload
        .nodes
        .iter()
        .map(|node| (node.name.as_str(), node))
        .collect();
    let mut replicas: HashMap<(String, String), u32> = HashMap::new();
    let mut requested: HashMap<String, Capacity> = HashMap::new();
    let mut ports: HashMap<(String, FixedPort), u32> = HashMap::new();
    let mut violations = 0;
    for entry in &entries {
        let pod: ClusterPod = serde_json::from_slice(&entry.value)
            .with_context(|| format!("decoding {}", entry.key))?;
        let Some(node_name) = pod.node.clone() else {
            bail!("{} was not bound", entry.key);
        };
        let Some(node) = nodes.get(node_name.as_str()) else {
            bail!("{} was bound to unknown node {node_name}", entry.key);
        };
        let service = pod
            .service
            .as_deref()
            .and_then(|name| workload.services.get(name));
        let request = PodRequest::from_cluster_pod(&pod, service);
        if !request
            .node_selector
            .iter()
            .all(|(key, value)| node.labels.get(key) == Some(value))
        {
            violations += 1;
        }
        let sum = requested.entry(node_name.clone()).or_default();
        sum.memory_bytes += request.memory_bytes;
        sum.cpu_millis += request.cpu_millis;
        for port in &request.host_ports {
            *ports.entry((node_name.clone(), *port)).or_default() += 1;
        }
        if let Some(service) = pod.service {
            *replicas.entry((service, node_name)).or_default() += 1;
        }
    }
    violations += ports.values().filter(|&&holders| holders > 1).count();
    let mut busiest_memory_percent = 0f64;
    for (name, sum) in &requested {
        let capacity = nodes
            .get(name.as_str())
            .map(|node| node.capacity)
            .unwrap_or_default();
        if sum.memory_bytes > capacity.memory_bytes || sum.cpu_millis > capacity.cpu_millis {
            violations += 1;
        }
        let percent = sum.memory_bytes as f64 * 100.0 / capacity.memory_bytes.max(1) as f64;
        busiest_memory_percent = busiest_memory_percent.max(percent);
    }
    Ok(Check {
        most_replicas_on_one_node: replicas.values().copied().max().unwrap_or(0),
        busiest_memory_percent,
        violations,
    })
}

/// Deletes the benchmark's directory however the run ends.
#[derive(Debug)]
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: removing {}: {error}", self.0.display());
        }
    }
}
