//! What a pod asks of a node, boiled down from its spec once so that
//! [`decide`](super::decide) compares numbers rather than walking containers
//! for every node.

use std::collections::BTreeMap;
use std::fmt;

use berth_model::{ClusterPod, Pod, Protocol, Service};

/// A host port a pod publishes at a fixed number; two pods with the same one
/// cannot share a node. Ports published as "any free port" (`hostPort: 0`)
/// are chosen by the agent and never conflict, so they are not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FixedPort {
    /// tcp or udp: the same number may be used once per protocol.
    pub protocol: Protocol,
    /// The port on the host, never 0.
    pub port: u16,
}

impl fmt::Display for FixedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same form as the model's validation messages (`80/tcp`).
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// The scheduler's view of one pod: what it needs from a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequest {
    /// Sum of the containers' memory limits; a container without a limit
    /// counts as 0.
    pub memory_bytes: u64,
    /// Sum of the containers' CPU limits in thousandths of a CPU; a container
    /// without a limit counts as 0.
    pub cpu_millis: u64,
    /// Fixed host ports, sorted and without duplicates.
    pub host_ports: Vec<FixedPort>,
    /// The service owning the pod, whose replicas are spread across nodes.
    pub service: Option<String>,
    /// Labels a node must carry, each with exactly this value.
    pub node_selector: BTreeMap<String, String>,
    /// Nodes where the pod could not start for a cause of the node's own,
    /// not to be tried again for now.
    pub avoid_nodes: Vec<String>,
    /// Volume classes a node must have, sorted, each once.
    pub volume_classes: Vec<String>,
}

/// What a pod placed on a node holds of it: the part of its request that
/// [`ClusterView`](super::ClusterView) counts, borrowed from the pod. A
/// round counts every placed pod, so this copies no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<'a> {
    /// As [`PodRequest::memory_bytes`].
    pub memory_bytes: u64,
    /// As [`PodRequest::cpu_millis`].
    pub cpu_millis: u64,
    /// As [`PodRequest::host_ports`], with those its node allocated.
    pub host_ports: Vec<FixedPort>,
    /// As [`PodRequest::service`].
    pub service: Option<&'a str>,
}

impl<'a> Held<'a> {
    /// What a pod the master manages holds of its node.
    pub fn of(pod: &'a ClusterPod) -> Self {
        let (memory_bytes, cpu_millis, mut host_ports) = limits_and_ports(&pod.spec);
        add_allocated_ports(pod, &mut host_ports);
        Self {
            memory_bytes,
            cpu_millis,
            host_ports,
            service: pod.service.as_deref(),
        }
    }
}

/// The sums of a pod's containers' memory and CPU limits (a container
/// without one counts as 0), and its fixed host ports, sorted and each
/// once.
fn limits_and_ports(pod: &Pod) -> (u64, u64, Vec<FixedPort>) {
    let mut memory_bytes = 0u64;
    let mut cpu_millis = 0u64;
    let mut host_ports = Vec::new();
    for container in &pod.containers {
        memory_bytes = memory_bytes.saturating_add(container.resources.memory_bytes.unwrap_or(0));
        cpu_millis =
            cpu_millis.saturating_add(u64::from(container.resources.cpu_millis.unwrap_or(0)));
        host_ports.extend(
            container
                .ports
                .iter()
                .filter_map(|port| match port.host_port {
                    Some(0) | None => None,
                    Some(number) => Some(FixedPort {
                        protocol: port.protocol,
                        port: number,
                    }),
                }),
        );
    }
    // Validation already rejects duplicates; deduplicating anyway keeps
    // assign and unassign symmetric for a pod that slipped past it.
    host_ports.sort_unstable();
    host_ports.dedup();
    (memory_bytes, cpu_millis, host_ports)
}

/// Adds the host ports a placed pod's node reported allocating for it
/// (published as "any free port"): a pod that wants one of them fixed
/// cannot go to that node.
fn add_allocated_ports(pod: &ClusterPod, host_ports: &mut Vec<FixedPort>) {
    let Some(status) = pod.status.as_ref().filter(|_| pod.node.is_some()) else {
        return;
    };
    let before = host_ports.len();
    host_ports.extend(
        status
            .containers
            .iter()
            .flat_map(|c| &c.host_ports)
            .filter(|p| p.host_port != 0)
            .map(|p| FixedPort {
                protocol: p.protocol,
                port: p.host_port,
            }),
    );
    if host_ports.len() > before {
        host_ports.sort_unstable();
        host_ports.dedup();
    }
}

impl PodRequest {
    /// The request of a bare pod: no service, no node selector.
    pub fn from_pod(pod: &Pod) -> Self {
        let (memory_bytes, cpu_millis, host_ports) = limits_and_ports(pod);
        Self {
            memory_bytes,
            cpu_millis,
            host_ports,
            service: None,
            node_selector: BTreeMap::new(),
            avoid_nodes: Vec::new(),
            volume_classes: berth_model::pod::volume_classes(pod),
        }
    }

    /// The request of a pod the master manages. The node selector lives on
    /// the service, not the pod, so the owning service is passed in when
    /// there is one; `pod.service` names the service the replicas are
    /// spread for.
    ///
    /// A placed pod also holds the host ports its node reported allocating
    /// for it (published as "any free port"): a pod that wants one of them
    /// fixed cannot go to that node.
    pub fn from_cluster_pod(pod: &ClusterPod, service: Option<&Service>) -> Self {
        let mut request = Self::from_pod(&pod.spec);
        add_allocated_ports(pod, &mut request.host_ports);
        request.service.clone_from(&pod.service);
        if let Some(service) = service {
            request.node_selector.clone_from(&service.node_selector);
        }
        request
    }

    /// What a pod with this request holds of the node it is placed on.
    pub fn held(&self) -> Held<'_> {
        Held {
            memory_bytes: self.memory_bytes,
            cpu_millis: self.cpu_millis,
            host_ports: self.host_ports.clone(),
            service: self.service.as_deref(),
        }
    }

    /// The same request, owned by `service`.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The same request, restricted to nodes labelled `key=value`.
    pub fn with_node_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }
}
