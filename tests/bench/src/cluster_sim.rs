//! `cluster-sim`: a real `berth-master` (its own process, TLS, the embedded
//! store or etcd) with N simulated agents in this process. Each simulated
//! agent speaks the agent's protocol: it joins with a one-time token, sends
//! a heartbeat every second, long-polls its assignments, and reports each
//! pod assigned to it Running at its next heartbeat (then, as the agent
//! does, only what the master has not acknowledged, and everything every
//! 10 s). Nothing runs in them,
//! so what is measured is the master: how fast a change reaches the node
//! it concerns, and what the master costs while nothing changes.
//!
//! Measured:
//! - from creating the services to every pod reported Running;
//! - from a scale-up to the node seeing the new pod in its assignments
//!   (p50 and p99 over many scale-ups);
//! - the master's CPU and RSS in steady state;
//! - from a node going silent to its pods Running elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_model::api::{Assignments, Heartbeat, HeartbeatAnswer, JoinResponse, JoinToken};
use berth_model::{Capacity, ClusterPod, ContainerStatus, PodPhase, PodStatus};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::quantile;

/// Where the master keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimStore {
    /// SQLite in the master's state directory.
    Embedded,
    /// An etcd started for the run (`/usr/bin/etcd`).
    Etcd,
}

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub pods: usize,
    pub store: SimStore,
    pub scale_ups: usize,
    pub steady_secs: u64,
}

/// Most pods per simulated service: scale-ups then touch one service of
/// a realistic size, not one of thousands of replicas.
const PODS_PER_SERVICE: usize = 100;

/// Concurrent joins and API calls from the driver.
const DRIVER_CONCURRENCY: usize = 32;

pub fn run(config: &Config) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(simulate(config))
}

async fn simulate(config: &Config) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("berth-cluster-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let _etcd = match config.store {
        SimStore::Etcd => Some(Etcd::start(&dir.join("etcd"))?),
        SimStore::Embedded => None,
    };
    let master = Master::start(&dir, config.store).await?;
    println!(
        "cluster-sim: {} simulated nodes, {} pods, {:?} store, master pid {}",
        config.nodes,
        config.pods,
        config.store,
        master.pid()
    );

    let seen = Arc::new(Seen::default());
    let joined = Instant::now();
    let nodes = join_all(&master, config.nodes, &seen).await?;
    println!(
        "  {} nodes joined and heartbeating in {:.1} s",
        nodes.len(),
        joined.elapsed().as_secs_f64()
    );

    // Create the services, then wait for every pod to be Running.
    let services: Vec<(String, usize)> = (0..config.pods.div_ceil(PODS_PER_SERVICE))
        .map(|i| {
            let replicas = PODS_PER_SERVICE.min(config.pods - i * PODS_PER_SERVICE);
            (format!("sim-{i}"), replicas)
        })
        .collect();
    let created = Instant::now();
    stream::iter(services.iter())
        .map(|(name, replicas)| master.admin_post("/v1/services", service(name, *replicas)))
        .buffer_unordered(DRIVER_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let running = master
        .wait_running(config.pods, None, Duration::from_secs(600))
        .await?;
    println!(
        "  create -> all {running} pods Running: {:.2} s",
        created.elapsed().as_secs_f64()
    );

    // Scale-ups, one at a time: from the API call to the node seeing the
    // new pod in its assignments.
    let rounds_before = master.controller_rounds().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut latencies = Vec::new();
    for round in 0..config.scale_ups {
        let (name, replicas) = &services[round % services.len()];
        let replicas = replicas + 1 + round / services.len();
        // The new pod is whichever of the service's the nodes have not seen
        // yet: a node evicted under load leaves replacements with new names.
        let prefix = format!("{name}-");
        let known = seen.named(&prefix);
        let asked = Instant::now();
        master
            .admin_post(
                &format!("/v1/services/{name}/scale"),
                json!({ "replicas": replicas }),
            )
            .await?;
        let at = seen
            .wait_for_new(&prefix, &known, Duration::from_secs(30))
            .await
            .with_context(|| {
                format!("no node saw a new pod of {name} within 30 s of the scale-up")
            })?;
        latencies.push(at.saturating_duration_since(asked).as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    if !latencies.is_empty() {
        println!(
            "  scale-up -> assignment seen by the node, {} scale-ups: p50 {:.1} ms  p99 {:.1} ms  (target p99 <= 200 ms)",
            latencies.len(),
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99)
        );
    }
    let total = config.pods + config.scale_ups;

    // Steady state: heartbeats and idle long polls only.
    master
        .wait_running(total, None, Duration::from_secs(120))
        .await?;
    let (cpu, rss) = master.usage(Duration::from_secs(config.steady_secs))?;
    println!(
        "  steady state over {} s: master CPU {:.3} cores, RSS {:.0} MiB  (targets < 1 core, <= 500 MiB)",
        config.steady_secs,
        cpu,
        rss as f64 / (1024.0 * 1024.0)
    );
    let (count, seconds) = master.controller_rounds().await?;
    let rounds = count.saturating_sub(rounds_before.0);
    if rounds > 0 {
        println!(
            "  controller rounds during the scale-ups and steady state: {rounds}, mean {:.1} ms",
            (seconds - rounds_before.1) / rounds as f64 * 1e3
        );
    }

    // A node dies: its pods run elsewhere.
    let victim = &nodes[0];
    let lost = master.pods_on(&victim.name).await?;
    victim.stop();
    let died = Instant::now();
    master
        .wait_running(total, Some(&victim.name), Duration::from_secs(120))
        .await?;
    println!(
        "  node silent -> its {} pods Running elsewhere: {:.2} s (the grace period is {} s)",
        lost,
        died.elapsed().as_secs_f64(),
        NODE_GRACE_SECS
    );
    for node in &nodes {
        node.stop();
    }
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The master's node grace period in this run.
const NODE_GRACE_SECS: u64 = 3;

fn service(name: &str, replicas: usize) -> Value {
    json!({
        "name": name,
        "replicas": replicas,
        "template": {
            "name": name,
            "containers": [{"name": "app", "image": "local/busybox", "command": ["httpd", "-f"]}]
        }
    })
}

/// When a node first saw each pod in its assignments.
#[derive(Debug, Default)]
struct Seen {
    at: Mutex<HashMap<String, Instant>>,
    changed: tokio::sync::Notify,
}

impl Seen {
    fn record(&self, pods: impl Iterator<Item = String>) {
        let now = Instant::now();
        let mut added = false;
        if let Ok(mut at) = self.at.lock() {
            for pod in pods {
                at.entry(pod).or_insert_with(|| {
                    added = true;
                    now
                });
            }
        }
        if added {
            self.changed.notify_waiters();
        }
    }

    /// The pods seen so far whose names start with `prefix`.
    fn named(&self, prefix: &str) -> HashSet<String> {
        self.at.lock().map_or_else(
            |_| HashSet::new(),
            |at| {
                at.keys()
                    .filter(|p| p.starts_with(prefix))
                    .cloned()
                    .collect()
            },
        )
    }

    /// When a node first saw a pod named `prefix…` that is not in `known`.
    async fn wait_for_new(
        &self,
        prefix: &str,
        known: &HashSet<String>,
        timeout: Duration,
    ) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let new = self
                .at
                .lock()
                .ok()?
                .iter()
                .filter(|(pod, _)| pod.starts_with(prefix) && !known.contains(*pod))
                .map(|(_, at)| *at)
                .min();
            if let Some(at) = new {
                return Some(at);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

/// A simulated agent: its heartbeat and assignment tasks.
struct SimNode {
    name: String,
    tasks: Vec<JoinHandle<()>>,
}

impl SimNode {
    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn join_all(master: &Master, nodes: usize, seen: &Arc<Seen>) -> Result<Vec<SimNode>> {
    let joined: Vec<Result<SimNode>> = stream::iter(0..nodes)
        .map(|i| join_one(master, i, seen))
        .buffer_unordered(DRIVER_CONCURRENCY)
        .collect()
        .await;
    let mut joined = joined.into_iter().collect::<Result<Vec<_>>>()?;
    joined.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(joined)
}

async fn join_one(master: &Master, i: usize, seen: &Arc<Seen>) -> Result<SimNode> {
    let token: JoinToken =
        serde_json::from_value(master.admin_post("/v1/join-tokens", json!({})).await?)?;
    let name = format!("sim-node-{i:05}");
    let body = json!({
        "token": token.token,
        "node": {
            "name": name,
            "address": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
            "capacity": capacity(),
        },
    });
    let answer = master
        .http
        .post(format!("{}/v1/join", master.url))
        .json(&body)
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("joining {name}: {}", answer.text().await?);
    }
    let joined: JoinResponse = answer.json().await?;
    let node = Node {
        url: master.url.clone(),
        name: joined.node,
        credential: joined.credential,
        http: master.http.clone(),
        assigned: tokio::sync::watch::channel(Vec::new()).0,
        reported: Mutex::new(Reported::default()),
    };
    let node = Arc::new(node);
    // A node counts as joined once the master heard its first heartbeat,
    // as berth-lab waits for its agents.
    node.heartbeat().await?;
    let tasks = vec![
        tokio::spawn(Arc::clone(&node).heartbeats()),
        tokio::spawn(Arc::clone(&node).follow(Arc::clone(seen))),
    ];
    Ok(SimNode {
        name: node.name.clone(),
        tasks,
    })
}

fn capacity() -> Capacity {
    Capacity {
        memory_bytes: 64 << 30,
        cpu_millis: 32_000,
    }
}

/// One simulated agent's connection to the master.
struct Node {
    url: String,
    name: String,
    credential: String,
    http: reqwest::Client,
    /// The pods the master assigned, as the last long poll answered.
    assigned: tokio::sync::watch::Sender<Vec<ClusterPod>>,
    reported: Mutex<Reported>,
}

/// What the master acknowledged of a node's statuses, as the agent keeps
/// it: a heartbeat carries only the pods not acknowledged, and all of them
/// every [`FULL_REPORT_EVERY`] and after a failed heartbeat.
#[derive(Debug, Default)]
struct Reported {
    acknowledged: HashSet<String>,
    full_report_at: Option<Instant>,
}

/// As the agent's `FULL_REPORT_EVERY`.
const FULL_REPORT_EVERY: Duration = Duration::from_secs(10);

impl Node {
    async fn heartbeat(&self) -> Result<()> {
        let pods: Vec<PodStatus> = {
            let mut reported = self
                .reported
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            if reported
                .full_report_at
                .is_none_or(|at| at <= Instant::now())
            {
                reported.acknowledged.clear();
                reported.full_report_at = Some(Instant::now() + FULL_REPORT_EVERY);
            }
            self.assigned
                .borrow()
                .iter()
                .filter(|p| !reported.acknowledged.contains(&p.spec.name))
                .map(running)
                .collect()
        };
        let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
        let result = self.send_heartbeat(pods).await;
        if let Ok(mut reported) = self.reported.lock() {
            match &result {
                Ok(answer) => reported
                    .acknowledged
                    .extend(names.into_iter().filter(|p| !answer.unrecorded.contains(p))),
                Err(_) => reported.full_report_at = None,
            }
        }
        result.map(drop)
    }

    async fn send_heartbeat(&self, pods: Vec<PodStatus>) -> Result<HeartbeatAnswer> {
        let beat = Heartbeat {
            capacity: capacity(),
            pods,
            usage: None,
            metrics: Vec::new(),
            metrics_unchanged: false,
            engine_unavailable: None,
            unit_settings: None,
            volume_classes: Default::default(),
        };
        let answer = self
            .http
            .put(format!("{}/v1/nodes/{}/heartbeat", self.url, self.name))
            .bearer_auth(&self.credential)
            .timeout(Duration::from_secs(5))
            .json(&beat)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("heartbeat of {}: {}", self.name, answer.text().await?);
        }
        // A master from before the answer said `null`: all recorded.
        let answer: Option<HeartbeatAnswer> = answer.json().await?;
        Ok(answer.unwrap_or_default())
    }

    /// A heartbeat every second, and at once when the assignments change
    /// (as the agent does once it has started what it was given).
    async fn heartbeats(self: Arc<Self>) {
        let mut changed = self.assigned.subscribe();
        loop {
            let _ = self.heartbeat().await;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                Ok(()) = changed.changed() => {}
            }
        }
    }

    /// Follows the node's assignments with the agent's long poll.
    async fn follow(self: Arc<Self>, seen: Arc<Seen>) {
        let mut after: Option<u64> = None;
        loop {
            let mut url = format!("{}/v1/nodes/{}/assignments", self.url, self.name);
            if let Some(after) = after {
                url.push_str(&format!("?after={after}&timeout=20"));
            }
            let answer = self
                .http
                .get(&url)
                .bearer_auth(&self.credential)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let assignments = match answer {
                Ok(answer) if answer.status().is_success() => answer.json::<Assignments>().await,
                _ => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let Ok(assignments) = assignments else {
                continue;
            };
            seen.record(assignments.pods.iter().map(|p| p.spec.name.clone()));
            after = Some(assignments.revision);
            let names = |pods: &[ClusterPod]| -> BTreeSet<String> {
                pods.iter().map(|p| p.spec.name.clone()).collect()
            };
            if names(&assignments.pods) != names(&self.assigned.borrow()) {
                self.assigned.send_replace(assignments.pods);
            }
        }
    }
}

/// What a node reports of a pod it runs.
fn running(pod: &ClusterPod) -> PodStatus {
    let name = &pod.spec.name;
    PodStatus {
        name: name.clone(),
        phase: PodPhase::Running,
        slice: format!("berth-{name}.slice"),
        containers: pod
            .spec
            .containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                unit: format!("berth-{name}-{}.service", c.name),
                container_id: Some(format!("sim-{name}-{}", c.name)),
                state: "active".into(),
                sub_state: "running".into(),
                pid: Some(1),
                exit_code: None,
                reason: None,
                restarts: 0,
                host_ports: Vec::new(),
                ready: true,
                health: None,
            })
            .collect(),
        spec: pod.spec.clone(),
        start_failure: None,
        volumes: Vec::new(),
    }
}

/// The master under test, as a process of its own.
struct Master {
    child: Child,
    url: String,
    admin: String,
    http: reqwest::Client,
}

impl Master {
    async fn start(dir: &Path, store: SimStore) -> Result<Master> {
        let port = free_port()?;
        let state = dir.join("master");
        let store_table = match store {
            SimStore::Embedded => String::new(),
            SimStore::Etcd => format!(
                "[store]\nbackend = \"etcd\"\netcd-endpoints = [\"http://127.0.0.1:{ETCD_CLIENT_PORT}\"]\n"
            ),
        };
        let config = dir.join("master.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nstate-dir = \"{}\"\npublic-url = \"https://127.0.0.1:{port}\"\nnode-grace-secs = {NODE_GRACE_SECS}\n{store_table}",
                state.display()
            ),
        )?;
        let binary = berth_harness::bin_dir().join("berth-master");
        let log = std::fs::File::create(dir.join("master.log"))?;
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let ca = state.join("ca.crt");
        let token = state.join("admin.token");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(ca.exists() && token.exists()) {
            if Instant::now() > deadline {
                bail!(
                    "berth-master did not start in 30 s; see {}",
                    dir.join("master.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .pool_max_idle_per_host(usize::MAX)
            .build()?;
        let master = Master {
            child,
            url: format!("https://127.0.0.1:{port}"),
            admin: std::fs::read_to_string(&token)?.trim().to_owned(),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while master.admin_get("/v1/nodes").await.is_err() {
            if Instant::now() > deadline {
                bail!("berth-master does not answer at {}", master.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(master)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many controller rounds the master ran, and their total time in
    /// seconds (its Prometheus page).
    async fn controller_rounds(&self) -> Result<(u64, f64)> {
        let page = self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = |name: &str| {
            page.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .with_context(|| format!("{name} is not on the master's /metrics"))
        };
        let count = value("berth_master_controller_round_duration_seconds_count")?;
        let sum = value("berth_master_controller_round_duration_seconds_sum")?;
        Ok((count as u64, sum))
    }

    async fn admin_get(&self, path: &str) -> Result<Value> {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("GET {path}: {}", answer.text().await?);
        }
        Ok(answer.json().await?)
    }

    async fn admin_post(&self, path: &str, body: Value) -> Result<Value> {
        let answer = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("POST {path}: {}", answer.text().await?);
        }
        Ok(answer.json().await?)
    }

    /// Waits until `count` pods are Running, none of them on `not_on`;
    /// returns how many are.
    async fn wait_running(
        &self,
        count: usize,
        not_on: Option<&str>,
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.admin_get("/v1/pods").await?;
            let pods = pods.as_array().cloned().unwrap_or_default();
            let running = pods
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running" && not_on.is_none_or(|node| p["node"] != node)
                })
                .count();
            if running >= count {
                return Ok(running);
            }
            if Instant::now() > deadline {
                let phases: BTreeMap<String, usize> =
                    pods.iter().fold(BTreeMap::new(), |mut all, p| {
                        *all.entry(p["status"]["phase"].to_string()).or_default() += 1;
                        all
                    });
                bail!("{running} of {count} pods Running after {timeout:?}: {phases:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pods_on(&self, node: &str) -> Result<usize> {
        let pods = self.admin_get("/v1/pods").await?;
        Ok(pods
            .as_array()
            .map_or(0, |pods| pods.iter().filter(|p| p["node"] == node).count()))
    }

    /// The master's CPU (in cores) over `window`, and its RSS at the end.
    fn usage(&self, window: Duration) -> Result<(f64, u64)> {
        let pid = self.pid();
        let before = cpu_ticks(pid)?;
        let started = Instant::now();
        std::thread::sleep(window);
        let ticks = cpu_ticks(pid)? - before;
        let ticks_per_sec: f64 =
            String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
                .trim()
                .parse()?;
        let cores = ticks as f64 / ticks_per_sec / started.elapsed().as_secs_f64();
        Ok((cores, rss_bytes(pid)?))
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command may hold spaces: fields count from after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("parsing /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let field =
        |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?) };
    // utime and stime are fields 14 and 15; after the `)` they are 11 and 12
    // counting the state as 0.
    Ok(field(11)? + field(12)?)
}

fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

const ETCD_CLIENT_PORT: u16 = 23790;

/// An etcd for one run, on loopback ports of its own.
struct Etcd {
    child: Child,
}

impl Etcd {
    fn start(dir: &Path) -> Result<Etcd> {
        let data: PathBuf = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let client = format!("http://127.0.0.1:{ETCD_CLIENT_PORT}");
        let peer = format!("http://127.0.0.1:{}", ETCD_CLIENT_PORT + 1);
        let child = Command::new("/usr/bin/etcd")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting /usr/bin/etcd (Debian's etcd-server)")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", ETCD_CLIENT_PORT)).is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Etcd { child })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
