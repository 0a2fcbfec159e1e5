//! The objects the controller and the heartbeats read, kept decoded in
//! memory from one watch of the whole store.
//!
//! Before, every controller round listed and decoded every service, pod
//! and node, and every heartbeat read its node and each of its pods from
//! the store: at 1,000 nodes and 20,000 pods that is 21,000 store reads a
//! second, and a round that takes seconds. Now a round copies what the
//! mirror holds, after waiting until the mirror has applied the round
//! before's own commits. What others wrote may be a moment behind, as it
//! was between the lists of one round before: every write is a
//! compare-and-swap or a create, so a plan on a stale object fails and is
//! planned again. A commit that touches a mirrored kind wakes the
//! controller at once, instead of at its next interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::api::Versioned;
use berth_model::{
    Build, BuildConfig, ClusterPod, CronJob, Deployment, ImageStream, Job, Node, Project, Service,
};
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};
use tracing::warn;

use crate::assignments::{AssignmentIndex, SharedPod};
use crate::objects::{
    self, BUILDCONFIGS, BUILDS, CRONJOBS, DEPLOYMENTS, EVENTS, IMAGESTREAMS, JOBS, NODES, PODS,
    PROJECTS, SERVICES,
};
use crate::store::{Entry, Event, EventKind, Store, StoreError};

/// Every object of the mirrored kinds, by kind, in key order (the order a
/// list of the store gives).
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub services: Kind<Service>,
    pub jobs: Kind<Job>,
    pub build_configs: Kind<BuildConfig>,
    pub builds: Kind<Build>,
    pub deployments: Kind<Deployment>,
    pub projects: Kind<Project>,
    pub image_streams: Kind<ImageStream>,
    pub cron_jobs: Kind<CronJob>,
    pub pods: Kind<ClusterPod>,
    pub nodes: Kind<Node>,
}

/// One kind's objects by name, each shared, and the map itself shared
/// until the mirror next changes it: a controller round's copy costs one
/// pointer, not tens of thousands of names (the round lets go of it before
/// the mirror's next write, which then copies nothing).
#[derive(Debug)]
pub struct Kind<T>(Arc<BTreeMap<String, Arc<Versioned<T>>>>);

impl<T> Clone for Kind<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for Kind<T> {
    fn default() -> Self {
        Self(Arc::new(BTreeMap::new()))
    }
}

impl<T: Clone> Kind<T> {
    /// The object called `name`.
    pub fn get(&self, name: &str) -> Option<&Versioned<T>> {
        self.0.get(name).map(|o| &**o)
    }

    /// The object called `name`, shared.
    pub fn get_shared(&self, name: &str) -> Option<Arc<Versioned<T>>> {
        self.0.get(name).cloned()
    }

    /// Every object, in name order, without its revision.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.values().map(|v| &v.object)
    }

    /// Every object, in name order.
    pub fn to_vec(&self) -> Vec<Versioned<T>> {
        self.0.values().map(|o| (**o).clone()).collect()
    }

    /// Every object, in name order, shared.
    pub fn shared(&self) -> Vec<Arc<Versioned<T>>> {
        self.0.values().cloned().collect()
    }
}

/// What the mirror does with one kind's changes, whatever its type.
trait Mirrored {
    fn replace(&mut self, prefix: &str, entries: &[Entry]) -> Result<(), StoreError>;
    fn put(&mut self, name: &str, entry: &Entry) -> Result<(), StoreError>;
    fn remove(&mut self, name: &str);
}

impl<T: DeserializeOwned> Mirrored for Kind<T> {
    fn replace(&mut self, prefix: &str, entries: &[Entry]) -> Result<(), StoreError> {
        self.0 = Arc::new(
            entries
                .iter()
                .map(|e| {
                    Ok((
                        e.key.trim_start_matches(prefix).to_owned(),
                        Arc::new(objects::decode(e)?),
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
        );
        Ok(())
    }

    fn put(&mut self, name: &str, entry: &Entry) -> Result<(), StoreError> {
        let object = Arc::new(objects::decode(entry)?);
        Arc::make_mut(&mut self.0).insert(name.to_owned(), object);
        Ok(())
    }

    fn remove(&mut self, name: &str) {
        if self.0.contains_key(name) {
            Arc::make_mut(&mut self.0).remove(name);
        }
    }
}

impl Objects {
    /// Each mirrored kind with its key prefix.
    fn kinds(&mut self) -> [(&'static str, &mut dyn Mirrored); 10] {
        [
            (SERVICES, &mut self.services),
            (JOBS, &mut self.jobs),
            (BUILDCONFIGS, &mut self.build_configs),
            (BUILDS, &mut self.builds),
            (DEPLOYMENTS, &mut self.deployments),
            (PROJECTS, &mut self.projects),
            (IMAGESTREAMS, &mut self.image_streams),
            (CRONJOBS, &mut self.cron_jobs),
            (PODS, &mut self.pods),
            (NODES, &mut self.nodes),
        ]
    }

    /// Applies one change; what it touched. A change at or before the
    /// revision its kind was listed at is in already.
    fn apply(
        &mut self,
        event: &Event,
        listed_at: &BTreeMap<&str, u64>,
    ) -> Result<Touched, StoreError> {
        let key = event.entry.key.as_str();
        let mut touched = Touched::default();
        // A pod moves the endpoints of the services it was and is in.
        let pod = key.strip_prefix(PODS);
        let service_of = |objects: &Self, pod: &str| {
            objects.pods.get(pod).and_then(|p| p.object.service.clone())
        };
        touched
            .services
            .extend(pod.and_then(|p| service_of(self, p)));
        if key.starts_with(NODES)
            || (key.starts_with(EVENTS) && names_a_node_condition(&event.entry))
        {
            // An address or a condition: any service's endpoints.
            touched.every_service = true;
        }
        for (prefix, kind) in self.kinds() {
            let Some(name) = key.strip_prefix(prefix) else {
                continue;
            };
            if event.entry.revision > listed_at.get(prefix).copied().unwrap_or(0) {
                match event.kind {
                    EventKind::Put => kind.put(name, &event.entry)?,
                    EventKind::Delete => kind.remove(name),
                }
                touched.mirrored = true;
                touched.revisions.push(event.entry.revision);
            }
            break;
        }
        if let (Some(pod), true) = (pod, touched.mirrored) {
            touched
                .pods
                .push((pod.to_owned(), self.pods.get_shared(pod)));
        }
        touched
            .services
            .extend(pod.and_then(|p| service_of(self, p)));
        Ok(touched)
    }
}

/// What a commit changed.
#[derive(Debug, Default)]
struct Touched {
    /// A mirrored object.
    mirrored: bool,
    /// The revisions of the commits that changed a mirrored object.
    revisions: Vec<u64>,
    /// The services whose endpoints it may move.
    services: BTreeSet<String>,
    /// Something that may move every service's endpoints.
    every_service: bool,
    /// The pods it changed, as they are now (`None`: deleted).
    pods: Vec<(String, Option<SharedPod>)>,
}

impl Touched {
    fn add(&mut self, other: Touched) {
        self.mirrored |= other.mirrored;
        self.revisions.extend(other.revisions);
        self.services.extend(other.services);
        self.every_service |= other.every_service;
        self.pods.extend(other.pods);
    }
}

/// Whether an event records a node going Ready or NotReady: endpoints are
/// only those on Ready nodes.
fn names_a_node_condition(entry: &Entry) -> bool {
    #[derive(serde::Deserialize)]
    struct KindOnly {
        kind: berth_model::EventKind,
    }
    serde_json::from_slice::<KindOnly>(&entry.value).is_ok_and(|e| {
        matches!(
            e.kind,
            berth_model::EventKind::NodeReady | berth_model::EventKind::NodeNotReady
        )
    })
}

/// Per service, the revision of the last change that may move its
/// endpoints, and who waits for the next one: a change wakes only the
/// long polls of the services it concerns.
#[derive(Debug, Default)]
struct EndpointChanges {
    services: HashMap<String, (u64, Arc<Notify>)>,
    /// The last change that may move any service's endpoints.
    every_service: u64,
    /// Woken at every change that may move any endpoint.
    any: Arc<Notify>,
}

impl EndpointChanges {
    fn record(&mut self, touched: &Touched, revision: u64) {
        if touched.every_service {
            self.every_service = revision;
            for (_, waiters) in self.services.values() {
                waiters.notify_waiters();
            }
        }
        for service in &touched.services {
            let entry = self.services.entry(service.clone()).or_default();
            entry.0 = revision;
            entry.1.notify_waiters();
        }
        if touched.every_service || !touched.services.is_empty() {
            self.any.notify_waiters();
        }
    }

    /// Whether the endpoints of `services` (all, when `None`) may have
    /// moved after `after`.
    fn changed_after(&self, services: Option<&[String]>, after: u64) -> bool {
        if self.every_service > after {
            return true;
        }
        match services {
            Some(services) => services.iter().any(|s| {
                self.services
                    .get(s)
                    .is_some_and(|(changed, _)| *changed > after)
            }),
            None => self.services.values().any(|(changed, _)| *changed > after),
        }
    }

    fn waiters(&mut self, services: Option<&[String]>) -> Vec<Arc<Notify>> {
        match services {
            Some(services) => services
                .iter()
                .map(|s| Arc::clone(&self.services.entry(s.clone()).or_default().1))
                .collect(),
            None => vec![Arc::clone(&self.any)],
        }
    }
}

/// The mirror; see the module documentation.
#[derive(Debug)]
pub struct ClusterMirror {
    objects: Mutex<Objects>,
    /// Which pods each node runs, fed with the mirror's pods.
    assignments: AssignmentIndex,
    endpoint_changes: Mutex<EndpointChanges>,
    /// The store revision every change up to which is applied; `None`
    /// until the store has been read once.
    applied: watch::Sender<Option<u64>>,
    /// Told of every applied commit that changed a mirrored object.
    changed: Notify,
    /// The revisions of the last commits that changed a mirrored object.
    recent: Mutex<RecentChanges>,
}

/// How many of the last commits that changed a mirrored object the mirror
/// names: far more than the controller's commits of one round.
const RECENT_CHANGES: usize = 4096;

/// The revisions of the last commits that changed a mirrored object,
/// oldest first, and below which revision they may be incomplete.
#[derive(Debug, Default)]
struct RecentChanges {
    revisions: std::collections::VecDeque<u64>,
    /// Changes at or before this revision may have gone unnamed (dropped
    /// for room, or read by a list rather than a watch).
    complete_after: u64,
}

impl RecentChanges {
    fn record(&mut self, revisions: &[u64]) {
        for &revision in revisions {
            if self.revisions.back().is_some_and(|&last| last >= revision) {
                continue;
            }
            if self.revisions.len() == RECENT_CHANGES {
                if let Some(dropped) = self.revisions.pop_front() {
                    self.complete_after = dropped;
                }
            }
            self.revisions.push_back(revision);
        }
    }

    /// A list replaced everything at `revision`: what came before is not
    /// named change by change.
    fn relisted(&mut self, revision: u64) {
        self.revisions.clear();
        self.complete_after = revision;
    }

    fn only_by(&self, after: u64, own: &[u64]) -> bool {
        after >= self.complete_after
            && self
                .revisions
                .iter()
                .rev()
                .take_while(|&&r| r > after)
                .all(|r| own.contains(r))
    }
}

impl Default for ClusterMirror {
    fn default() -> Self {
        Self {
            objects: Mutex::new(Objects::default()),
            assignments: AssignmentIndex::default(),
            endpoint_changes: Mutex::new(EndpointChanges::default()),
            applied: watch::channel(None).0,
            changed: Notify::new(),
            recent: Mutex::new(RecentChanges::default()),
        }
    }
}

/// How long a reader waits for the mirror to catch up with the store
/// before it gives up (the watch is down or far behind).
const CATCH_UP: Duration = Duration::from_secs(5);

impl ClusterMirror {
    /// Follows the store forever: lists the mirrored kinds, then applies
    /// each commit from one watch of every key; lists again if the watch
    /// breaks (compacted, or fell behind).
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            if let Err(e) = self.follow_once(store.as_ref()).await {
                warn!(error = %e, "the cluster mirror lost the store's watch; reading the store again");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn follow_once(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut lists = Vec::new();
        let prefixes = Objects::default().kinds().map(|(prefix, _)| prefix);
        for prefix in prefixes {
            lists.push((prefix, store.list(prefix).await?));
        }
        let listed_at: BTreeMap<&str, u64> = lists.iter().map(|(p, (_, rev))| (*p, *rev)).collect();
        let oldest = listed_at.values().copied().min().unwrap_or(0);
        let newest = listed_at.values().copied().max().unwrap_or(0);
        let mut fresh = Objects::default();
        for ((prefix, kind), (_, (entries, _))) in fresh.kinds().into_iter().zip(&lists) {
            kind.replace(prefix, entries)?;
        }
        drop(lists);
        let pods_listed_at = listed_at.get(PODS).copied().unwrap_or(0);
        self.assignments
            .reset(fresh.pods.0.values().cloned(), pods_listed_at);
        *self.lock() = fresh;
        let everything = Touched {
            mirrored: true,
            every_service: true,
            ..Touched::default()
        };
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .relisted(newest);
        // Each kind holds every change up to the oldest list, not up to the
        // newest: a service and its revision record made between the lists
        // of services and of deployments are in the second map only (a
        // round that read that would delete the record as orphaned). The
        // watch, from the oldest list on, moves the revision on as it
        // catches up.
        self.publish(oldest, &everything);
        // From the oldest list on: each kind skips what its own list held.
        let mut changes = store.watch("/", oldest).await?;
        loop {
            let Some(change) = changes.next().await else {
                return Err(StoreError::Backend("the store's watch ended".into()));
            };
            // The changes of one commit arrive together: apply all that are
            // ready, then publish, so no reader sees half a commit.
            let mut next = Some(change);
            let mut touched = Touched::default();
            let mut revision = 0;
            let mut objects = self.lock();
            while let Some(change) = next {
                let change = change?;
                revision = revision.max(change.entry.revision);
                touched.add(objects.apply(&change, &listed_at)?);
                next = changes.next().now_or_never().flatten();
            }
            drop(objects);
            for (name, pod) in std::mem::take(&mut touched.pods) {
                self.assignments.apply(&name, pod, revision);
            }
            self.publish(revision, &touched);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        // A panic while holding the lock leaves maps that are still whole.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, revision: u64, touched: &Touched) {
        self.endpoint_changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(touched, revision);
        self.applied.send_if_modified(|applied| {
            let newer = applied.is_none_or(|a| revision > a);
            if newer {
                *applied = Some(revision);
            }
            newer
        });
        if touched.mirrored {
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(&touched.revisions);
            self.changed.notify_waiters();
        }
    }

    /// Waits until the mirror holds every change up to `revision`; false
    /// if it has not within [`CATCH_UP`].
    pub async fn caught_up(&self, revision: u64) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(
            CATCH_UP,
            applied.wait_for(|a| a.is_some_and(|a| a >= revision)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the mirror holds every change up to `revision` (the
    /// reader's own last write, so that it never plans again on a state
    /// its own commit has changed), and copies it.
    pub async fn read_after(&self, revision: u64) -> Result<Objects, StoreError> {
        if !self.caught_up(revision).await {
            return Err(StoreError::Backend(format!(
                "the cluster mirror is not at revision {revision} after {CATCH_UP:?}"
            )));
        }
        Ok(self.lock().clone())
    }

    /// Reads one object from what is mirrored, once the store has been read
    /// once (it may be a little behind the store: writes based on it are
    /// compare-and-swaps that fail if so).
    pub async fn with<R>(&self, read: impl FnOnce(&Objects) -> R) -> R {
        let mut applied = self.applied.subscribe();
        let _ = applied.wait_for(Option::is_some).await;
        read(&self.lock())
    }

    /// Waits (up to `wait`) until the endpoints of `services` (of every
    /// service, when `None`) may have moved after revision `after`.
    pub async fn endpoints_changed(&self, services: Option<&[String]>, after: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let waiters = self
                .endpoint_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiters(services);
            let mut woken: Vec<_> = waiters.iter().map(|w| Box::pin(w.notified())).collect();
            // Registered before looking, so a change in between is not missed.
            for w in &mut woken {
                w.as_mut().enable();
            }
            let changed = self
                .endpoint_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .changed_after(services, after);
            if changed {
                return;
            }
            if woken.is_empty() {
                // No service asked about: nothing can change.
                tokio::time::sleep_until(deadline).await;
                return;
            }
            let any = futures_util::future::select_all(woken);
            if tokio::time::timeout_at(deadline, any).await.is_err() {
                return;
            }
        }
    }

    /// Which pods each node runs, as mirrored.
    pub fn assignments(&self) -> &AssignmentIndex {
        &self.assignments
    }

    /// The store revision the mirror holds everything up to.
    pub fn revision(&self) -> u64 {
        self.applied.borrow().unwrap_or(0)
    }

    /// Resolves at the next commit that changes a mirrored object.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Whether every commit that changed a mirrored object after revision
    /// `after`, as far as the mirror has applied, is one of `own`: a
    /// writer that woke at [`changed`](Self::changed) tells its own
    /// commits from others'. False when the mirror cannot tell (it read
    /// the store again since, or named too many changes since).
    pub fn changed_only_by(&self, after: u64, own: &[u64]) -> bool {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .only_by(after, own)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::Op;

    fn pod(name: &str) -> Op {
        pod_of(name, None)
    }

    fn pod_of(name: &str, service: Option<&str>) -> Op {
        objects::create(
            PODS,
            name,
            &serde_json::json!({
                "spec": {"name": name, "containers": [{"name": "app", "image": "local/busybox"}]},
                "service": service,
            }),
        )
    }

    /// An embedded store in a directory of its own (also for the
    /// controller's tests); remove the directory when done.
    pub(crate) fn scratch_store(name: &str) -> (Arc<dyn Store>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("berth-mirror-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.join("store.db")).unwrap());
        (store, dir)
    }

    /// A mirror that follows `store` and holds what it holds now.
    pub(crate) async fn following(
        store: &Arc<dyn Store>,
    ) -> (Arc<ClusterMirror>, tokio::task::JoinHandle<()>) {
        let mirror = Arc::new(ClusterMirror::default());
        let following = tokio::spawn(Arc::clone(&mirror).follow(Arc::clone(store)));
        mirror
            .read_after(store.revision().await.unwrap())
            .await
            .unwrap();
        (mirror, following)
    }

    #[tokio::test]
    async fn a_pod_change_wakes_only_the_endpoint_polls_of_its_service() {
        let (store, dir) = scratch_store("endpoints");
        let (mirror, following) = following(&store).await;
        let after = mirror.revision();
        let poll = |service: &'static str| {
            let mirror = Arc::clone(&mirror);
            tokio::spawn(async move {
                let only = [service.to_owned()];
                mirror
                    .endpoints_changed(Some(&only), after, Duration::from_secs(5))
                    .await;
            })
        };
        let (web, db) = (poll("web"), poll("db"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .apply(vec![pod_of("web-1", Some("web"))])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), web)
            .await
            .expect("web's poll woken by a web pod")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!db.is_finished(), "a web pod woke the poll of db");
        db.abort();
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_writer_tells_its_own_commits_from_others() {
        let (store, dir) = scratch_store("own");
        let (mirror, following) = following(&store).await;
        let read_at = mirror.revision();
        let mine = store.apply(vec![pod("mine")]).await.unwrap();
        mirror.read_after(mine).await.unwrap();
        assert!(mirror.changed_only_by(read_at, &[mine]));
        assert!(!mirror.changed_only_by(read_at, &[]), "a change since");
        let theirs = store.apply(vec![pod("theirs")]).await.unwrap();
        mirror.read_after(theirs).await.unwrap();
        assert!(
            !mirror.changed_only_by(read_at, &[mine]),
            "someone else's commit after the read"
        );
        assert!(
            mirror.changed_only_by(theirs, &[]),
            "nothing after the last"
        );
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store that commits `during` once, right before listing
    /// `prefix`: a write that lands between the mirror's lists; and whose
    /// watch is slow to open, so that the mirror is read before it.
    struct WritesWhileListing {
        inner: Arc<dyn Store>,
        prefix: &'static str,
        during: Mutex<Option<Vec<Op>>>,
    }

    impl Store for WritesWhileListing {
        fn get<'a>(&'a self, key: &'a str) -> crate::store::StoreFuture<'a, Option<Entry>> {
            self.inner.get(key)
        }

        fn list<'a>(&'a self, prefix: &'a str) -> crate::store::StoreFuture<'a, (Vec<Entry>, u64)> {
            Box::pin(async move {
                let during = self
                    .during
                    .lock()
                    .unwrap()
                    .take_if(|_| prefix == self.prefix);
                if let Some(ops) = during {
                    self.inner.apply(ops).await?;
                }
                self.inner.list(prefix).await
            })
        }

        fn apply<'a>(&'a self, ops: Vec<Op>) -> crate::store::StoreFuture<'a, u64> {
            self.inner.apply(ops)
        }

        fn watch<'a>(
            &'a self,
            prefix: &'a str,
            after: u64,
        ) -> crate::store::StoreFuture<'a, crate::store::Watch> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.inner.watch(prefix, after).await
            })
        }

        fn revision(&self) -> crate::store::StoreFuture<'_, u64> {
            self.inner.revision()
        }
    }

    #[tokio::test]
    async fn a_read_after_a_commit_listed_in_one_kind_only_waits_for_the_others() {
        let (inner, dir) = scratch_store("lists");
        // Projects are listed before pods: a commit of a project and a pod
        // between those lists is in the pods' list only.
        let store: Arc<dyn Store> = Arc::new(WritesWhileListing {
            inner: Arc::clone(&inner),
            prefix: PODS,
            during: Mutex::new(Some(vec![
                objects::create(PROJECTS, "shop", &serde_json::json!({"name": "shop"})),
                pod("web-0"),
            ])),
        });
        let mirror = Arc::new(ClusterMirror::default());
        let following = tokio::spawn(Arc::clone(&mirror).follow(Arc::clone(&store)));
        while inner.list(PODS).await.unwrap().0.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let objects = mirror
            .read_after(inner.revision().await.unwrap())
            .await
            .unwrap();
        assert!(objects.pods.get("web-0").is_some());
        assert!(
            objects.projects.get("shop").is_some(),
            "the pod's commit without its project"
        );
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recent_changes_cannot_vouch_for_what_they_dropped_or_never_saw() {
        let mut recent = RecentChanges::default();
        recent.relisted(10);
        assert!(!recent.only_by(9, &[]), "before the list");
        assert!(recent.only_by(10, &[]));
        // The changes of one commit name its revision once.
        recent.record(&[11, 11, 12]);
        assert!(recent.only_by(10, &[11, 12]));
        assert!(recent.only_by(11, &[12]));
        assert!(!recent.only_by(10, &[12]));
        let many: Vec<u64> = (13..13 + RECENT_CHANGES as u64).collect();
        recent.record(&many);
        let last = *many.last().unwrap();
        assert!(!recent.only_by(11, &many), "11 and 12 were dropped");
        assert!(recent.only_by(last - 1, &[last]));
    }

    #[tokio::test]
    async fn a_node_sees_its_assignments_from_the_mirrored_pods() {
        let (store, dir) = scratch_store("assignments");
        let bound = |name: &str| {
            objects::create(
                PODS,
                name,
                &serde_json::json!({
                    "spec": {"name": name, "containers": [{"name": "app", "image": "local/busybox"}]},
                    "node": "h1",
                }),
            )
        };
        store.apply(vec![bound("listed")]).await.unwrap();
        let mirror = Arc::new(ClusterMirror::default());
        let following = tokio::spawn(Arc::clone(&mirror).follow(Arc::clone(&store)));
        let first = mirror
            .assignments()
            .assignments("h1", None, Duration::ZERO)
            .await;
        assert_eq!(first.pods.len(), 1, "the listed pod");
        let waiting = {
            let mirror = Arc::clone(&mirror);
            tokio::spawn(async move {
                mirror
                    .assignments()
                    .assignments("h1", Some(first.revision), Duration::from_secs(5))
                    .await
            })
        };
        store.apply(vec![bound("watched")]).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the long poll woken by a pod bound to h1")
            .unwrap();
        let names: Vec<&str> = second.pods.iter().map(|p| p.spec.name.as_str()).collect();
        assert_eq!(names, ["listed", "watched"]);
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_read_sees_every_commit_before_it_and_a_change_wakes_the_controller() {
        let (store, dir) = scratch_store("read");
        store.apply(vec![pod("a")]).await.unwrap();
        let mirror = Arc::new(ClusterMirror::default());
        let following = tokio::spawn(Arc::clone(&mirror).follow(Arc::clone(&store)));
        let first = mirror
            .read_after(store.revision().await.unwrap())
            .await
            .unwrap();
        assert_eq!(first.pods.to_vec().len(), 1);

        let woken = {
            let mirror = Arc::clone(&mirror);
            tokio::spawn(async move { mirror.changed().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.apply(vec![pod("b")]).await.unwrap();
        // The write is acknowledged: a read from now on holds it.
        let second = mirror
            .read_after(store.revision().await.unwrap())
            .await
            .unwrap();
        let names: Vec<String> = second
            .pods
            .to_vec()
            .into_iter()
            .map(|p| p.object.spec.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        tokio::time::timeout(Duration::from_secs(1), woken)
            .await
            .expect("a new pod wakes the controller")
            .unwrap();

        store
            .apply(vec![objects::delete(PODS, "a", None)])
            .await
            .unwrap();
        let third = mirror
            .read_after(store.revision().await.unwrap())
            .await
            .unwrap();
        assert!(third.pods.get("a").is_none());
        following.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
