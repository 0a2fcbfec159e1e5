//! A pod's unit files, exactly as the agent of a node writes them: the
//! pod's spec and the node's [`UnitSettings`] are all they depend on.

use berth_model::build::BUILD_CONTAINER;
use berth_model::limits::SHIM_MEMORY_HEADROOM;
use berth_model::{Container, Pod, RestartPolicy, UnitSettings};

use crate::name::{
    container_unit_name, network_volume_path, network_volume_unit_name, pod_network_unit_name,
    pod_slice_name,
};
use crate::render::{
    render_build_unit, render_container_unit, render_network_mount_unit, render_pod_network_unit,
    render_pod_slice, BuildUnit, ContainerUnit, NetworkMountUnit, RenderError, NO_PROBES,
};

/// One unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// `berth-web-app.service`.
    pub name: String,
    /// Its contents.
    pub contents: String,
}

/// Docker's name of the pod's network holder: `berth.<pod>`. Dots cannot
/// occur in DNS labels, so names never collide. A project's pod
/// (`a.web-1`) is spelled `a_web-1`, since its `.` would be taken for the
/// container's.
pub fn holder_container_name(pod: &str) -> String {
    format!("berth.{}", docker_pod_part(pod))
}

/// Docker's name of a container of a pod: `berth.<pod>.<container>`.
pub fn app_container_name(pod: &str, container: &str) -> String {
    format!("berth.{}.{container}", docker_pod_part(pod))
}

/// The pod's part of its Docker names (see [`holder_container_name`]).
pub fn docker_pod_part(pod: &str) -> String {
    pod.replacen('.', "_", 1)
}

/// Whether the pod gets a network holder: a pod of several containers
/// does, so that its network namespace and published ports outlive
/// restarts of any one container. A pod of one container owns them
/// itself: one Docker start fewer on the way to running.
pub fn has_network_holder(pod: &Pod) -> bool {
    pod.containers.len() > 1
}

/// Whether `container` binds a directory of the host (a host path or a
/// network volume's mount point): its shim checks each such path for
/// symlinks before every start, so it must see the host's tree, not a
/// root of its own (where a path it cannot see would pass as missing).
fn binds_host_paths(pod: &Pod, container: &Container) -> bool {
    container.volume_mounts.iter().any(|mount| {
        pod.volumes
            .iter()
            .any(|v| v.name == mount.volume && (v.host_path.is_some() || v.network().is_some()))
    })
}

/// The unit files of `pod` (its name as on the node, project included) on
/// a node with `settings`: the slice, the network unit (if any), one mount
/// unit per network volume, then one unit per container in spec order. Secrets never reach them: a
/// container's environment is Docker's, only the shim's is the unit's.
pub fn pod_unit_files(pod: &Pod, settings: &UnitSettings) -> Result<Vec<UnitFile>, RenderError> {
    let mut files = vec![UnitFile {
        name: pod_slice_name(&pod.name),
        contents: render_pod_slice(&pod.name)?,
    }];
    if let (Some(task), [container]) = (&pod.build, pod.containers.as_slice()) {
        // A build pod runs its build, not a container: one unit, named
        // as its one container's would be.
        let build_dir = format!("{}/{}", settings.builds_dir(), pod.name);
        let unit = BuildUnit {
            pod: &pod.name,
            description: &format!("berth pod {}, build {}", pod.name, task.build),
            agent_path: settings.agent_path(),
            build_dir: &build_dir,
            stop_timeout_secs: container.stop_timeout_secs,
            memory_max: container
                .resources
                .memory_bytes
                .map(|m| m.saturating_add(SHIM_MEMORY_HEADROOM)),
            cpu_millis: container.resources.cpu_millis,
            environment: &settings.shim_environment,
        };
        files.push(UnitFile {
            name: container_unit_name(&pod.name, BUILD_CONTAINER),
            contents: render_build_unit(&unit)?,
        });
        return Ok(files);
    }
    let has_holder = has_network_holder(pod);
    if has_holder {
        let holder = ContainerUnit {
            pod: &pod.name,
            container: "pod",
            description: &format!("berth pod {} (network)", pod.name),
            shim_path: &settings.shim_path,
            container_name: &holder_container_name(&pod.name),
            stop_timeout_secs: 1,
            restart: RestartPolicy::Always,
            memory_max: None,
            cpu_millis: None,
            joins_pod_network: false,
            environment: &settings.shim_environment,
            probes: &NO_PROBES,
            mounts_for: &[],
            engine_unit: settings.engine_unit(),
            shim_root: settings.shim_root(),
        };
        files.push(UnitFile {
            name: pod_network_unit_name(&pod.name),
            contents: render_pod_network_unit(&holder)?,
        });
    }
    for volume in &pod.volumes {
        let Some((kind, source)) = volume.network() else {
            continue;
        };
        // Read-only when no container writes to it.
        let read_only = pod
            .containers
            .iter()
            .flat_map(|c| &c.volume_mounts)
            .filter(|m| m.volume == volume.name)
            .all(|m| m.read_only);
        let unit = NetworkMountUnit {
            pod: &pod.name,
            volume: &volume.name,
            fs_type: kind.as_str(),
            what: &source.what(),
            read_only,
        };
        files.push(UnitFile {
            name: network_volume_unit_name(&pod.name, &volume.name),
            contents: render_network_mount_unit(&unit)?,
        });
    }
    for container in &pod.containers {
        let mounts_for: Vec<String> = container
            .volume_mounts
            .iter()
            .filter(|m| {
                pod.volumes
                    .iter()
                    .any(|v| v.name == m.volume && v.network().is_some())
            })
            .map(|m| network_volume_path(&pod.name, &m.volume))
            .collect();
        let unit = ContainerUnit {
            pod: &pod.name,
            container: &container.name,
            description: &format!(
                "berth pod {}, container {} ({})",
                pod.name, container.name, container.image
            ),
            shim_path: &settings.shim_path,
            container_name: &app_container_name(&pod.name, &container.name),
            stop_timeout_secs: container.stop_timeout_secs,
            restart: container.restart,
            // The container's own cgroup carries the pod's limit exactly;
            // the unit's adds room for the shim.
            memory_max: container
                .resources
                .memory_bytes
                .map(|m| m.saturating_add(SHIM_MEMORY_HEADROOM)),
            cpu_millis: container.resources.cpu_millis,
            joins_pod_network: has_holder,
            environment: &settings.shim_environment,
            probes: &container.probes,
            mounts_for: &mounts_for,
            engine_unit: settings.engine_unit(),
            shim_root: if binds_host_paths(pod, container) {
                "/"
            } else {
                settings.shim_root()
            },
        };
        files.push(UnitFile {
            name: container_unit_name(&pod.name, &container.name),
            contents: render_container_unit(&unit)?,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use berth_model::EnvVar;

    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    fn settings() -> UnitSettings {
        UnitSettings {
            shim_path: "/usr/lib/berth/berth-shim".into(),
            shim_environment: vec![EnvVar::new("DOCKER_HOST", "unix:///run/d.sock")],
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_of_several_containers_gets_a_network_unit_and_the_node_settings() {
        let p = pod(
            r#"{"name":"a.web-1","containers":[{"name":"app","image":"i:1"},{"name":"side","image":"j"}]}"#,
        );
        let files = pod_unit_files(&p, &settings()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "berth-a.web\\x2d1.slice",
                "berth-a.web\\x2d1.service",
                "berth-a.web\\x2d1-app.service",
                "berth-a.web\\x2d1-side.service"
            ]
        );
        let app = &files[2].contents;
        assert!(app.contains("\nDescription=berth pod a.web-1, container app (i:1)\n"));
        assert!(app.contains(
            "\nExecStart=/usr/lib/berth/berth-shim run \"berth.a_web-1.app\" --stop-timeout"
        ));
        assert!(app.contains("\nEnvironment=\"DOCKER_HOST=unix:///run/d.sock\"\n"));
        assert!(app.contains("\nRequires=berth-a.web\\x2d1.service\n"));
    }

    #[test]
    fn a_shim_that_checks_host_paths_keeps_the_host_root_and_the_others_get_their_own() {
        let p = pod(r#"{"name":"web","containers":[
                {"name":"app","image":"i","volumeMounts":[{"volume":"data","path":"/d"}]},
                {"name":"logs","image":"j","volumeMounts":[{"volume":"logs","path":"/l"}]}],
                "volumes":[{"name":"data"},{"name":"logs","hostPath":"/srv/logs"}]}"#);
        let files = pod_unit_files(&p, &settings()).unwrap();
        let unit = |name: &str| {
            &files
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .contents
        };
        let root = "\nRootDirectory=/var/lib/berth/shim-root\n";
        assert!(
            unit("berth-web.service").contains(root),
            "the network holder's"
        );
        assert!(
            unit("berth-web-app.service").contains(root),
            "a named volume's"
        );
        assert!(
            !unit("berth-web-logs.service").contains("RootDirectory="),
            "a host path's shim must see it"
        );

        let host = UnitSettings {
            shim_root: "/".into(),
            ..settings()
        };
        let files = pod_unit_files(&p, &host).unwrap();
        assert!(files.iter().all(|f| !f.contents.contains("RootDirectory=")));
    }

    #[test]
    fn a_build_pod_gets_its_slice_and_one_unit_that_runs_the_build() {
        let p = pod(
            r#"{"name":"a.site-3-build-0","containers":[{"name":"build","image":"b",
                "resources":{"memoryBytes":536870912,"cpuMillis":1500},"stopTimeoutSecs":20}],
                "build":{"build":"a.site-3","strategy":{"docker":{}},
                "input":{"archive":{"digest":"sha256:00"}},"output":"h1:5000/a/site:latest"}}"#,
        );
        // The defaults, as an agent at them says nothing of them.
        let mut settings = settings();
        let files = pod_unit_files(&p, &settings).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "berth-a.site\\x2d3\\x2dbuild\\x2d0.slice",
                "berth-a.site\\x2d3\\x2dbuild\\x2d0-build.service"
            ]
        );
        let unit = &files[1].contents;
        for line in [
            "Description=berth pod a.site-3-build-0, build a.site-3",
            "ConditionPathExists=/run/berth/started/%n",
            "Type=exec",
            "NotifyAccess=main",
            "Slice=berth-a.site\\x2d3\\x2dbuild\\x2d0.slice",
            "Environment=\"DOCKER_HOST=unix:///run/d.sock\"",
            "ExecStart=/usr/bin/berth-agent build \"/var/lib/berth/builds/a.site-3-build-0\"",
            "Restart=no",
            "RemainAfterExit=yes",
            "TimeoutStopSec=25",
            "CPUQuota=150%",
            "StandardOutput=journal",
            "ProtectSystem=strict",
            "RestrictAddressFamilies=AF_UNIX",
        ] {
            assert!(
                unit.contains(&format!("\n{line}\n")),
                "{line} missing from\n{unit}"
            );
        }
        settings.agent_path = "relative/agent".into();
        assert!(pod_unit_files(&p, &settings).is_err());
    }

    #[test]
    fn container_environment_and_secrets_stay_out_of_unit_files() {
        let p = pod(
            r#"{"name":"web-1","containers":[{"name":"app","image":"i","env":[{"name":"MODE","value":"plain"}],"secretEnv":[{"name":"PW","value":"s3cret"}]}]}"#,
        );
        let files = pod_unit_files(&p, &settings()).unwrap();
        assert_eq!(files.len(), 2, "one container: no network unit");
        for file in &files {
            assert!(!file.contents.contains("s3cret"), "{}", file.contents);
            assert!(!file.contents.contains("MODE"), "{}", file.contents);
        }
    }
}
