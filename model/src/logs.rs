//! Container log lines on their way from a node's journal to the master and
//! from the master to `berth logs`.

use serde::{Deserialize, Serialize};

/// Largest body of a `POST /v1/nodes/{name}/logs` batch; larger than other
/// requests because a node catching up ships thousands of lines at once.
pub const MAX_LOG_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most lines an agent puts in one batch.
pub const MAX_LOG_BATCH_LINES: usize = 10_000;

/// One journal entry of a container unit, as a node ships it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippedLine {
    /// The journal's sequence-number ID (`s=` of the cursor): with `seqnum`
    /// it names the entry uniquely on its node, which makes ingest
    /// idempotent.
    pub seqnum_id: String,
    /// The entry's sequence number (`i=` of the cursor).
    pub seqnum: u64,
    /// When journald received it, microseconds since the Unix epoch.
    pub time_us: u64,
    /// syslog priority, 0 (emerg) to 7 (debug).
    pub priority: u8,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The line, without its newline.
    pub message: String,
}

/// `POST /v1/nodes/{name}/logs`: lines in journal order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatch {
    /// The lines.
    pub lines: Vec<ShippedLine>,
}

/// The master's answer to a batch, sent only once the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatchAck {
    /// Lines stored now.
    pub stored: u64,
    /// Lines the master already had (a batch sent again after a lost ack).
    pub duplicates: u64,
}

/// A stored line as `GET /v1/logs` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The master's ID of the line: ascending in the order lines arrived.
    pub id: u64,
    /// When journald received it, microseconds since the Unix epoch.
    pub time_us: u64,
    /// The node.
    pub node: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// syslog priority.
    pub priority: u8,
    /// The line as the container printed it (not escaped).
    pub message: String,
}

/// One answer of `GET /v1/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// Lines in time order.
    pub lines: Vec<LogLine>,
    /// Pass as `from` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The highest line ID stored when this page was read: pass it as
    /// `newer-than` to follow what arrives after it.
    pub last_id: u64,
}
