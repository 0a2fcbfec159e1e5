//! Moving a stateful pod with its data: the move's record on the pod (its
//! phase and progress, kept in the master's store so that a restarted
//! master or agent resumes it), what each of the two nodes is told to do,
//! and what the source node reports back.
//!
//! The phases, in order: `Stopping` (the source stops the pod, keeping its
//! volumes), `Copying` (the source streams each named volume to the
//! target's agent), `Starting` (the copy is verified: the pod is bound to
//! the target), `CleaningSource` (it runs there: the source removes its
//! copy). A move that cannot copy is failed back: the pod stays on its
//! source with its data, and the record goes away.

use serde::{Deserialize, Serialize};

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MovePhase {
    /// The source node stops the pod and keeps its volumes.
    Stopping,
    /// The source node streams the volumes to the target.
    Copying,
    /// The copy is verified; the target starts the pod.
    Starting,
    /// The pod runs on the target; the source removes its copy.
    CleaningSource,
}

impl MovePhase {
    /// Whether the pod is bound to the source still (it runs nowhere).
    pub fn before_copy_verified(self) -> bool {
        matches!(self, MovePhase::Stopping | MovePhase::Copying)
    }
}

impl std::fmt::Display for MovePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MovePhase::Stopping => "Stopping",
            MovePhase::Copying => "Copying",
            MovePhase::Starting => "Starting",
            MovePhase::CleaningSource => "CleaningSource",
        })
    }
}

/// A pod's move in progress, kept on the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMove {
    /// The node the pod leaves.
    pub from: String,
    /// The node it goes to.
    pub to: String,
    /// Where the source reaches the target's agent (its node address).
    pub to_address: String,
    /// Where the move is.
    pub phase: MovePhase,
    /// Keep the source's copy once the pod runs on the target.
    #[serde(default)]
    pub keep_source: bool,
    /// When the move was asked for (Unix milliseconds).
    pub started_ms: u64,
    /// When the record last changed (Unix milliseconds): a copy with no
    /// news for too long is failed back.
    pub updated_ms: u64,
    /// Bytes of the volumes' tar streams sent so far (this attempt).
    #[serde(default)]
    pub bytes_copied: u64,
    /// The copy's rate at the last report, bytes per second.
    #[serde(default)]
    pub rate_bytes_per_sec: u64,
    /// Copy attempts started.
    #[serde(default)]
    pub attempts: u32,
    /// The verified copy's SHA-256 (of the volumes' tar streams, computed
    /// on both ends), once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The last attempt's failure, while it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Which end of a move a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveRole {
    /// It sends the volumes (and later removes its copy).
    Source,
    /// It receives them.
    Target,
}

/// What a node is told about one move, in its assignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveOrder {
    /// The pod (its qualified name).
    pub pod: String,
    /// Its named volumes (the pod's volume names, not Docker's); network
    /// volumes are not copied, their nodes mount them.
    pub volumes: Vec<String>,
    /// The volume class of each classed volume: the target makes it in
    /// its directory of that class.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub classes: std::collections::BTreeMap<String, String>,
    /// This node's end.
    pub role: MoveRole,
    /// The source node's name (the client certificate the target accepts).
    pub from: String,
    /// The target node's name (the server certificate the source accepts).
    pub to: String,
    /// The target's address.
    pub to_address: String,
    /// Where the move is.
    pub phase: MovePhase,
    /// Keep the source's copy.
    pub keep_source: bool,
}

impl MoveOrder {
    /// What `node` is told about `pod`'s move, if it is one of its ends.
    pub fn for_node(pod: &crate::ClusterPod, node: &str) -> Option<MoveOrder> {
        let moving = pod.moving.as_ref()?;
        let role = if moving.from == node {
            MoveRole::Source
        } else if moving.to == node {
            MoveRole::Target
        } else {
            return None;
        };
        Some(MoveOrder {
            pod: pod.spec.name.clone(),
            volumes: pod
                .spec
                .volumes
                .iter()
                .filter(|v| v.is_named())
                .map(|v| v.name.clone())
                .collect(),
            classes: pod
                .spec
                .volumes
                .iter()
                .filter_map(|v| Some((v.name.clone(), v.class.clone()?)))
                .collect(),
            role,
            from: moving.from.clone(),
            to: moving.to.clone(),
            to_address: moving.to_address.clone(),
            phase: moving.phase,
            keep_source: moving.keep_source,
        })
    }
}

/// `POST /v1/pods/{name}/move/report` (the source node): how the move went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, tag = "state")]
pub enum MoveReport {
    /// The copy goes on: bytes sent so far in this attempt, and the rate.
    Copying {
        /// Bytes sent so far.
        bytes_copied: u64,
        /// Bytes per second over the attempt.
        rate_bytes_per_sec: u64,
        /// Which attempt (the source counts them).
        attempt: u32,
    },
    /// Every volume arrived and both ends computed the same checksum.
    Copied {
        /// Bytes sent.
        bytes_copied: u64,
        /// Bytes per second over the attempt.
        rate_bytes_per_sec: u64,
        /// `sha256:<hex>` of the volume's tar stream, as both ends saw it
        /// (`NAME=sha256:<hex>, ...` for several volumes).
        checksum: String,
    },
    /// An attempt failed; the source tries again.
    Failed {
        /// Why.
        error: String,
    },
    /// The source removed (or, with `keepSource`, kept) its copy.
    Cleaned,
}

/// `POST /v1/nodes/{name}/certificate` (the node itself): a certificate
/// from the cluster's CA naming the node, for its agent's volume transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertificate {
    /// The certificate (PEM), for the node's name and address.
    pub certificate_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// The CA certificate (PEM) the other nodes' certificates chain to.
    pub ca_pem: String,
}
