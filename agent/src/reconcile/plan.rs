//! The pure plan: from a pod's desired state (or none, when it is being
//! deleted) and what systemd and Docker show, the ordered actions that make
//! them agree. Each action carries its reason. The plan never looks at why
//! it was asked, so running it twice is harmless: the second run finds
//! nothing to do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::docker::{ContainerSpec, ObservedContainer, LABEL_SPEC_HASH};
use crate::reconcile::desired::{DesiredBuild, DesiredPod};
use crate::systemd::UnitState;
use crate::unit::UnitName;

/// What systemd and Docker show of one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// Its containers, by Docker name.
    pub containers: BTreeMap<String, ObservedContainer>,
    /// Its unit files in the agent's unit directory, by name.
    pub unit_files: BTreeMap<String, String>,
    /// Its units that systemd has loaded.
    pub units: HashMap<String, UnitState>,
    /// Its units that are enabled (wanted by `multi-user.target`).
    pub enabled: BTreeSet<String>,
    /// Its named volumes in Docker.
    pub volumes: BTreeSet<String>,
    /// Whether it has a build directory, prepared or not (a build pod's).
    pub build_dir: bool,
    /// Whether its build directory is prepared: the runner's spec is
    /// written.
    pub build_prepared: bool,
}

/// What was asked of the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Make reality match the record, leaving units that systemd stopped
    /// (by the restart policy) as they are.
    Converge,
    /// As `Converge`, and start every unit that is not running: a pod was
    /// just created or `start` was asked.
    Start,
    /// As `Start`, and restart every container's unit that runs (not the
    /// network holder's: the pod keeps its network).
    Restart,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Import the pod network holder's image.
    ImportPauseImage,
    /// Pull an image that is not present.
    PullImage(String),
    /// Stop a unit and wait for it.
    StopUnit(String),
    /// Remove a Docker container.
    RemoveContainer(String),
    /// Create a Docker container.
    CreateContainer(Box<ContainerSpec>),
    /// Create a pod's named volume.
    CreateVolume {
        /// Docker's volume name.
        name: String,
        /// The pod it belongs to (its label).
        pod: String,
        /// Its volume class: its data lives in the class's directory.
        class: Option<String>,
    },
    /// Remove a named volume and its data.
    RemoveVolume(String),
    /// Write a unit file into the agent's unit directory.
    WriteUnitFile {
        /// Unit name.
        name: String,
        /// Its contents.
        contents: String,
    },
    /// Delete a unit file.
    RemoveUnitFile(String),
    /// `daemon-reload`, once, because loaded units changed on disk.
    Reload,
    /// Link and enable unit files (they start at boot).
    Enable(Vec<String>),
    /// Disable units (they stay down at boot).
    Disable(Vec<String>),
    /// Start a unit and wait until it is ready.
    StartUnit(String),
    /// Start a unit without waiting for it: its probes decide when it is
    /// ready, and until then it is `activating`.
    StartUnitNoWait(String),
    /// Restart a running unit and wait until it runs again.
    RestartUnit(String),
    /// Write a build pod's directory: its input, the commit, a push
    /// token and the runner's spec.
    PrepareBuild(Box<DesiredBuild>),
    /// Remove the pod's build directory.
    RemoveBuildDir,
}

/// An action and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// Why, for the log.
    pub reason: String,
}

fn step(action: Action, reason: impl Into<String>) -> Step {
    Step {
        action,
        reason: reason.into(),
    }
}

fn is_up(state: Option<&UnitState>) -> bool {
    state.is_some_and(|s| {
        matches!(
            s.active_state.as_str(),
            "active" | "activating" | "reloading"
        )
    })
}

fn is_down_or_gone(state: Option<&UnitState>) -> bool {
    !is_up(state) && state.is_none_or(|s| s.active_state != "deactivating")
}

/// Plans one pod. `desired` is `None` when the pod is being deleted.
pub fn plan(desired: Option<&DesiredPod>, observed: &ObservedPod, intent: Intent) -> Vec<Step> {
    match desired {
        None => plan_removal(observed, "pod deleted"),
        Some(desired) => plan_present(desired, observed, intent),
    }
}

/// Plans the replacement of a pod by one of a new spec: everything of the
/// old pod goes (units stopped before their containers are removed) but
/// the named volumes the new spec still has, then the new pod is created
/// and started as if it were new.
pub fn plan_replacement(desired: &DesiredPod, observed: &ObservedPod) -> Vec<Step> {
    // The same pod in a new version (a recreate rollout): the named
    // volumes it still declares keep their data.
    let mut steps = plan_removal(observed, "pod replaced");
    steps.retain(|s| !matches!(&s.action, Action::RemoveVolume(v) if desired.volumes.contains(v)));
    steps.extend(plan_present(
        desired,
        &ObservedPod::default(),
        Intent::Start,
    ));
    steps
}

fn plan_removal(observed: &ObservedPod, why: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    // Containers first, then the network holder they depend on.
    let services: Vec<&String> = observed
        .unit_files
        .keys()
        .filter(|u| u.ends_with(".service"))
        .collect();
    let (holders, apps): (Vec<&String>, Vec<&String>) = services
        .iter()
        .partition(|u| matches!(UnitName::decode(u), Some(UnitName::Network { .. })));
    for unit in apps.iter().chain(holders.iter()) {
        if !is_down_or_gone(observed.units.get(unit.as_str())) {
            steps.push(step(Action::StopUnit((*unit).clone()), why));
        }
    }
    // An empty slice stays loaded and active until stopped, with or
    // without its file.
    let slices: BTreeSet<&String> = observed
        .unit_files
        .keys()
        .chain(observed.units.keys())
        .filter(|u| u.ends_with(".slice"))
        .collect();
    for slice in slices {
        if !is_down_or_gone(observed.units.get(slice.as_str())) {
            steps.push(step(Action::StopUnit(slice.clone()), why));
        }
    }
    // Network volumes are unmounted once no container binds them.
    let mounts: BTreeSet<&String> = observed
        .unit_files
        .keys()
        .chain(observed.units.keys())
        .filter(|u| u.ends_with(".mount"))
        .collect();
    for mount in mounts {
        if !is_down_or_gone(observed.units.get(mount.as_str())) {
            steps.push(step(Action::StopUnit(mount.clone()), why));
        }
    }
    let enabled: Vec<String> = observed.enabled.iter().cloned().collect();
    if !enabled.is_empty() {
        steps.push(step(Action::Disable(enabled), why));
    }
    for unit in observed.unit_files.keys() {
        steps.push(step(Action::RemoveUnitFile(unit.clone()), why));
    }
    let (holder, apps): (Vec<&String>, Vec<&String>) = observed
        .containers
        .keys()
        .partition(|name| name.matches('.').count() == 1);
    for name in apps.into_iter().chain(holder) {
        steps.push(step(Action::RemoveContainer(name.clone()), why));
    }
    // Named volumes live and die with their pod.
    for volume in &observed.volumes {
        steps.push(step(Action::RemoveVolume(volume.clone()), why));
    }
    if observed.build_dir {
        steps.push(step(Action::RemoveBuildDir, why));
    }
    steps
}

fn plan_present(desired: &DesiredPod, observed: &ObservedPod, intent: Intent) -> Vec<Step> {
    let mut steps = Vec::new();

    // Containers whose spec changed (or that are missing) are recreated. A new
    // network holder means a new network namespace: every container of the
    // pod joined the old one, so all of them are recreated.
    let stale = |name: &str, hash: &str| {
        observed
            .containers
            .get(name)
            .and_then(|c| c.labels.get(LABEL_SPEC_HASH))
            .map(String::as_str)
            != Some(hash)
    };
    let is_holder = |i: usize| desired.containers[i].pod_container.is_none();
    let holder_stale = desired
        .containers
        .first()
        .is_some_and(|h| h.pod_container.is_none() && stale(&h.spec.name, &h.spec_hash));
    let recreate: Vec<usize> = (0..desired.containers.len())
        .filter(|&i| {
            holder_stale
                || stale(
                    &desired.containers[i].spec.name,
                    &desired.containers[i].spec_hash,
                )
        })
        .collect();

    if holder_stale {
        steps.push(step(
            Action::ImportPauseImage,
            "the pod network holder is created",
        ));
    }
    let mut pulled = BTreeSet::new();
    for &i in recreate.iter().filter(|&&i| !is_holder(i)) {
        let image = &desired.containers[i].spec.image;
        if pulled.insert(image.clone()) {
            steps.push(step(
                Action::PullImage(image.clone()),
                format!("container {} needs it", desired.containers[i].spec.name),
            ));
        }
    }
    // Stop what is replaced, containers before the holder.
    for &i in recreate.iter().rev() {
        let c = &desired.containers[i];
        if observed.containers.contains_key(&c.spec.name) {
            if !is_down_or_gone(observed.units.get(&c.unit)) {
                steps.push(step(
                    Action::StopUnit(c.unit.clone()),
                    format!("container {} is replaced", c.spec.name),
                ));
            }
            steps.push(step(
                Action::RemoveContainer(c.spec.name.clone()),
                "its spec changed",
            ));
        }
    }
    for volume in desired
        .volumes
        .iter()
        .filter(|v| !observed.volumes.contains(*v))
    {
        steps.push(step(
            Action::CreateVolume {
                name: volume.clone(),
                pod: desired.name.clone(),
                class: desired.volume_classes.get(volume).cloned(),
            },
            "volume missing",
        ));
    }
    for &i in &recreate {
        let c = &desired.containers[i];
        let why = if observed.containers.contains_key(&c.spec.name) {
            "spec changed"
        } else {
            "container missing"
        };
        steps.push(step(Action::CreateContainer(Box::new(c.spec.clone())), why));
    }

    // Containers and units no longer in the spec go.
    let wanted_units: BTreeSet<&str> = desired.unit_files.iter().map(|u| u.name.as_str()).collect();
    for unit in observed
        .unit_files
        .keys()
        .filter(|u| !wanted_units.contains(u.as_str()))
    {
        if !is_down_or_gone(observed.units.get(unit)) {
            steps.push(step(
                Action::StopUnit(unit.clone()),
                "container removed from the pod",
            ));
        }
        if observed.enabled.contains(unit) {
            steps.push(step(
                Action::Disable(vec![unit.clone()]),
                "container removed from the pod",
            ));
        }
        steps.push(step(
            Action::RemoveUnitFile(unit.clone()),
            "container removed from the pod",
        ));
    }
    let wanted_containers: BTreeSet<&str> = desired
        .containers
        .iter()
        .map(|c| c.spec.name.as_str())
        .collect();
    for name in observed
        .containers
        .keys()
        .filter(|n| !wanted_containers.contains(n.as_str()))
    {
        steps.push(step(
            Action::RemoveContainer(name.clone()),
            "container removed from the pod",
        ));
    }

    // A build runs once: prepared, then started, when first planned;
    // converging never starts it again, whatever became of it.
    let first_build = desired
        .build
        .as_ref()
        .filter(|_| desired.running && !observed.build_prepared);
    if let Some(build) = first_build {
        steps.push(step(
            Action::PrepareBuild(Box::new(build.clone())),
            "the build's input is not here yet",
        ));
    }

    // Unit files: write what differs; a unit systemd already loaded needs
    // one reload, batched for the whole pod.
    let mut reload = false;
    for file in &desired.unit_files {
        if observed.unit_files.get(&file.name) != Some(&file.contents) {
            steps.push(step(
                Action::WriteUnitFile {
                    name: file.name.clone(),
                    contents: file.contents.clone(),
                },
                if observed.unit_files.contains_key(&file.name) {
                    "unit changed"
                } else {
                    "unit missing"
                },
            ));
            reload |= observed.units.contains_key(&file.name);
        }
        reload |= observed
            .units
            .get(&file.name)
            .is_some_and(|s| s.needs_reload);
    }
    if reload {
        steps.push(step(Action::Reload, "loaded units changed on disk"));
    }

    let service_units = desired.service_units();
    let services: Vec<&str> = service_units.iter().map(String::as_str).collect();
    if desired.running {
        // Network volumes' mounts first: linked in before a container that
        // requires one is loaded.
        let to_enable: Vec<String> = desired
            .unit_files
            .iter()
            .map(|f| f.name.as_str())
            .filter(|u| u.ends_with(".mount"))
            .chain(services.iter().copied())
            .filter(|u| !observed.enabled.contains(*u))
            .map(str::to_owned)
            .collect();
        if !to_enable.is_empty() {
            steps.push(step(Action::Enable(to_enable), "the pod runs, at boot too"));
        }
        for (i, c) in desired.containers.iter().enumerate() {
            let state = observed.units.get(&c.unit);
            let replaced = recreate.contains(&i);
            // systemd's restart policy owns units that ended on their own:
            // converging only starts a container it just (re)created.
            let start = replaced || (intent != Intent::Converge && !is_up(state));
            if !start && intent == Intent::Restart && c.pod_container.is_some() {
                steps.push(step(
                    Action::RestartUnit(c.unit.clone()),
                    "restart requested",
                ));
                continue;
            }
            if start {
                let why = if replaced {
                    "container created"
                } else {
                    "start requested"
                };
                let action = if c.gated_by_probes {
                    Action::StartUnitNoWait(c.unit.clone())
                } else {
                    Action::StartUnit(c.unit.clone())
                };
                steps.push(step(action, why));
            }
        }
        if let Some(build) = first_build {
            steps.push(step(
                Action::StartUnit(build.unit.clone()),
                "the build is prepared",
            ));
        }
    } else {
        if let Some(build) = &desired.build {
            if is_up(observed.units.get(&build.unit)) {
                steps.push(step(Action::StopUnit(build.unit.clone()), "pod stopped"));
            }
        }
        for c in desired.containers.iter().rev() {
            if is_up(observed.units.get(&c.unit)) {
                steps.push(step(Action::StopUnit(c.unit.clone()), "pod stopped"));
            }
        }
        let to_disable: Vec<String> = services
            .iter()
            .filter(|u| observed.enabled.contains(**u))
            .map(|u| u.to_string())
            .collect();
        if !to_disable.is_empty() {
            steps.push(step(
                Action::Disable(to_disable),
                "pod stopped, also at boot",
            ));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::desired::desired_pod;
    use crate::store::{Desired, PodRecord};

    fn host() -> berth_model::UnitSettings {
        berth_model::UnitSettings {
            shim_path: "/usr/bin/berth-shim".into(),
            shim_environment: Vec::new(),
            ..Default::default()
        }
    }

    fn desired(image: &str, running: bool) -> DesiredPod {
        let json = format!(r#"{{"name":"web","containers":[{{"name":"app","image":"{image}"}}]}}"#);
        let record = PodRecord {
            pod: serde_json::from_str(&json).unwrap(),
            host_ports: vec![],
            desired: if running {
                Desired::Running
            } else {
                Desired::Stopped
            },
            source: crate::store::Source::Local,
        };
        desired_pod(&record, &host()).unwrap()
    }

    fn two_containers() -> DesiredPod {
        let json = r#"{"name":"web","containers":[{"name":"side","image":"i"}]}"#;
        let mut pod: berth_model::Pod = serde_json::from_str(json).unwrap();
        pod.containers.push(pod.containers[0].clone());
        pod.containers[1].name = "two".into();
        let record = PodRecord {
            pod,
            host_ports: vec![],
            desired: Desired::Running,
            source: crate::store::Source::Local,
        };
        let mut d = desired_pod(&record, &host()).unwrap();
        // Keep the example small: the network holder and one container.
        d.containers.truncate(2);
        d.unit_files.retain(|u| !u.name.contains("two"));
        d
    }

    #[test]
    fn a_container_with_a_readiness_probe_is_started_without_waiting() {
        let json = r#"{"name":"web","containers":[{"name":"app","image":"i",
            "probes":{"readiness":{"tcp":{"port":80}},"liveness":{"tcp":{"port":80}}}}]}"#;
        let record = PodRecord {
            pod: serde_json::from_str(json).unwrap(),
            host_ports: vec![],
            desired: Desired::Running,
            source: crate::store::Source::Local,
        };
        let d = desired_pod(&record, &host()).unwrap();
        let got = actions(&plan(Some(&d), &ObservedPod::default(), Intent::Start));
        assert_eq!(
            got.last().map(String::as_str),
            Some("StartUnitNoWait(\"berth-web-app.service\")")
        );
        let liveness_only = desired("i", true);
        let got = actions(&plan(
            Some(&liveness_only),
            &ObservedPod::default(),
            Intent::Start,
        ));
        assert_eq!(
            got.last().map(String::as_str),
            Some("StartUnit(\"berth-web-app.service\")")
        );
    }

    #[test]
    fn a_pod_of_several_containers_starts_its_network_holder_first() {
        let d = two_containers();
        let got = actions(&plan(Some(&d), &ObservedPod::default(), Intent::Start));
        assert_eq!(got[0], "ImportPauseImage");
        let starts: Vec<&String> = got.iter().filter(|a| a.starts_with("StartUnit")).collect();
        assert_eq!(
            starts,
            [
                "StartUnit(\"berth-web.service\")",
                "StartUnit(\"berth-web-side.service\")"
            ]
        );
    }

    fn active() -> UnitState {
        UnitState {
            active_state: "active".into(),
            sub_state: "running".into(),
            ..Default::default()
        }
    }

    /// What the pod looks like once `d` has been applied and started.
    fn applied(d: &DesiredPod) -> ObservedPod {
        let mut o = ObservedPod::default();
        for c in &d.containers {
            let labels = [(LABEL_SPEC_HASH.to_string(), c.spec_hash.clone())]
                .into_iter()
                .collect();
            o.containers.insert(
                c.spec.name.clone(),
                ObservedContainer {
                    name: c.spec.name.clone(),
                    labels,
                    ..Default::default()
                },
            );
            o.units.insert(c.unit.clone(), active());
            o.enabled.insert(c.unit.clone());
        }
        for f in &d.unit_files {
            o.unit_files.insert(f.name.clone(), f.contents.clone());
        }
        o
    }

    fn actions(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match &s.action {
                Action::CreateContainer(spec) => format!("create {}", spec.name),
                Action::WriteUnitFile { name, .. } => format!("write {name}"),
                Action::PrepareBuild(build) => format!("prepare {}", build.task.build),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_new_pod_is_created_in_order() {
        let d = desired("local/busybox", true);
        let got = actions(&plan(Some(&d), &ObservedPod::default(), Intent::Start));
        assert_eq!(
            got,
            [
                "PullImage(\"local/busybox\")",
                "create berth.web.app",
                "write berth-web.slice",
                "write berth-web-app.service",
                "Enable([\"berth-web-app.service\"])",
                "StartUnit(\"berth-web-app.service\")",
            ]
        );
    }

    #[test]
    fn an_applied_pod_needs_nothing_whatever_the_intent() {
        let d = desired("local/busybox", true);
        let o = applied(&d);
        assert_eq!(plan(Some(&d), &o, Intent::Converge), []);
        assert_eq!(plan(Some(&d), &o, Intent::Start), []);
    }

    #[test]
    fn a_failed_unit_is_left_to_its_restart_policy_unless_start_is_asked() {
        let d = desired("local/busybox", true);
        let mut o = applied(&d);
        o.units.insert(
            "berth-web-app.service".into(),
            UnitState {
                active_state: "failed".into(),
                ..Default::default()
            },
        );
        assert_eq!(plan(Some(&d), &o, Intent::Converge), []);
        assert_eq!(
            actions(&plan(Some(&d), &o, Intent::Start)),
            ["StartUnit(\"berth-web-app.service\")"]
        );
    }

    #[test]
    fn a_changed_image_replaces_only_that_container_and_reloads_once() {
        let old = desired("local/busybox", true);
        let new = desired("local/other", true);
        let got = actions(&plan(Some(&new), &applied(&old), Intent::Converge));
        assert_eq!(
            got,
            [
                "PullImage(\"local/other\")",
                "StopUnit(\"berth-web-app.service\")",
                "RemoveContainer(\"berth.web.app\")",
                "create berth.web.app",
                "write berth-web-app.service",
                "Reload",
                "StartUnit(\"berth-web-app.service\")",
            ]
        );
    }

    #[test]
    fn a_deleted_pod_is_stopped_disabled_and_removed_containers_first() {
        let d = two_containers();
        let got = actions(&plan(None, &applied(&d), Intent::Converge));
        assert_eq!(
            got,
            [
                "StopUnit(\"berth-web-side.service\")",
                "StopUnit(\"berth-web.service\")",
                "Disable([\"berth-web-side.service\", \"berth-web.service\"])",
                "RemoveUnitFile(\"berth-web-side.service\")",
                "RemoveUnitFile(\"berth-web.service\")",
                "RemoveUnitFile(\"berth-web.slice\")",
                "RemoveContainer(\"berth.web.side\")",
                "RemoveContainer(\"berth.web\")",
            ]
        );
    }

    #[test]
    fn a_deleted_pods_slice_is_stopped_after_its_units() {
        let d = desired("local/busybox", true);
        let mut observed = applied(&d);
        observed.units.insert("berth-web.slice".into(), active());
        let got = actions(&plan(None, &observed, Intent::Converge));
        assert_eq!(
            got[..2],
            [
                "StopUnit(\"berth-web-app.service\")",
                "StopUnit(\"berth-web.slice\")",
            ]
        );
    }

    #[test]
    fn a_deleted_pods_slice_is_stopped_even_without_its_file() {
        let d = desired("local/busybox", true);
        let mut observed = applied(&d);
        observed.unit_files.clear();
        observed.units.insert("berth-web.slice".into(), active());
        let got = actions(&plan(None, &observed, Intent::Converge));
        assert!(
            got.contains(&"StopUnit(\"berth-web.slice\")".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn a_stopped_pod_is_stopped_and_disabled() {
        let running = desired("local/busybox", true);
        let stopped = desired("local/busybox", false);
        let got = actions(&plan(Some(&stopped), &applied(&running), Intent::Converge));
        assert_eq!(
            got,
            [
                "StopUnit(\"berth-web-app.service\")",
                "Disable([\"berth-web-app.service\"])",
            ]
        );
    }

    #[test]
    fn a_restart_restarts_running_containers_and_starts_the_rest_once() {
        let d = two_containers();
        let mut o = applied(&d);
        assert_eq!(
            actions(&plan(Some(&d), &o, Intent::Restart)),
            ["RestartUnit(\"berth-web-side.service\")"],
            "the network holder keeps running"
        );
        o.units.insert(
            "berth-web-side.service".into(),
            UnitState {
                active_state: "failed".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            actions(&plan(Some(&d), &o, Intent::Restart)),
            ["StartUnit(\"berth-web-side.service\")"]
        );
    }

    #[test]
    fn a_replaced_pod_is_removed_then_created_afresh() {
        let old = desired("local/busybox", true);
        let new = desired("local/other", true);
        let got = actions(&plan_replacement(&new, &applied(&old)));
        assert_eq!(
            got,
            [
                "StopUnit(\"berth-web-app.service\")",
                "Disable([\"berth-web-app.service\"])",
                "RemoveUnitFile(\"berth-web-app.service\")",
                "RemoveUnitFile(\"berth-web.slice\")",
                "RemoveContainer(\"berth.web.app\")",
                "PullImage(\"local/other\")",
                "create berth.web.app",
                "write berth-web.slice",
                "write berth-web-app.service",
                "Enable([\"berth-web-app.service\"])",
                "StartUnit(\"berth-web-app.service\")",
            ]
        );
        let steps = plan_replacement(&new, &applied(&old));
        assert_eq!(steps[0].reason, "pod replaced");
    }

    #[test]
    fn a_replaced_pod_keeps_the_named_volumes_its_new_spec_still_has() {
        let mut old = applied(&desired("local/busybox", true));
        old.volumes = ["berth.web.data".to_owned(), "berth.web.cache".to_owned()].into();
        let mut new = desired("local/other", true);
        new.volumes = vec!["berth.web.data".to_owned()];
        let got = actions(&plan_replacement(&new, &old));
        assert!(
            got.contains(&"RemoveVolume(\"berth.web.cache\")".to_owned()),
            "{got:?}"
        );
        // Creating a volume that exists keeps it as it is.
        assert!(
            !got.contains(&"RemoveVolume(\"berth.web.data\")".to_owned()),
            "{got:?}"
        );
    }

    fn build_pod() -> DesiredPod {
        let json = r#"{"name":"a.site-1-build-0","containers":[{"name":"build","image":"b",
            "restart":"never"}],"build":{"build":"a.site-1","strategy":{"docker":{}},
            "input":{"git":{"url":"https://git.example/site.git","ref":"main"}},
            "output":"h1:5000/a/site:latest"}}"#;
        let record = PodRecord {
            pod: serde_json::from_str(json).unwrap(),
            host_ports: vec![],
            desired: Desired::Running,
            source: crate::store::Source::Master,
        };
        desired_pod(&record, &host()).unwrap()
    }

    const BUILD_UNIT: &str = "berth-a.site\\x2d1\\x2dbuild\\x2d0-build.service";

    #[test]
    fn a_build_pod_is_prepared_then_started_once_with_no_container_or_pull() {
        let d = build_pod();
        let got = actions(&plan(Some(&d), &ObservedPod::default(), Intent::Start));
        assert_eq!(
            got,
            [
                "prepare a.site-1".to_owned(),
                "write berth-a.site\\x2d1\\x2dbuild\\x2d0.slice".to_owned(),
                format!("write {BUILD_UNIT}"),
                format!("Enable([{BUILD_UNIT:?}])"),
                format!("StartUnit({BUILD_UNIT:?})"),
            ]
        );

        // Once prepared, nothing starts it again: not converging, not a
        // start, whether it runs, succeeded or failed.
        let mut o = ObservedPod {
            build_dir: true,
            build_prepared: true,
            enabled: [BUILD_UNIT.to_owned()].into(),
            ..ObservedPod::default()
        };
        for f in &d.unit_files {
            o.unit_files.insert(f.name.clone(), f.contents.clone());
        }
        for state in ["active", "inactive", "failed"] {
            o.units.insert(
                BUILD_UNIT.to_owned(),
                UnitState {
                    active_state: state.into(),
                    ..Default::default()
                },
            );
            for intent in [Intent::Converge, Intent::Start, Intent::Restart] {
                assert_eq!(plan(Some(&d), &o, intent), [], "{state} {intent:?}");
            }
        }

        // Removed: the runner is stopped (it removes its containers), its
        // unit and directory go.
        o.units.insert(BUILD_UNIT.to_owned(), active());
        assert_eq!(
            actions(&plan(None, &o, Intent::Converge)),
            [
                format!("StopUnit({BUILD_UNIT:?})"),
                format!("Disable([{BUILD_UNIT:?}])"),
                format!("RemoveUnitFile({BUILD_UNIT:?})"),
                "RemoveUnitFile(\"berth-a.site\\\\x2d1\\\\x2dbuild\\\\x2d0.slice\")".to_owned(),
                "RemoveBuildDir".to_owned(),
            ]
        );
    }
}
