//! The embedded store: one SQLite file in the master's data directory, the
//! default backend, with nothing to install or run beside the master.
//!
//! Layout: `kv` holds each key's current value and revision, `log` the
//! change history that watches replay, `meta` the store revision and how far
//! the log has been compacted. One thread owns the only write connection;
//! reads use a small pool of connections that see WAL snapshots, so readers
//! never wait for the writer.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::stream;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use tokio::sync::{broadcast, oneshot};

use super::{Entry, Event, EventKind, Op, Store, StoreError, StoreFuture, Watch};

/// Change-log entries kept by default for watches that resume from an
/// older revision.
pub const DEFAULT_LOG_RETENTION: u64 = 100_000;

/// Commits buffered per live watch by default before it falls back to
/// reading the log.
pub const DEFAULT_WATCH_BUFFER: usize = 1024;

/// Requests committed together at most; bounds the latency a large group
/// adds to the first request in it.
const MAX_GROUP_REQUESTS: usize = 256;
/// Operations committed together at most, for the same reason.
const MAX_GROUP_OPS: usize = 20_000;
/// Log rows a watch reads per query while catching up.
const HISTORY_PAGE: u64 = 1024;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Lock waits are rare (WAL readers never block, there is one writer), but
/// a checkpoint can hold a lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version of the tables below, kept in `meta` as `schema`.
const SCHEMA_VERSION: u64 = 1;

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_revision ON log (revision);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('schema', 1), ('revision', 0), ('compacted', 0);
";

/// Tuning for [`EmbeddedStore::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Change-log entries to keep. A watch that resumes from before the
    /// oldest kept entry gets [`StoreError::Compacted`] and must re-list.
    pub log_retention: u64,
    /// Commits buffered per live watch. A watch that falls further behind
    /// re-reads the log instead, so this trades memory for fewer reads and
    /// never loses events.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            log_retention: DEFAULT_LOG_RETENTION,
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

/// The default [`Store`]: SQLite in one file.
///
/// SQLite, compiled in through `rusqlite`'s `bundled` feature, because the
/// store's promise is durability and SQLite has decades of crash-safety
/// testing behind it. The file runs in WAL mode with `synchronous=FULL`, so
/// a commit's log is fsynced before its `apply` resolves, and readers see
/// consistent snapshots without blocking the writer.
///
/// Writes go to one dedicated thread that owns the only write connection,
/// so SQLite's blocking calls never run on the async executor and there is
/// one writer at a time. The thread commits every request queued at once in
/// one transaction (group commit): each request still gets its own
/// revision and all-or-nothing checks, but they share one fsync.
/// Reads run on tokio's blocking pool, so the futures of this store must be
/// polled inside a tokio runtime.
///
/// An exclusive lock on `<path>.lock` keeps a second store, in this process
/// or another, from writing the same file: live watches only hear of
/// commits made through this instance.
pub struct EmbeddedStore {
    path: PathBuf,
    // `None` only while dropping, to stop the writer thread.
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    events: broadcast::Sender<Arc<Commit>>,
    revision: Arc<AtomicU64>,
    // Declared last so it is released after the writer has closed the file.
    _lock: File,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("revision", &self.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// One `apply` waiting for the writer thread.
struct WriteRequest {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// One committed revision, as live watches receive it.
#[derive(Debug)]
struct Commit {
    revision: u64,
    events: Vec<Event>,
}

impl EmbeddedStore {
    /// Opens the store at `path` with default [`Options`], creating the
    /// parent directory (0700) and the file (0600) if missing.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(path, Options::default())
    }

    /// Opens the store at `path` with `options`.
    pub fn open_with(path: &Path, options: Options) -> Result<EmbeddedStore, StoreError> {
        let shown = path.display();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| backend(format!("create {}: {e}", parent.display())))?;
        }
        let lock = lock_file(path)?;
        create_file(path)?;

        let mut conn = Connection::open(path).map_err(|e| backend(format!("open {shown}: {e}")))?;
        configure(&conn).map_err(|e| backend(format!("configure {shown}: {e}")))?;
        // WAL is a property of the file; set once here, readers inherit it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| backend(format!("set wal mode on {shown}: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(backend(format!(
                "{shown}: sqlite refused wal mode ({mode})"
            )));
        }
        let (schema, revision, log_rows) =
            init_schema(&mut conn).map_err(|e| backend(format!("initialise {shown}: {e}")))?;
        // A newer berth may have changed the tables' meaning; refuse rather
        // than misread them.
        if schema != SCHEMA_VERSION {
            return Err(backend(format!(
                "{shown} has store schema {schema}; this berth-master reads schema {SCHEMA_VERSION}"
            )));
        }

        let revision = Arc::new(AtomicU64::new(revision));
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (requests, queue) = mpsc::channel();
        let writer = Writer {
            conn,
            queue,
            events: events.clone(),
            revision: Arc::clone(&revision),
            // Keeping nothing would make every watch fail; keep at least
            // the latest commit.
            retention: options.log_retention.max(1),
            log_rows,
        };
        let writer = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| backend(format!("start store writer thread: {e}")))?;

        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            requests: Some(requests),
            writer: Some(writer),
            readers: Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
            events,
            revision,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue stops the writer after the writes already
        // queued; joining it means the file is closed (and checkpointed)
        // before the lock is released, so a reopen finds it at rest.
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        let readers = Arc::clone(&self.readers);
        let key = key.to_owned();
        Box::pin(async move { blocking(move || readers.with(|conn| read_entry(conn, &key))).await })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        let readers = Arc::clone(&self.readers);
        let range = KeyRange::new(prefix);
        Box::pin(
            async move { blocking(move || readers.with(|conn| read_list(conn, &range))).await },
        )
    }

    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            if ops.is_empty() {
                return Ok(self.revision.load(Ordering::Acquire));
            }
            let (reply, answer) = oneshot::channel();
            let requests = self.requests.as_ref().ok_or_else(writer_stopped)?;
            requests
                .send(WriteRequest { ops, reply })
                .map_err(|_| writer_stopped())?;
            // Dropping this future does not withdraw the write: like a
            // request sent to etcd, it may still commit.
            answer.await.map_err(|_| writer_stopped())?
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        // Subscribe before anything is read, so every commit after the
        // history snapshot is sure to arrive live.
        let state = WatchState {
            readers: Arc::clone(&self.readers),
            range: KeyRange::new(prefix),
            live: self.events.subscribe(),
            covered: after,
            pending: VecDeque::new(),
            catching_up: true,
            done: false,
        };
        Box::pin(async move {
            let watch: Watch = Box::pin(stream::unfold(state, WatchState::next));
            Ok(watch)
        })
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(self.revision.load(Ordering::Acquire)) })
    }
}

fn backend(message: String) -> StoreError {
    StoreError::Backend(message)
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn writer_stopped() -> StoreError {
    backend("store writer has stopped".into())
}

/// Runs a blocking read on tokio's blocking pool.
async fn blocking<T, F>(read: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| backend(format!("store read task: {e}")))?
}

/// Takes the exclusive lock that makes this the only store on `path`.
fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| backend(format!("open {}: {e}", lock_path.display())))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(backend(format!(
            "{} is in use by another store",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(backend(format!("lock {}: {e}", lock_path.display())))
        }
    }
}

/// Creates the database file with mode 0600 before SQLite does (SQLite
/// would use 0644); its WAL and shared-memory files copy that mode.
fn create_file(path: &Path) -> Result<(), StoreError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(file) => {
            file.sync_all()
                .map_err(|e| backend(format!("sync {}: {e}", path.display())))?;
            // A new file's directory entry is only durable once the
            // directory itself is synced.
            let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => parent,
                None => Path::new("."),
            };
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| backend(format!("sync {}: {e}", dir.display())))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(format!("create {}: {e}", path.display()))),
    }
}

/// Settings of every connection, reader or writer.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL, not WAL's usual NORMAL: NORMAL may lose the last commits on a
    // power cut, and an acknowledged write must survive one.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Creates the tables if needed; returns the schema version, the revision
/// and the log length.
fn init_schema(conn: &mut Connection) -> rusqlite::Result<(u64, u64, u64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let schema = meta(&tx, "schema")?;
    let revision = meta(&tx, "revision")?;
    let log_rows: u64 = tx.query_row("SELECT count(*) FROM log", [], |row| row.get(0))?;
    tx.commit()?;
    Ok((schema, revision, log_rows))
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
}

fn set_meta(conn: &Connection, name: &str, value: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])?;
    Ok(())
}

/// The keys that start with a prefix, as a range `[start, end)` so the
/// primary-key index serves it and no character in the prefix is special
/// (as `%` and `_` would be to LIKE).
#[derive(Debug, Clone)]
struct KeyRange {
    prefix: String,
    /// `None` when no string bounds the range (the empty prefix).
    end: Option<String>,
}

impl KeyRange {
    fn new(prefix: &str) -> KeyRange {
        KeyRange {
            prefix: prefix.to_owned(),
            end: prefix_end(prefix),
        }
    }

    fn contains(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }
}

/// The least string greater than every string that starts with `prefix`:
/// the prefix with its last character incremented. SQLite compares TEXT as
/// UTF-8 bytes, and UTF-8 byte order is code point order, so this bounds
/// the range exactly.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            // Surrogates are not characters; skip over them.
            '\u{d7ff}' => Some('\u{e000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
        // `last` was char::MAX: carry into the character before it.
    }
    None
}

/// Open read connections, reused across reads.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs `read` on an idle connection, or a new one.
    fn with<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&mut conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let shown = self.path.display();
        // No CREATE: the writer made the file; a missing one is an error.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)
            .map_err(|e| backend(format!("open {shown}: {e}")))?;
        configure(&conn)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|e| backend(format!("configure {shown}: {e}")))?;
        Ok(conn)
    }
}

fn read_entry(conn: &mut Connection, key: &str) -> Result<Option<Entry>, StoreError> {
    conn.prepare_cached("SELECT value, revision FROM kv WHERE key = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                Ok(Entry {
                    key: key.to_owned(),
                    value: row.get(0)?,
                    revision: row.get(1)?,
                })
            })
            .optional()
        })
        .map_err(sql)
}

fn read_list(conn: &mut Connection, range: &KeyRange) -> Result<(Vec<Entry>, u64), StoreError> {
    // One read transaction: the entries and the revision come from the
    // same snapshot, so a watch from that revision misses nothing.
    let tx = conn.transaction().map_err(sql)?;
    let revision = meta(&tx, "revision").map_err(sql)?;
    let entry = |row: &rusqlite::Row<'_>| {
        Ok(Entry {
            key: row.get(0)?,
            value: row.get(1)?,
            revision: row.get(2)?,
        })
    };
    let entries = match &range.end {
        Some(end) => tx
            .prepare_cached(
                "SELECT key, value, revision FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )
            .and_then(|mut stmt| stmt.query_map(params![range.prefix, end], entry)?.collect()),
        None => tx
            .prepare_cached("SELECT key, value, revision FROM kv WHERE key >= ?1 ORDER BY key")
            .and_then(|mut stmt| stmt.query_map([&range.prefix], entry)?.collect()),
    }
    .map_err(sql)?;
    Ok((entries, revision))
}

/// The thread that owns the write connection.
struct Writer {
    conn: Connection,
    queue: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<Commit>>,
    revision: Arc<AtomicU64>,
    retention: u64,
    log_rows: u64,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.queue.recv() {
            let mut ops = first.ops.len();
            let mut group = vec![first];
            // Whatever queued up during the last fsync shares the next one.
            while group.len() < MAX_GROUP_REQUESTS && ops < MAX_GROUP_OPS {
                match self.queue.try_recv() {
                    Ok(request) => {
                        ops += request.ops.len();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|r| (r.ops, r.reply)).unzip();
        match write_group(&mut self.conn, batches, self.log_rows, self.retention) {
            Ok((outcomes, log_rows)) => {
                self.log_rows = log_rows;
                let last = outcomes.iter().rev().find_map(|o| o.as_ref().ok());
                if let Some(commit) = last {
                    // Before any reply: a caller that saw revision r must
                    // never read an older one from `revision()`.
                    self.revision.store(commit.revision, Ordering::Release);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let answer = outcome.map(|commit| {
                        let revision = commit.revision;
                        // No receivers is not an error: nobody is watching.
                        let _ = self.events.send(commit);
                        revision
                    });
                    // The caller may have gone away; the write stands.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                // The transaction rolled back: every request in the group
                // failed, with the same cause.
                let message = format!("sqlite: {e}");
                for reply in replies {
                    let _ = reply.send(Err(backend(message.clone())));
                }
            }
        }
    }
}

/// What one batch does to a key, after its checks pass.
enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String, last: Vec<u8> },
}

/// What became of one batch in a group: its commit, or why it failed.
type Outcome = Result<Arc<Commit>, StoreError>;

/// Commits a group of batches in one transaction, each batch with its own
/// revision or its own error. Returns the outcomes and the new log length.
fn write_group(
    conn: &mut Connection,
    batches: Vec<Vec<Op>>,
    log_rows: u64,
    retention: u64,
) -> rusqlite::Result<(Vec<Outcome>, u64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut revision = meta(&tx, "revision")?;
    let mut log_rows = log_rows;
    let mut outcomes = Vec::with_capacity(batches.len());
    for ops in batches {
        match check(&tx, ops)? {
            Err(e) => outcomes.push(Err(e)),
            Ok(changes) => {
                revision += 1;
                let events = write_changes(&tx, revision, changes)?;
                log_rows += events.len() as u64;
                outcomes.push(Ok(Arc::new(Commit { revision, events })));
            }
        }
    }
    if outcomes.iter().any(Result::is_ok) {
        set_meta(&tx, "revision", revision)?;
        log_rows = compact(&tx, log_rows, retention)?;
    }
    tx.commit()?;
    Ok((outcomes, log_rows))
}

/// Checks every condition of a batch against the state before it. A batch
/// that fails a check has written nothing, so the others in its group
/// commit unaffected.
fn check(tx: &Transaction<'_>, ops: Vec<Op>) -> rusqlite::Result<Result<Vec<Change>, StoreError>> {
    let mut revision_of = tx.prepare_cached("SELECT revision FROM kv WHERE key = ?1")?;
    let mut entry_of = tx.prepare_cached("SELECT value, revision FROM kv WHERE key = ?1")?;
    let mut seen = HashSet::with_capacity(ops.len());
    let mut changes = Vec::with_capacity(ops.len());
    for op in ops {
        let key = match &op {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        };
        // Like etcd, which refuses a transaction that names a key twice:
        // the outcome would depend on an order the caller cannot check.
        if !seen.insert(key.clone()) {
            return Ok(Err(backend(format!("batch names {key} more than once"))));
        }
        match op {
            Op::Create { key, value } => {
                if revision_of
                    .query_row([&key], |_| Ok(()))
                    .optional()?
                    .is_some()
                {
                    return Ok(Err(StoreError::AlreadyExists(key)));
                }
                changes.push(Change::Put { key, value });
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let found: Option<u64> =
                    revision_of.query_row([&key], |row| row.get(0)).optional()?;
                match found {
                    None => return Ok(Err(StoreError::NotFound(key))),
                    Some(found) if found != expected => {
                        return Ok(Err(StoreError::Conflict {
                            key,
                            expected,
                            found,
                        }))
                    }
                    Some(_) => changes.push(Change::Put { key, value }),
                }
            }
            Op::Delete { key, expected } => {
                let found: Option<(Vec<u8>, u64)> = entry_of
                    .query_row([&key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                match (found, expected) {
                    (None, _) => return Ok(Err(StoreError::NotFound(key))),
                    (Some((_, found)), Some(expected)) if found != expected => {
                        return Ok(Err(StoreError::Conflict {
                            key,
                            expected,
                            found,
                        }))
                    }
                    (Some((last, _)), _) => changes.push(Change::Delete { key, last }),
                }
            }
        }
    }
    Ok(Ok(changes))
}

/// Writes checked changes at `revision` and logs them; returns the events.
fn write_changes(
    tx: &Transaction<'_>,
    revision: u64,
    changes: Vec<Change>,
) -> rusqlite::Result<Vec<Event>> {
    let mut put = tx.prepare_cached(
        "INSERT INTO kv (key, value, revision) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
    let mut log =
        tx.prepare_cached("INSERT INTO log (revision, key, kind, value) VALUES (?1, ?2, ?3, ?4)")?;
    let mut events = Vec::with_capacity(changes.len());
    for change in changes {
        let (kind, key, value) = match change {
            Change::Put { key, value } => {
                put.execute(params![key, value, revision])?;
                log.execute(params![revision, key, KIND_PUT, value])?;
                (EventKind::Put, key, value)
            }
            Change::Delete { key, last } => {
                delete.execute([&key])?;
                log.execute(params![revision, key, KIND_DELETE, last])?;
                (EventKind::Delete, key, last)
            }
        };
        events.push(Event {
            kind,
            entry: Entry {
                key,
                value,
                revision,
            },
        });
    }
    Ok(events)
}

/// Drops the oldest log entries once there are clearly more than
/// `retention`, in chunks so the cost is spread over many commits. It cuts
/// only between revisions, so a watch gets every event of a revision or
/// `Compacted`, never half a commit.
fn compact(tx: &Transaction<'_>, log_rows: u64, retention: u64) -> rusqlite::Result<u64> {
    let slack = (retention / 64).max(1);
    if log_rows <= retention + slack {
        return Ok(log_rows);
    }
    let last_id: i64 = tx.query_row("SELECT max(id) FROM log", [], |row| row.get(0))?;
    let keep_from = last_id.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX)) + 1;
    let boundary: Option<(u64, i64)> = tx
        .query_row(
            "SELECT l.revision, (SELECT min(id) FROM log WHERE revision = l.revision)
             FROM log AS l WHERE l.id >= ?1 ORDER BY l.id LIMIT 1",
            [keep_from],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((revision, first_kept)) = boundary else {
        return Ok(log_rows);
    };
    tx.execute("DELETE FROM log WHERE id < ?1", [first_kept])?;
    set_meta(tx, "compacted", revision - 1)?;
    Ok(u64::try_from(last_id - first_kept + 1).unwrap_or(0))
}

/// Events read from the log by a catching-up watch.
struct HistoryPage {
    events: Vec<Event>,
    /// Every event up to this revision has been read (or filtered out).
    covered: u64,
    /// The page reached the revision current when it was read.
    complete: bool,
}

/// Reads events under `range` after revision `after`, a page at a time,
/// never ending a page inside a revision.
fn read_history(
    conn: &mut Connection,
    range: &KeyRange,
    after: u64,
) -> Result<HistoryPage, StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    let compacted = meta(&tx, "compacted").map_err(sql)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after + 1,
            oldest: compacted + 1,
        });
    }
    let current = meta(&tx, "revision").map_err(sql)?;
    if after >= current {
        return Ok(HistoryPage {
            events: Vec::new(),
            covered: after,
            complete: true,
        });
    }
    let page = log_rows(
        &tx,
        "revision > ?1 AND revision <= ?2",
        after,
        current,
        range,
        Some(HISTORY_PAGE),
    )
    .map_err(sql)?;
    if (page.len() as u64) < HISTORY_PAGE {
        return Ok(HistoryPage {
            events: page.into_iter().map(|(_, event)| event).collect(),
            covered: current,
            complete: true,
        });
    }
    // The page is full and may have cut its last revision short: read the
    // rest of that revision, whatever its size.
    let (last_id, last_revision) = match page.last() {
        Some((id, event)) => (*id, event.entry.revision),
        None => (0, after),
    };
    let rest = log_rows(
        &tx,
        "revision = ?1 AND id > ?2",
        last_revision,
        u64::try_from(last_id).unwrap_or(0),
        range,
        None,
    )
    .map_err(sql)?;
    Ok(HistoryPage {
        events: page
            .into_iter()
            .chain(rest)
            .map(|(_, event)| event)
            .collect(),
        covered: last_revision,
        complete: last_revision >= current,
    })
}

/// Log rows matching `condition` (over `?1` and `?2`) under `range`, in
/// commit order, with their row ids.
fn log_rows(
    tx: &Transaction<'_>,
    condition: &str,
    first: u64,
    second: u64,
    range: &KeyRange,
    limit: Option<u64>,
) -> rusqlite::Result<Vec<(i64, Event)>> {
    let bound = if range.end.is_some() {
        "AND key >= ?3 AND key < ?4"
    } else {
        "AND key >= ?3"
    };
    // The limit is a constant, not a parameter, so the statement text is
    // one of a handful and stays in the statement cache.
    let limit = limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
    let query = format!(
        "SELECT id, revision, key, kind, value FROM log
         WHERE {condition} {bound} ORDER BY revision, id {limit}"
    );
    let mut stmt = tx.prepare_cached(&query)?;
    let row = |row: &rusqlite::Row<'_>| {
        let kind: i64 = row.get(3)?;
        Ok((
            row.get(0)?,
            Event {
                kind: if kind == KIND_DELETE {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                entry: Entry {
                    key: row.get(2)?,
                    value: row.get(4)?,
                    revision: row.get(1)?,
                },
            },
        ))
    };
    match &range.end {
        Some(end) => stmt
            .query_map(params![first, second, range.prefix, end], row)?
            .collect(),
        None => stmt
            .query_map(params![first, second, range.prefix], row)?
            .collect(),
    }
}

/// A watch's progress: history first, then live commits.
struct WatchState {
    readers: Arc<Readers>,
    range: KeyRange,
    live: broadcast::Receiver<Arc<Commit>>,
    /// Every event up to this revision has been queued or filtered out.
    covered: u64,
    pending: VecDeque<Event>,
    /// Reading the log rather than the live feed.
    catching_up: bool,
    /// An error was yielded; the stream ends.
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<Event, StoreError>, WatchState)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                let readers = Arc::clone(&self.readers);
                let range = self.range.clone();
                let after = self.covered;
                let page =
                    blocking(move || readers.with(|conn| read_history(conn, &range, after))).await;
                match page {
                    Ok(page) => {
                        self.pending.extend(page.events);
                        self.covered = page.covered;
                        self.catching_up = !page.complete;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            }
            match self.live.recv().await {
                // Already read from the log.
                Ok(commit) if commit.revision <= self.covered => {}
                Ok(commit) if commit.revision == self.covered + 1 => {
                    self.covered = commit.revision;
                    let matching = commit
                        .events
                        .iter()
                        .filter(|e| self.range.contains(&e.entry.key));
                    self.pending.extend(matching.cloned());
                }
                // A revision went missing from the live feed (it cannot
                // with one writer, but a gap is never acceptable): the log
                // has it.
                Ok(_) => self.catching_up = true,
                // This watch fell behind and the feed dropped commits for
                // it: the log still has them.
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                // The store was dropped.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_exactly_the_keys_under_the_prefix() {
        assert_eq!(prefix_end("/pods/").as_deref(), Some("/pods0"));
        assert_eq!(prefix_end("a_").as_deref(), Some("a`"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        assert_eq!(prefix_end(""), None);
        for key in ["/pods/", "/pods/a", "/pods/\u{10ffff}\u{10ffff}"] {
            assert!(key < "/pods0", "{key}");
        }
    }
}
