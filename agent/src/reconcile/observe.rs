//! Gathering what systemd, Docker and the unit directory show, pod by pod.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use crate::docker::{ContainerEngine, DockerError, ObservedContainer, LABEL_CONTAINER, LABEL_POD};
use crate::reconcile::plan::ObservedPod;
use crate::stamped_files::StampedFiles;
use crate::systemd::{SystemdError, UnitManager};

/// What could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Docker did not answer.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// systemd did not answer.
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    /// The unit directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The unit files in the agent's unit directory whose names pass
/// `wanted`, by name: the others are not read, and those unchanged since
/// `kept` last read them are not opened.
fn unit_files_of(
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
    kept: &StampedFiles<String>,
) -> Result<BTreeMap<String, String>, ObserveError> {
    let io = |source| ObserveError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io(e)),
    };
    let mut present = HashSet::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        let unit =
            name.ends_with(".service") || name.ends_with(".slice") || name.ends_with(".mount");
        if unit && wanted(&name) {
            files.insert(name, kept.read(&path, Ok, io)?);
        }
        present.insert(path);
    }
    kept.keep_only(dir, &present);
    Ok(files)
}

/// The agent's unit directory, and its files as last read.
#[derive(Debug, Clone, Copy)]
pub struct UnitDir<'a> {
    /// The directory.
    pub dir: &'a Path,
    /// Its files as last read.
    pub kept: &'a StampedFiles<String>,
}

/// Observes every pod that has a container or a unit file on this host,
/// plus the pods named in `also` (so a pod with nothing yet is observed as
/// empty). Build directories are looked for under `state_dir`.
pub async fn observe_all(
    docker: &impl ContainerEngine,
    systemd: &impl UnitManager,
    units: &UnitDir<'_>,
    state_dir: &Path,
    also: &[String],
) -> Result<BTreeMap<String, ObservedPod>, ObserveError> {
    observe_where(docker, systemd, units, state_dir, also, None).await
}

/// Observes pod `name` alone: its containers are listed, its unit files
/// read and its units' states asked for, no other pod's (a start among a
/// hundred pods must not list a hundred containers and read three hundred
/// units).
pub async fn observe_pod(
    docker: &impl ContainerEngine,
    systemd: &impl UnitManager,
    units: &UnitDir<'_>,
    state_dir: &Path,
    name: &str,
) -> Result<ObservedPod, ObserveError> {
    let also = [name.to_owned()];
    let mut pods = observe_where(docker, systemd, units, state_dir, &also, Some(name)).await?;
    Ok(pods.remove(name).unwrap_or_default())
}

async fn observe_where(
    docker: &impl ContainerEngine,
    systemd: &impl UnitManager,
    units: &UnitDir<'_>,
    state_dir: &Path,
    also: &[String],
    only: Option<&str>,
) -> Result<BTreeMap<String, ObservedPod>, ObserveError> {
    let wanted = |pod: &str| only.is_none_or(|only| only == pod);
    let mut pods: BTreeMap<String, ObservedPod> = also
        .iter()
        .map(|n| (n.clone(), ObservedPod::default()))
        .collect();
    for container in docker.list_berth_containers(only).await? {
        let Some(pod) = container.labels.get(LABEL_POD).cloned() else {
            continue;
        };
        pods.entry(pod)
            .or_default()
            .containers
            .insert(container.name.clone(), container);
    }
    for (volume, pod) in docker.list_berth_volumes().await? {
        pods.entry(pod).or_default().volumes.insert(volume);
    }
    let of_wanted_pod =
        |unit: &str| crate::unit::name::pod_of_unit(unit).is_some_and(|pod| wanted(&pod));
    for (unit, contents) in unit_files_of(units.dir, of_wanted_pod, units.kept)? {
        if let Some(pod) = crate::unit::name::pod_of_unit(&unit) {
            pods.entry(pod)
                .or_default()
                .unit_files
                .insert(unit, contents);
        }
    }
    pods.retain(|pod, _| wanted(pod));
    for (pod, observed) in &mut pods {
        // Units are known by their files and by their containers: a unit
        // whose file went with a lost state directory still runs, and
        // must be seen running. The pod's slice too: an empty slice stays
        // active until stopped, so removal must see it.
        let units: Vec<String> = observed
            .unit_files
            .keys()
            .cloned()
            .chain(
                observed
                    .containers
                    .values()
                    .map(|c| unit_of_container(pod, c)),
            )
            .chain([crate::unit::pod_slice_name(pod)])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        observed.units = systemd.states(&units).await?;
        (observed.build_dir, observed.build_prepared) =
            crate::build::prepare::dir_state(state_dir, pod);
        observed.enabled = systemd.enabled(&units);
    }
    Ok(pods)
}

/// The unit that runs `container` of `pod`: its container's unit, or the
/// pod's network unit for the network holder (which has no container
/// label).
pub fn unit_of_container(pod: &str, container: &ObservedContainer) -> String {
    match container.labels.get(LABEL_CONTAINER) {
        Some(name) => crate::unit::container_unit_name(pod, name),
        None => crate::unit::pod_network_unit_name(pod),
    }
}
