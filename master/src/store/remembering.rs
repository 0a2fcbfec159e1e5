//! A store that remembers the revision of its own last write, so that a
//! reader of the cluster mirror can wait until the mirror holds its writes
//! (the store's own revision may be ahead of anything the mirror will see:
//! an etcd shared with other clusters moves it too), and the revisions of
//! its writes since it was last asked, so that the writer can tell its own
//! commits from others' when the mirror says something changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Entry, Op, Store, StoreFuture, Watch};

/// `inner`, remembering the revision of the last commit made through it.
pub struct Remembering {
    inner: Arc<dyn Store>,
    last_write: AtomicU64,
    writes: Mutex<Vec<u64>>,
}

impl Remembering {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            last_write: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// The revision of the last commit made through this store (0 if none).
    pub fn last_write(&self) -> u64 {
        self.last_write.load(Ordering::Acquire)
    }

    /// The revisions of the commits made through this store since the last
    /// call.
    pub fn take_writes(&self) -> Vec<u64> {
        std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::fmt::Debug for Remembering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembering")
            .field("last_write", &self.last_write())
            .finish_non_exhaustive()
    }
}

impl Store for Remembering {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        self.inner.get(key)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        self.inner.list(prefix)
    }

    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            // No ops: the store answers its current revision, someone
            // else's commit if any.
            let wrote = !ops.is_empty();
            let revision = self.inner.apply(ops).await?;
            self.last_write.fetch_max(revision, Ordering::AcqRel);
            if wrote {
                self.writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(revision);
            }
            Ok(revision)
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        self.inner.watch(prefix, after)
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        self.inner.revision()
    }
}
