//! The pods' unit states and container states as last read, so that a
//! heartbeat with many idle pods costs no D-Bus or Docker call, and the
//! periodic resync reads no unit again.
//!
//! An entry is read once and kept until something says it changed:
//! systemd's `PropertiesChanged` (and `UnitNew`/`UnitRemoved`) for a unit,
//! Docker's events for a container. A change forgets the entry and the next
//! status reads it again. Signals only forget, never write values: a signal
//! handled after a newer read would otherwise put an older state back.
//! Everything is forgotten every [`FULL_RESYNC`], whenever an event stream
//! (re)connects and when Docker is back from a restart, so a missed event
//! cannot leave a status wrong for long.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{debug, warn};

use crate::docker::{Docker, InspectedState};
use crate::systemd::{Systemd, SystemdError, UnitManager, UnitState};

/// How often everything is read again, whatever the events said. Events
/// are not lost while their streams stay connected (a reconnect flushes),
/// so this is a safety net, and it is most of what idle pods cost: with
/// 100 pods, about 1,000 D-Bus property reads and 100 Docker inspects
/// (every 60 s, that was 15% of an idle agent's CPU).
pub const FULL_RESYNC: Duration = Duration::from_secs(180);

/// Values by name, each read at a point in a sequence of changes: a read
/// that began before a change of its name is used once but not kept.
#[derive(Debug)]
struct Entries<T> {
    /// Counts changes and full invalidations.
    seq: u64,
    /// Reads that began before this are not kept.
    flushed: u64,
    /// The last change of each name since the last flush.
    changed: HashMap<String, u64>,
    /// `None`: read and found absent (a unit not loaded, a container gone).
    values: HashMap<String, Option<T>>,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self {
            seq: 0,
            flushed: 0,
            changed: HashMap::new(),
            values: HashMap::new(),
        }
    }
}

impl<T: Clone> Entries<T> {
    fn get(&self, name: &str) -> Option<Option<T>> {
        self.values.get(name).cloned()
    }

    fn store(&mut self, name: &str, value: Option<T>, read_since: u64) {
        let changed_since = self.changed.get(name).is_some_and(|at| *at > read_since);
        if read_since >= self.flushed && !changed_since {
            self.values.insert(name.to_owned(), value);
        }
    }

    fn changed(&mut self, name: &str) {
        self.seq += 1;
        self.changed.insert(name.to_owned(), self.seq);
        self.values.remove(name);
    }

    fn flush(&mut self) {
        self.seq += 1;
        self.flushed = self.seq;
        self.changed.clear();
        self.values.clear();
    }
}

/// Where a read of the cache's sources began; see [`StatusCache::read_mark`].
#[derive(Debug, Clone, Copy)]
pub struct ReadMark {
    units: u64,
    containers: u64,
}

/// Unit states by unit name and container states by Docker name.
#[derive(Debug, Default)]
pub struct StatusCache {
    units: Mutex<Entries<UnitState>>,
    containers: Mutex<Entries<InspectedState>>,
    /// Woken at each change and flush: a status shown may be stale.
    changes: tokio::sync::Notify,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatusCache {
    /// Taken before reading systemd or Docker: what was read is kept only
    /// if nothing changed since.
    pub fn read_mark(&self) -> ReadMark {
        ReadMark {
            units: locked(&self.units).seq,
            containers: locked(&self.containers).seq,
        }
    }

    /// The unit's state as last read: `Some(None)` for a unit not loaded,
    /// `None` when it must be read.
    pub fn unit(&self, unit: &str) -> Option<Option<UnitState>> {
        locked(&self.units).get(unit)
    }

    /// The container's state as last read, as for [`StatusCache::unit`].
    pub fn container(&self, name: &str) -> Option<Option<InspectedState>> {
        locked(&self.containers).get(name)
    }

    /// Keeps a unit's state read since `mark`.
    pub fn store_unit(&self, unit: &str, state: Option<UnitState>, mark: ReadMark) {
        locked(&self.units).store(unit, state, mark.units);
    }

    /// Keeps a container's state read since `mark`.
    pub fn store_container(&self, name: &str, state: Option<InspectedState>, mark: ReadMark) {
        locked(&self.containers).store(name, state, mark.containers);
    }

    /// systemd said the unit changed.
    pub fn unit_changed(&self, unit: &str) {
        locked(&self.units).changed(unit);
        self.changes.notify_one();
    }

    /// Docker said the container changed.
    pub fn container_changed(&self, name: &str) {
        locked(&self.containers).changed(name);
        self.changes.notify_one();
    }

    /// Forgets the units and containers of a pod the agent just acted on.
    pub fn forget(&self, units: &[String], containers: &[String]) {
        let mut entries = locked(&self.units);
        units.iter().for_each(|u| entries.changed(u));
        drop(entries);
        let mut entries = locked(&self.containers);
        containers.iter().for_each(|c| entries.changed(c));
        drop(entries);
        self.changes.notify_one();
    }

    /// Forgets everything: the next status reads it all again.
    pub fn flush(&self) {
        locked(&self.units).flush();
        locked(&self.containers).flush();
        self.changes.notify_one();
    }

    /// Returns at the next change or flush, or at once if there was one
    /// since it last returned: whoever shows statuses looks again then.
    pub async fn changed(&self) {
        self.changes.notified().await;
    }
}

/// A service manager whose unit states come from the cache where nothing
/// changed since they were read: what the heartbeat and the periodic
/// resync look at. Everything else goes to systemd.
#[derive(Debug)]
pub struct CachedUnits<'a, S> {
    /// The service manager.
    pub systemd: &'a S,
    /// The states last read.
    pub cache: &'a StatusCache,
}

impl<S: UnitManager> UnitManager for CachedUnits<'_, S> {
    async fn enable(&self, paths: &[String]) -> Result<(), SystemdError> {
        self.systemd.enable(paths).await
    }
    async fn disable(&self, names: &[String]) -> Result<(), SystemdError> {
        self.systemd.disable(names).await
    }
    async fn reload(&self) -> Result<(), SystemdError> {
        self.systemd.reload().await
    }
    async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.systemd.start(unit).await
    }
    async fn enqueue_start(&self, unit: &str) -> Result<(), SystemdError> {
        self.systemd.enqueue_start(unit).await
    }
    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.systemd.stop(unit).await
    }
    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.systemd.restart(unit).await
    }
    async fn reset_failed(&self, unit: &str) {
        self.systemd.reset_failed(unit).await;
    }
    async fn states(&self, units: &[String]) -> Result<HashMap<String, UnitState>, SystemdError> {
        let mark = self.cache.read_mark();
        let mut states = HashMap::new();
        let mut unread = Vec::new();
        for unit in units {
            match self.cache.unit(unit) {
                Some(known) => states.extend(known.map(|s| (unit.clone(), s))),
                None => unread.push(unit.clone()),
            }
        }
        if !unread.is_empty() {
            let mut read = self.systemd.states(&unread).await?;
            for unit in unread {
                let state = read.remove(&unit);
                self.cache.store_unit(&unit, state.clone(), mark);
                states.extend(state.map(|s| (unit, s)));
            }
        }
        Ok(states)
    }
    fn enabled(&self, units: &[String]) -> BTreeSet<String> {
        self.systemd.enabled(units)
    }
}

/// Keeps `cache` in step with systemd's signals and Docker's events, and
/// flushes it every [`FULL_RESYNC`], forever.
pub async fn follow(cache: Arc<StatusCache>, docker: Docker, systemd: Systemd) {
    let units = async {
        loop {
            match systemd.unit_changes().await {
                Ok(mut changes) => {
                    // Subscribed: what changed before is read again.
                    cache.flush();
                    while let Some(unit) = changes.next().await {
                        debug!(unit = %unit, "unit changed");
                        cache.unit_changed(&unit);
                    }
                    warn!("systemd's signals ended; subscribing again");
                }
                Err(e) => warn!(error = %e, "watching systemd's unit changes"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let containers = async {
        loop {
            cache.flush();
            // Replays what happened since just before the flush, so a
            // change between the two is not missed.
            let mut changes = docker.container_changes();
            while let Some(change) = changes.next().await {
                match change {
                    Ok(name) => cache.container_changed(&name),
                    Err(e) => {
                        debug!(error = %e, "docker events; subscribing again");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let resync = async {
        let mut every = tokio::time::interval(FULL_RESYNC);
        every.tick().await;
        loop {
            every.tick().await;
            cache.flush();
        }
    };
    tokio::join!(units, containers, resync);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> UnitState {
        UnitState {
            active_state: "active".into(),
            sub_state: "running".into(),
            ..UnitState::default()
        }
    }

    #[test]
    fn a_state_read_is_kept_until_its_unit_changes() {
        let cache = StatusCache::default();
        assert_eq!(cache.unit("berth-web-app.service"), None, "never read");
        cache.store_unit("berth-web-app.service", Some(active()), cache.read_mark());
        cache.store_unit("berth-web-net.service", None, cache.read_mark());
        assert_eq!(cache.unit("berth-web-app.service"), Some(Some(active())));
        assert_eq!(
            cache.unit("berth-web-net.service"),
            Some(None),
            "known not loaded"
        );

        cache.unit_changed("berth-web-app.service");
        assert_eq!(cache.unit("berth-web-app.service"), None, "read again");
        assert_eq!(cache.unit("berth-web-net.service"), Some(None));
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_kept() {
        let cache = StatusCache::default();
        let mark = cache.read_mark();
        // The unit stops while its old state is on the way back.
        cache.unit_changed("berth-web-app.service");
        cache.store_unit("berth-web-app.service", Some(active()), mark);
        assert_eq!(cache.unit("berth-web-app.service"), None);

        // Another unit's change does not spoil this read.
        let mark = cache.read_mark();
        cache.unit_changed("berth-db-app.service");
        cache.store_unit("berth-web-app.service", Some(active()), mark);
        assert_eq!(cache.unit("berth-web-app.service"), Some(Some(active())));
    }

    #[test]
    fn a_flush_forgets_everything_and_what_was_being_read() {
        let cache = StatusCache::default();
        let exited = InspectedState {
            id: "c0ffee".into(),
            exit_code: Some(0),
            ..InspectedState::default()
        };
        cache.store_container("berth.web.app", Some(exited.clone()), cache.read_mark());
        cache.store_unit("berth-web-app.service", Some(active()), cache.read_mark());
        let mark = cache.read_mark();
        cache.flush();
        assert_eq!(cache.container("berth.web.app"), None);
        assert_eq!(cache.unit("berth-web-app.service"), None);
        cache.store_container("berth.web.app", Some(exited.clone()), mark);
        assert_eq!(
            cache.container("berth.web.app"),
            None,
            "read before the flush"
        );
        cache.store_container("berth.web.app", Some(exited.clone()), cache.read_mark());
        assert_eq!(cache.container("berth.web.app"), Some(Some(exited)));
    }

    #[test]
    fn a_container_event_forgets_only_that_container() {
        let cache = StatusCache::default();
        let running = InspectedState {
            id: "a".into(),
            running: true,
            ..InspectedState::default()
        };
        cache.store_container("berth.web.app", Some(running.clone()), cache.read_mark());
        cache.store_container("berth.web", Some(running.clone()), cache.read_mark());
        cache.container_changed("berth.web.app");
        assert_eq!(cache.container("berth.web.app"), None);
        assert_eq!(cache.container("berth.web"), Some(Some(running)));
    }
}
