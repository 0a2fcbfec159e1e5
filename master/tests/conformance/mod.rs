//! What every [`Store`] backend must do, as checks that run against any of
//! them, so the embedded store and the etcd backend are held to the same
//! contract by the same code.
//!
//! Each check writes only under its own prefix (`/conformance/<check>/`),
//! clears it first, and compares revisions only with those the store
//! returned, so the checks can share one store and be run again on a
//! persistent one. They do assume that nobody else writes to the store while
//! they run: a failed batch must leave the store's revision unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use berth_master::store::{Entry, Event, EventKind, Op, Store, StoreError, Watch};

/// How long a check waits for a watch event before it fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A check that the store did not pass, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(String);

impl Failure {
    fn within(self, check: &str) -> Failure {
        Failure(format!("{check}: {}", self.0))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure(format!("unexpected store error: {e}"))
    }
}

macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($message)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($found:expr, $expected:expr, $($what:tt)+) => {{
        let (found, expected) = (&$found, &$expected);
        if found != expected {
            return Err(Failure(format!(
                "{}: expected {:?}, found {:?}",
                format!($($what)+),
                expected,
                found
            )));
        }
    }};
}

/// Runs every check in turn on `store`, stopping at the first failure,
/// which names its check.
pub async fn run_all(store: &dyn Store) -> Result<(), Failure> {
    create_get_list(store)
        .await
        .map_err(|f| f.within("create_get_list"))?;
    cas_update_and_conflict(store)
        .await
        .map_err(|f| f.within("cas_update_and_conflict"))?;
    atomic_batch_all_or_nothing(store)
        .await
        .map_err(|f| f.within("atomic_batch_all_or_nothing"))?;
    delete_with_and_without_revision(store)
        .await
        .map_err(|f| f.within("delete_with_and_without_revision"))?;
    watch_replays_history_then_live_without_gaps(store)
        .await
        .map_err(|f| f.within("watch_replays_history_then_live_without_gaps"))?;
    watch_from_current_revision(store)
        .await
        .map_err(|f| f.within("watch_from_current_revision"))?;
    watch_slow_consumer_loses_nothing(store)
        .await
        .map_err(|f| f.within("watch_slow_consumer_loses_nothing"))?;
    prefix_isolation(store)
        .await
        .map_err(|f| f.within("prefix_isolation"))?;
    Ok(())
}

/// Creates are readable with `get` and `list` (in key order), revisions
/// increase, and creating an existing key fails and changes nothing.
pub async fn create_get_list(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "create_get_list").await?;
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));

    // Out of key order on purpose: list must sort.
    let rb = store.apply(vec![create(&b, "2")]).await?;
    let ra = store.apply(vec![create(&a, "1")]).await?;
    let rc = store.apply(vec![create(&c, "3")]).await?;
    ensure!(
        rb < ra && ra < rc,
        "revisions do not increase: {rb}, {ra}, {rc}"
    );

    ensure_eq!(store.get(&a).await?, Some(entry(&a, "1", ra)), "get {a}");
    ensure_eq!(
        store.get(&format!("{p}missing")).await?,
        None,
        "get of a missing key"
    );

    let (entries, revision) = store.list(&p).await?;
    ensure_eq!(
        entries,
        vec![entry(&a, "1", ra), entry(&b, "2", rb), entry(&c, "3", rc)],
        "list {p}"
    );
    ensure!(
        revision >= rc,
        "list revision {revision} is older than the last write {rc}"
    );
    ensure!(
        store.revision().await? >= rc,
        "store revision is older than the last write"
    );

    match store.apply(vec![create(&a, "other")]).await {
        Err(StoreError::AlreadyExists(key)) => ensure_eq!(key, a, "key named by AlreadyExists"),
        other => return Err(Failure(format!("create of an existing key gave {other:?}"))),
    }
    ensure_eq!(
        store.get(&a).await?,
        Some(entry(&a, "1", ra)),
        "{a} after failed create"
    );
    Ok(())
}

/// `Update` succeeds only at the revision the writer read, and reports the
/// revision it found otherwise.
pub async fn cas_update_and_conflict(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "cas_update_and_conflict").await?;
    let k = format!("{p}k");

    let r1 = store.apply(vec![create(&k, "v1")]).await?;
    let r2 = store.apply(vec![update(&k, "v2", r1)]).await?;
    ensure!(
        r2 > r1,
        "update revision {r2} is not after create revision {r1}"
    );
    ensure_eq!(
        store.get(&k).await?,
        Some(entry(&k, "v2", r2)),
        "{k} after update"
    );

    match store.apply(vec![update(&k, "v3", r1)]).await {
        Err(StoreError::Conflict {
            key,
            expected,
            found,
        }) => {
            ensure_eq!(key, k, "key named by Conflict");
            ensure_eq!(expected, r1, "expected revision named by Conflict");
            ensure_eq!(found, r2, "found revision named by Conflict");
        }
        other => return Err(Failure(format!("stale update gave {other:?}"))),
    }
    ensure_eq!(
        store.get(&k).await?,
        Some(entry(&k, "v2", r2)),
        "{k} after stale update"
    );

    let missing = format!("{p}missing");
    match store.apply(vec![update(&missing, "v", r2)]).await {
        Err(StoreError::NotFound(key)) => ensure_eq!(key, missing, "key named by NotFound"),
        other => return Err(Failure(format!("update of a missing key gave {other:?}"))),
    }
    ensure_eq!(
        store.get(&missing).await?,
        None,
        "{missing} after failed update"
    );
    Ok(())
}

/// A batch commits every op at one revision, or none of them; a failed
/// batch does not use up a revision; an empty batch writes nothing; a batch
/// that names a key twice is refused.
pub async fn atomic_batch_all_or_nothing(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "atomic_batch_all_or_nothing").await?;
    let (x, y, z) = (format!("{p}x"), format!("{p}y"), format!("{p}z"));
    let rz = store.apply(vec![create(&z, "z1")]).await?;
    let before = store.revision().await?;

    let failed = store
        .apply(vec![
            create(&x, "x"),
            create(&y, "y"),
            update(&z, "z2", rz + 1000),
        ])
        .await;
    ensure!(
        matches!(failed, Err(StoreError::Conflict { .. })),
        "batch with a stale update gave {failed:?}"
    );
    let failed = store.apply(vec![create(&x, "x"), create(&z, "z2")]).await;
    ensure!(
        matches!(failed, Err(StoreError::AlreadyExists(_))),
        "batch creating an existing key gave {failed:?}"
    );
    let failed = store.apply(vec![create(&x, "x"), delete(&y, None)]).await;
    ensure!(
        matches!(failed, Err(StoreError::NotFound(_))),
        "batch deleting a missing key gave {failed:?}"
    );
    let failed = store
        .apply(vec![create(&x, "x"), update(&x, "x2", rz)])
        .await;
    ensure!(failed.is_err(), "batch naming {x} twice was accepted");
    ensure_eq!(store.get(&x).await?, None, "{x} after failed batches");
    ensure_eq!(store.get(&y).await?, None, "{y} after failed batches");
    ensure_eq!(
        store.get(&z).await?,
        Some(entry(&z, "z1", rz)),
        "{z} after failed batches"
    );
    ensure_eq!(
        store.revision().await?,
        before,
        "store revision after failed batches"
    );

    let r = store
        .apply(vec![create(&x, "x"), create(&y, "y"), update(&z, "z2", rz)])
        .await?;
    ensure!(r > before, "batch revision {r} is not after {before}");
    let (entries, _) = store.list(&p).await?;
    ensure_eq!(
        entries,
        vec![entry(&x, "x", r), entry(&y, "y", r), entry(&z, "z2", r)],
        "entries after the batch"
    );

    ensure_eq!(
        store.apply(Vec::new()).await?,
        r,
        "revision returned by an empty batch"
    );
    ensure_eq!(
        store.revision().await?,
        r,
        "store revision after an empty batch"
    );
    Ok(())
}

/// `Delete` with a revision is compare-and-delete; without one it deletes
/// whatever is there; deleting a missing key is `NotFound`.
pub async fn delete_with_and_without_revision(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "delete_with_and_without_revision").await?;
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let ra = store.apply(vec![create(&a, "a")]).await?;
    let rb = store.apply(vec![create(&b, "b")]).await?;

    match store.apply(vec![delete(&a, Some(rb))]).await {
        Err(StoreError::Conflict {
            key,
            expected,
            found,
        }) => {
            ensure_eq!(key, a, "key named by Conflict");
            ensure_eq!(expected, rb, "expected revision named by Conflict");
            ensure_eq!(found, ra, "found revision named by Conflict");
        }
        other => return Err(Failure(format!("stale delete gave {other:?}"))),
    }
    ensure_eq!(
        store.get(&a).await?,
        Some(entry(&a, "a", ra)),
        "{a} after stale delete"
    );

    let rd = store.apply(vec![delete(&a, Some(ra))]).await?;
    ensure!(rd > rb, "delete revision {rd} is not after {rb}");
    ensure_eq!(store.get(&a).await?, None, "{a} after delete");
    store.apply(vec![delete(&b, None)]).await?;
    ensure_eq!(store.get(&b).await?, None, "{b} after unconditional delete");

    for op in [delete(&b, None), delete(&a, Some(ra))] {
        match store.apply(vec![op]).await {
            Err(StoreError::NotFound(_)) => {}
            other => return Err(Failure(format!("delete of a missing key gave {other:?}"))),
        }
    }

    let again = store.apply(vec![create(&a, "again")]).await?;
    ensure!(
        again > rd,
        "re-create revision {again} is not after delete {rd}"
    );
    ensure_eq!(
        store.get(&a).await?,
        Some(entry(&a, "again", again)),
        "{a} re-created"
    );
    Ok(())
}

/// A watch from an old revision replays history, then continues live with
/// writes made while it starts and runs: each event once, in order, with
/// nothing missing and nothing from outside its prefix. A watch from the
/// middle of that history starts right after its revision.
pub async fn watch_replays_history_then_live_without_gaps(
    store: &dyn Store,
) -> Result<(), Failure> {
    let p = fresh_prefix(store, "watch_replays_history_then_live_without_gaps").await?;
    let outside = fresh_prefix(store, "watch_replays_history_outside").await?;
    let start = store.revision().await?;
    let mut model = Model::default();

    // History.
    for i in 0..10 {
        model
            .apply(store, vec![create(&format!("{p}{i:02}"), &format!("h{i}"))])
            .await?;
    }
    store
        .apply(vec![create(&format!("{outside}x"), "x")])
        .await?;
    let batch = (10..15)
        .map(|i| create(&format!("{p}{i:02}"), "batch"))
        .collect();
    let middle = model.apply(store, batch).await?;
    let middle_index = model.events.len();
    let r = model.revision_of(&format!("{p}03"))?;
    model
        .apply(store, vec![update(&format!("{p}03"), "h3'", r)])
        .await?;
    let r = model.revision_of(&format!("{p}04"))?;
    model
        .apply(store, vec![delete(&format!("{p}04"), Some(r))])
        .await?;

    // Live, racing the watch's start and its catch-up.
    let writes = async {
        for i in 15..45 {
            let key = format!("{p}{i:02}");
            if i % 10 == 0 {
                let ops = vec![create(&key, "live"), create(&format!("{key}b"), "live")];
                model.apply(store, ops).await?;
            } else {
                model
                    .apply(store, vec![create(&key, &format!("l{i}"))])
                    .await?;
            }
            if i % 7 == 0 {
                store
                    .apply(vec![create(&format!("{outside}{i}"), "x")])
                    .await?;
            }
        }
        Ok::<_, Failure>(())
    };
    // Events that `writes` produces: 15 history puts + 2, then 30 creates
    // plus one extra for each of the 3 two-key batches.
    let expected_count = 15 + 2 + 30 + 3;
    let reads = async {
        let mut watch = store.watch(&p, start).await?;
        next_events(&mut watch, expected_count).await
    };
    let (written, read) = tokio::join!(writes, reads);
    written?;
    let read = read?;
    ensure_eq!(model.events.len(), expected_count, "events written");
    ensure_events(&read, &model.events)?;

    let mut watch = store.watch(&p, middle).await?;
    let tail = next_events(&mut watch, model.events.len() - middle_index).await?;
    ensure_events(&tail, &model.events[middle_index..])?;
    Ok(())
}

/// A watch from the revision that `list` returned sees the next write and
/// nothing before it; a delete event carries the last value.
pub async fn watch_from_current_revision(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "watch_from_current_revision").await?;
    let old = format!("{p}old");
    let new = format!("{p}new");
    store.apply(vec![create(&old, "old")]).await?;
    let (_, revision) = store.list(&p).await?;
    let mut watch = store.watch(&p, revision).await?;

    let rn = store.apply(vec![create(&new, "new")]).await?;
    let rd = store.apply(vec![delete(&new, Some(rn))]).await?;
    let events = next_events(&mut watch, 2).await?;
    ensure_events(
        &events,
        &[
            event(EventKind::Put, &new, "new", rn),
            event(EventKind::Delete, &new, "new", rd),
        ],
    )
}

/// A watch whose reader falls far behind the writers still gets every
/// event, in order, once it reads again.
pub async fn watch_slow_consumer_loses_nothing(store: &dyn Store) -> Result<(), Failure> {
    const WRITES: usize = 150;
    let p = fresh_prefix(store, "watch_slow_consumer_loses_nothing").await?;
    let revision = store.revision().await?;
    let mut watch = store.watch(&p, revision).await?;
    // Pull the first event so the watch is live before the writes pile up.
    let mut model = Model::default();
    model
        .apply(store, vec![create(&format!("{p}first"), "0")])
        .await?;
    let mut read = next_events(&mut watch, 1).await?;
    for i in 0..WRITES {
        model
            .apply(store, vec![create(&format!("{p}{i:04}"), "v")])
            .await?;
    }
    read.extend(next_events(&mut watch, WRITES).await?);
    ensure_events(&read, &model.events)
}

/// `list` and `watch` take a prefix literally: characters that are special
/// to SQL LIKE or glob patterns match only themselves, and a prefix does not
/// match keys that merely share its first characters.
pub async fn prefix_isolation(store: &dyn Store) -> Result<(), Failure> {
    let p = fresh_prefix(store, "prefix_isolation").await?;
    let names = [
        "a", "a/1", "a/2", "a/\u{fc}", "ab/1", "a_/1", "a%/1", "a*/1", "b/1",
    ];
    let ops = names
        .iter()
        .map(|n| create(&format!("{p}{n}"), n))
        .collect();
    store.apply(ops).await?;

    for sub in ["a/", "a_/", "a%/", "a*/", "a", "ab", "b", "zzz"] {
        let prefix = format!("{p}{sub}");
        let (entries, _) = store.list(&prefix).await?;
        let found: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let mut expected: Vec<String> = names
            .iter()
            .map(|n| format!("{p}{n}"))
            .filter(|k| k.starts_with(&prefix))
            .collect();
        expected.sort();
        ensure_eq!(found, expected, "list {prefix}");
    }

    let since = store.revision().await?;
    let (under, beside) = (format!("{p}a_/"), format!("{p}a/"));
    let mut watch = store.watch(&under, since).await?;
    let r1 = store
        .apply(vec![
            create(&format!("{beside}3"), "x"),
            create(&format!("{p}ab/2"), "x"),
            create(&format!("{p}a%/2"), "x"),
            create(&format!("{under}2"), "mine"),
        ])
        .await?;
    store
        .apply(vec![create(&format!("{beside}4"), "x")])
        .await?;
    let r2 = store
        .apply(vec![create(&format!("{under}3"), "mine")])
        .await?;
    let events = next_events(&mut watch, 2).await?;
    ensure_events(
        &events,
        &[
            event(EventKind::Put, &format!("{under}2"), "mine", r1),
            event(EventKind::Put, &format!("{under}3"), "mine", r2),
        ],
    )
}

/// The check's prefix, emptied of anything an earlier run left.
async fn fresh_prefix(store: &dyn Store, check: &str) -> Result<String, Failure> {
    let prefix = format!("/conformance/{check}/");
    let (entries, _) = store.list(&prefix).await?;
    if !entries.is_empty() {
        let ops = entries
            .into_iter()
            .map(|e| delete(&e.key, Some(e.revision)))
            .collect();
        store.apply(ops).await?;
    }
    Ok(prefix)
}

/// The events a check expects: what its writes did, in order.
#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<String, Entry>,
    events: Vec<Event>,
}

impl Model {
    /// Applies `ops` to the store and records their events.
    async fn apply(&mut self, store: &dyn Store, ops: Vec<Op>) -> Result<u64, Failure> {
        let revision = store.apply(ops.clone()).await?;
        for op in ops {
            match op {
                Op::Create { key, value } | Op::Update { key, value, .. } => {
                    let entry = Entry {
                        key: key.clone(),
                        value,
                        revision,
                    };
                    self.entries.insert(key, entry.clone());
                    self.events.push(Event {
                        kind: EventKind::Put,
                        entry,
                    });
                }
                Op::Delete { key, .. } => {
                    let Some(mut entry) = self.entries.remove(&key) else {
                        return Err(Failure(format!(
                            "the check deleted {key}, which it never wrote"
                        )));
                    };
                    entry.revision = revision;
                    self.events.push(Event {
                        kind: EventKind::Delete,
                        entry,
                    });
                }
            }
        }
        Ok(revision)
    }

    fn revision_of(&self, key: &str) -> Result<u64, Failure> {
        self.entries
            .get(key)
            .map(|e| e.revision)
            .ok_or_else(|| Failure(format!("the check never wrote {key}")))
    }
}

/// The next `count` events of `watch`, failing on an error, an early end
/// or a long wait.
async fn next_events(watch: &mut Watch, count: usize) -> Result<Vec<Event>, Failure> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
            Err(_) => {
                return Err(Failure(format!(
                    "no watch event within {EVENT_TIMEOUT:?} after {} of {count}",
                    events.len()
                )))
            }
            Ok(None) => {
                return Err(Failure(format!(
                    "watch ended after {} of {count} events",
                    events.len()
                )))
            }
            Ok(Some(event)) => events.push(event?),
        }
    }
    Ok(events)
}

/// Compares event lists, naming the first difference rather than dumping
/// both lists.
fn ensure_events(found: &[Event], expected: &[Event]) -> Result<(), Failure> {
    for (i, (f, e)) in found.iter().zip(expected).enumerate() {
        ensure_eq!(f, e, "event {i}");
    }
    ensure_eq!(found.len(), expected.len(), "number of events");
    Ok(())
}

fn create(key: &str, value: &str) -> Op {
    Op::Create {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

fn update(key: &str, value: &str, expected: u64) -> Op {
    Op::Update {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        expected,
    }
}

fn delete(key: &str, expected: Option<u64>) -> Op {
    Op::Delete {
        key: key.to_owned(),
        expected,
    }
}

fn entry(key: &str, value: &str, revision: u64) -> Entry {
    Entry {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        revision,
    }
}

fn event(kind: EventKind, key: &str, value: &str, revision: u64) -> Event {
    Event {
        kind,
        entry: entry(key, value, revision),
    }
}
