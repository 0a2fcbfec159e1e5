//! The embedded store against the shared conformance suite, and what only
//! it has: a file that outlives the process, compaction, the lock, the
//! file mode, and write throughput.

mod conformance;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use berth_master::store::embedded::{EmbeddedStore, Options};
use berth_master::store::{Event, EventKind, Op, Store, StoreError};
use futures_util::StreamExt;

/// A database path in an empty directory of its own.
fn fresh_path(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("store_embedded")
        .join(test);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", dir.display()),
    }
    // A directory the store must create, to prove it does.
    dir.join("state").join("berth.db")
}

fn open(test: &str) -> EmbeddedStore {
    EmbeddedStore::open(&fresh_path(test)).expect("open store")
}

fn create(key: &str, value: &str) -> Op {
    Op::Create {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn conformance_run_all() {
    let store = open("run_all");
    conformance::run_all(&store).await.unwrap();
    // Twice on the same store: the checks clean up after earlier runs.
    conformance::run_all(&store).await.unwrap();
}

#[tokio::test]
async fn conformance_create_get_list() {
    conformance::create_get_list(&open("create_get_list"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_cas_update_and_conflict() {
    conformance::cas_update_and_conflict(&open("cas"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_atomic_batch_all_or_nothing() {
    conformance::atomic_batch_all_or_nothing(&open("atomic_batch"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_delete_with_and_without_revision() {
    conformance::delete_with_and_without_revision(&open("delete"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_watch_replays_history_then_live_without_gaps() {
    conformance::watch_replays_history_then_live_without_gaps(&open("watch_replay"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_watch_from_current_revision() {
    conformance::watch_from_current_revision(&open("watch_current"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_watch_slow_consumer_loses_nothing() {
    conformance::watch_slow_consumer_loses_nothing(&open("watch_slow"))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance_prefix_isolation() {
    conformance::prefix_isolation(&open("prefix"))
        .await
        .unwrap();
}

/// With a live buffer of two commits, every watch in the suite keeps
/// overflowing it and falling back to the log.
#[tokio::test]
async fn conformance_with_lagging_watches() {
    let options = Options {
        watch_buffer: 2,
        ..Options::default()
    };
    let store = EmbeddedStore::open_with(&fresh_path("lagging"), options).unwrap();
    conformance::run_all(&store).await.unwrap();
}

#[tokio::test]
async fn state_and_history_survive_reopen() {
    let path = fresh_path("reopen");
    let (r1, r2) = {
        let store = EmbeddedStore::open(&path).unwrap();
        let r1 = store.apply(vec![create("/a", "1")]).await.unwrap();
        let r2 = store
            .apply(vec![Op::Update {
                key: "/a".into(),
                value: b"2".to_vec(),
                expected: r1,
            }])
            .await
            .unwrap();
        (r1, r2)
    };
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), r2);
    let entry = store.get("/a").await.unwrap().unwrap();
    assert_eq!((entry.value.as_slice(), entry.revision), (&b"2"[..], r2));

    // The change log is durable too: a watch can resume across a restart.
    let mut watch = store.watch("/", 0).await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!((first.kind, first.entry.revision), (EventKind::Put, r1));
    assert_eq!(
        (second.entry.value, second.entry.revision),
        (b"2".to_vec(), r2)
    );
    let r3 = store.apply(vec![create("/b", "3")]).await.unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(watch.next().await.unwrap().unwrap().entry.revision, r3);
}

#[tokio::test]
async fn compaction_keeps_whole_revisions_and_refuses_older_watches() {
    let options = Options {
        log_retention: 10,
        ..Options::default()
    };
    let store = EmbeddedStore::open_with(&fresh_path("compaction"), options).unwrap();
    let mut last = 0;
    for i in 0..40 {
        // Three events per revision, so retention cuts inside revisions.
        let ops = (0..3)
            .map(|j| create(&format!("/k/{i}/{j}"), "v"))
            .collect();
        last = store.apply(ops).await.unwrap();
    }

    let mut old = store.watch("/k/", 0).await.unwrap();
    match old.next().await {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, 1);
            assert!(oldest > 1 && oldest <= last, "oldest {oldest}");
        }
        other => panic!("watch from revision 0 gave {other:?}"),
    }
    assert!(old.next().await.is_none(), "a failed watch ends");

    // At least the last `retention` events remain, in whole revisions.
    let from = last - 4;
    let mut recent = store.watch("/k/", from).await.unwrap();
    let mut events: Vec<Event> = Vec::new();
    for _ in 0..12 {
        events.push(recent.next().await.unwrap().unwrap());
    }
    let revisions: Vec<u64> = events.iter().map(|e| e.entry.revision).collect();
    let expected: Vec<u64> = (from + 1..=last).flat_map(|r| [r; 3]).collect();
    assert_eq!(revisions, expected);
}

/// A watch catching up reads the log a page at a time; a commit bigger
/// than a page must still arrive whole, between its neighbours.
#[tokio::test]
async fn watch_replays_commits_larger_than_a_read_page() {
    let store = open("large_commits");
    let mut expected = Vec::new();
    for (batch, size) in [(0, 1), (1, 1500), (2, 1), (3, 2100), (4, 3)] {
        let ops: Vec<Op> = (0..size)
            .map(|i| create(&format!("/big/{batch}/{i:05}"), "v"))
            .collect();
        let revision = store.apply(ops).await.unwrap();
        expected.extend((0..size).map(|i| (revision, format!("/big/{batch}/{i:05}"))));
    }
    let mut watch = store.watch("/big/", 0).await.unwrap();
    let mut found = Vec::new();
    while found.len() < expected.len() {
        let event = watch.next().await.unwrap().unwrap();
        found.push((event.entry.revision, event.entry.key));
    }
    assert_eq!(found, expected);
}

#[tokio::test]
async fn second_open_of_the_same_file_is_refused() {
    let path = fresh_path("lock");
    let store = EmbeddedStore::open(&path).unwrap();
    let err = EmbeddedStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(store);
    // Dropping the store releases the file.
    EmbeddedStore::open(&path).unwrap();
}

#[tokio::test]
async fn database_file_is_private() {
    let path = fresh_path("mode");
    let store = EmbeddedStore::open(&path).unwrap();
    store.apply(vec![create("/secret", "s")]).await.unwrap();
    for file in [path.clone(), path.with_extension("db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn watch_ends_when_store_is_dropped() {
    let store = open("dropped");
    let mut watch = store.watch("/", 0).await.unwrap();
    store.apply(vec![create("/a", "1")]).await.unwrap();
    assert!(watch.next().await.unwrap().is_ok());
    drop(store);
    assert!(watch.next().await.is_none());
}

/// Prints timings (run with `--nocapture` to see them); the bounds are
/// loose, to catch a lost transaction or a statement re-prepared per op,
/// not to benchmark.
#[tokio::test]
async fn write_throughput() {
    let store = open("throughput");

    let batch: Vec<Op> = (0..500)
        .map(|i| create(&format!("/pods/batch-{i:04}"), &"x".repeat(300)))
        .collect();
    let started = Instant::now();
    store.apply(batch).await.unwrap();
    let batch_time = started.elapsed();

    let started = Instant::now();
    for i in 0..1000 {
        store
            .apply(vec![create(&format!("/pods/single-{i:04}"), "x")])
            .await
            .unwrap();
    }
    let singles_time = started.elapsed();

    // Concurrent writers share fsyncs (group commit).
    let started = Instant::now();
    let writes =
        (0..1000).map(|i| store.apply(vec![create(&format!("/pods/concurrent-{i:04}"), "x")]));
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    let concurrent_time = started.elapsed();

    println!(
        "500-op batch: {batch_time:?}; 1000 sequential creates: {singles_time:?}; \
         1000 concurrent creates: {concurrent_time:?}"
    );
    assert!(batch_time.as_secs() < 2, "500-op batch took {batch_time:?}");
    let (entries, _) = store.list("/pods/").await.unwrap();
    assert_eq!(entries.len(), 2500);
}
