//! The etcd backend: the same [`Store`] contract on an etcd v3 cluster, for
//! users who outgrow one master or already run etcd.
//!
//! The trait maps onto etcd without translation layers: an entry's revision
//! is etcd's `mod_revision`, the store revision is the header revision of
//! etcd's responses, a batch is one etcd transaction, and a watch is an etcd
//! watch. Every key lives under a configured prefix (such as `/berth`), so
//! several clusters can share one etcd; they then share its revision counter
//! too, so a cluster sees its revision jump past other clusters' writes.
//!
//! Limits that come from etcd: a batch can hold at most etcd's
//! `--max-txn-ops` operations and `--max-request-bytes` bytes; a bigger
//! batch fails with a [`StoreError::Backend`] that names the setting. The
//! defaults (128 operations, 1.5 MiB) are tight for berth, whose batches
//! can be larger: run etcd with `--max-txn-ops=1024`, as the tests do.
//! History is kept until etcd compacts it; a watch from before that gets
//! [`StoreError::Compacted`].

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, KvClient,
    LeaseClient, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse, WatchStream,
};
use futures_util::stream;
use tokio::time::Instant;

use super::{Entry, Event, EventKind, Op, Store, StoreError, StoreFuture, Watch};

pub mod election;

use self::election::Fence;

/// How long a request may take before the store gives up on it. etcd
/// itself fails a proposal that cannot commit after a few seconds; this
/// bounds the cases it cannot report, such as an unreachable endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long opening a TCP connection to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on open connections, so that a connection to a member cut
/// off by a partition (no reset, just silence) is dropped within a lease
/// and the channel stops sending requests to it: with 5 s pings the
/// masters' campaigns hung on the cut-off member and a partitioned leader
/// was replaced after 10 s instead of about a lease. etcd refuses clients
/// that ping more often than its `--grpc-keepalive-min-time` (5 s by
/// default) unless their streams are busy, which a master's are (watches,
/// lease renewals); set that flag to 1 s all the same (the lab does).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection counts as dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response accepted. etcd sends a revision's events in one watch
/// response however large, and a list page can hold large values; the
/// client's 4 MiB default would turn those into errors. A limit, not an
/// allocation.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Entries per request of a `list`; pages keep each response small, and
/// all pages read the same revision, so the list is one snapshot.
const LIST_PAGE: i64 = 512;
/// Snapshots a `list` tries before it reports that compaction keeps
/// overtaking it.
const LIST_ATTEMPTS: u32 = 3;
/// First and longest pause before re-opening a broken watch.
const RESUME_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How long a watch keeps trying to re-open before it reports the failure
/// and ends: long enough to ride out an etcd restart or a leader election,
/// short enough that a consumer learns of a lasting outage and can act.
const RESUME_PATIENCE: Duration = Duration::from_secs(30);

/// A [`Store`] on etcd v3.
///
/// Built on the `etcd-client` crate: it is maintained, async on tokio like
/// the rest of the master, and exposes the whole v3 API this backend needs
/// (KV with revisions, multi-key `Txn` with compares, and streaming `Watch`
/// with `start_revision` and `prev_kv`), over one HTTP/2 channel balanced
/// across the endpoints.
///
/// Store keys must start with `/` (they are paths such as `/pods/web-1`);
/// the key `/pods/web-1` under the prefix `/berth` is the etcd key
/// `/berth/pods/web-1`, so `etcdctl get --prefix /berth/` shows the
/// cluster's state as it is.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    /// For the leader election's lease.
    lease: LeaseClient,
    endpoints: Vec<String>,
    /// The prefix without its trailing `/`: every store key (which starts
    /// with `/`) is appended to it, and every range starts with
    /// `root + "/"`, so `/berth` never sees the keys of `/berth2`.
    root: String,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (URLs such as
    /// `http://127.0.0.1:2379`) and keeps every key under `prefix`, which
    /// must start with `/`. Fails unless etcd answers a read, so a master
    /// pointed at a wrong or dead etcd stops at start rather than later.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(backend("etcd: no endpoints given".into()));
        }
        if !prefix.starts_with('/') {
            return Err(backend(format!(
                "etcd prefix {prefix:?} must be an absolute path"
            )));
        }
        let shown = endpoints.join(", ");
        // require_leader: without a leader etcd cannot serve a consistent
        // watch; with this flag it ends the stream, and the watch resumes
        // once a leader is back instead of hanging on a minority member.
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_require_leader(true);
        let client = timed(|| Client::connect(endpoints, Some(options.clone())))
            .await
            .map_err(|e| context(e, &format!("connect to etcd at {shown}")))?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            lease: client.lease_client(),
            endpoints: endpoints.to_vec(),
            root: prefix.trim_end_matches('/').to_owned(),
        };
        // The channel connects lazily; a first read proves etcd is there.
        store
            .current_revision()
            .await
            .map_err(|e| context(e, &format!("etcd at {shown} does not answer")))?;
        Ok(store)
    }

    /// The prefix every key is stored under, without a trailing `/`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The etcd key of a store key.
    fn etcd_key(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        if !key.starts_with('/') {
            return Err(backend(format!(
                "key {key:?} must start with / to be stored in etcd"
            )));
        }
        Ok(format!("{}{key}", self.root).into_bytes())
    }

    /// The etcd key range `[start, end)` of a store prefix.
    fn etcd_range(&self, prefix: &str) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        // The empty prefix means every key of this cluster, which all
        // start with `/`.
        let start = self.etcd_key(if prefix.is_empty() { "/" } else { prefix })?;
        let end = prefix_end(&start);
        Ok((start, end))
    }

    /// The store entry of an etcd key-value.
    fn entry(&self, kv: KeyValue) -> Result<Entry, StoreError> {
        let at = revision(kv.mod_revision())?;
        let (key, value) = kv.into_key_value();
        Ok(Entry {
            key: self.store_key(&key)?,
            value,
            revision: at,
        })
    }

    /// The store key of an etcd key under the root.
    fn store_key(&self, etcd_key: &[u8]) -> Result<String, StoreError> {
        etcd_key
            .strip_prefix(self.root.as_bytes())
            .and_then(|key| String::from_utf8(key.to_vec()).ok())
            .ok_or_else(|| {
                backend(format!(
                    "etcd returned key {:?}, which is not a store key under {:?}",
                    String::from_utf8_lossy(etcd_key),
                    self.root
                ))
            })
    }

    /// etcd's current revision: the header of a linearizable read, so it
    /// is never older than a write this store already acknowledged.
    async fn current_revision(&self) -> Result<u64, StoreError> {
        let options = GetOptions::new().with_count_only();
        let response = timed(|| {
            let mut kv = self.kv.clone();
            let root = self.root.as_bytes().to_vec();
            let options = options.clone();
            async move { kv.get(root, Some(options)).await }
        })
        .await?;
        header_revision(response.header())
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let etcd_key = self.etcd_key(key)?;
        let mut response = timed(|| {
            let mut kv = self.kv.clone();
            let etcd_key = etcd_key.clone();
            async move { kv.get(etcd_key, None).await }
        })
        .await?;
        response
            .take_kvs()
            .into_iter()
            .next()
            .map(|found| self.entry(found))
            .transpose()
    }

    async fn list_entries(&self, prefix: &str) -> Result<(Vec<Entry>, u64), StoreError> {
        let mut attempt = 1;
        loop {
            match self.list_snapshot(prefix).await {
                // etcd compacted the snapshot away between two pages: a
                // newer snapshot is as good, and a few tries get one.
                Err(StoreError::Backend(message))
                    if attempt < LIST_ATTEMPTS
                        && message.contains("revision has been compacted") =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// All entries under `prefix` at one revision, read a page at a time.
    async fn list_snapshot(&self, prefix: &str) -> Result<(Vec<Entry>, u64), StoreError> {
        let (mut from, end) = self.etcd_range(prefix)?;
        let kv = &self.kv;
        let mut entries = Vec::new();
        // Set by the first page; later pages read at it, so the whole list
        // is one snapshot even when writes land between the pages.
        let mut snapshot: Option<i64> = None;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if let Some(at) = snapshot {
                options = options.with_revision(at);
            }
            let mut response = timed(|| {
                let mut kv = kv.clone();
                let (from, options) = (from.clone(), options.clone());
                async move { kv.get(from, Some(options)).await }
            })
            .await?;
            if snapshot.is_none() {
                let header = response
                    .header()
                    .ok_or_else(|| backend("etcd response without a header".into()))?;
                snapshot = Some(header.revision());
            }
            let more = response.more();
            let page = response.take_kvs();
            if let Some(last) = page.last() {
                // The next page starts right after the last key read.
                from = last.key().to_vec();
                from.push(0);
            }
            for found in page {
                entries.push(self.entry(found)?);
            }
            if !more {
                break;
            }
        }
        let at = snapshot.ok_or_else(|| backend("etcd list read no page".into()))?;
        Ok((entries, revision(at)?))
    }

    /// Applies `ops` in one transaction; with a `fence`, only while it
    /// holds: this master still acts as leader, and etcd still has the
    /// election key it won with.
    async fn apply_ops(&self, ops: Vec<Op>, fence: Option<&Fence>) -> Result<u64, StoreError> {
        if let Some(fence) = fence {
            fence.check()?;
        }
        if ops.is_empty() {
            return self.current_revision().await;
        }
        let mut seen = HashSet::with_capacity(ops.len());
        let mut compares = Vec::with_capacity(ops.len());
        let mut writes = Vec::with_capacity(ops.len());
        let mut reads = Vec::with_capacity(ops.len());
        for op in &ops {
            let key = op_key(op);
            // etcd refuses a transaction that writes a key twice; say so
            // in the store's words, as the embedded store does.
            if !seen.insert(key) {
                return Err(backend(format!("batch names {key} more than once")));
            }
            let etcd_key = self.etcd_key(key)?;
            match op {
                Op::Create { value, .. } => {
                    compares.push(Compare::create_revision(
                        etcd_key.clone(),
                        CompareOp::Equal,
                        0,
                    ));
                    writes.push(TxnOp::put(etcd_key.clone(), value.clone(), None));
                }
                Op::Update {
                    value, expected, ..
                } => {
                    compares.extend(revision_is(&etcd_key, *expected));
                    writes.push(TxnOp::put(etcd_key.clone(), value.clone(), None));
                }
                Op::Delete { expected, .. } => {
                    match expected {
                        Some(expected) => compares.extend(revision_is(&etcd_key, *expected)),
                        // Deleting a missing key is an error, as in the
                        // embedded store; etcd alone would count 0 deleted.
                        None => {
                            compares.push(Compare::version(etcd_key.clone(), CompareOp::Greater, 0))
                        }
                    }
                    writes.push(TxnOp::delete(etcd_key.clone(), None));
                }
            }
            // When a compare fails, these reads run in the same transaction,
            // so the error names the state that made it fail, not a later
            // one.
            reads.push(TxnOp::get(
                etcd_key,
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        if let Some(fence) = fence {
            // Same transaction as the writes: a leader deposed after its
            // last local check still cannot commit.
            compares.push(fence.compare());
            reads.push(TxnOp::get(
                fence.key().to_vec(),
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let response = timed(|| {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| over_limit(e, ops.len()))?;
        if response.succeeded() {
            return header_revision(response.header());
        }
        let mut responses = response.op_responses();
        if let Some(fence) = fence {
            let held = match responses.pop() {
                Some(TxnOpResponse::Get(get)) => get.kvs().first().map(KeyValue::create_revision),
                _ => return Err(backend("etcd answered a read with a write".into())),
            };
            fence.verify(held)?;
        }
        let found = responses
            .into_iter()
            .map(|read| match read {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| revision(kv.mod_revision()))
                    .transpose(),
                _ => Err(backend("etcd answered a read with a write".into())),
            })
            .collect::<Result<Vec<Option<u64>>, StoreError>>()?;
        if found.len() != ops.len() {
            return Err(backend(format!(
                "etcd answered {} reads for {} operations",
                found.len(),
                ops.len()
            )));
        }
        // The first op whose condition fails, as the embedded store
        // reports it.
        for (op, found) in ops.into_iter().zip(found) {
            if let Some(e) = failed_condition(op, found) {
                return Err(e);
            }
        }
        Err(backend(
            "etcd refused the transaction, yet every condition holds".into(),
        ))
    }

    async fn open_watch(&self, prefix: &str, after: u64) -> Result<Watch, StoreError> {
        let (start, end) = self.etcd_range(prefix)?;
        let mut state = WatchState {
            store: self.clone(),
            start,
            end,
            stream: None,
            covered: after,
            pending: VecDeque::new(),
            failing_since: None,
            backoff: RESUME_BACKOFF.0,
            done: false,
        };
        // Opened here, not on the first poll, so an unreachable etcd is an
        // error of `watch` itself.
        state.stream = Some(state.open().await?);
        let watch: Watch = Box::pin(stream::unfold(state, WatchState::next));
        Ok(watch)
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(self.get_entry(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        Box::pin(self.list_entries(prefix))
    }

    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64> {
        // Dropping this future (or a timeout) does not withdraw a
        // transaction already sent: it may still commit, as with any etcd
        // client.
        Box::pin(self.apply_ops(ops, None))
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        Box::pin(self.open_watch(prefix, after))
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.current_revision())
    }
}

/// A watch's progress over one etcd watch stream, re-opened when it breaks.
struct WatchState {
    /// For its watch client and key mapping; a clone shares the connection.
    store: EtcdStore,
    start: Vec<u8>,
    end: Vec<u8>,
    stream: Option<WatchStream>,
    /// Every event up to this revision has been received (and queued or
    /// delivered). etcd sends a revision's events in one response, so this
    /// only ever stands between whole revisions, and a re-opened stream
    /// starts right after it: no gap, no duplicate.
    covered: u64,
    pending: VecDeque<Event>,
    /// When the stream first failed, in the current run of failures.
    failing_since: Option<Instant>,
    backoff: Duration,
    /// An error was yielded; the stream ends.
    done: bool,
}

impl WatchState {
    /// Opens an etcd watch from the revision after `covered`.
    async fn open(&mut self) -> Result<WatchStream, StoreError> {
        let start_revision = i64::try_from(self.covered.saturating_add(1))
            .map_err(|_| backend(format!("revision {} is beyond etcd's range", self.covered)))?;
        let options = WatchOptions::new()
            .with_range(self.end.clone())
            .with_start_revision(start_revision)
            .with_prev_key();
        timed(|| {
            let mut client = self.store.watch.clone();
            let (start, options) = (self.start.clone(), options.clone());
            async move { client.watch(start, Some(options)).await }
        })
        .await
    }

    async fn next(mut self) -> Option<(Result<Event, StoreError>, WatchState)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(stream) => self.stream = Some(stream),
                    Err(e) => {
                        if let Some(e) = self.failed(e).await {
                            return Some((Err(e), self));
                        }
                    }
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(response)) => {
                    if let Err(e) = self.receive(response) {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                // The server closed the stream (a member shutting down):
                // resume on another, or on the same once it is back.
                Ok(None) => {
                    self.stream = None;
                    if let Some(e) = self.failed(backend("etcd ended the watch".into())).await {
                        return Some((Err(e), self));
                    }
                }
                Err(e) => {
                    self.stream = None;
                    if let Some(e) = self.failed(etcd(e)).await {
                        return Some((Err(e), self));
                    }
                }
            }
        }
    }

    /// Queues the events of one response, or says why the watch must end.
    fn receive(&mut self, response: WatchResponse) -> Result<(), StoreError> {
        if response.compact_revision() > 0 {
            return Err(StoreError::Compacted {
                requested: self.covered + 1,
                oldest: revision(response.compact_revision())?,
            });
        }
        if response.canceled() {
            return Err(backend(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            )));
        }
        // A response means the stream works (again).
        self.failing_since = None;
        self.backoff = RESUME_BACKOFF.0;
        // No progress notifications: etcd before 3.4.25 could send one
        // ahead of the events of its revision, and trusting it would skip
        // them. Only events move `covered`.
        // Queued only once the whole response converted, so a watch that
        // fails never delivers part of a revision.
        let mut events = Vec::with_capacity(response.events().len());
        let mut covered = self.covered;
        for event in response.events() {
            let kv = event
                .kv()
                .ok_or_else(|| backend("etcd watch event without a key".into()))?;
            let at = revision(kv.mod_revision())?;
            // Already received before the stream was re-opened.
            if at <= self.covered {
                continue;
            }
            let (kind, value) = match event.event_type() {
                EventType::Put => (EventKind::Put, kv.value().to_vec()),
                EventType::Delete => {
                    let last = event.prev_kv().ok_or_else(|| {
                        backend(format!(
                            "etcd sent the deletion of {:?} at revision {at} without its last value",
                            String::from_utf8_lossy(kv.key())
                        ))
                    })?;
                    (EventKind::Delete, last.value().to_vec())
                }
            };
            events.push(Event {
                kind,
                entry: Entry {
                    key: self.store.store_key(kv.key())?,
                    value,
                    revision: at,
                },
            });
            covered = covered.max(at);
        }
        self.pending.extend(events);
        self.covered = covered;
        Ok(())
    }

    /// Waits before the next attempt to re-open, or gives up with `error`
    /// once the failures have lasted longer than [`RESUME_PATIENCE`].
    async fn failed(&mut self, error: StoreError) -> Option<StoreError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= RESUME_PATIENCE {
            self.done = true;
            return Some(backend(format!(
                "watch could not resume for {RESUME_PATIENCE:?}: {error}"
            )));
        }
        tracing::debug!(error = %error, covered = self.covered, "etcd watch broke; resuming");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(RESUME_BACKOFF.1);
        None
    }
}

/// The compares that hold when the key exists at `expected`.
fn revision_is(etcd_key: &[u8], expected: u64) -> Vec<Compare> {
    match i64::try_from(expected) {
        // A missing key has mod_revision 0, so `== 0` alone would let an
        // update create it; no existing key has revision 0, so require
        // existence and let the update fail as the embedded store does.
        Ok(0) => vec![
            Compare::mod_revision(etcd_key.to_vec(), CompareOp::Equal, 0),
            Compare::version(etcd_key.to_vec(), CompareOp::Greater, 0),
        ],
        Ok(expected) => vec![Compare::mod_revision(
            etcd_key.to_vec(),
            CompareOp::Equal,
            expected,
        )],
        // No etcd revision is this large: a compare that cannot hold.
        Err(_) => vec![Compare::mod_revision(etcd_key.to_vec(), CompareOp::Less, 0)],
    }
}

/// Why `op` fails when its key is at revision `found` (`None`: missing),
/// if it does.
fn failed_condition(op: Op, found: Option<u64>) -> Option<StoreError> {
    match (op, found) {
        (Op::Create { key, .. }, Some(_)) => Some(StoreError::AlreadyExists(key)),
        (Op::Create { .. }, None) => None,
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => Some(StoreError::NotFound(key)),
        (Op::Update { key, expected, .. }, Some(found))
        | (
            Op::Delete {
                key,
                expected: Some(expected),
            },
            Some(found),
        ) if found != expected => Some(StoreError::Conflict {
            key,
            expected,
            found,
        }),
        (Op::Update { .. } | Op::Delete { .. }, Some(_)) => None,
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
    }
}

/// The end of the range of keys that start with `start`: `start` with its
/// last byte incremented. UTF-8 never contains the byte 0xff, so the last
/// byte of a key always has a successor.
fn prefix_end(start: &[u8]) -> Vec<u8> {
    let mut end = start.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only for a prefix of 0xff bytes: etcd's "to the end of the keys".
    vec![0]
}

/// A store revision from an etcd one; etcd's are positive.
fn revision(etcd_revision: i64) -> Result<u64, StoreError> {
    u64::try_from(etcd_revision)
        .map_err(|_| backend(format!("etcd returned revision {etcd_revision}")))
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<u64, StoreError> {
    let header = header.ok_or_else(|| backend("etcd response without a header".into()))?;
    revision(header.revision())
}

/// Runs an etcd request, made by `request` for each try, within
/// [`REQUEST_TIMEOUT`] in all. The client spreads requests over the
/// endpoints, and while a member is cut off each request sent its way
/// fails to connect until the channel drops it. Such a request never
/// reached etcd, so it goes again (to whichever member answers) rather
/// than failing a user's write while a majority serves.
async fn timed<T, F, R>(mut request: R) -> Result<T, StoreError>
where
    R: FnMut() -> F,
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, request()).await {
            Ok(Err(e)) if never_sent(&e) && Instant::now() + UNSENT_RETRY_PAUSE < deadline => {
                tracing::debug!(error = %e, "an etcd request found no connection; sending it again");
                tokio::time::sleep(UNSENT_RETRY_PAUSE).await;
            }
            Ok(result) => return result.map_err(etcd),
            Err(_) => {
                return Err(backend(format!(
                    "etcd did not answer within {REQUEST_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// The pause before a request that found no connection goes again.
const UNSENT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// gRPC's `UNAVAILABLE` status code.
const GRPC_UNAVAILABLE: i32 = 14;

/// Whether `e` says the request never reached a member: the channel's own
/// `UNAVAILABLE` (which carries the transport error as its source; etcd's
/// answers carry none) or a transport error.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() as i32 == GRPC_UNAVAILABLE && std::error::Error::source(status).is_some()
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn etcd(e: etcd_client::Error) -> StoreError {
    let message = match e {
        // tonic's own text is long and generic; the status message and the
        // innermost cause (such as "connection refused") say what happened.
        etcd_client::Error::GRpcStatus(status) => {
            let mut message = format!("etcd: {} ({:?})", status.message(), status.code());
            let mut cause = std::error::Error::source(&status);
            let mut innermost = None;
            while let Some(error) = cause {
                innermost = Some(error);
                cause = error.source();
            }
            if let Some(innermost) = innermost {
                message.push_str(&format!(": {innermost}"));
            }
            message
        }
        other => format!("etcd: {other}"),
    };
    StoreError::Backend(message)
}

/// Names the etcd setting a batch of `ops` operations ran into, if that is
/// why etcd refused it.
fn over_limit(e: StoreError, ops: usize) -> StoreError {
    match e {
        StoreError::Backend(message) if message.contains("too many operations in txn") => {
            backend(format!(
                "a batch of {ops} operations is more than etcd's --max-txn-ops allows \
                 (128 unless raised): {message}"
            ))
        }
        // etcd's own check, and gRPC's, which etcd sets a little above it.
        StoreError::Backend(message)
            if message.contains("request is too large")
                || message.contains("received message larger than max") =>
        {
            backend(format!(
                "a batch of {ops} operations is more than etcd's --max-request-bytes allows \
                 (1.5 MiB unless raised): {message}"
            ))
        }
        other => other,
    }
}

/// A backend error with what was being done in front of it.
fn context(e: StoreError, doing: &str) -> StoreError {
    match e {
        StoreError::Backend(message) => backend(format!("{doing}: {message}")),
        other => other,
    }
}

fn backend(message: String) -> StoreError {
    StoreError::Backend(message)
}

#[cfg(test)]
mod tests {
    use super::{failed_condition, prefix_end};
    use crate::store::{Op, StoreError};

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/berth/pods/"), b"/berth/pods0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn failed_condition_names_the_error_the_embedded_store_gives() {
        let update = |expected| Op::Update {
            key: "/k".into(),
            value: Vec::new(),
            expected,
        };
        let delete = |expected| Op::Delete {
            key: "/k".into(),
            expected,
        };
        let create = Op::Create {
            key: "/k".into(),
            value: Vec::new(),
        };
        assert!(matches!(
            failed_condition(create.clone(), Some(3)),
            Some(StoreError::AlreadyExists(_))
        ));
        assert!(failed_condition(create, None).is_none());
        assert!(matches!(
            failed_condition(update(3), None),
            Some(StoreError::NotFound(_))
        ));
        assert!(matches!(
            failed_condition(update(3), Some(4)),
            Some(StoreError::Conflict {
                expected: 3,
                found: 4,
                ..
            })
        ));
        assert!(failed_condition(update(3), Some(3)).is_none());
        assert!(matches!(
            failed_condition(delete(None), None),
            Some(StoreError::NotFound(_))
        ));
        assert!(failed_condition(delete(None), Some(9)).is_none());
        assert!(matches!(
            failed_condition(delete(Some(2)), Some(9)),
            Some(StoreError::Conflict { .. })
        ));
    }
}
