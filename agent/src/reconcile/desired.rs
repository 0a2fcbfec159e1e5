//! A pod record turned into the exact unit files and Docker containers it
//! needs on this host. Pure: the same record always gives the same result,
//! and each container carries a hash of its own spec so a change shows.

use berth_model::build::{BuildTask, BUILD_CONTAINER};
use berth_model::project::{split_qualified, DEFAULT_PROJECT};
use berth_model::{Pod, Protocol, Resources, UnitSettings};
use serde::Serialize;

use crate::docker::{
    ContainerSpec, LABEL_CONTAINER, LABEL_HOST_PORTS, LABEL_POD, LABEL_POD_SPEC, LABEL_PROJECT,
    LABEL_SOURCE, LABEL_SPEC_HASH, PAUSE_IMAGE,
};
use crate::store::{Desired, PodRecord, Source};
pub use crate::unit::pod::{app_container_name, holder_container_name, UnitFile};
use crate::unit::pod::{docker_pod_part, has_network_holder, pod_unit_files};
use crate::unit::{
    container_cgroup_path, container_unit_name, network_volume_path, pod_network_cgroup_path,
    pod_network_unit_name, pod_slice_name, RenderError,
};

/// One container and the unit that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredContainer {
    /// The container's name in the pod; `None` for the network holder.
    pub pod_container: Option<String>,
    /// The unit that runs it.
    pub unit: String,
    /// How to create it.
    pub spec: ContainerSpec,
    /// Hash of `spec`, also stored as a label.
    pub spec_hash: String,
    /// Whether its unit becomes active only once startup or readiness
    /// probes pass, which may take any time: starting it must not wait.
    pub gated_by_probes: bool,
}

/// A build pod's build: no container of the agent's, a unit that runs
/// `berth-agent build` over a directory prepared first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBuild {
    /// The pod.
    pub pod: String,
    /// The unit that runs the build, named as the pod's one container's.
    pub unit: String,
    /// What to build.
    pub task: BuildTask,
    /// The build's limits (its one container's).
    pub resources: Resources,
}

/// A pod as it should exist on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPod {
    /// The pod's name.
    pub name: String,
    /// Whether it should run.
    pub running: bool,
    /// The network holder first (pods of several containers), then the
    /// containers in spec order.
    pub containers: Vec<DesiredContainer>,
    /// The slice, the network unit (if any), then one unit per container.
    pub unit_files: Vec<UnitFile>,
    /// Images to pull (the pause image is the agent's own).
    pub images: Vec<String>,
    /// Docker volumes for the pod's named volumes.
    pub volumes: Vec<String>,
    /// The volume class of each of `volumes` that has one, by Docker name.
    pub volume_classes: std::collections::BTreeMap<String, String>,
    /// A build pod's build, in place of containers.
    pub build: Option<DesiredBuild>,
}

impl DesiredPod {
    /// The units that run the pod's containers (or its build), in order.
    pub fn service_units(&self) -> Vec<String> {
        self.containers
            .iter()
            .map(|c| c.unit.clone())
            .chain(self.build.iter().map(|b| b.unit.clone()))
            .collect()
    }
}

/// The pod and container of a container's Docker name (see
/// [`app_container_name`]); `None` for any other name.
pub fn pod_of_docker_name(name: &str) -> Option<(String, String)> {
    let (pod, container) = name.strip_prefix("berth.")?.split_once('.')?;
    let pod = pod.replacen('_', ".", 1);
    (app_container_name(&pod, container) == name).then(|| (pod, container.to_owned()))
}

/// The Docker container whose network namespace is the pod's: the holder
/// of a pod of several containers, else its one container.
pub fn network_container_name(pod: &Pod) -> String {
    match pod.containers.as_slice() {
        [only] => app_container_name(&pod.name, &only.name),
        _ => holder_container_name(&pod.name),
    }
}

/// Docker volume of a pod's named volume.
pub fn named_volume(pod: &str, volume: &str) -> String {
    format!("berth.{}.{volume}", docker_pod_part(pod))
}

/// A stable 64-bit FNV-1a hash, hex: stable across builds and Rust versions,
/// unlike `DefaultHasher`, so an agent upgrade does not recreate containers.
pub fn stable_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Labels `spec` with the hash of what it asks of Docker. Hardening at
/// berth's defaults (the PID limit, no user, a writable root, no dropped
/// capabilities) and the network holder's fixed hardening are left out, so
/// that containers created before those settings existed hash as they did
/// and an upgrade restarts nothing: they get them when next created.
fn with_hash(mut spec: ContainerSpec, holder: bool) -> (ContainerSpec, String) {
    #[derive(Serialize)]
    struct Hardening<'a> {
        pids_limit: u32,
        user: &'a Option<String>,
        read_only_root_filesystem: bool,
        cap_drop: &'a [String],
    }
    #[derive(Serialize)]
    struct Hashed<'a> {
        image: &'a str,
        entrypoint: &'a [String],
        cmd: &'a [String],
        env: &'a [String],
        labels: &'a [(String, String)],
        cgroup_parent: &'a str,
        memory: Option<u64>,
        network_mode: &'a Option<String>,
        published: &'a [(String, u16)],
        exposed: &'a [String],
        binds: &'a [String],
        stop_timeout: u32,
        stop_signal: &'a Option<String>,
        init: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        hardening: Option<Hardening<'a>>,
    }
    let default_hardening = spec.pids_limit == berth_model::limits::DEFAULT_PIDS_LIMIT
        && spec.user.is_none()
        && !spec.read_only_root_filesystem
        && spec.cap_drop.is_empty();
    let hashed = Hashed {
        image: &spec.image,
        entrypoint: &spec.entrypoint,
        cmd: &spec.cmd,
        env: &spec.env,
        labels: &spec.labels,
        cgroup_parent: &spec.cgroup_parent,
        memory: spec.memory,
        network_mode: &spec.network_mode,
        published: &spec.published,
        exposed: &spec.exposed,
        binds: &spec.binds,
        stop_timeout: spec.stop_timeout,
        stop_signal: &spec.stop_signal,
        init: spec.init,
        hardening: (!holder && !default_hardening).then_some(Hardening {
            pids_limit: spec.pids_limit,
            user: &spec.user,
            read_only_root_filesystem: spec.read_only_root_filesystem,
            cap_drop: &spec.cap_drop,
        }),
    };
    let hash = stable_hash(&serde_json::to_vec(&hashed).unwrap_or_default());
    spec.labels.push((LABEL_SPEC_HASH.into(), hash.clone()));
    (spec, hash)
}

/// The labels naming a container's pod, and its project unless it is the
/// default one (whose containers predate projects and keep their specs).
fn pod_labels(pod: &str) -> Vec<(String, String)> {
    let mut labels = vec![(LABEL_POD.to_string(), pod.to_owned())];
    let (project, _) = split_qualified(pod);
    if project != DEFAULT_PROJECT {
        labels.push((LABEL_PROJECT.to_string(), project.to_owned()));
    }
    labels
}

fn port_key(port: u16, protocol: Protocol) -> String {
    format!("{port}/{}", protocol.as_str())
}

/// The [`LABEL_SOURCE`] label of a record's adoption container.
fn source_label(record: &PodRecord) -> (String, String) {
    let source = match record.source {
        Source::Master => "master",
        Source::Local => "local",
    };
    (LABEL_SOURCE.to_string(), source.to_string())
}

/// Everything a record needs on this host.
pub fn desired_pod(record: &PodRecord, host: &UnitSettings) -> Result<DesiredPod, RenderError> {
    let pod: &Pod = &record.pod;
    let mut containers = Vec::new();
    // The unit files are the shared renderer's, so that `berth diff`
    // shows exactly these.
    let unit_files = pod_unit_files(pod, host)?;
    if let (Some(task), [container]) = (&pod.build, pod.containers.as_slice()) {
        return Ok(DesiredPod {
            name: pod.name.clone(),
            running: record.desired == Desired::Running,
            containers: Vec::new(),
            unit_files,
            images: Vec::new(),
            volumes: Vec::new(),
            volume_classes: Default::default(),
            build: Some(DesiredBuild {
                pod: pod.name.clone(),
                unit: container_unit_name(&pod.name, BUILD_CONTAINER),
                task: task.clone(),
                resources: container.resources,
            }),
        });
    }

    // A pod of several containers gets a network holder that owns the
    // network namespace and the published ports (see
    // [`has_network_holder`]).
    let has_holder = has_network_holder(pod);
    let holder_name = holder_container_name(&pod.name);
    let published: Vec<(String, u16)> = record
        .host_ports
        .iter()
        .map(|b| (port_key(b.container_port, b.protocol), b.host_port))
        .collect();
    let exposed: Vec<String> = pod
        .containers
        .iter()
        .flat_map(|c| {
            c.ports
                .iter()
                .map(|p| port_key(p.container_port, p.protocol))
        })
        .collect();
    // Labels that let an agent which lost its state adopt the pod again.
    let adoption_labels = [
        (
            LABEL_POD_SPEC.to_string(),
            serde_json::to_string(&pod.redacted()).unwrap_or_default(),
        ),
        (
            LABEL_HOST_PORTS.to_string(),
            serde_json::to_string(&record.host_ports).unwrap_or_default(),
        ),
    ];
    if has_holder {
        let mut labels = pod_labels(&pod.name);
        labels.extend(adoption_labels.iter().cloned());
        let (mut spec, spec_hash) = with_hash(
            ContainerSpec {
                name: holder_name.clone(),
                image: PAUSE_IMAGE.into(),
                entrypoint: vec!["/pause".into()],
                cmd: Vec::new(),
                env: Vec::new(),
                labels,
                cgroup_parent: pod_network_cgroup_path(&pod.name),
                memory: None,
                network_mode: None,
                published: published.clone(),
                exposed: exposed.clone(),
                binds: Vec::new(),
                stop_timeout: 1,
                // pause is PID 1 without a SIGTERM handler: it would ignore it.
                stop_signal: Some("SIGKILL".into()),
                init: false,
                // pause is one process that never forks.
                pids_limit: berth_model::limits::MIN_PIDS_LIMIT,
                user: None,
                read_only_root_filesystem: true,
                cap_drop: Vec::new(),
            },
            true,
        );
        spec.labels.push(source_label(record));
        containers.push(DesiredContainer {
            pod_container: None,
            unit: pod_network_unit_name(&pod.name),
            spec,
            spec_hash,
            gated_by_probes: false,
        });
    }

    let mut images = Vec::new();
    for container in &pod.containers {
        let docker_name = app_container_name(&pod.name, &container.name);
        let binds = container
            .volume_mounts
            .iter()
            .filter_map(|mount| {
                let volume = pod.volumes.iter().find(|v| v.name == mount.volume)?;
                let source = match (&volume.host_path, volume.network()) {
                    (Some(path), _) => path.clone(),
                    (None, Some(_)) => network_volume_path(&pod.name, &volume.name),
                    (None, None) => named_volume(&pod.name, &volume.name),
                };
                let mode = if mount.read_only { ":ro" } else { "" };
                Some(format!("{source}:{}{mode}", mount.path))
            })
            .collect();
        let env = container
            .env
            .iter()
            .chain(container.secret_env.iter())
            .map(|v| format!("{}={}", v.name, v.value))
            .collect();
        let mut labels = pod_labels(&pod.name);
        labels.push((LABEL_CONTAINER.to_string(), container.name.clone()));
        if !has_holder {
            labels.extend(adoption_labels.iter().cloned());
        }
        let (mut spec, spec_hash) = with_hash(
            ContainerSpec {
                name: docker_name,
                image: container.image.clone(),
                entrypoint: container.command.clone(),
                cmd: container.args.clone(),
                env,
                labels,
                cgroup_parent: container_cgroup_path(&pod.name, &container.name),
                memory: container.resources.memory_bytes,
                network_mode: has_holder.then(|| format!("container:{holder_name}")),
                published: if has_holder {
                    Vec::new()
                } else {
                    published.clone()
                },
                exposed: if has_holder {
                    Vec::new()
                } else {
                    exposed.clone()
                },
                binds,
                stop_timeout: container.stop_timeout_secs,
                stop_signal: None,
                init: true,
                pids_limit: container.resources.effective_pids_limit(),
                user: container.security.user.clone(),
                read_only_root_filesystem: container.security.read_only_root_filesystem,
                cap_drop: container.security.cap_drop.clone(),
            },
            false,
        );
        spec.labels.push(source_label(record));
        containers.push(DesiredContainer {
            pod_container: Some(container.name.clone()),
            unit: container_unit_name(&pod.name, &container.name),
            spec,
            spec_hash,
            gated_by_probes: container.probes.startup.is_some()
                || container.probes.readiness.is_some(),
        });
        if !images.contains(&container.image) {
            images.push(container.image.clone());
        }
    }
    Ok(DesiredPod {
        name: pod.name.clone(),
        running: record.desired == Desired::Running,
        containers,
        unit_files,
        images,
        volumes: pod
            .volumes
            .iter()
            .filter(|v| v.is_named())
            .map(|v| named_volume(&pod.name, &v.name))
            .collect(),
        volume_classes: pod
            .volumes
            .iter()
            .filter(|v| v.is_named())
            .filter_map(|v| Some((named_volume(&pod.name, &v.name), v.class.clone()?)))
            .collect(),
        build: None,
    })
}

/// Whether a unit file name belongs to `pod`: its slice, its network unit,
/// one of its container units or the mount of one of its network volumes.
pub fn unit_belongs_to(unit: &str, pod: &str) -> bool {
    if let Some(crate::unit::UnitName::Mount { pod: owner, .. }) =
        crate::unit::UnitName::decode(unit)
    {
        return owner == pod;
    }
    let network = pod_network_unit_name(pod);
    let slice = pod_slice_name(pod);
    let container_prefix = format!("{}-", network.trim_end_matches(".service"));
    unit == network
        || unit == slice
        || (unit.starts_with(&container_prefix) && unit.ends_with(".service"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PortBinding;

    #[test]
    fn docker_names_keep_projects_apart_and_decode_one_way() {
        // Without the `_`, project a's pod `web-1` would be the default
        // project's pod `a` with a container `web-1`.
        assert_eq!(holder_container_name("a.web-1"), "berth.a_web-1");
        assert_ne!(
            holder_container_name("a.web-1"),
            app_container_name("a", "web-1")
        );
        assert_eq!(app_container_name("a.web-1", "app"), "berth.a_web-1.app");
        for (pod, container) in [("a.web-1", "app"), ("web-1", "app")] {
            assert_eq!(
                pod_of_docker_name(&app_container_name(pod, container)),
                Some((pod.to_owned(), container.to_owned()))
            );
        }
        assert_eq!(pod_of_docker_name("berth.web"), None);
        assert_eq!(pod_of_docker_name("other.web.app"), None);
    }

    fn record(json: &str) -> PodRecord {
        PodRecord {
            pod: serde_json::from_str(json).unwrap(),
            host_ports: vec![],
            desired: Desired::Running,
            source: crate::store::Source::Local,
        }
    }

    fn host() -> UnitSettings {
        UnitSettings {
            shim_path: "/usr/bin/berth-shim".into(),
            shim_environment: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_gets_a_slice_a_network_unit_and_a_unit_per_container() {
        let mut r = record(
            r#"{"name":"web","containers":[{"name":"app","image":"local/busybox","command":["httpd","-f"],"secretEnv":[{"name":"PW","value":"s3cret"}],"ports":[{"containerPort":8080,"hostPort":0}]}]}"#,
        );
        r.host_ports = vec![PortBinding {
            container: "app".into(),
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_port: 31000,
        }];
        let d = desired_pod(&r, &host()).unwrap();
        let names: Vec<&str> = d.unit_files.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["berth-web.slice", "berth-web-app.service"]);
        // One container: it owns the network namespace and the ports.
        assert_eq!(d.containers.len(), 1);
        assert_eq!(d.containers[0].spec.name, "berth.web.app");
        assert_eq!(d.containers[0].spec.network_mode, None);
        assert_eq!(
            d.containers[0].spec.published,
            [("8080/tcp".to_string(), 31000)]
        );
        assert_eq!(
            d.containers[0].spec.cgroup_parent,
            "/berth.slice/berth-web.slice/berth-web-app.service"
        );
        // The secret reaches Docker, never a unit file or a label.
        assert!(d.containers[0].spec.env.contains(&"PW=s3cret".to_string()));
        assert!(d.unit_files.iter().all(|u| !u.contents.contains("s3cret")));
        assert!(d
            .containers
            .iter()
            .flat_map(|c| &c.spec.labels)
            .all(|(_, v)| !v.contains("s3cret")));
        assert!(!d.unit_files[1]
            .contents
            .contains("Requires=berth-web.service"));
    }

    #[test]
    fn containers_of_a_bigger_pod_share_a_network_holder() {
        let r = record(
            r#"{"name":"web","containers":[{"name":"app","image":"i","ports":[{"containerPort":80,"hostPort":0}]},{"name":"side","image":"i"}]}"#,
        );
        let d = desired_pod(&r, &host()).unwrap();
        let names: Vec<&str> = d.unit_files.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "berth-web.slice",
                "berth-web.service",
                "berth-web-app.service",
                "berth-web-side.service"
            ]
        );
        assert_eq!(d.containers[0].spec.name, "berth.web");
        assert_eq!(d.containers[0].spec.image, PAUSE_IMAGE);
        assert_eq!(d.containers[0].spec.exposed, ["80/tcp"]);
        for app in &d.containers[1..] {
            assert_eq!(
                app.spec.network_mode.as_deref(),
                Some("container:berth.web")
            );
            assert!(app.spec.published.is_empty());
        }
        assert!(d.unit_files[2]
            .contents
            .contains("Requires=berth-web.service"));
    }

    #[test]
    fn the_hash_follows_the_spec() {
        let a = desired_pod(
            &record(r#"{"name":"p","containers":[{"name":"c","image":"i"}]}"#),
            &host(),
        )
        .unwrap();
        let b = desired_pod(
            &record(r#"{"name":"p","containers":[{"name":"c","image":"i"}]}"#),
            &host(),
        )
        .unwrap();
        let c = desired_pod(
            &record(r#"{"name":"p","containers":[{"name":"c","image":"j"}]}"#),
            &host(),
        )
        .unwrap();
        assert_eq!(a.containers[0].spec_hash, b.containers[0].spec_hash);
        assert_ne!(a.containers[0].spec_hash, c.containers[0].spec_hash);
        assert_eq!(stable_hash(b"berth"), stable_hash(b"berth"));
    }

    #[test]
    fn default_hardening_leaves_the_hash_as_it_was_so_an_upgrade_restarts_nothing() {
        let plain = desired_pod(
            &record(
                r#"{"name":"p","containers":[{"name":"c","image":"i"},{"name":"d","image":"i"}]}"#,
            ),
            &host(),
        )
        .unwrap();
        // What is hashed for a plain pod is what berth hashed before the
        // hardening settings existed: no hardening, and a pod spec label
        // without the new fields.
        for container in &plain.containers {
            let labels = serde_json::to_string(&container.spec.labels).unwrap();
            assert!(
                !labels.contains("security") && !labels.contains("pidsLimit"),
                "{labels}"
            );
        }
        let mut spec = plain.containers[1].spec.clone();
        let before = with_hash(spec.clone(), false).1;
        spec.read_only_root_filesystem = true;
        assert_ne!(
            with_hash(spec.clone(), false).1,
            before,
            "opting in is a change"
        );
        assert_eq!(
            with_hash(spec, true).1,
            before,
            "the holder's fixed hardening is not"
        );
    }

    #[test]
    fn units_are_matched_to_their_pod_exactly() {
        assert!(unit_belongs_to("berth-web.service", "web"));
        assert!(unit_belongs_to("berth-web-app.service", "web"));
        assert!(unit_belongs_to("berth-web.slice", "web"));
        assert!(!unit_belongs_to("berth-web\\x2dapp.service", "web"));
        assert!(unit_belongs_to("berth-web\\x2dapp-x.service", "web-app"));
        assert!(!unit_belongs_to("berth-web-app.service", "web-app"));
    }
}
