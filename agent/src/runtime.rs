//! The agent's pods: every request and every resync goes through here.
//! Each pod is acted on by one caller at a time (its own lock), and port
//! allocation and the records of what runs are read and written under one
//! lock, so allocations never race; different pods start at once.
//! Requests are commands: create, delete, start, stop, restart; the API
//! turns HTTP into these calls and never touches systemd or Docker itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::{
    ContainerStatus, EnvVar, EventKind, HostPort, Pod, PodPhase, PodStatus, RestartPolicy,
    StartFailure, UnitSettings, ValidationErrors,
};
use futures_util::StreamExt;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::cluster_registry::ClusterRegistry;
use crate::config::AgentConfig;
use crate::docker::{
    ContainerEngine, Docker, Engine, InspectedState, LABEL_HOST_PORTS, LABEL_POD_SPEC,
    LABEL_SOURCE, PODMAN_SOCKET,
};
use crate::host_path;
use crate::journal::{EventJournal, SystemJournal};
use crate::ports::{self, Held};
use crate::reconcile::assignments::{plan_assignments, Assignment};
use crate::reconcile::desired::{app_container_name, desired_pod, DesiredPod};
use crate::reconcile::execute::{execute, Effects, Pulls};
use crate::reconcile::observe::{observe_all, observe_pod, UnitDir};
use crate::reconcile::plan::{plan, plan_replacement, Action, Intent, ObservedPod};
use crate::stamped_files::StampedFiles;
use crate::status_cache::{CachedUnits, StatusCache};
use crate::store::{Desired, PodRecord, PodStore, PortBinding, Source};
use crate::systemd::{Systemd, UnitManager, UnitState};
use crate::unit::pod_slice_name;

/// What deleting a pod does with its named volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volumes {
    /// They live and die with the pod.
    Remove,
    /// Kept, for a pod that may be created here again (package removal).
    Keep,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is invalid; nothing was touched.
    #[error("invalid pod: {0}")]
    Invalid(ValidationErrors),
    /// A different pod of that name exists.
    #[error("{0}")]
    Conflict(String),
    /// No such pod.
    #[error("pod {0} not found")]
    NotFound(String),
    /// A fixed host port is held on this host, by a pod or a process;
    /// nothing was touched.
    #[error("invalid pod: {0}")]
    PortTaken(ValidationErrors),
    /// Starting failed on this host (a pull, a create, a start); what was
    /// done was rolled back.
    #[error("creating pod {pod}: {cause}; {rollback}")]
    NotStarted {
        /// The pod.
        pod: String,
        /// The event that reports it.
        kind: EventKind,
        /// The step that failed, and why.
        cause: String,
        /// What rolling back did.
        rollback: String,
    },
    /// Applying failed; what was done was rolled back.
    #[error("{0}")]
    Failed(String),
}

/// The agent's pods and the systems they live in: the container engine
/// `D`, the service manager `S` and the journal `J` (on a host, Docker,
/// systemd and the system journal; in tests, recording fakes).
#[derive(Debug)]
pub struct Runtime<D = Docker, S = Systemd, J = SystemJournal> {
    config: AgentConfig,
    store: PodStore,
    docker: D,
    systemd: S,
    journal: J,
    /// Where the marks of units started since boot go.
    started_marks: PathBuf,
    /// What the agent's configuration puts into every unit file; the
    /// heartbeat reports it, for `berth diff`.
    unit_settings: UnitSettings,
    /// Held while records are read to allocate ports or adopt pods, and
    /// while a pod's record is first saved.
    lock: Mutex<()>,
    /// One lock per pod: whoever acts on a pod holds it; it counts the
    /// times the pod was acted on, so a resync skips a pod acted on since
    /// it looked.
    pod_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<u64>>>>,
    /// Each pod's desired state as last rendered for its status, with the
    /// record it was rendered from: statuses are read each second, and
    /// rendering (and hashing) a hundred pods' units each time was most of
    /// an idle agent's work.
    rendered: std::sync::Mutex<HashMap<String, (PodRecord, Arc<DesiredPod>)>>,
    /// berth-shim's word on whether a run ended by SIGKILL was an OOM
    /// kill, by (container ID, start of the run): asked once per run.
    oom_verdicts: std::sync::Mutex<HashMap<(String, String), OomVerdict>>,
    /// Pods the master assigned here that could not be started (an image
    /// that does not pull, a port that is taken, a host path refused), with
    /// why and when to try again: reported to the master, so `berth ps`
    /// says why.
    failed_starts: std::sync::Mutex<BTreeMap<String, FailedStart>>,
    /// Whether a full resync has adopted what runs on this host: until
    /// then the records may lack running pods, and the master's
    /// assignments must wait (see [`Runtime::adopted`]).
    adopted: tokio::sync::watch::Sender<bool>,
    /// The cluster's registry, and this node's pull tokens for it.
    registry: Arc<ClusterRegistry>,
    /// The pulls under way, by pod.
    pulls: Pulls,
    /// The size of each named volume (by Docker name) and when it was
    /// measured: walked at most every [`VOLUME_SIZE_TTL`].
    volume_sizes: std::sync::Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// Unit and container states as last read, for the heartbeat.
    status_cache: Arc<StatusCache>,
    /// The unit files as last read, for the resync.
    unit_files: StampedFiles<String>,
}

/// How long a measured volume size is reported before it is measured
/// again: walking a volume's files costs I/O, and statuses go out every
/// second.
const VOLUME_SIZE_TTL: Duration = Duration::from_secs(30);

/// Bytes of the regular files under `dir` (symlinks not followed); 0 for
/// what cannot be read.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

impl Runtime {
    /// A runtime over the host's Docker, systemd and journal.
    pub fn new(config: AgentConfig, store: PodStore, docker: Docker, systemd: Systemd) -> Self {
        Runtime::with_systems(
            config,
            store,
            docker,
            systemd,
            SystemJournal,
            PathBuf::from(crate::unit::render::STARTED_MARKS_DIR),
        )
    }
}

impl<D: ContainerEngine, S: UnitManager, J: EventJournal> Runtime<D, S, J> {
    /// A runtime over the given systems; units it starts are marked in
    /// `started_marks`.
    pub fn with_systems(
        config: AgentConfig,
        store: PodStore,
        docker: D,
        systemd: S,
        journal: J,
        started_marks: PathBuf,
    ) -> Self {
        let default_socket = Path::new(crate::config::DEFAULT_DOCKER_SOCKET);
        let engine = docker.engine();
        // dockerd reads a registry's CA from /etc/docker/certs.d, and so
        // does Podman (after /etc/containers/certs.d); another engine (a
        // test's) gets none installed.
        let certs_dir = (config.docker_socket == default_socket || engine == Engine::Podman)
            .then(|| PathBuf::from(crate::cluster_registry::DOCKER_CERTS_DIR));
        let shim_environment = if config.docker_socket == default_socket {
            Vec::new()
        } else {
            vec![EnvVar::new(
                "DOCKER_HOST",
                format!("unix://{}", config.docker_socket.display()),
            )]
        };
        // A path that is not UTF-8 stays empty, and rendering refuses it.
        let unit_settings = UnitSettings {
            shim_path: config.shim_path.to_str().unwrap_or_default().to_owned(),
            shim_environment,
            agent_path: non_default(&config.agent_path, berth_model::cluster::DEFAULT_AGENT_PATH),
            builds_dir: non_default(
                &config.state_dir.join(crate::build::BUILDS_DIR),
                berth_model::cluster::DEFAULT_BUILDS_DIR,
            ),
            engine_unit: match engine {
                Engine::Docker => String::new(),
                Engine::Podman => engine.unit().to_owned(),
            },
            shim_root: match crate::shim_root::prepare(&config.state_dir, &config.docker_socket) {
                Ok(Some(root)) => non_default(&root, berth_model::cluster::DEFAULT_SHIM_ROOT),
                Ok(None) => "/".to_owned(),
                Err(e) => {
                    warn!(error = %e, "cannot make the shims' root directory; shims run in the host's");
                    "/".to_owned()
                }
            },
        };
        Self {
            config,
            store,
            docker,
            systemd,
            journal,
            started_marks,
            unit_settings,
            lock: Mutex::new(()),
            pod_locks: std::sync::Mutex::default(),
            rendered: std::sync::Mutex::default(),
            oom_verdicts: std::sync::Mutex::default(),
            failed_starts: std::sync::Mutex::default(),
            adopted: tokio::sync::watch::Sender::new(false),
            registry: Arc::new(ClusterRegistry::new(certs_dir)),
            pulls: Pulls::default(),
            volume_sizes: std::sync::Mutex::default(),
            status_cache: Arc::default(),
            unit_files: StampedFiles::default(),
        }
    }

    /// Returns once a full resync has adopted what runs on this host.
    pub async fn adopted(&self) {
        let mut adopted = self.adopted.subscribe();
        let _ = adopted.wait_for(|done| *done).await;
    }

    /// Whether an image is being pulled for a pod: its progress is in the
    /// pod's status, and no event announces it.
    pub fn pulling(&self) -> bool {
        self.pulls.any()
    }

    /// Returns when a pull begins.
    pub async fn pull_began(&self) {
        self.pulls.began().await;
    }

    /// The unit and container states the heartbeat reports from; events
    /// keep it fresh (see [`crate::status_cache::follow`]).
    pub fn status_cache(&self) -> &Arc<StatusCache> {
        &self.status_cache
    }

    /// The host's systemd.
    pub fn systemd(&self) -> &S {
        &self.systemd
    }

    /// The systemd unit of the container engine, when the agent uses the
    /// default Docker socket or Podman's (another engine's unit is not
    /// known).
    pub fn engine_unit(&self) -> Option<&'static str> {
        let engine = self.docker.engine();
        let default_socket = match engine {
            Engine::Docker => crate::config::DEFAULT_DOCKER_SOCKET,
            Engine::Podman => PODMAN_SOCKET,
        };
        (self.config.docker_socket == Path::new(default_socket)).then_some(engine.unit())
    }

    /// The host's dockerd.
    pub fn docker(&self) -> &D {
        &self.docker
    }

    /// The cluster's registry, as this node pulls from it.
    pub fn registry(&self) -> &Arc<ClusterRegistry> {
        &self.registry
    }

    /// The agent's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Where the agent keeps its state.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// What the agent's configuration puts into every unit file it
    /// writes.
    pub fn unit_settings(&self) -> &UnitSettings {
        &self.unit_settings
    }

    fn effects(&self) -> Effects<'_, D, S> {
        Effects {
            docker: &self.docker,
            systemd: &self.systemd,
            config: &self.config,
            registry: &self.registry,
            pulls: &self.pulls,
            started_marks: &self.started_marks,
        }
    }

    fn desired(&self, record: &PodRecord) -> Result<DesiredPod, RequestError> {
        desired_pod(record, &self.unit_settings).map_err(|e| {
            let mut errors = ValidationErrors::new();
            errors.push("name", e.to_string());
            RequestError::Invalid(errors)
        })
    }

    /// Whether this node has a record of pod `name` (it runs, is stopped,
    /// or is being deleted).
    pub fn holds(&self, name: &str) -> Result<bool, RequestError> {
        Ok(self.records()?.iter().any(|r| r.pod.name == name))
    }

    fn records(&self) -> Result<Vec<PodRecord>, RequestError> {
        self.store
            .load_all()
            .map_err(|e| RequestError::Failed(format!("reading pod records: {e:#}")))
    }

    fn record(&self, name: &str) -> Result<PodRecord, RequestError> {
        self.records()?
            .into_iter()
            .find(|r| r.pod.name == name)
            .ok_or_else(|| RequestError::NotFound(name.into()))
    }

    async fn observe(&self, name: &str) -> Result<ObservedPod, RequestError> {
        observe_pod(
            &self.docker,
            &self.systemd,
            &self.unit_dir(&self.config.units_dir()),
            &self.config.state_dir,
            name,
        )
        .await
        .map_err(|e| RequestError::Failed(e.to_string()))
    }

    /// Checks what only this host can judge: host paths against the
    /// allow-list and on disk (no symlinks), fixed host ports against the
    /// node's range and allow list.
    fn check_host(&self, pod: &Pod) -> Result<(), RequestError> {
        let mut errors = ValidationErrors::new();
        for (i, volume) in pod.volumes.iter().enumerate() {
            if let Some(path) = &volume.host_path {
                if let Err(e) = host_path::check(&self.config.host_path_allow, path) {
                    errors.push(format!("volumes[{i}].hostPath"), e.to_string());
                }
            }
            if let (Some(defined), None) = (&volume.network_volume, volume.network()) {
                // Mounting nothing would give the pod an empty directory
                // of the node's instead of its data.
                errors.push(
                    format!("volumes[{i}].networkVolume"),
                    format!("the master sent network volume {defined:?} without its source"),
                );
            }
            if let Some(class) = &volume.class {
                if !self.config.volume_classes.contains_key(class) {
                    errors.push(
                        format!("volumes[{i}].class"),
                        format!("this node has no volume class {class:?} (volume-classes)"),
                    );
                }
            }
        }
        berth_model::pod::check_network_servers(
            pod,
            &self.config.network_volume_servers,
            "this node's",
            "",
            &mut errors,
        );
        self.config.host_port_policy().check(pod, "", &mut errors);
        errors.into_result().map_err(RequestError::Invalid)
    }

    /// Every pod on this host with its containers' names (from the pod
    /// records: no D-Bus or Docker call).
    pub fn pod_containers(&self) -> Vec<(String, Vec<String>)> {
        self.records()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let containers = r.pod.containers.iter().map(|c| c.name.clone()).collect();
                (r.pod.name, containers)
            })
            .collect()
    }

    /// Creates and starts a pod. Repeating the same request changes nothing
    /// (`Ok((status, false))`). On failure nothing is left behind: no unit
    /// file, container, record or port.
    pub async fn create(
        &self,
        pod: Pod,
        source: Source,
    ) -> Result<(PodStatus, bool), RequestError> {
        pod.validate().map_err(RequestError::Invalid)?;
        self.check_host(&pod)?;
        let _acting = self.act_on(&pod.name).await;
        let (record, created) = self.create_acting(pod, source).await?;
        Ok((self.status_of(&record).await?, created))
    }

    /// Creates and starts a pod the master assigned here, like
    /// [`Runtime::create`] but without reading its status afterwards:
    /// nobody waits for it (the observer reads it for the heartbeat), and
    /// in a burst each read would hold one of the [`START_CONCURRENCY`]
    /// starts for a round of D-Bus and Docker calls.
    async fn create_assigned(&self, pod: Pod) -> Result<(), RequestError> {
        pod.validate().map_err(RequestError::Invalid)?;
        self.check_host(&pod)?;
        let _acting = self.act_on(&pod.name).await;
        self.create_acting(pod, Source::Master).await.map(drop)
    }

    /// Creates and starts `pod` while the caller acts on it: the record it
    /// runs by, and whether it is new (the same spec again changes
    /// nothing).
    async fn create_acting(
        &self,
        pod: Pod,
        source: Source,
    ) -> Result<(PodRecord, bool), RequestError> {
        let guard = self.lock.lock().await;
        let records = self.records()?;
        if let Some(existing) = records.iter().find(|r| r.pod.name == pod.name) {
            if existing.pod == pod {
                return Ok((existing.clone(), false));
            }
            return Err(RequestError::Conflict(format!(
                "pod {} already exists with a different spec: remove it first (berth local rm {})",
                pod.name, pod.name
            )));
        }
        let record = self.start_new(pod, source, &records, false, guard).await?;
        Ok((record, true))
    }

    /// Replaces the pod of `pod`'s name by `pod`: the old pod goes (units
    /// stopped before containers are removed), the new one is created and
    /// started, by one plan. If the new pod cannot be started, neither pod
    /// is left behind, as if it had been deleted and then failed to create.
    pub async fn replace(&self, pod: Pod, source: Source) -> Result<PodStatus, RequestError> {
        let _acting = self.act_on(&pod.name).await;
        let guard = self.lock.lock().await;
        let records = self.records()?;
        if !records.iter().any(|r| r.pod.name == pod.name) {
            return Err(RequestError::NotFound(pod.name));
        }
        if let Err(refused) = pod
            .validate()
            .map_err(RequestError::Invalid)
            .and_then(|()| self.check_host(&pod))
        {
            self.remove_everything(&pod.name, Volumes::Remove).await?;
            return Err(refused);
        }
        let record = self.start_new(pod, source, &records, true, guard).await?;
        self.status_of(&record).await
    }

    /// Allocates ports for `pod` (those of the pod it replaces are free),
    /// saves its record and starts it, returning the record; on failure
    /// removes everything of that name. `allocating` (the records lock) is
    /// let go once the record is saved: starting it takes the pod's own
    /// lock only.
    async fn start_new(
        &self,
        pod: Pod,
        source: Source,
        records: &[PodRecord],
        replacing: bool,
        allocating: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<PodRecord, RequestError> {
        let held: Vec<Held> = records
            .iter()
            .filter(|r| r.pod.name != pod.name)
            .flat_map(|r| {
                r.host_ports.iter().map(|b| Held {
                    port: b.host_port,
                    protocol: b.protocol,
                    pod: r.pod.name.clone(),
                })
            })
            .collect();
        let name = pod.name.clone();
        let prepared = ports::allocate(&pod, &held, self.config.host_ports, ports::bound_on_host)
            .map_err(|e| {
                let mut errors = ValidationErrors::new();
                errors.push(e.field(), e.to_string());
                RequestError::PortTaken(errors)
            })
            .and_then(|host_ports| {
                let record = PodRecord {
                    pod,
                    host_ports,
                    desired: Desired::Running,
                    source,
                };
                let desired = self.desired(&record)?;
                Ok((record, desired))
            });
        let (record, desired) = match prepared {
            Ok(prepared) => prepared,
            Err(refused) => {
                if replacing {
                    self.remove_everything(&name, Volumes::Remove).await?;
                }
                return Err(refused);
            }
        };
        self.store
            .save(&record)
            .map_err(|e| RequestError::Failed(format!("saving pod record: {e:#}")))?;
        drop(allocating);

        let observed = self.observe(&name).await?;
        let steps = if replacing {
            plan_replacement(&desired, &observed)
        } else {
            plan(Some(&desired), &observed, Intent::Start)
        };
        let executed = execute(&name, &steps, self.effects()).await;
        self.forget_states(&desired);
        if let Err(failure) = executed {
            warn!(pod = %name, error = %failure, "starting the pod failed; rolling back");
            let rollback = self.remove_everything(&name, Volumes::Remove).await;
            let note = match rollback {
                Ok(()) => "nothing was left behind".to_string(),
                Err(e) => format!("rolling back also failed ({e}); the agent retries"),
            };
            return Err(RequestError::NotStarted {
                pod: name,
                kind: failure.kind,
                cause: failure.to_string(),
                rollback: note,
            });
        }
        info!(pod = %name, replaced = replacing, "pod started");
        Ok(record)
    }

    /// Removes units, containers and the record of a pod, and its named
    /// volumes unless they are to be kept.
    async fn remove_everything(&self, name: &str, volumes: Volumes) -> Result<(), RequestError> {
        let observed = self.observe(name).await?;
        let mut steps = plan(None, &observed, Intent::Converge);
        if volumes == Volumes::Keep {
            steps.retain(|s| !matches!(s.action, Action::RemoveVolume(_)));
        }
        execute(name, &steps, self.effects())
            .await
            .map_err(|e| RequestError::Failed(e.to_string()))?;
        remove_leftover_cgroups(name).await;
        self.store
            .remove(name)
            .map_err(|e| RequestError::Failed(format!("{e:#}")))
    }

    /// Deletes a pod: stops it, removes its units and containers, frees its
    /// ports. Returns its last status.
    pub async fn delete(&self, name: &str) -> Result<PodStatus, RequestError> {
        self.delete_with(name, Volumes::Remove).await
    }

    /// Deletes a pod; its named volumes go with it unless `volumes` keeps
    /// them.
    pub async fn delete_with(
        &self,
        name: &str,
        volumes: Volumes,
    ) -> Result<PodStatus, RequestError> {
        let _acting = self.act_on(name).await;
        let mut record = self.record(name)?;
        let mut status = self.status_of(&record).await?;
        record.desired = match volumes {
            Volumes::Remove => Desired::Deleting,
            Volumes::Keep => Desired::DeletingKeepingVolumes,
        };
        self.store
            .save(&record)
            .map_err(|e| RequestError::Failed(format!("{e:#}")))?;
        self.remove_everything(name, volumes).await?;
        status.phase = PodPhase::Stopped;
        info!(pod = name, "pod deleted");
        Ok(status)
    }

    /// Starts a stopped pod (and enables it for boot again).
    pub async fn start(&self, name: &str) -> Result<PodStatus, RequestError> {
        self.set_desired(name, Desired::Running, Intent::Start)
            .await
    }

    /// Stops a pod and keeps it stopped across reboots.
    pub async fn stop(&self, name: &str) -> Result<PodStatus, RequestError> {
        self.set_desired(name, Desired::Stopped, Intent::Converge)
            .await
    }

    async fn set_desired(
        &self,
        name: &str,
        desired: Desired,
        intent: Intent,
    ) -> Result<PodStatus, RequestError> {
        let _acting = self.act_on(name).await;
        let mut record = self.record(name)?;
        record.desired = desired;
        self.store
            .save(&record)
            .map_err(|e| RequestError::Failed(format!("{e:#}")))?;
        self.apply(&record, intent).await?;
        self.status_of(&record).await
    }

    /// Restarts the pod's containers (not its network holder).
    pub async fn restart(&self, name: &str) -> Result<PodStatus, RequestError> {
        let _acting = self.act_on(name).await;
        let mut record = self.record(name)?;
        if record.desired != Desired::Running {
            record.desired = Desired::Running;
            self.store
                .save(&record)
                .map_err(|e| RequestError::Failed(format!("{e:#}")))?;
        }
        self.apply(&record, Intent::Restart).await?;
        self.status_of(&record).await
    }

    async fn apply(&self, record: &PodRecord, intent: Intent) -> Result<(), RequestError> {
        let desired = self.desired(record)?;
        let observed = self.observe(&record.pod.name).await?;
        let steps = plan(Some(&desired), &observed, intent);
        let executed = execute(&record.pod.name, &steps, self.effects()).await;
        self.forget_states(&desired);
        executed.map_err(|e| RequestError::Failed(e.to_string()))
    }

    /// Forgets the cached states of a pod the agent just acted on: the
    /// heartbeat right after reads them, rather than waiting for the
    /// events of what the agent did.
    fn forget_states(&self, desired: &DesiredPod) {
        let containers: Vec<String> = desired
            .containers
            .iter()
            .map(|c| c.spec.name.clone())
            .collect();
        self.status_cache
            .forget(&desired.service_units(), &containers);
    }

    fn unit_dir<'a>(&'a self, dir: &'a Path) -> UnitDir<'a> {
        UnitDir {
            dir,
            kept: &self.unit_files,
        }
    }

    fn cached_units(&self) -> CachedUnits<'_, S> {
        CachedUnits {
            systemd: &self.systemd,
            cache: &self.status_cache,
        }
    }

    fn pod_lock(&self, name: &str) -> Arc<Mutex<u64>> {
        let mut locks = self
            .pod_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(name.to_owned()).or_default())
    }

    /// Waits until no one else acts on pod `name`; it is this caller's
    /// until the guard goes.
    async fn act_on(&self, name: &str) -> tokio::sync::OwnedMutexGuard<u64> {
        let mut acting = self.pod_lock(name).lock_owned().await;
        *acting += 1;
        acting
    }

    /// How often pod `name` was acted on; `None` while someone acts on it.
    fn times_acted_on(&self, name: &str) -> Option<u64> {
        self.pod_lock(name).try_lock().ok().map(|acted| *acted)
    }

    /// Forgets the rendered units of pods without a record, and their
    /// locks that no one holds or waits for.
    fn prune_pod_locks(&self, records: &[PodRecord]) {
        self.rendered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, _| records.iter().any(|r| &r.pod.name == name));
        self.pod_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, lock| {
                Arc::strong_count(lock) > 1 || records.iter().any(|r| &r.pod.name == name)
            });
    }

    /// The status of one pod.
    pub async fn get(&self, name: &str) -> Result<PodStatus, RequestError> {
        let record = self.record(name)?;
        self.status_of(&record).await
    }

    /// Every pod; without `all`, only those that are (or are becoming) up.
    pub async fn list(&self, all: bool) -> Result<Vec<PodStatus>, RequestError> {
        let mut out = Vec::new();
        for record in self.records()? {
            let status = self.status_of(&record).await?;
            if all
                || matches!(
                    status.phase,
                    PodPhase::Pending | PodPhase::Running | PodPhase::Restarting
                )
            {
                out.push(status);
            }
        }
        Ok(out)
    }

    /// The units of a pod's containers (for logs), optionally one container.
    pub fn container_units(
        &self,
        name: &str,
        container: Option<&str>,
    ) -> Result<Vec<String>, RequestError> {
        let record = self.record(name)?;
        let desired = self.desired(&record)?;
        let build = desired
            .build
            .iter()
            .filter(|_| container.is_none_or(|want| want == berth_model::build::BUILD_CONTAINER))
            .map(|b| b.unit.clone());
        let units: Vec<String> = desired
            .containers
            .iter()
            .filter(|c| c.pod_container.is_some())
            .filter(|c| container.is_none_or(|want| c.pod_container.as_deref() == Some(want)))
            .map(|c| c.unit.clone())
            .chain(build)
            .collect();
        if units.is_empty() {
            return Err(RequestError::NotFound(format!(
                "{name}/{}",
                container.unwrap_or_default()
            )));
        }
        Ok(units)
    }

    async fn status_of(&self, record: &PodRecord) -> Result<PodStatus, RequestError> {
        self.status_with(record, false).await
    }

    /// [`Runtime::desired`], rendered again only when the record changed.
    fn desired_rendered(&self, record: &PodRecord) -> Result<Arc<DesiredPod>, RequestError> {
        let mut rendered = self
            .rendered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((known, desired)) = rendered.get(&record.pod.name) {
            if known == record {
                return Ok(Arc::clone(desired));
            }
        }
        let desired = Arc::new(self.desired(record)?);
        rendered.insert(
            record.pod.name.clone(),
            (record.clone(), Arc::clone(&desired)),
        );
        Ok(desired)
    }

    /// The status of a pod; `cached`, from the states last read where
    /// nothing changed since (see [`StatusCache`]), reading only the rest.
    async fn status_with(
        &self,
        record: &PodRecord,
        cached: bool,
    ) -> Result<PodStatus, RequestError> {
        let failed = |e: &dyn std::fmt::Display| RequestError::Failed(e.to_string());
        let desired = self.desired_rendered(record)?;
        let cache = &self.status_cache;
        let mark = cache.read_mark();
        let units = desired.service_units();
        let states = if cached {
            self.cached_units().states(&units).await
        } else {
            self.systemd.states(&units).await
        }
        .map_err(|e| failed(&e))?;
        let mut inspected = HashMap::new();
        for c in &desired.containers {
            let name = &c.spec.name;
            let state = match cache.container(name).filter(|_| cached) {
                Some(known) => known,
                None => {
                    let state = self.docker.inspect(name).await.map_err(|e| failed(&e))?;
                    cache.store_container(name, state.clone(), mark);
                    state
                }
            };
            if let Some(state) = state {
                let state = self.with_shim_oom_verdict(name, state).await;
                inspected.insert(name.clone(), state);
            }
        }
        let mut status = pod_status(record, &states, &inspected);
        // A build whose unit has not run since a reboot never will: it
        // runs once, and the host restarting cut it short.
        if record.pod.build.is_some()
            && status.phase == PodPhase::Pending
            && crate::build::prepare::prepared_before_this_boot(
                &self.config.state_dir,
                &record.pod.name,
            )
        {
            interrupted(&mut status);
        }
        if let Some(pulling) = self.pulls.summary(&record.pod.name) {
            for container in status.containers.iter_mut().filter(|c| !c.ready) {
                container.reason = Some(format!("ContainerCreating: {pulling}"));
            }
        }
        status.volumes = self.volume_usage(&record.pod).await;
        Ok(status)
    }

    /// The data each named volume of `pod` holds here, measured at most
    /// every [`VOLUME_SIZE_TTL`]; a volume not (yet) in Docker is left out.
    async fn volume_usage(&self, pod: &Pod) -> Vec<berth_model::VolumeUsage> {
        let mut usage = Vec::new();
        for volume in pod.volumes.iter().filter(|v| v.is_named()) {
            let docker_name = crate::reconcile::desired::named_volume(&pod.name, &volume.name);
            let cached = self
                .volume_sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&docker_name)
                .filter(|(at, _)| at.elapsed() < VOLUME_SIZE_TTL)
                .map(|(_, bytes)| *bytes);
            let bytes = match cached {
                Some(bytes) => bytes,
                None => {
                    let dir = match volume
                        .class
                        .as_ref()
                        .and_then(|c| self.config.volume_classes.get(c))
                    {
                        Some(root) => Some(root.join(&docker_name)),
                        None => self
                            .docker
                            .volume_mountpoint(&docker_name)
                            .await
                            .ok()
                            .flatten()
                            .map(PathBuf::from),
                    };
                    let Some(dir) = dir else { continue };
                    let bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir))
                        .await
                        .unwrap_or(0);
                    self.volume_sizes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(docker_name, (std::time::Instant::now(), bytes));
                    bytes
                }
            };
            usage.push(berth_model::VolumeUsage {
                name: volume.name.clone(),
                bytes,
            });
        }
        usage
    }

    /// Docker's OOMKilled flag, corrected by what berth-shim recorded: a
    /// container killed by SIGKILL (status 137) may have been OOM-killed
    /// without Docker noticing (see [`crate::journal::shim_says_oom_killed`]).
    async fn with_shim_oom_verdict(&self, name: &str, mut state: InspectedState) -> InspectedState {
        const SIGKILL_STATUS: i64 = 128 + 9;
        if state.running || state.oom_killed || state.exit_code != Some(SIGKILL_STATUS) {
            return state;
        }
        let Some(run) = state.started_at.clone() else {
            return state;
        };
        let key = (state.id.clone(), run.clone());
        let known = self.oom_verdicts().get(&key).copied();
        let verdict = match known {
            Some(OomVerdict::Said(verdict)) => Some(verdict),
            // A run stopped by systemd has no record: do not ask the
            // journal again on every status.
            Some(OomVerdict::Unsaid(asked)) if asked.elapsed() < OOM_VERDICT_RETRY => None,
            _ => {
                let said = self.journal.shim_says_oom_killed(name, &run).await;
                if let Err(e) = &said {
                    warn!(error = %format!("{e:#}"), container = name, "reading berth-shim's exit record");
                }
                let said = said.ok().flatten();
                let mut verdicts = self.oom_verdicts();
                // One entry per ended run; old runs are not asked about again.
                if verdicts.len() >= 4096 {
                    verdicts.clear();
                }
                verdicts.insert(
                    key,
                    said.map_or(
                        OomVerdict::Unsaid(std::time::Instant::now()),
                        OomVerdict::Said,
                    ),
                );
                said
            }
        };
        state.oom_killed = verdict.unwrap_or(false);
        state
    }

    fn oom_verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), OomVerdict>> {
        self.oom_verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One full reconciliation: every record is converged, pods being
    /// deleted are finished off, and pods found on the host without a
    /// record (the state directory was lost) are adopted, never removed.
    /// A pod someone acts on meanwhile is left to the next one.
    pub async fn resync(&self) -> anyhow::Result<()> {
        // Records and what runs are read as one: no pod gets a record (or
        // a container) in between.
        let allocating = self.lock.lock().await;
        let records = self.store.reread()?;
        self.prune_pod_locks(&records);
        let names: Vec<String> = records.iter().map(|r| r.pod.name.clone()).collect();
        let mut acted: HashMap<String, Option<u64>> = names
            .iter()
            .map(|n| (n.clone(), self.times_acted_on(n)))
            .collect();
        // Units as last read, where no signal said they changed since:
        // a resync of idle pods reads no unit again.
        let observed = observe_all(
            &self.docker,
            &self.cached_units(),
            &self.unit_dir(&self.config.units_dir()),
            &self.config.state_dir,
            &names,
        )
        .await?;
        for (name, seen) in &observed {
            if records.iter().any(|r| &r.pod.name == name) {
                continue;
            }
            // Volumes alone are no pod to adopt: a pod's data kept here
            // (moved away with --keep-source) or arriving (moving here).
            if seen.containers.is_empty()
                && seen.unit_files.is_empty()
                && seen.units.is_empty()
                && !seen.build_dir
            {
                continue;
            }
            match self.adopt(name, seen).await {
                Ok(record) => {
                    info!(pod = %name, "adopted a pod found on this host without a record");
                    self.store.save(&record)?;
                    acted.insert(name.clone(), self.times_acted_on(name));
                }
                Err(e) => warn!(pod = %name, error = %e, "cannot adopt pod; leaving it alone"),
            }
        }
        let records = self.store.load_all()?;
        drop(allocating);
        for record in records {
            let acting = self.act_on(&record.pod.name).await;
            let seen_at = acted.get(&record.pod.name).copied().flatten();
            if seen_at != Some(*acting - 1) {
                // Acted on since it was observed: what was seen is stale.
                continue;
            }
            let deleting = match record.desired {
                Desired::Deleting => Some(Volumes::Remove),
                Desired::DeletingKeepingVolumes => Some(Volumes::Keep),
                Desired::Running | Desired::Stopped => None,
            };
            if let Some(volumes) = deleting {
                if let Err(e) = self.remove_everything(&record.pod.name, volumes).await {
                    warn!(pod = %record.pod.name, error = %e, "finishing a deletion failed; retrying at the next resync");
                }
                continue;
            }
            let desired = match self.desired(&record) {
                Ok(d) => d,
                Err(e) => {
                    warn!(pod = %record.pod.name, error = %e, "pod record cannot be rendered");
                    continue;
                }
            };
            let seen = observed.get(&record.pod.name).cloned().unwrap_or_default();
            let steps = plan(Some(&desired), &seen, Intent::Converge);
            if steps.is_empty() {
                continue;
            }
            let executed = execute(&record.pod.name, &steps, self.effects()).await;
            self.forget_states(&desired);
            if let Err(e) = executed {
                warn!(pod = %record.pod.name, error = %e, "reconciling failed; retrying at the next resync");
            }
        }
        self.adopted.send_replace(true);
        Ok(())
    }

    /// Rebuilds a pod record from the labels Docker keeps (spec and ports)
    /// and the containers' environment (secret values).
    async fn adopt(&self, name: &str, seen: &ObservedPod) -> anyhow::Result<PodRecord> {
        let owner = seen
            .containers
            .values()
            .find(|c| c.labels.contains_key(LABEL_POD_SPEC))
            .ok_or_else(|| anyhow::anyhow!("no container of pod {name} carries its spec"))?;
        let mut pod: Pod = serde_json::from_str(&owner.labels[LABEL_POD_SPEC])?;
        let host_ports: Vec<PortBinding> = owner
            .labels
            .get(LABEL_HOST_PORTS)
            .map(|l| serde_json::from_str(l))
            .transpose()?
            .unwrap_or_default();
        for container in &mut pod.containers {
            if container.secret_env.is_empty() {
                continue;
            }
            let env = self
                .docker
                .container_env(&app_container_name(name, &container.name))
                .await?;
            let values: BTreeMap<&str, &str> =
                env.iter().filter_map(|kv| kv.split_once('=')).collect();
            for var in &mut container.secret_env {
                var.value = values
                    .get(var.name.as_str())
                    .map(|v| v.to_string())
                    .unwrap_or_default();
            }
        }
        // Its units or its containers may be all that is left to tell: a
        // running pod stays running until the master's assignments say
        // otherwise.
        let running = seen.units.values().any(|s| s.active_state == "active")
            || seen.containers.values().any(|c| c.state == "running");
        Ok(PodRecord {
            pod,
            host_ports,
            desired: if running {
                Desired::Running
            } else {
                Desired::Stopped
            },
            // A master's pod stays the master's: it keeps running until the
            // assignments are known, then goes only if no longer assigned
            // here. A pod from before the label is local until the master
            // claims it again.
            source: if owner.labels.get(LABEL_SOURCE).map(String::as_str) == Some("master") {
                Source::Master
            } else {
                Source::Local
            },
        })
    }

    /// Runs [`Runtime::resync`] every `interval`, and soon after Docker
    /// reports one of berth's containers died or was removed, forever.
    pub async fn resync_forever(&self, interval: Duration) {
        let mut backoff = interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                changed = self.docker.next_container_change() => {
                    match changed {
                        // Let a burst of events (a pod's containers) settle.
                        Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        Err(e) => {
                            warn!(error = %e, "docker events");
                            tokio::time::sleep(backoff).await;
                        }
                    }
                }
            }
            backoff = match self.resync().await {
                Ok(()) => interval,
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "resync failed");
                    (backoff * 2).min(interval * 6)
                }
            };
        }
    }
}

/// What berth-shim said about how a run ended by SIGKILL: OOM-killed or
/// not, or nothing yet (asked at that instant).
#[derive(Debug, Clone, Copy)]
enum OomVerdict {
    Said(bool),
    Unsaid(std::time::Instant),
}

/// How long an unanswered question about a run waits before it is asked
/// again (the shim answers within seconds, if at all).
const OOM_VERDICT_RETRY: Duration = Duration::from_secs(2);

/// Removes what is left of a removed pod's slice in the cgroup
/// hierarchies. A container's last processes may still be exiting when its
/// units are gone (under load, for a moment), keeping their cgroups, so
/// this tries again for a few seconds; the caller holds the pod, so no new
/// pod of the name can be starting in them meanwhile.
async fn remove_leftover_cgroups(pod: &str) {
    const TRIES: u32 = 8;
    let slice = format!("berth.slice/{}", pod_slice_name(pod));
    let cgroups = crate::cgroup::Cgroups::detect();
    let mut removed = 0;
    for attempt in 1..=TRIES {
        let pass = cgroups.remove_leftovers(&slice);
        removed += pass.removed;
        if pass.kept == 0 {
            break;
        }
        if attempt == TRIES {
            warn!(
                pod,
                kept = pass.kept,
                "the slice's cgroups are still in use; they stay"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100) * attempt).await;
    }
    if removed > 0 {
        info!(pod, removed, "removed the slice's leftover cgroups");
    }
}

/// A pod's status from its record, its units' states and its containers.
pub fn pod_status(
    record: &PodRecord,
    states: &HashMap<String, UnitState>,
    inspected: &HashMap<String, InspectedState>,
) -> PodStatus {
    let pod = &record.pod;
    let is_build = pod.build.is_some();
    let mut containers = Vec::new();
    for container in &pod.containers {
        let unit = crate::unit::container_unit_name(&pod.name, &container.name);
        let docker_name = app_container_name(&pod.name, &container.name);
        let mut state = states.get(&unit).cloned().unwrap_or_default();
        if is_build && state.main_exit.is_some() && state.active_state == "active" {
            // The build unit stays active (exited) once the runner ended
            // well (`RemainAfterExit=`, so systemd keeps its status): the
            // build is over.
            state.active_state = "inactive".into();
            state.sub_state = "exited".into();
        }
        let docker = inspected.get(&docker_name);
        let ended = !matches!(
            state.active_state.as_str(),
            "active" | "activating" | "reloading"
        );
        // A build has no container of its own: its unit's main process,
        // the runner, ends with the build's status.
        let exit_code = if is_build {
            state.main_exit.filter(|_| ended)
        } else {
            // Docker says exit code 0 for a container created and not yet
            // started: only a container that ran has an exit code.
            docker
                .filter(|d| !d.running && ended && d.started_at.is_some())
                .and_then(|d| d.exit_code)
        };
        // berth-shim refusing a start (a host path became a symlink)
        // says so in the unit's status; that outranks the last run's exit.
        let refused = state.sub_state != "running" && state.status_text.starts_with("refused: ");
        let reason = match docker {
            _ if refused => Some(state.status_text.clone()),
            // The runner's last word: what it pushed, or why it did not.
            _ if is_build && ended && !state.status_text.is_empty() => {
                Some(state.status_text.clone())
            }
            Some(d) if d.oom_killed => Some("OOMKilled".to_string()),
            _ if state.result == "oom-kill" => Some("OOMKilled".to_string()),
            Some(d) if ended && d.error.is_some() => d.error.clone(),
            _ if ended && exit_code.is_some_and(|c| c != 0) => Some("Error".to_string()),
            _ if ended && exit_code == Some(0) => Some("Completed".to_string()),
            _ => None,
        };
        containers.push(ContainerStatus {
            name: container.name.clone(),
            unit,
            container_id: docker.map(|d| d.id.clone()),
            state: if state.active_state.is_empty() {
                "inactive".into()
            } else {
                state.active_state.clone()
            },
            sub_state: if state.sub_state.is_empty() {
                "dead".into()
            } else {
                state.sub_state.clone()
            },
            pid: docker.and_then(|d| d.pid),
            exit_code,
            reason,
            restarts: state.restarts,
            host_ports: record
                .host_ports
                .iter()
                .filter(|b| b.container == container.name)
                .map(|b| HostPort {
                    container_port: b.container_port,
                    protocol: b.protocol,
                    host_port: b.host_port,
                })
                .collect(),
            health: health(container, &state),
            ready: container_ready(&state),
        });
    }
    let phase = phase(record, &containers);
    PodStatus {
        name: pod.name.clone(),
        phase,
        slice: pod_slice_name(&pod.name),
        containers,
        spec: pod.redacted(),
        start_failure: None,
        volumes: Vec::new(),
    }
}

/// `path` as unit settings say it: empty when it is the default (see
/// [`UnitSettings::agent_path`]).
fn non_default(path: &Path, default: &str) -> String {
    // A path that is not UTF-8 keeps a replacement character, which
    // rendering refuses.
    let path = path.to_string_lossy();
    if path == default {
        String::new()
    } else {
        path.into_owned()
    }
}

/// Marks a build pod's status as ended by a restart of the host.
pub fn interrupted(status: &mut PodStatus) {
    status.phase = PodPhase::Failed;
    for container in &mut status.containers {
        container.reason = Some(INTERRUPTED.to_owned());
    }
}

/// Why a build that a restart of its host cut short failed.
pub const INTERRUPTED: &str = "Interrupted: the node restarted during the build";

/// What the shim last said about the container's probes (its `STATUS=`),
/// while the unit is up and the container has probes.
fn health(container: &berth_model::Container, state: &UnitState) -> Option<String> {
    let up = matches!(state.active_state.as_str(), "active" | "activating");
    (up && !container.probes.is_empty() && !state.status_text.is_empty())
        .then(|| state.status_text.clone())
}

/// Whether the container may get traffic: its unit is active and running
/// and, if it has probes, the shim does not report it not ready.
pub fn container_ready(state: &UnitState) -> bool {
    state.active_state == "active"
        && state.sub_state == "running"
        && !state.status_text.starts_with("not ready")
        && !state.status_text.starts_with("unhealthy")
}

fn phase(record: &PodRecord, containers: &[ContainerStatus]) -> PodPhase {
    if record.desired != Desired::Running {
        return PodPhase::Stopped;
    }
    let policy = |name: &str| {
        if record.pod.build.is_some() {
            // A build runs once, whatever its container says.
            return RestartPolicy::Never;
        }
        record
            .pod
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.restart)
            .unwrap_or_default()
    };
    if containers.iter().any(|c| c.sub_state == "auto-restart") {
        return PodPhase::Restarting;
    }
    // A never-restarted container that failed before a reboot is inactive
    // after it (its unit did not start at boot), and still failed.
    let failed = |c: &ContainerStatus| {
        c.state == "failed"
            || (c.state == "inactive"
                && c.exit_code.is_some_and(|code| code != 0)
                && policy(&c.name) == RestartPolicy::Never)
    };
    if containers.iter().any(failed) {
        return PodPhase::Failed;
    }
    if containers.iter().all(|c| c.state == "active") {
        return PodPhase::Running;
    }
    let finished = |c: &ContainerStatus| {
        c.state == "inactive" && c.exit_code == Some(0) && policy(&c.name) != RestartPolicy::Always
    };
    if containers.iter().all(finished) {
        return PodPhase::Succeeded;
    }
    PodPhase::Pending
}

impl<D: ContainerEngine, S: UnitManager, J: EventJournal> Runtime<D, S, J> {
    /// Removes the master's pods whose data is all on the network (see
    /// [`Pod::network_backed`]): this node has not reached the master for
    /// [`NETWORK_FENCE_AFTER_SECS`](berth_model::pod::NETWORK_FENCE_AFTER_SECS),
    /// and the master may start them on another node, where they must be
    /// their volumes' only writers. Their containers are stopped and their
    /// mounts unmounted; once the master answers again, the pods it still
    /// assigns here are created anew. Returns the pods removed.
    pub async fn fence_network_pods(&self) -> Vec<String> {
        let records = self.records().unwrap_or_default();
        let mut fenced = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.source == Source::Master && r.pod.network_backed())
        {
            let name = &record.pod.name;
            warn!(pod = %name, "the master is unreachable: stopping this pod, whose data is on the network, so that it runs nowhere twice");
            match self.delete(name).await {
                Ok(_) => fenced.push(name.clone()),
                Err(e) => warn!(pod = %name, error = %e, "fencing the pod failed"),
            }
        }
        fenced
    }

    /// Makes the master's pods on this host exactly `assigned`: creates
    /// what is missing, replaces what changed, removes master pods that are
    /// no longer assigned here (a node back from a partition stops the pods
    /// that were moved away meanwhile). Local pods are never touched.
    ///
    /// A pod that fails to start is recorded with why (reported in its
    /// status and as an event) and tried again after a wait that doubles
    /// with each failure; the outcome says when the next try is due.
    pub async fn sync_assigned(&self, assigned: &[Pod], moving_out: &[String]) -> Synced {
        let mut synced = Synced::default();
        let records = match self.records() {
            Ok(records) => records,
            Err(e) => {
                synced.failed("*", &e);
                return synced;
            }
        };
        self.failed_starts()
            .retain(|name, failed| assigned.iter().any(|p| &p.name == name && *p == failed.pod));
        // Pods that go or change first: the host ports they free are then
        // free for the new ones.
        let mut due = Vec::new();
        for step in plan_assignments(&records, assigned) {
            let (name, result) = match step {
                Assignment::Create(pod) => {
                    match self.start_not_due(pod) {
                        Some(at) => synced.retry_by(at),
                        None => due.push(pod),
                    }
                    continue;
                }
                Assignment::Claim(record) => {
                    let mut claimed = record.clone();
                    claimed.source = Source::Master;
                    let saved = self
                        .store
                        .save(&claimed)
                        .map_err(|e| RequestError::Failed(format!("{e:#}")));
                    (record.pod.name.as_str(), saved)
                }
                Assignment::Replace(pod) => {
                    info!(pod = %pod.name, "the master changed the pod: replacing it");
                    let replaced = self.replace(pod.clone(), Source::Master).await.map(drop);
                    self.note_start(pod, &replaced, &mut synced);
                    (pod.name.as_str(), replaced)
                }
                Assignment::Conflict(pod) => {
                    let conflict = RequestError::Conflict(format!(
                        "a local pod named {} exists here",
                        pod.name
                    ));
                    (pod.name.as_str(), Err(conflict))
                }
                Assignment::Remove(name) if moving_out.iter().any(|m| m == name) => {
                    info!(pod = %name, "moving to another node with its data: stopping it, keeping its volumes");
                    (name, self.delete_with(name, Volumes::Keep).await.map(drop))
                }
                Assignment::Remove(name) => {
                    info!(pod = %name, "no longer assigned here: removing it");
                    (name, self.delete(name).await.map(drop))
                }
            };
            if let Err(e) = result {
                synced.failed(name, &e);
            }
        }
        // New pods start side by side, each its own containers in order;
        // their host ports are allocated one at a time.
        let starts = due.into_iter().cloned().map(|pod: Pod| async move {
            let created = self.create_assigned(pod.clone()).await;
            (pod, created)
        });
        let started: Vec<(Pod, Result<(), RequestError>)> = futures_util::stream::iter(starts)
            .buffer_unordered(START_CONCURRENCY)
            .collect()
            .await;
        for (pod, created) in started {
            self.note_start(&pod, &created, &mut synced);
            if let Err(e) = created {
                synced.failed(&pod.name, &e);
            }
        }
        synced
    }

    /// When the next start of `pod` is due, if it failed before and that
    /// time has not come.
    fn start_not_due(&self, pod: &Pod) -> Option<Instant> {
        self.failed_starts()
            .get(&pod.name)
            .filter(|failed| failed.pod == *pod && failed.due > Instant::now())
            .map(|failed| failed.due)
    }

    /// Records how a start of `pod` went: a failure is kept (and reported,
    /// in the journal as an event) with the time of the next try; a success
    /// forgets the failures.
    fn note_start(&self, pod: &Pod, result: &Result<(), RequestError>, synced: &mut Synced) {
        let (kind, message) = match result {
            Ok(()) => {
                self.failed_starts().remove(&pod.name);
                return;
            }
            Err(RequestError::Invalid(errors)) => (EventKind::PodRefused, errors.to_string()),
            Err(RequestError::PortTaken(errors)) => {
                (EventKind::HostPortConflict, errors.to_string())
            }
            Err(RequestError::NotStarted { kind, cause, .. }) => (*kind, cause.clone()),
            // Not about the pod: retried soon, like any failed step.
            Err(_) => return,
        };
        let mut failed_starts = self.failed_starts();
        let attempts = failed_starts
            .get(&pod.name)
            .filter(|failed| failed.pod == *pod)
            .map_or(1, |failed| failed.failure.attempts + 1);
        // A build that could not start is its job's failed attempt (its
        // status says Failed): the master decides on another, so this
        // node tries again only as late as it ever does.
        let wait = if pod.build.is_some() {
            MAX_START_BACKOFF
        } else {
            start_backoff(attempts)
        };
        let next_attempt_ms = now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let failed = FailedStart {
            pod: pod.clone(),
            failure: StartFailure {
                reason: kind.as_str().to_owned(),
                message,
                attempts,
                next_attempt_ms,
            },
            due: Instant::now() + wait,
        };
        warn!(pod = %pod.name, reason = %kind, attempts, retry_in = ?wait, error = %failed.failure.message, "the pod did not start");
        self.journal.record_pod_event(
            kind,
            &pod.name,
            &format!(
                "{} (attempt {attempts}; next in {}s)",
                failed.failure.message,
                wait.as_secs()
            ),
        );
        synced.retry_by(failed.due);
        failed_starts.insert(pod.name.clone(), failed);
    }

    fn failed_starts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FailedStart>> {
        self.failed_starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The status of every pod the master assigned here. A pod whose
    /// status cannot be read (Docker or systemd not answering) is left out;
    /// the first such error is returned alongside.
    pub async fn master_pod_statuses(&self) -> (Vec<PodStatus>, Option<String>) {
        let mut statuses = Vec::new();
        let mut first_error = None;
        for record in self
            .records()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.source == Source::Master)
        {
            match self.status_with(record, true).await {
                Ok(status) => statuses.push(status),
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        for failed in self.failed_starts().values() {
            statuses.push(failed_start_status(&failed.pod, &failed.failure));
        }
        (statuses, first_error)
    }
}

/// How many of the master's new pods start at once: Docker and systemd
/// work on several starts in parallel, and a bound keeps a burst from
/// crowding out everything else on the host.
pub const START_CONCURRENCY: usize = 8;

/// What applying the master's assignments left to do.
#[derive(Debug, Default)]
pub struct Synced {
    /// The pods that failed, with why.
    pub failures: Vec<(String, String)>,
    /// When to apply them again, though nothing changed: a failed start's
    /// next try, or soon after any other failure.
    pub retry_at: Option<Instant>,
}

impl Synced {
    fn retry_by(&mut self, at: Instant) {
        self.retry_at = Some(self.retry_at.map_or(at, |known| known.min(at)));
    }

    fn failed(&mut self, pod: &str, error: &RequestError) {
        self.failures.push((pod.to_owned(), error.to_string()));
        self.retry_by(Instant::now() + Duration::from_secs(1));
    }
}

/// A pod the master assigned here that did not start.
#[derive(Debug, Clone)]
struct FailedStart {
    /// The spec that failed: a changed spec is tried at once.
    pod: Pod,
    /// Why, as reported.
    failure: StartFailure,
    /// When to try again.
    due: Instant,
}

/// The wait before the first retry of a failed start; each further failure
/// doubles it, up to [`MAX_START_BACKOFF`] (kubelet's image pull backoff
/// caps at five minutes too).
const FIRST_START_BACKOFF: Duration = Duration::from_secs(2);

/// The longest wait between two tries of a failed start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(300);

/// The wait after the `attempts`-th failure in a row.
fn start_backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_START_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_START_BACKOFF)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The status of a pod that failed to start here: pending while a retry
/// can help, failed when the host refuses it; each container carries the
/// failure's name (the refusal itself, for a refused pod), as `berth ps`
/// shows it.
pub fn failed_start_status(pod: &Pod, failure: &StartFailure) -> PodStatus {
    // A build pod that did not start is over: a failed attempt of its
    // job, which says why as a refused pod does.
    let refused = failure.reason == EventKind::PodRefused.as_str() || pod.build.is_some();
    let container_reason = if refused {
        &failure.message
    } else {
        &failure.reason
    };
    PodStatus {
        name: pod.name.clone(),
        phase: if refused {
            PodPhase::Failed
        } else {
            PodPhase::Pending
        },
        slice: pod_slice_name(&pod.name),
        containers: pod
            .containers
            .iter()
            .map(|container| ContainerStatus {
                name: container.name.clone(),
                unit: crate::unit::container_unit_name(&pod.name, &container.name),
                container_id: None,
                state: "inactive".into(),
                sub_state: "dead".into(),
                pid: None,
                exit_code: None,
                reason: Some(container_reason.clone()),
                restarts: 0,
                host_ports: Vec::new(),
                ready: false,
                health: None,
            })
            .collect(),
        spec: pod.redacted(),
        volumes: Vec::new(),
        start_failure: Some(failure.clone()),
    }
}

#[cfg(test)]
mod start_backoff_tests {
    use super::*;

    #[test]
    fn a_never_restarted_container_that_failed_is_failed_also_after_a_reboot() {
        let pod: Pod = serde_json::from_str(
            r#"{"name":"once","containers":[{"name":"once","image":"i","restart":"never"}]}"#,
        )
        .expect("a pod");
        let record = PodRecord {
            pod,
            host_ports: Vec::new(),
            desired: Desired::Running,
            source: Source::Local,
        };
        let unit = crate::unit::container_unit_name("once", "once");
        let ended = InspectedState {
            exit_code: Some(3),
            started_at: Some("2026-12-05T10:00:00.000000000Z".into()),
            ..InspectedState::default()
        };
        let inspected = HashMap::from([(app_container_name("once", "once"), ended)]);
        let with_unit = |active_state: &str| {
            let state = UnitState {
                active_state: active_state.to_owned(),
                sub_state: "dead".to_owned(),
                ..UnitState::default()
            };
            pod_status(&record, &HashMap::from([(unit.clone(), state)]), &inspected).phase
        };
        // Failed before the reboot, its unit skipped at boot after it.
        assert_eq!(with_unit("failed"), PodPhase::Failed);
        assert_eq!(with_unit("inactive"), PodPhase::Failed);
    }

    #[test]
    fn a_run_once_container_created_but_not_yet_started_has_not_succeeded() {
        // CI caught a job's attempt counted a success because its status
        // was read between the container's creation and its unit's start.
        let pod: Pod = serde_json::from_str(
            r#"{"name":"once","containers":[{"name":"once","image":"i","restart":"never"}]}"#,
        )
        .expect("a pod");
        let record = PodRecord {
            pod,
            host_ports: Vec::new(),
            desired: Desired::Running,
            source: Source::Master,
        };
        let created = InspectedState {
            id: "c0ffee".into(),
            exit_code: Some(0),
            ..InspectedState::default()
        };
        let inspected = HashMap::from([(app_container_name("once", "once"), created)]);
        let status = pod_status(&record, &HashMap::new(), &inspected);
        assert_eq!(status.phase, PodPhase::Pending);
        assert_eq!(status.containers[0].exit_code, None);
        assert_eq!(status.containers[0].reason, None);
    }

    #[test]
    fn the_wait_doubles_from_two_seconds_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| start_backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(start_backoff(u32::MAX), MAX_START_BACKOFF);
        // Fewer than ten tries in the first minute: at 0, 2, 6, 14, 30 s.
        let mut at = 0;
        let tries = (1..)
            .map(|n| {
                let this = at;
                at += start_backoff(n).as_secs();
                this
            })
            .take_while(|t| *t < 60)
            .count();
        assert_eq!(tries, 5);
    }
}

#[cfg(test)]
mod tests;
