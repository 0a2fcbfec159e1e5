//! The cluster's objects as the master keeps them: nodes, services and the
//! pods it assigns to nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::link::{EgressPolicy, Link};
use crate::pod::{EnvVar, Pod};
use crate::status::PodStatus;

/// What a node offers to pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// CPU in thousandths of a CPU.
    pub cpu_millis: u64,
}

/// A host running berth-agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's name (its hostname), a DNS-1123 label.
    pub name: String,
    /// Address other hosts reach it on: an IPv4 or IPv6 address or a DNS
    /// name ([`crate::validate_node_address`]), used by no other node.
    pub address: String,
    /// Labels pods can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: Capacity,
    /// Cordoned: no new pods are placed on it.
    #[serde(default)]
    pub unschedulable: bool,
}

/// A node's liveness as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum NodeCondition {
    /// Heartbeats arrive.
    Ready,
    /// No heartbeat within the grace period.
    NotReady,
    /// Heartbeats arrive, but the node's container engine (Docker) does not
    /// answer, e.g. while it restarts. The node is alive: its pods are not
    /// evicted, but nothing new is placed on it until the engine is back.
    EngineUnavailable,
}

/// A replicated pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// The service's name, a DNS-1123 label; its pods are `<name>-<n>`.
    pub name: String,
    /// How many pods should run.
    pub replicas: u32,
    /// Never moved automatically: `berth move` moves its pods explicitly.
    #[serde(default)]
    pub stateful: bool,
    /// Nodes must carry these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The pod every replica runs; its `name` is replaced per replica.
    pub template: Pod,
    /// Variables for every container of its pods; a container's own
    /// value of the same name wins, and these win over link variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Services its pods reach on 127.0.0.1 (see [`Link`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// What its pods may reach besides their links.
    #[serde(default, skip_serializing_if = "EgressPolicy::is_open")]
    pub egress: EgressPolicy,
    /// Values handed to the services that link to this one, as
    /// `<SERVICE>_<NAME>` (secret: a password, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<EnvVar>,
}

/// A pod the master manages: its spec, where it is placed and what the
/// node last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPod {
    /// The pod's spec (its name is the pod's name).
    pub spec: Pod,
    /// The service that owns it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The node it is assigned to; `None` while unschedulable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it could not be placed, while it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_reason: Option<String>,
    /// The node's last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
    /// Its service's links, which the node wires into the pod's network
    /// namespace (kept here so that changing them never changes the spec,
    /// and so never restarts the pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Its service's outbound policy.
    #[serde(default, skip_serializing_if = "EgressPolicy::is_open")]
    pub egress: EgressPolicy,
    /// Nodes where it could not start for a cause of the node's own (a
    /// host port held by a process there), each with when it may be tried
    /// there again (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub start_failed_on: BTreeMap<String, u64>,
}
