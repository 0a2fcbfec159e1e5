//! A store that times its commits for `/metrics`, around whichever backend
//! is configured, so neither backend nor any caller has to.

use std::sync::Arc;
use std::time::Instant;

use super::{Entry, Op, Store, StoreFuture, Watch};
use crate::instruments::Instruments;

/// `inner`, with every `apply` timed and its failures counted.
pub struct Timed {
    inner: Arc<dyn Store>,
    instruments: Arc<Instruments>,
}

impl Timed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, instruments: Arc<Instruments>) -> Self {
        Self { inner, instruments }
    }
}

impl std::fmt::Debug for Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timed").finish_non_exhaustive()
    }
}

impl Store for Timed {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        self.inner.get(key)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        self.inner.list(prefix)
    }

    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let started = Instant::now();
            let committed = self.inner.apply(ops).await;
            self.instruments.store_commits.observe(started.elapsed());
            if committed.is_err() {
                self.instruments.store_commit_failed();
            }
            committed
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        self.inner.watch(prefix, after)
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        self.inner.revision()
    }
}
