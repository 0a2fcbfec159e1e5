//! Request and response bodies of the master's API that are not objects of
//! their own: joining, heartbeats, node views, scaling, moving.

use serde::{Deserialize, Serialize};

use crate::cluster::{Capacity, ClusterPod, Node, NodeCondition};
use crate::status::PodStatus;

/// `POST /v1/join`: an agent trades a one-time join token for its own
/// node credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The one-time token the operator got from `berth node token`.
    pub token: String,
    /// The node as it describes itself.
    pub node: Node,
    /// The node rejoins under a name the cluster already knows (its
    /// credential was lost): its running pods are its own again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_name: bool,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The node's name in the cluster.
    pub node: String,
    /// The node's own credential: it may read its assignments and write its
    /// status, nothing else.
    pub credential: String,
}

/// `POST /v1/join-tokens` body (optional): what the token may register.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// A registered node the token re-registers (`berth node rejoin`): it
    /// may join under this name only, and its join replaces the node's
    /// credential, keeping the node and its pods. Without it, the token
    /// registers a new node only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /v1/join-tokens`: a new one-time join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    /// The token (shown once; the master keeps only its hash).
    pub token: String,
    /// Unix time in seconds after which it is refused.
    pub expires_at: u64,
    /// The exact command to run on a new host.
    pub command: String,
    /// The registered node the token re-registers, if it is bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `PUT /v1/nodes/{name}/heartbeat`: a node is alive, with what it offers
/// and how its pods are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Current capacity.
    pub capacity: Capacity,
    /// The pods the master assigned to it, as they are: those whose
    /// status changed since the last heartbeat the master answered, and
    /// every ~10 s all of them. A pod left out is unchanged.
    #[serde(default)]
    pub pods: Vec<PodStatus>,
    /// What the node has left; absent until its first metrics sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::metrics::NodeUsage>,
    /// The latest resource sample of each of its pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<crate::metrics::PodMetrics>,
    /// `metrics` is left out: the pods' figures are those of the last
    /// heartbeat the master answered (a node samples every ~10 s, and
    /// beats every second).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_unchanged: bool,
    /// Why the node's container engine did not answer the agent's last
    /// look, if it did not (`pods` is then the status last known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_unavailable: Option<String>,
    /// The agent's unit settings, recorded on its node; absent from an
    /// agent older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_settings: Option<crate::cluster::UnitSettings>,
    /// The agent's volume classes, class to directory, recorded on its
    /// node.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub volume_classes: std::collections::BTreeMap<String, String>,
}

/// The master's answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// The reported pods whose status the master did not record: not (or
    /// not yet) assigned to the node as reported, or the write failed. The
    /// node reports them again in its next heartbeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unrecorded: Vec<String>,
}

/// A node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node.
    pub node: Node,
    /// Ready or NotReady.
    pub condition: NodeCondition,
    /// Milliseconds since its last heartbeat, if it ever sent one.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Why its container engine does not answer (condition
    /// `EngineUnavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_error: Option<String>,
    /// Pods assigned to it.
    pub pods: u32,
}

/// A master as `GET /v1/masters` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterView {
    /// The master's name (its host name).
    pub name: String,
    /// The URL its API is reached at.
    pub url: String,
    /// Whether it is up: it keeps its lease in the store renewed.
    pub healthy: bool,
    /// Whether it leads: it runs the controllers.
    pub leader: bool,
}

/// The pods assigned to one node, with the store revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignments {
    /// Store revision of this view; pass it back as `after` to wait for a
    /// change.
    pub revision: u64,
    /// The pods.
    pub pods: Vec<ClusterPod>,
    /// The moves with data this node is an end of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<crate::MoveOrder>,
}

/// `POST /v1/services/{name}/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scale {
    /// The new replica count.
    pub replicas: u32,
}

/// `POST /v1/pods/{name}/move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Move {
    /// The node to move the pod to.
    pub to: String,
    /// Keep the source node's copy of the pod's named volumes once it runs
    /// on the new node. Left out when false, for masters from before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_source: bool,
}

/// An object with the store revision it was read at, for optimistic
/// concurrency: an update must send the revision it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versioned<T> {
    /// The revision of the object's last change.
    pub resource_version: u64,
    /// The object.
    #[serde(flatten)]
    pub object: T,
}

impl<T> Versioned<T> {
    /// The same revision with the object passed through `f` (to redact it,
    /// say).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            resource_version: self.resource_version,
            object: f(self.object),
        }
    }
}

/// `POST /v1/nodes/{name}/events`: events a node observed, in the order it
/// observed them. Sending the same batch again is harmless: the master
/// keeps one event per `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBatch {
    /// The events.
    pub events: Vec<ReportedEvent>,
}

/// One event a node observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportedEvent {
    /// Unique on the node and stable across retries (the agent uses the
    /// journal entry's sequence number): `[A-Za-z0-9_-]`, at most 64
    /// characters.
    pub id: String,
    /// The event; its `node` is set by the master to the reporting node.
    pub event: crate::event::Event,
}

/// Longest [`ReportedEvent::id`].
pub const MAX_REPORTED_EVENT_ID_LEN: usize = 64;

/// Most events in one [`EventBatch`].
pub const MAX_EVENT_BATCH: usize = 1000;

/// `GET /v1/usage`: what a project's images take, counted as its quotas
/// count them (its pods, CPU and memory are its services' to sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUsage {
    /// Its image streams.
    pub image_streams: u64,
    /// The bytes its repositories hold in the integrated registry, each
    /// blob once.
    pub image_bytes: u64,
}
