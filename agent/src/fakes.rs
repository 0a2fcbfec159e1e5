//! A recording fake of the host's outside systems (Docker, systemd and the
//! journal) for unit tests of the runtime: it keeps just enough state to
//! answer the runtime's questions as the real systems would, and records
//! every effect in order, in words a test can compare.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_model::EventKind;

use crate::docker::{
    ContainerEngine, ContainerSpec, DockerError, InspectedState, ObservedContainer, LABEL_POD,
};
use crate::journal::EventJournal;
use crate::reconcile::desired::{app_container_name, holder_container_name};
use crate::systemd::{SystemdError, UnitManager, UnitState};
use crate::unit::UnitName;

/// What the fake host holds.
#[derive(Debug, Default)]
struct World {
    effects: Vec<String>,
    containers: BTreeMap<String, (ObservedContainer, InspectedState)>,
    /// Volume -> pod.
    volumes: BTreeMap<String, String>,
    units: HashMap<String, UnitState>,
    enabled: BTreeSet<String>,
    failing_starts: BTreeSet<String>,
    missing_images: BTreeSet<String>,
    events: Vec<(EventKind, String, String)>,
    runs: u64,
    /// States read: units and containers.
    reads: u64,
}

/// Docker, systemd and the journal of one fake host, sharing one world:
/// starting a unit runs its container, as berth-shim would.
#[derive(Debug, Clone, Default)]
pub struct FakeHost(Arc<Mutex<World>>);

impl FakeHost {
    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, effect: String) {
        self.world().effects.push(effect);
    }

    /// How many unit and container states were read so far.
    pub fn reads(&self) -> u64 {
        self.world().reads
    }

    /// Every effect so far, in order; forgets them.
    pub fn take_effects(&self) -> Vec<String> {
        std::mem::take(&mut self.world().effects)
    }

    /// Starting `unit` fails from now on, as when its container exits at
    /// once.
    pub fn fail_starts_of(&self, unit: &str) {
        self.world().failing_starts.insert(unit.to_owned());
    }

    /// Pulling `image` fails from now on, as for an image that does not
    /// exist.
    pub fn lacks_image(&self, image: &str) {
        self.world().missing_images.insert(image.to_owned());
    }

    /// The container of `unit` exits with `code` and systemd does not
    /// restart it (`Restart=no`): the unit is failed unless it exited 0.
    pub fn exits(&self, unit: &str, code: i64) {
        let mut world = self.world();
        let (active, result) = if code == 0 {
            ("inactive", "success")
        } else {
            ("failed", "exit-code")
        };
        world.units.insert(
            unit.to_owned(),
            UnitState {
                active_state: active.into(),
                sub_state: if code == 0 { "dead" } else { "failed" }.into(),
                result: result.into(),
                exec_main_status: i32::try_from(code).unwrap_or(1),
                main_exit: Some(code),
                ..UnitState::default()
            },
        );
        if let Some((observed, inspected)) = container_of(&mut world, unit) {
            observed.state = "exited".into();
            inspected.running = false;
            inspected.pid = None;
            inspected.exit_code = Some(code);
        }
    }

    /// The events recorded in the journal: (kind, pod, reason).
    pub fn events(&self) -> Vec<(EventKind, String, String)> {
        self.world().events.clone()
    }

    fn set_unit(&self, unit: &str, active: &str, sub: &str) {
        let mut world = self.world();
        let state = world.units.entry(unit.to_owned()).or_default();
        state.active_state = active.into();
        state.sub_state = sub.into();
        let running = active == "active";
        world.runs += 1;
        let run = world.runs;
        if let Some((observed, inspected)) = container_of(&mut world, unit) {
            observed.state = if running { "running" } else { "exited" }.into();
            inspected.running = running;
            inspected.pid = running.then_some(1000);
            if running {
                inspected.exit_code = None;
                inspected.started_at = Some(format!("run {run}"));
            } else {
                // Stopped by systemd: SIGTERM.
                inspected.exit_code = Some(143);
            }
        }
    }
}

/// The container a unit runs (a container's unit, or the network holder's).
fn container_of<'w>(
    world: &'w mut World,
    unit: &str,
) -> Option<&'w mut (ObservedContainer, InspectedState)> {
    let name = match UnitName::decode(unit)? {
        UnitName::Container { pod, container } => app_container_name(&pod, &container),
        UnitName::Network { pod } => holder_container_name(&pod),
        UnitName::Slice { .. } | UnitName::Mount { .. } => return None,
    };
    world.containers.get_mut(&name)
}

fn not_found(action: String) -> DockerError {
    DockerError {
        action,
        cause: bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "not found".into(),
        },
    }
}

impl ContainerEngine for FakeHost {
    async fn ensure_image(
        &self,
        image: &str,
        _auth: Option<&crate::docker::PullAuth>,
        _progress: &crate::docker::PullProgress,
    ) -> Result<(), DockerError> {
        self.record(format!("docker pull {image}"));
        if self.world().missing_images.contains(image) {
            return Err(not_found(format!("pulling {image}")));
        }
        Ok(())
    }

    async fn ensure_pause_image(&self) -> Result<(), DockerError> {
        self.record("docker import pause".into());
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.record(format!("docker create {} {}", spec.name, spec.image));
        let mut world = self.world();
        let id = format!("id-{}", world.containers.len() + 1);
        let observed = ObservedContainer {
            name: spec.name.clone(),
            id: id.clone(),
            labels: spec.labels.iter().cloned().collect(),
            state: "created".into(),
        };
        let inspected = InspectedState {
            id: id.clone(),
            ..InspectedState::default()
        };
        world
            .containers
            .insert(spec.name.clone(), (observed, inspected));
        Ok(id)
    }

    async fn remove(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("docker rm {name}"));
        self.world().containers.remove(name);
        Ok(())
    }

    async fn create_volume(
        &self,
        name: &str,
        pod: &str,
        device: Option<&str>,
    ) -> Result<(), DockerError> {
        match device {
            Some(device) => self.record(format!("docker volume create {name} in {device}")),
            None => self.record(format!("docker volume create {name}")),
        }
        self.world().volumes.insert(name.into(), pod.into());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("docker volume rm {name}"));
        self.world().volumes.remove(name);
        Ok(())
    }

    async fn volume_mountpoint(&self, _name: &str) -> Result<Option<String>, DockerError> {
        // The fake keeps no data.
        Ok(None)
    }

    async fn list_berth_volumes(&self) -> Result<Vec<(String, String)>, DockerError> {
        Ok(self.world().volumes.clone().into_iter().collect())
    }

    async fn list_berth_containers(
        &self,
        pod: Option<&str>,
    ) -> Result<Vec<ObservedContainer>, DockerError> {
        Ok(self
            .world()
            .containers
            .values()
            .map(|(observed, _)| observed.clone())
            .filter(|c| {
                c.labels
                    .get(LABEL_POD)
                    .is_some_and(|of| pod.is_none_or(|pod| pod == of))
            })
            .collect())
    }

    async fn inspect(&self, name: &str) -> Result<Option<InspectedState>, DockerError> {
        let mut world = self.world();
        world.reads += 1;
        Ok(world.containers.get(name).map(|(_, s)| s.clone()))
    }

    async fn container_env(&self, name: &str) -> Result<Vec<String>, DockerError> {
        match self.world().containers.get(name) {
            Some(_) => Ok(Vec::new()),
            None => Err(not_found(format!("inspecting {name}"))),
        }
    }

    async fn next_container_change(&self) -> Result<String, DockerError> {
        std::future::pending().await
    }
}

impl UnitManager for FakeHost {
    async fn enable(&self, paths: &[String]) -> Result<(), SystemdError> {
        let names: Vec<String> = paths
            .iter()
            .filter_map(|p| Path::new(p).file_name()?.to_str().map(String::from))
            .collect();
        self.record(format!("systemd enable {}", names.join(" ")));
        self.world().enabled.extend(names);
        Ok(())
    }

    async fn disable(&self, names: &[String]) -> Result<(), SystemdError> {
        self.record(format!("systemd disable {}", names.join(" ")));
        let mut world = self.world();
        for name in names {
            world.enabled.remove(name);
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        self.record("systemd reload".into());
        Ok(())
    }

    async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(format!("systemd start {unit}"));
        let fails = {
            let mut world = self.world();
            world.failing_starts.contains(unit) || container_of(&mut world, unit).is_none()
        };
        if fails {
            self.exits(unit, 1);
            return Err(SystemdError::Job {
                action: "start",
                unit: unit.to_owned(),
                result: "failed".into(),
            });
        }
        self.set_unit(unit, "active", "running");
        Ok(())
    }

    async fn enqueue_start(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(format!("systemd enqueue start {unit}"));
        self.set_unit(unit, "activating", "start");
        Ok(())
    }

    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(format!("systemd stop {unit}"));
        self.set_unit(unit, "inactive", "dead");
        Ok(())
    }

    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(format!("systemd restart {unit}"));
        self.set_unit(unit, "active", "running");
        Ok(())
    }

    async fn reset_failed(&self, unit: &str) {
        // Not an effect a user sees: the unit only forgets its failure.
        if let Some(state) = self.world().units.get_mut(unit) {
            if state.active_state == "failed" {
                state.active_state = "inactive".into();
                state.sub_state = "dead".into();
            }
        }
    }

    async fn states(&self, units: &[String]) -> Result<HashMap<String, UnitState>, SystemdError> {
        let mut world = self.world();
        world.reads += units.len() as u64;
        Ok(units
            .iter()
            .filter_map(|u| Some((u.clone(), world.units.get(u)?.clone())))
            .collect())
    }

    fn enabled(&self, units: &[String]) -> BTreeSet<String> {
        let world = self.world();
        units
            .iter()
            .filter(|u| world.enabled.contains(*u))
            .cloned()
            .collect()
    }
}

impl EventJournal for FakeHost {
    async fn shim_says_oom_killed(
        &self,
        _container: &str,
        _run: &str,
    ) -> anyhow::Result<Option<bool>> {
        Ok(None)
    }

    fn record_pod_event(&self, kind: EventKind, pod: &str, reason: &str) {
        self.world()
            .events
            .push((kind, pod.to_owned(), reason.to_owned()));
    }
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new, empty directory.
    pub fn new(purpose: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("berth-agent-{purpose}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
