//! Per-container resource figures: sampled from cgroups at a fixed
//! interval, kept as the latest sample, served as Prometheus text at
//! `/metrics` and sent to the master with the heartbeat.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use berth_model::metrics::{ContainerMetrics, NodeUsage, PodMetrics};

/// How long one poll of an application's metrics endpoint may take.
const APP_POLL_TIMEOUT: Duration = Duration::from_secs(2);

use crate::app_metrics;
use crate::cgroup::{self, Cgroups, OpenFiles};
use crate::docker::Docker;
use crate::reconcile::desired::app_container_name;
use crate::runtime::Runtime;
use crate::unit::container_cgroup_path;

/// The latest sample of this host's pods.
#[derive(Debug)]
pub struct Metrics {
    cgroups: Cgroups,
    /// The containers' cgroup files, open between samples.
    files: Mutex<OpenFiles>,
    latest: RwLock<Sample>,
}

#[derive(Debug, Default, Clone)]
struct Sample {
    usage: Option<NodeUsage>,
    pods: Vec<PodMetrics>,
    /// Counts samples and the application figures attached to them.
    generation: u64,
}

/// The latest sample as a heartbeat carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub usage: Option<NodeUsage>,
    /// The pods' figures; `None` when they are those of the sample
    /// asked about.
    pub pods: Option<Vec<PodMetrics>>,
    /// Which sample this is.
    pub generation: u64,
}

impl Metrics {
    /// Metrics read from the host's cgroups.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::with_cgroups(Cgroups::detect()))
    }

    /// Metrics read from `cgroups`.
    pub fn with_cgroups(cgroups: Cgroups) -> Self {
        Self {
            cgroups,
            files: Mutex::new(OpenFiles::default()),
            latest: RwLock::new(Sample::default()),
        }
    }

    /// Samples every container of `pods` (pod name, container names) at
    /// `now_ms`; CPU use is averaged since the previous sample.
    pub fn sample(&self, pods: &[(String, Vec<String>)], now_ms: u64, meminfo: &str) {
        let previous = self
            .latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let generation = previous.generation + 1;
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sampled = Vec::with_capacity(pods.len());
        for (pod, containers) in pods {
            let before = previous.pods.iter().find(|p| &p.pod == pod);
            let mut metrics = PodMetrics {
                pod: pod.clone(),
                time_ms: now_ms,
                containers: Vec::with_capacity(containers.len()),
            };
            for container in containers {
                let Some(mut m) = self.cgroups.read(
                    &mut files,
                    container,
                    &container_cgroup_path(pod, container),
                ) else {
                    continue;
                };
                if let Some((time_ms, earlier)) = before.and_then(|b| {
                    b.containers
                        .iter()
                        .find(|c| &c.name == container)
                        .map(|c| (b.time_ms, c))
                }) {
                    m.cpu_millis = cpu_millis(earlier.cpu_usec, m.cpu_usec, now_ms - time_ms);
                }
                metrics.containers.push(m);
            }
            sampled.push(metrics);
        }
        files.close_unread();
        drop(files);
        let all = sampled.iter().flat_map(|p| &p.containers);
        let usage = NodeUsage {
            memory_available_bytes: cgroup::memory_available(meminfo).unwrap_or(0),
            pods_memory_bytes: all.clone().map(|c| c.memory_working_set_bytes).sum(),
            pods_cpu_millis: all.map(|c| c.cpu_millis).sum(),
        };
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Sample {
            usage: Some(usage),
            pods: sampled,
            generation,
        };
    }

    /// Adds what a container's metrics endpoint served to the latest sample.
    pub fn attach_app(&self, pod: &str, container: &str, scrape: app_metrics::Scrape) {
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = latest
            .pods
            .iter_mut()
            .filter(|p| p.pod == pod)
            .flat_map(|p| p.containers.iter_mut())
            .find(|c| c.name == container)
        {
            c.app = scrape.samples;
            c.app_families = scrape.families;
            latest.generation += 1;
        }
    }

    /// The node's usage and each pod's latest figures, those only if the
    /// latest sample is not `known` (a sample is sent once, not with each
    /// heartbeat).
    pub fn latest_unless(&self, known: Option<u64>) -> Latest {
        let sample = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        Latest {
            usage: sample.usage,
            pods: (known != Some(sample.generation)).then(|| sample.pods.clone()),
            generation: sample.generation,
        }
    }

    /// The latest sample in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        let sample = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        render_prometheus(sample.usage, &sample.pods)
    }
}

/// Thousandths of a CPU used between two readings of CPU time.
pub fn cpu_millis(before_usec: u64, after_usec: u64, elapsed_ms: u64) -> u64 {
    if elapsed_ms == 0 {
        return 0;
    }
    after_usec.saturating_sub(before_usec) / elapsed_ms
}

type Figure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ContainerMetrics) -> Option<f64>,
);

/// The container series: name, type, help, value.
const FIGURES: &[Figure] = &[
    (
        "berth_container_cpu_seconds_total",
        "counter",
        "CPU time used.",
        |m| Some(m.cpu_usec as f64 / 1e6),
    ),
    (
        "berth_container_memory_bytes",
        "gauge",
        "Memory charged, page cache included.",
        |m| Some(m.memory_bytes as f64),
    ),
    (
        "berth_container_memory_working_set_bytes",
        "gauge",
        "Memory less inactive page cache.",
        |m| Some(m.memory_working_set_bytes as f64),
    ),
    (
        "berth_container_memory_peak_bytes",
        "gauge",
        "Most memory ever charged.",
        |m| m.memory_peak_bytes.map(|b| b as f64),
    ),
    (
        "berth_container_oom_kills_total",
        "counter",
        "Processes the OOM killer killed.",
        |m| Some(m.oom_kills as f64),
    ),
    (
        "berth_container_io_read_bytes_total",
        "counter",
        "Bytes read from block devices.",
        |m| Some(m.io_read_bytes as f64),
    ),
    (
        "berth_container_io_write_bytes_total",
        "counter",
        "Bytes written to block devices.",
        |m| Some(m.io_write_bytes as f64),
    ),
    (
        "berth_container_pids",
        "gauge",
        "Processes and threads.",
        |m| Some(m.pids as f64),
    ),
    (
        "berth_container_cpu_pressure_ratio",
        "gauge",
        "Share of the last 10 s some task waited for CPU (cgroup v2).",
        |m| m.pressure.map(|p| f64::from(p.cpu) / 10_000.0),
    ),
    (
        "berth_container_memory_pressure_ratio",
        "gauge",
        "Share of the last 10 s some task waited for memory (cgroup v2).",
        |m| m.pressure.map(|p| f64::from(p.memory) / 10_000.0),
    ),
    (
        "berth_container_io_pressure_ratio",
        "gauge",
        "Share of the last 10 s some task waited for IO (cgroup v2).",
        |m| m.pressure.map(|p| f64::from(p.io) / 10_000.0),
    ),
];

/// Prometheus text exposition of a sample; label values escaped as the
/// format requires.
pub fn render_prometheus(usage: Option<NodeUsage>, pods: &[PodMetrics]) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in FIGURES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for pod in pods {
            for container in &pod.containers {
                if let Some(v) = value(container) {
                    let _ = writeln!(
                        out,
                        "{name}{{pod=\"{}\",container=\"{}\"}} {v}",
                        app_metrics::escape_label_value(&pod.pod),
                        app_metrics::escape_label_value(&container.name)
                    );
                }
            }
        }
    }
    // The applications' own families, sanitised when polled and merged
    // here into one valid page.
    out.push_str(&app_metrics::exposition(pods));
    if let Some(usage) = usage {
        let _ = writeln!(
            out,
            "# HELP berth_node_memory_available_bytes MemAvailable of the host.\n\
             # TYPE berth_node_memory_available_bytes gauge\n\
             berth_node_memory_available_bytes {}",
            usage.memory_available_bytes
        );
    }
    out
}

/// Samples every `interval`, forever.
pub async fn run(
    metrics: Arc<Metrics>,
    runtime: Arc<Runtime>,
    docker: Option<Docker>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut endpoints = Endpoints::new();
    loop {
        ticks.tick().await;
        let pods = runtime.pod_containers();
        let sampling = Arc::clone(&metrics);
        let all = pods.clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // File reads: off the async threads.
        let _ = tokio::task::spawn_blocking(move || {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            sampling.sample(&all, now_ms, &meminfo);
        })
        .await;
        if let Some(docker) = &docker {
            endpoints = poll_applications(&metrics, docker, &runtime, &pods, endpoints).await;
        }
    }
}

/// What each container's labels declared (its metrics endpoint, if any),
/// by Docker name, with the run (`id@startedAt`) it was read for. Labels
/// and address change only with a new run, so a container costs an
/// inspect when it starts, not every round.
type Endpoints = HashMap<String, (String, Option<app_metrics::Endpoint>)>;

/// The application metrics hook: polls, concurrently, each container whose
/// labels declare an endpoint. Returns the endpoints known for the next
/// round.
async fn poll_applications(
    metrics: &Metrics,
    docker: &Docker,
    runtime: &Runtime,
    pods: &[(String, Vec<String>)],
    mut known: Endpoints,
) -> Endpoints {
    let mut lookups = Vec::new();
    for (pod, containers) in pods {
        for container in containers {
            let name = app_container_name(pod, container);
            let run = runtime
                .status_cache()
                .container(&name)
                .flatten()
                .map(|s| format!("{}@{}", s.id, s.started_at.unwrap_or_default()));
            let seen = known.remove(&name);
            lookups.push((pod, container, name, run, seen));
        }
    }
    let resolved = futures_util::future::join_all(lookups.into_iter().map(
        |(pod, container, name, run, seen)| async move {
            let endpoint = match (&run, seen) {
                (Some(run), Some((seen_run, endpoint))) if *run == seen_run => endpoint,
                _ => docker.metrics_endpoint(&name).await,
            };
            (pod, container, name, run, endpoint)
        },
    ))
    .await;
    let mut next = Endpoints::new();
    let mut polls = Vec::new();
    for (pod, container, name, run, endpoint) in resolved {
        if let Some(endpoint) = &endpoint {
            let endpoint = endpoint.clone();
            polls.push(async move {
                let scrape = app_metrics::poll(&endpoint, APP_POLL_TIMEOUT).await?;
                Some((pod, container, scrape))
            });
        }
        // Only a run the status cache knows is remembered: without one, a
        // restart could not be told apart.
        if let Some(run) = run {
            next.insert(name, (run, endpoint));
        }
    }
    for (pod, container, scrape) in futures_util::future::join_all(polls)
        .await
        .into_iter()
        .flatten()
    {
        metrics.attach_app(pod, container, scrape);
    }
    next
}

/// `GET /metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .with_state(metrics)
}

async fn serve(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.prometheus(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_is_averaged_over_the_interval() {
        // 2 s of CPU time in 4 s: half a CPU.
        assert_eq!(cpu_millis(1_000_000, 3_000_000, 4000), 500);
        assert_eq!(cpu_millis(5, 3, 1000), 0, "a restarted container");
        assert_eq!(cpu_millis(0, 10, 0), 0);
    }

    #[test]
    fn prometheus_text_names_pod_and_container() {
        let pods = vec![PodMetrics {
            pod: "web-0".into(),
            time_ms: 1,
            containers: vec![ContainerMetrics {
                name: "we\"b".into(),
                cpu_usec: 1_500_000,
                memory_bytes: 1024,
                ..ContainerMetrics::default()
            }],
        }];
        let text = render_prometheus(None, &pods);
        assert!(text.contains(
            "berth_container_cpu_seconds_total{pod=\"web-0\",container=\"we\\\"b\"} 1.5\n"
        ));
        assert!(text
            .contains("berth_container_memory_bytes{pod=\"web-0\",container=\"we\\\"b\"} 1024\n"));
        assert!(text.contains("# TYPE berth_container_pids gauge\n"));
        assert!(!text.contains("pressure_ratio{"), "no PSI, no series");
    }

    #[test]
    fn a_stopped_container_has_no_figures_but_the_node_has() {
        // The parsers are tested in `cgroup`; the real files in the lab.
        let metrics = Metrics::with_cgroups(Cgroups::V2 {
            root: std::path::PathBuf::from("/nonexistent"),
        });
        metrics.sample(
            &[("web-0".into(), vec!["web".into()])],
            1000,
            "MemAvailable: 4 kB\n",
        );
        let latest = metrics.latest_unless(None);
        assert_eq!(latest.usage.map(|u| u.memory_available_bytes), Some(4096));
        assert!(latest.pods.expect("a first sample")[0]
            .containers
            .is_empty());
    }

    #[test]
    fn a_sample_goes_out_once_and_a_new_one_again() {
        let metrics = Metrics::with_cgroups(Cgroups::V2 {
            root: std::path::PathBuf::from("/nonexistent"),
        });
        let pods = [("web-0".to_owned(), vec!["web".to_owned()])];
        metrics.sample(&pods, 1000, "MemAvailable: 4 kB\n");
        let first = metrics.latest_unless(None);
        assert!(first.pods.is_some());
        let again = metrics.latest_unless(Some(first.generation));
        assert_eq!(again.pods, None, "the master has it");
        assert_eq!(again.usage, first.usage, "usage goes with every heartbeat");
        metrics.sample(&pods, 2000, "MemAvailable: 8 kB\n");
        let next = metrics.latest_unless(Some(first.generation));
        assert!(next.pods.is_some(), "a new sample goes out");
        assert_ne!(next.generation, first.generation);
    }
}
