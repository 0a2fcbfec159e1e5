//! Cluster state behind one trait. The embedded store is the default and
//! needs nothing installed; the etcd backend implements the same trait for
//! users who outgrow one master. Both give every key a revision, update with
//! compare-and-swap on it, and offer watches that resume from a revision
//! without gaps, so several masters could later share one etcd.
//!
//! Values are opaque bytes (JSON of the API objects); keys are paths such
//! as `/pods/web-1`. Revisions are store-wide and strictly increasing: every
//! committed change gets the next one, like etcd's `mod_revision`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use serde::Deserialize;

pub mod embedded;
pub mod etcd;
pub mod remembering;
pub mod timed;

/// One key with its value and the revision of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the change that wrote this value.
    pub revision: u64,
}

/// What happened to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated; the entry holds the new value.
    Put,
    /// Deleted; the entry holds the last value.
    Delete,
}

/// One change, as watches deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key, the value (new, or last before deletion) and the revision of
    /// this change.
    pub entry: Entry,
}

/// A condition and a write, applied atomically with others in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create `key`; fails the batch if it exists.
    Create {
        /// The key.
        key: String,
        /// Its value.
        value: Vec<u8>,
    },
    /// Replace `key` if its revision is `expected` (optimistic concurrency).
    Update {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The revision the writer read.
        expected: u64,
    },
    /// Delete `key`, if its revision is `expected` when given.
    Delete {
        /// The key.
        key: String,
        /// The revision the writer read, or `None` for unconditional.
        expected: Option<u64>,
    },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `Create` of a key that exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The key does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The key changed since the writer read it.
    #[error("{key} was modified: expected revision {expected}, found {found}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the writer expected.
        expected: u64,
        /// The revision the store has.
        found: u64,
    },
    /// A watch asked for history that was compacted away.
    #[error("revision {requested} is compacted; the oldest available is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still kept.
        oldest: u64,
    },
    /// The backend failed (disk, network, etcd).
    #[error("store backend: {0}")]
    Backend(String),
    /// A leader's fenced write: this master no longer leads (its lease was
    /// not renewed in time, or another master won the election since), so
    /// nothing was written.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

/// A stream of changes, in revision order, without gaps.
pub type Watch = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// A boxed future, so the trait stays object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The cluster's state.
///
/// Every write is durable before its future resolves: a write that was
/// acknowledged survives a crash of the master (and of the machine).
pub trait Store: Send + Sync + 'static {
    /// The entry at `key`.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>>;

    /// Every entry whose key starts with `prefix`, in key order, and the
    /// store's revision at the time of reading (to start a watch from).
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)>;

    /// Applies `ops` atomically: all or none. Returns the revision of the
    /// commit (every write in it gets that revision).
    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64>;

    /// Changes to keys under `prefix` with a revision greater than `after`,
    /// first from history, then live, with no gap and no duplicate.
    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch>;

    /// The latest committed revision.
    fn revision(&self) -> StoreFuture<'_, u64>;
}

/// Opens the store `config` names: the embedded store at
/// `<state-dir>/store.db`, or a connection to etcd (which fails unless
/// etcd answers).
pub async fn open_store(
    config: &StoreConfig,
    state_dir: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    match config.backend {
        StoreBackend::Embedded => {
            let path = state_dir.join("store.db");
            // Opening creates files and runs SQLite: blocking work, kept
            // off the async executor.
            let store = tokio::task::spawn_blocking(move || embedded::EmbeddedStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("open the embedded store: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreBackend::Etcd => {
            let store =
                etcd::EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix).await?;
            Ok(Arc::new(store))
        }
    }
}

/// Shortest leader lease: etcd's minimum TTL with its default timings,
/// rounded up.
pub const MIN_LEADER_LEASE_SECS: u64 = 2;
/// Longest leader lease: a failover takes about this long.
pub const MAX_LEADER_LEASE_SECS: u64 = 60;

/// The `[store]` table: which backend keeps the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (SQLite in `<state-dir>/store.db`) or `etcd`.
    pub backend: StoreBackend,
    /// etcd client URLs, such as `http://127.0.0.1:2379`; used by the etcd
    /// backend.
    pub etcd_endpoints: Vec<String>,
    /// The etcd key prefix every key of this cluster is stored under, so
    /// several clusters can share one etcd.
    pub etcd_prefix: String,
    /// Seconds of the etcd lease behind the leader election (etcd
    /// backend): a leader whose master stops renewing it loses the lead
    /// within this time, and stops acting before it ends.
    pub leader_lease_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_prefix: "/berth".into(),
            leader_lease_secs: 3,
        }
    }
}

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// One SQLite file in the state directory: nothing else to run.
    #[default]
    Embedded,
    /// An etcd v3 cluster.
    Etcd,
}

impl StoreConfig {
    /// What is wrong with the settings, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        // Checked whatever the backend, so a typo shows up before the day
        // someone switches to etcd.
        if !self.etcd_prefix.starts_with('/') {
            return Err(format!(
                "store.etcd-prefix: must be an absolute path, got {:?}",
                self.etcd_prefix
            ));
        }
        for endpoint in &self.etcd_endpoints {
            // TLS to etcd is not built in yet; an https URL would fail at
            // connect time with a less clear message.
            let host = endpoint.strip_prefix("http://").unwrap_or_default();
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!(
                    "store.etcd-endpoints: {endpoint:?} is not an http:// URL with a host"
                ));
            }
        }
        // etcd refuses leases shorter than its own election allows (about
        // 1.5 s with its default timings); a long one makes failover slow.
        if !(MIN_LEADER_LEASE_SECS..=MAX_LEADER_LEASE_SECS).contains(&self.leader_lease_secs) {
            return Err(format!(
                "store.leader-lease-secs: must be between {MIN_LEADER_LEASE_SECS} and {MAX_LEADER_LEASE_SECS}, got {}",
                self.leader_lease_secs
            ));
        }
        if self.backend == StoreBackend::Etcd && self.etcd_endpoints.is_empty() {
            return Err(
                "store.etcd-endpoints: the etcd backend needs at least one endpoint".into(),
            );
        }
        Ok(())
    }
}
