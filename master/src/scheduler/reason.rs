//! The reasons shown to users: why a pod went where it went, and why it
//! could go nowhere.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::filters::{self, Rejection};
use super::request::{FixedPort, PodRequest};
use super::score::Candidate;
use super::view::ClusterView;

/// Why the chosen node won.
pub(super) fn placed(fitting: usize, total: usize, pod: &PodRequest, winner: &Candidate) -> String {
    let memory = winner.free_memory_percent();
    match &pod.service {
        Some(service) => format!(
            "{fitting}/{total} nodes fit; chosen for fewest pods of service {service} ({}) \
             then most free memory ({memory}% after placement)",
            winner.same_service
        ),
        None => format!(
            "{fitting}/{total} nodes fit; chosen for most free memory ({memory}% after placement)"
        ),
    }
}

/// Why no node fits, counted per cause, e.g. `0/3 nodes fit: 1 not ready,
/// 1 cordoned, 1 insufficient memory (needs 64Mi, 32Mi free)`.
///
/// Runs the filters a second time: only for pods that cannot be placed, so
/// the pass that places pods never pays for the bookkeeping.
pub(super) fn unschedulable(cluster: &ClusterView, pod: &PodRequest) -> String {
    if cluster.nodes.is_empty() {
        return "0/0 nodes fit: no nodes are registered".to_owned();
    }
    let mut tally = Tally::default();
    for node in &cluster.nodes {
        if let Err(rejection) = filters::check(node, pod) {
            if rejection == Rejection::MissingVolumeClass {
                for class in pod
                    .volume_classes
                    .iter()
                    .filter(|class| !node.volume_classes.contains_key(class.as_str()))
                {
                    *tally.missing_classes.entry(class.clone()).or_insert(0) += 1;
                }
            }
            tally.record(rejection);
        }
    }
    tally.summary(cluster.nodes.len(), pod)
}

/// Rejections counted by cause.
#[derive(Debug, Default)]
struct Tally {
    not_ready: usize,
    cordoned: usize,
    selector: usize,
    classes: usize,
    /// Each class the nodes rejected for classes lack, with how many lack
    /// it.
    missing_classes: std::collections::BTreeMap<String, usize>,
    memory: usize,
    /// The most memory free on a node rejected for memory: how close the
    /// pod came to fitting.
    memory_most_free: u64,
    cpu: usize,
    cpu_most_free: u64,
    ports: usize,
    ports_in_use: BTreeSet<FixedPort>,
    start_failed: usize,
}

impl Tally {
    fn record(&mut self, rejection: Rejection) {
        match rejection {
            Rejection::NotReady => self.not_ready += 1,
            Rejection::Cordoned => self.cordoned += 1,
            Rejection::SelectorMismatch => self.selector += 1,
            Rejection::MissingVolumeClass => self.classes += 1,
            Rejection::InsufficientMemory { free } => {
                self.memory += 1;
                self.memory_most_free = self.memory_most_free.max(free);
            }
            Rejection::InsufficientCpu { free } => {
                self.cpu += 1;
                self.cpu_most_free = self.cpu_most_free.max(free);
            }
            Rejection::HostPortInUse(port) => {
                self.ports += 1;
                self.ports_in_use.insert(port);
            }
            Rejection::StartFailedThere => self.start_failed += 1,
        }
    }

    fn summary(&self, total: usize, pod: &PodRequest) -> String {
        let mut causes: Vec<String> = Vec::new();
        if self.not_ready > 0 {
            causes.push(format!("{} not ready", self.not_ready));
        }
        if self.cordoned > 0 {
            causes.push(format!("{} cordoned", self.cordoned));
        }
        if self.selector > 0 {
            let mut selector = String::new();
            for (i, (key, value)) in pod.node_selector.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(selector, "{comma}{key}={value}");
            }
            causes.push(format!(
                "{} not matching node selector {selector}",
                self.selector
            ));
        }
        // Per class, most often missing first: the class that keeps the
        // pod out of most nodes is the one to add.
        let mut missing: Vec<(&String, &usize)> = self.missing_classes.iter().collect();
        missing.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (class, count) in missing {
            causes.push(format!("{count} missing volume class {class}"));
        }
        // With several nodes, the largest free amount tells how far the pod
        // is from fitting anywhere; "at most" says it is not every node's.
        let at_most = |count: usize| if count > 1 { "at most " } else { "" };
        if self.memory > 0 {
            causes.push(format!(
                "{} insufficient memory (needs {}, {}{} free)",
                self.memory,
                bytes(pod.memory_bytes, Round::Up),
                at_most(self.memory),
                bytes(self.memory_most_free, Round::Down),
            ));
        }
        if self.cpu > 0 {
            causes.push(format!(
                "{} insufficient cpu (needs {}, {}{} free)",
                self.cpu,
                cpu(pod.cpu_millis),
                at_most(self.cpu),
                cpu(self.cpu_most_free),
            ));
        }
        if self.ports > 0 && self.ports == total {
            // Every node holds it: say so plainly, it is the whole story.
            let ports: Vec<String> = self
                .ports_in_use
                .iter()
                .map(|p| match p.protocol {
                    berth_model::Protocol::Tcp => p.port.to_string(),
                    _ => p.to_string(),
                })
                .collect();
            let noun = if ports.len() == 1 { "port" } else { "ports" };
            return format!("no node has host {noun} {} free", ports.join(", "));
        }
        if self.ports > 0 {
            let ports: Vec<String> = self.ports_in_use.iter().map(|p| p.to_string()).collect();
            let noun = if ports.len() == 1 { "port" } else { "ports" };
            causes.push(format!(
                "{} host {noun} in use ({})",
                self.ports,
                ports.join(", ")
            ));
        }
        if self.start_failed > 0 {
            causes.push(format!(
                "{} where it could not start lately (tried again after 5 minutes)",
                self.start_failed
            ));
        }
        format!("0/{total} nodes fit: {}", causes.join(", "))
    }
}

/// Which way to round a quantity that is not a whole number of its unit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Round {
    /// For what a pod needs, so it never looks smaller than it is.
    Up,
    /// For what a node has free, so it never looks larger than it is.
    Down,
}

/// Bytes in binary units as users write them in specs (`64Mi`, `1.5Gi`),
/// with at most one decimal.
pub(super) fn bytes(value: u64, round: Round) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    let Some(&(suffix, unit)) = UNITS.iter().find(|(_, unit)| value >= *unit) else {
        return format!("{value}B");
    };
    let scaled = u128::from(value) * 10;
    let unit = u128::from(unit);
    let tenths = match round {
        Round::Up => scaled.div_ceil(unit),
        Round::Down => scaled / unit,
    };
    match (tenths / 10, tenths % 10) {
        (whole, 0) => format!("{whole}{suffix}"),
        (whole, tenth) => format!("{whole}.{tenth}{suffix}"),
    }
}

/// CPU as users write it: whole CPUs (`2`) or thousandths (`500m`).
pub(super) fn cpu(millis: u64) -> String {
    // The remainder rather than `is_multiple_of`, which is newer than the
    // workspace's minimum Rust.
    match (millis / 1000, millis % 1000) {
        (whole, 0) => format!("{whole}"),
        _ => format!("{millis}m"),
    }
}
