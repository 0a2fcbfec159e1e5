//! `berth top [node|pod]`: the latest resource figures the nodes reported
//! with their heartbeats, from the containers' cgroups.

use anyhow::Context as _;
use berth_model::metrics::ClusterMetrics;
use clap::{Args, ValueEnum};

use crate::cluster;
use crate::output::{self, Format};

/// What `berth top` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopKind {
    /// One row per container of every pod.
    Pod,
    /// One row per node: capacity, what is available, what pods use.
    Node,
}

/// `berth top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Pods (the default) or nodes.
    #[arg(value_enum, default_value_t = TopKind::Pod)]
    pub kind: TopKind,

    /// Only this pod (or node).
    pub name: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `berth top`.
pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let client = cluster::client()?;
    let mut metrics = client
        .read_metrics()
        .await
        .context("cannot read the cluster's metrics")?;
    if let Some(name) = &args.name {
        metrics.pods.retain(|p| &p.metrics.pod == name);
        metrics.nodes.retain(|n| &n.node == name);
    }
    if let Some(text) = match args.kind {
        TopKind::Pod => output::structured(args.output, &metrics.pods)?,
        TopKind::Node => output::structured(args.output, &metrics.nodes)?,
    } {
        return output::print(&text);
    }
    output::print(&match args.kind {
        TopKind::Pod => pods_table(&metrics),
        TopKind::Node => nodes_table(&metrics),
    })
}

const POD_HEADERS: [&str; 10] = [
    "POD",
    "CONTAINER",
    "NODE",
    "CPU",
    "MEMORY",
    "PEAK",
    "OOM",
    "PIDS",
    "IO READ",
    "IO WRITE",
];

/// One row per container: CPU in CPUs over the last interval, memory as
/// the working set (page cache that can go is not counted).
pub fn pods_table(metrics: &ClusterMetrics) -> String {
    let mut rows = Vec::new();
    for pod in &metrics.pods {
        for c in &pod.metrics.containers {
            rows.push(vec![
                pod.metrics.pod.clone(),
                c.name.clone(),
                pod.node.clone(),
                output::cpus(c.cpu_millis),
                output::bytes(c.memory_working_set_bytes),
                c.memory_peak_bytes.map_or("-".into(), output::bytes),
                c.oom_kills.to_string(),
                c.pids.to_string(),
                output::bytes(c.io_read_bytes),
                output::bytes(c.io_write_bytes),
            ]);
        }
    }
    let mut out = output::table(&POD_HEADERS, &rows);
    // The application metrics hook's samples, below the cgroup figures.
    let mut app = String::new();
    for pod in &metrics.pods {
        for c in &pod.metrics.containers {
            for sample in &c.app {
                let labels = if sample.labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", sample.labels)
                };
                app.push_str(&format!(
                    "{}/{}  {}{labels} {}\n",
                    pod.metrics.pod, c.name, sample.name, sample.value
                ));
            }
        }
    }
    if !app.is_empty() {
        out.push_str("\nAPPLICATION METRICS\n");
        out.push_str(&app);
    }
    out
}

const NODE_HEADERS: [&str; 6] = [
    "NODE",
    "CPUS",
    "MEMORY",
    "AVAILABLE",
    "PODS CPU",
    "PODS MEMORY",
];

/// One row per node.
pub fn nodes_table(metrics: &ClusterMetrics) -> String {
    let rows: Vec<Vec<String>> = metrics
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                output::cpus(n.capacity.cpu_millis),
                output::bytes(n.capacity.memory_bytes),
                output::bytes(n.usage.memory_available_bytes),
                output::cpus(n.usage.pods_cpu_millis),
                output::bytes(n.usage.pods_memory_bytes),
            ]
        })
        .collect();
    output::table(&NODE_HEADERS, &rows)
}

#[cfg(test)]
mod tests {
    use berth_model::metrics::{ContainerMetrics, PodMetrics, PodMetricsView};

    use super::*;

    #[test]
    fn pod_rows_show_working_set_and_cpu() {
        let metrics = ClusterMetrics {
            nodes: Vec::new(),
            pods: vec![PodMetricsView {
                node: "h2".into(),
                metrics: PodMetrics {
                    pod: "web-0".into(),
                    time_ms: 0,
                    containers: vec![ContainerMetrics {
                        name: "web".into(),
                        cpu_millis: 250,
                        memory_bytes: 300 << 20,
                        memory_working_set_bytes: 200 << 20,
                        pids: 3,
                        ..ContainerMetrics::default()
                    }],
                },
            }],
        };
        let table = pods_table(&metrics);
        let row = table.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cells[..8],
            ["web-0", "web", "h2", "0.25", "200M", "-", "0", "3"]
        );
    }
}
