//! Resource figures of containers and nodes: what the agent samples from
//! cgroups, sends with its heartbeat, and `berth top` shows.

use serde::{Deserialize, Serialize};

use crate::cluster::Capacity;

/// Pressure stall information: the share of the last 10 seconds in which
/// some task waited for the resource, in hundredths of a percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pressure {
    /// CPU.
    pub cpu: u32,
    /// Memory.
    pub memory: u32,
    /// IO.
    pub io: u32,
}

/// One container's figures, from its unit's cgroup (the container's own
/// cgroup is nested below it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMetrics {
    /// The container.
    pub name: String,
    /// CPU time used since it started, microseconds.
    pub cpu_usec: u64,
    /// CPU use over the last sampling interval, thousandths of a CPU.
    pub cpu_millis: u64,
    /// Memory charged to it, page cache included.
    pub memory_bytes: u64,
    /// Memory it cannot give back at once: `memory_bytes` less inactive
    /// page cache (what an OOM decision looks at).
    pub memory_working_set_bytes: u64,
    /// The most memory it ever had charged, when the kernel tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// Times the kernel's OOM killer killed one of its processes.
    pub oom_kills: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Pressure, on cgroup v2 kernels with PSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<Pressure>,
    /// What the container's own metrics endpoint served (the application
    /// metrics hook), when its image declares one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app: Vec<AppSample>,
    /// The HELP and TYPE the endpoint gave for the families of `app`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_families: Vec<AppFamily>,
}

/// One sample of an application's own metrics, as its endpoint served it
/// (Prometheus text), checked to be well formed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSample {
    /// The metric's name.
    pub name: String,
    /// Its labels, `key="value"` pairs joined by commas, as served.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub labels: String,
    /// The value, as served.
    pub value: String,
}

/// The HELP and TYPE lines an application's endpoint gave for one metric
/// family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFamily {
    /// The family's name (a histogram's `x` for `x_bucket`, `x_sum`, …).
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// The HELP text, unescaped; empty when the endpoint gave none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub help: String,
}

/// A pod's figures at one sampling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    /// The pod.
    pub pod: String,
    /// When sampled, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Its containers.
    pub containers: Vec<ContainerMetrics>,
}

/// What a node has left, as its agent last measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    /// `MemAvailable` of `/proc/meminfo`.
    pub memory_available_bytes: u64,
    /// Memory used by berth's pods (their working sets).
    pub pods_memory_bytes: u64,
    /// CPU used by berth's pods, thousandths of a CPU.
    pub pods_cpu_millis: u64,
}

/// A node's line in `GET /v1/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    /// The node.
    pub node: String,
    /// What it offers.
    pub capacity: Capacity,
    /// What it uses.
    pub usage: NodeUsage,
}

/// A pod's line in `GET /v1/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsView {
    /// The node it runs on.
    pub node: String,
    /// Its latest sample.
    #[serde(flatten)]
    pub metrics: PodMetrics,
}

/// `GET /v1/metrics`: the latest sample of every node and pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetrics {
    /// Nodes, by name.
    pub nodes: Vec<NodeMetrics>,
    /// Pods, by name.
    pub pods: Vec<PodMetricsView>,
}
