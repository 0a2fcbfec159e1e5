//! Applies a plan, step by step, in order. The first failure stops the
//! plan and names the step; the caller retries (the next plan starts from
//! what was done) or rolls back.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use berth_model::EventKind;
use tracing::info;

use crate::build::prepare::{self, Host, Preparation};
use crate::cluster_registry::ClusterRegistry;
use crate::config::AgentConfig;
use crate::docker::{registry_of, ContainerEngine, PullAuth, PullProgress};
use crate::reconcile::plan::{Action, Step};
use crate::systemd::UnitManager;

/// The outside systems a plan acts on.
#[derive(Debug)]
pub struct Effects<'a, D, S> {
    /// The container engine.
    pub docker: &'a D,
    /// The service manager.
    pub systemd: &'a S,
    /// The agent's configuration.
    pub config: &'a AgentConfig,
    /// The cluster's registry, and this node's tokens for it.
    pub registry: &'a ClusterRegistry,
    /// The pulls under way, by pod.
    pub pulls: &'a Pulls,
    /// Where the marks of units started since boot go
    /// ([`crate::unit::render::STARTED_MARKS_DIR`] on a host).
    pub started_marks: &'a Path,
}

impl<D, S> Clone for Effects<'_, D, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D, S> Copy for Effects<'_, D, S> {}

/// A step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {error:#}")]
pub struct StepFailed {
    /// The step, in words.
    pub what: String,
    /// Why.
    pub error: anyhow::Error,
    /// The event that tells the user what failed.
    pub kind: EventKind,
}

/// Runs `steps` for `pod`.
pub async fn execute<D: ContainerEngine, S: UnitManager>(
    pod: &str,
    steps: &[Step],
    effects: Effects<'_, D, S>,
) -> Result<(), StepFailed> {
    for step in steps {
        info!(pod, action = ?short(&step.action), reason = %step.reason, "reconcile");
        apply(&step.action, pod, effects)
            .await
            .map_err(|error| StepFailed {
                what: short(&step.action),
                kind: failure_kind(&step.action, &error),
                error,
            })?;
    }
    Ok(())
}

/// The event a failed action is reported as. Docker reports a host port
/// taken by a process it does not know only when the container starts.
fn failure_kind(action: &Action, error: &anyhow::Error) -> EventKind {
    let text = format!("{error:#}");
    if text.contains("port is already allocated") || text.contains("address already in use") {
        return EventKind::HostPortConflict;
    }
    match action {
        Action::PullImage(_) | Action::ImportPauseImage => EventKind::ImagePullFailed,
        _ => EventKind::StartFailed,
    }
}

/// An action in a few words, without the container spec (it holds secrets).
fn short(action: &Action) -> String {
    match action {
        Action::CreateContainer(spec) => format!("create container {}", spec.name),
        Action::WriteUnitFile { name, .. } => format!("write unit {name}"),
        Action::ImportPauseImage => "import the pause image".into(),
        Action::PullImage(image) => format!("pull {image}"),
        Action::StopUnit(unit) => format!("stop {unit}"),
        Action::RemoveContainer(name) => format!("remove container {name}"),
        Action::CreateVolume { name, .. } => format!("create volume {name}"),
        Action::RemoveVolume(name) => format!("remove volume {name}"),
        Action::RemoveUnitFile(name) => format!("remove unit {name}"),
        Action::Reload => "reload systemd".into(),
        Action::Enable(units) => format!("enable {}", units.join(" ")),
        Action::Disable(units) => format!("disable {}", units.join(" ")),
        Action::StartUnit(unit) => format!("start {unit}"),
        Action::StartUnitNoWait(unit) => format!("start {unit} (ready when its probes pass)"),
        Action::RestartUnit(unit) => format!("restart {unit}"),
        Action::PrepareBuild(build) => format!("prepare build {}", build.task.build),
        Action::RemoveBuildDir => "remove the build's directory".into(),
    }
}

/// The pulls under way, by pod: while a pod's image comes, its status
/// says how far (`ContainerCreating: pulling 12.3/40.1 MB`).
#[derive(Debug, Default)]
pub struct Pulls {
    by_pod: std::sync::Mutex<std::collections::BTreeMap<String, Arc<PullProgress>>>,
    /// Woken when a pull begins.
    begun: tokio::sync::Notify,
}

impl Pulls {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Arc<PullProgress>>> {
        self.by_pod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(&self, pod: &str) -> Arc<PullProgress> {
        let progress = Arc::new(PullProgress::default());
        self.map().insert(pod.to_owned(), Arc::clone(&progress));
        self.begun.notify_one();
        progress
    }

    fn end(&self, pod: &str) {
        self.map().remove(pod);
    }

    /// How far `pod`'s pull has come, while one is under way.
    pub fn summary(&self, pod: &str) -> Option<String> {
        self.map().get(pod).map(|p| p.summary())
    }

    /// Whether any pull is under way.
    pub fn any(&self) -> bool {
        !self.map().is_empty()
    }

    /// Returns when a pull begins (at once if one began since it last
    /// returned).
    pub async fn began(&self) {
        self.begun.notified().await;
    }
}

async fn apply<D: ContainerEngine, S: UnitManager>(
    action: &Action,
    pod: &str,
    effects: Effects<'_, D, S>,
) -> anyhow::Result<()> {
    let Effects {
        docker,
        systemd,
        config,
        registry,
        pulls,
        started_marks,
    } = effects;
    let units_dir = config.units_dir();
    match action {
        Action::ImportPauseImage => docker.ensure_pause_image().await?,
        Action::PullImage(image) => {
            let configured = registry_of(image)
                .and_then(|r| config.registries.get(r))
                .map(|c| PullAuth::Password(c.clone()));
            let auth = match configured {
                Some(auth) => Some(auth),
                None => registry.auth_for(image).await,
            };
            let progress = pulls.begin(pod);
            let pulled = docker.ensure_image(image, auth.as_ref(), &progress).await;
            pulls.end(pod);
            pulled?
        }
        Action::StopUnit(unit) => {
            systemd.stop(unit).await?;
            systemd.reset_failed(unit).await;
        }
        Action::RemoveContainer(name) => docker.remove(name).await?,
        Action::CreateVolume { name, pod, class } => {
            let device = match class {
                Some(class) => Some(class_volume_dir(config, class, name)?),
                None => None,
            };
            let device = device.as_ref().map(|d| d.display().to_string());
            docker.create_volume(name, pod, device.as_deref()).await?;
        }
        Action::RemoveVolume(name) => {
            docker.remove_volume(name).await?;
            remove_class_volume_dirs(config, name)?;
        }
        Action::CreateContainer(spec) => {
            docker.create(spec).await?;
        }
        Action::WriteUnitFile { name, contents } => write_unit_file(&units_dir, name, contents)?,
        Action::RemoveUnitFile(name) => match std::fs::remove_file(units_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        },
        Action::Reload => systemd.reload().await?,
        Action::Enable(units) => {
            let paths: Vec<String> = units
                .iter()
                .map(|u| units_dir.join(u).display().to_string())
                .collect();
            systemd.enable(&paths).await?;
        }
        Action::Disable(units) => systemd.disable(units).await?,
        Action::StartUnit(unit) => {
            mark_started(started_marks, unit)?;
            systemd.reset_failed(unit).await;
            systemd.start(unit).await?;
        }
        Action::StartUnitNoWait(unit) => {
            mark_started(started_marks, unit)?;
            systemd.reset_failed(unit).await;
            systemd.enqueue_start(unit).await?;
        }
        Action::RestartUnit(unit) => {
            mark_started(started_marks, unit)?;
            systemd.reset_failed(unit).await;
            systemd.restart(unit).await?;
        }
        Action::PrepareBuild(build) => {
            let preparation = Preparation {
                pod: &build.pod,
                task: &build.task,
                resources: &build.resources,
            };
            let host = Host {
                state_dir: &config.state_dir,
                docker_socket: &config.docker_socket,
                registry,
            };
            prepare::prepare(preparation, host).await?;
        }
        Action::RemoveBuildDir => prepare::remove(&config.state_dir, pod)?,
    }
    Ok(())
}

/// Marks `unit` as started by the agent since boot: the condition a
/// never-restarted container's unit starts on.
fn mark_started(dir: &Path, unit: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(unit), b"")
}

/// Writes a unit file atomically. Unit files hold no secrets (systemd shows
/// them to everyone anyway), so they are 0644 like any unit.
/// Makes the directory of volume `name` in the directory of volume class
/// `class` (0700, root's), and returns it; an existing one is kept with its
/// data.
pub(crate) fn class_volume_dir(
    config: &AgentConfig,
    class: &str,
    name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let Some(root) = config.volume_classes.get(class) else {
        // The pod was checked when it came; the class went from the
        // configuration since.
        anyhow::bail!("this node has no volume class {class:?} (volume-classes)");
    };
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating volume class directory {}", root.display()))?;
    let dir = root.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(anyhow::Error::new(e).context(format!("creating {}", dir.display())))
        }
        _ => {}
    }
    Ok(dir)
}

/// Removes the data of volume `name` from every volume class's directory:
/// Docker forgets a bound volume but leaves its data. Docker's volume names
/// hold no `/`, so only a direct child of a class's directory goes.
pub(crate) fn remove_class_volume_dirs(config: &AgentConfig, name: &str) -> std::io::Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Ok(());
    }
    for root in config.volume_classes.values() {
        match std::fs::remove_dir_all(root.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn write_unit_file(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}
