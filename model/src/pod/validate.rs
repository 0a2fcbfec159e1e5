//! The rules a pod must satisfy. Every rule is checked and every failure
//! recorded, so one response tells the user everything to fix.

use std::collections::{HashMap, HashSet};

use super::{Container, EnvVar, Pod, Protocol, Resources, Volume, VolumeMount};
use crate::limits::{
    MAX_ENV_VALUE_LEN, MAX_IMAGE_LEN, MAX_PATH_LEN, MAX_PIDS_LIMIT, MAX_STOP_TIMEOUT_SECS,
    MIN_CPU_MILLIS, MIN_MEMORY_BYTES, MIN_PIDS_LIMIT,
};
use crate::name::{validate_dns_label, validate_env_name};
use crate::validation::ValidationErrors;

impl Pod {
    /// Checks the pod as the template of an owner (a service, a job)
    /// named `owner`: as its first pod `<owner>-0`, each problem named
    /// `template.…`. The pod's name derives from the owner's, which the
    /// owner checks itself.
    pub fn validate_as_template(&self, owner: &str, errors: &mut ValidationErrors) {
        let mut pod = self.clone();
        pod.name = format!("{owner}-0");
        if let Err(template_errors) = pod.validate() {
            for e in template_errors.errors() {
                if e.field != "name" {
                    errors.push(format!("template.{}", e.field), e.message.clone());
                }
            }
        }
    }

    /// Checks the pod against every rule and returns all the problems found,
    /// each naming its field the way it is spelled in JSON
    /// (`containers[0].env[2].name`).
    ///
    /// A host path passing this check must still be checked by the agent
    /// against its allow-list.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        // A node's pods carry their project (see crate::project).
        if let Err(problem) = crate::project::validate_qualified_name(&self.name) {
            errors.push("name", problem.to_string());
        }

        let declared_volumes = check_volumes(&mut errors, &self.volumes);

        if self.containers.is_empty() {
            errors.push("containers", "must have at least one container");
        }
        if let Some(build) = &self.build {
            let one_build = matches!(self.containers.as_slice(),
                [only] if only.name == super::build_task::BUILD_CONTAINER);
            if !one_build {
                errors.push(
                    "containers",
                    format!(
                        "a build pod has one container, named {}",
                        super::build_task::BUILD_CONTAINER
                    ),
                );
            }
            build.validate(&mut errors, "build.");
        }
        let mut container_names: HashMap<&str, usize> = HashMap::new();
        // Host ports are shared by the whole pod: two containers cannot
        // publish the same port, whatever their container ports are.
        let mut host_ports: HashMap<(u16, Protocol), String> = HashMap::new();
        for (i, container) in self.containers.iter().enumerate() {
            let at = format!("containers[{i}]");
            if check_label(&mut errors, format!("{at}.name"), &container.name) {
                if let Some(first) = container_names.get(container.name.as_str()) {
                    errors.push(
                        format!("{at}.name"),
                        format!(
                            "duplicate container name {:?}, also used by containers[{first}]",
                            container.name
                        ),
                    );
                } else {
                    container_names.insert(&container.name, i);
                }
            }
            check_container(
                &mut errors,
                &at,
                container,
                &declared_volumes,
                &mut host_ports,
            );
        }
        errors.into_result()
    }
}

/// Records a problem unless `name` is a DNS-1123 label; returns whether it is.
fn check_label(errors: &mut ValidationErrors, field: String, name: &str) -> bool {
    match validate_dns_label(name) {
        Ok(()) => true,
        Err(problem) => {
            errors.push(field, problem.to_string());
            false
        }
    }
}

/// Checks the pod's volumes and returns the names declared, valid or not, so
/// that a mount of a misnamed volume is reported once, on the volume.
fn check_volumes<'a>(errors: &mut ValidationErrors, volumes: &'a [Volume]) -> HashSet<&'a str> {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = format!("volumes[{i}]");
        if check_label(errors, format!("{at}.name"), &volume.name) {
            if let Some(first) = first_index.get(volume.name.as_str()) {
                errors.push(
                    format!("{at}.name"),
                    format!(
                        "duplicate volume name {:?}, also declared at volumes[{first}]",
                        volume.name
                    ),
                );
            } else {
                first_index.insert(&volume.name, i);
            }
        }
        if let Some(host_path) = &volume.host_path {
            if let Some(problem) = path_problem(host_path) {
                errors.push(format!("{at}.hostPath"), problem);
            }
        }
        if let Some(class) = &volume.class {
            check_label(errors, format!("{at}.class"), class);
        }
        for (kind, source) in [("glusterfs", &volume.glusterfs), ("nfs", &volume.nfs)] {
            if let Some(source) = source {
                check_network_source(errors, &format!("{at}.{kind}"), kind, source);
            }
        }
        if let Some(defined) = &volume.network_volume {
            check_label(errors, format!("{at}.networkVolume"), defined);
        }
        // A defined volume's source is the master's to fill in: it may be
        // there beside the name, not instead of another kind of storage.
        let sources: Vec<&str> = [
            ("hostPath", volume.host_path.is_some()),
            ("class", volume.class.is_some()),
            (
                "glusterfs",
                volume.glusterfs.is_some() && volume.network_volume.is_none(),
            ),
            (
                "nfs",
                volume.nfs.is_some() && volume.network_volume.is_none(),
            ),
            ("networkVolume", volume.network_volume.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        if sources.len() > 1 {
            errors.push(
                at.clone(),
                format!("sets {}: at most one of them", sources.join(" and ")),
            );
        }
    }
    volumes.iter().map(|volume| volume.name.as_str()).collect()
}

/// Checks a network volume's server and path: they go into a mount unit's
/// `What=` and onto `mount`'s command line, so only plain names pass.
pub(crate) fn check_network_source(
    errors: &mut ValidationErrors,
    at: &str,
    kind: &str,
    source: &super::NetworkSource,
) {
    if source.server.contains(':') {
        // `server:path` would be ambiguous for mount.
        errors.push(
            format!("{at}.server"),
            "an IPv6 address cannot be mounted from; use a host name",
        );
    } else if let Err(problem) = crate::validate_node_address(&source.server) {
        errors.push(format!("{at}.server"), problem.to_string());
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "._~+-".contains(c);
    let components: Vec<&str> = source.path.split('/').skip(1).collect();
    let well_formed = source.path.starts_with('/')
        && source.path.len() <= MAX_PATH_LEN
        && components
            .iter()
            .all(|c| !c.is_empty() && *c != "." && *c != ".." && c.chars().all(plain));
    if !well_formed {
        errors.push(
            format!("{at}.path"),
            "must be an absolute, normalized path of [A-Za-z0-9._~+-] components",
        );
    } else if kind == "glusterfs" && components.is_empty() {
        errors.push(
            format!("{at}.path"),
            "must name the GlusterFS volume: /VOLUME or /VOLUME/SUBDIR",
        );
    }
}

fn check_container<'a>(
    errors: &mut ValidationErrors,
    at: &str,
    container: &'a Container,
    declared_volumes: &HashSet<&str>,
    host_ports: &mut HashMap<(u16, Protocol), String>,
) {
    if let Some(problem) = image_problem(&container.image) {
        errors.push(format!("{at}.image"), problem);
    }
    for (list, words) in [("command", &container.command), ("args", &container.args)] {
        for (i, word) in words.iter().enumerate() {
            if word.contains('\0') {
                errors.push(format!("{at}.{list}[{i}]"), "must not contain NUL");
            }
        }
    }

    // One namespace for both lists: the container sees a single environment.
    let mut env_names: HashMap<&'a str, String> = HashMap::new();
    check_env(errors, at, "env", &container.env, &mut env_names);
    check_env(
        errors,
        at,
        "secretEnv",
        &container.secret_env,
        &mut env_names,
    );

    for (i, port) in container.ports.iter().enumerate() {
        let port_at = format!("{at}.ports[{i}]");
        if port.container_port == 0 {
            errors.push(
                format!("{port_at}.containerPort"),
                "must be between 1 and 65535",
            );
        }
        match port.host_port {
            // 0 asks the agent to pick a free port from its range.
            Some(0) => {}
            Some(host_port) => {
                let key = (host_port, port.protocol);
                if let Some(first) = host_ports.get(&key) {
                    errors.push(
                        format!("{port_at}.hostPort"),
                        format!(
                            "host port {host_port}/{} is already used by {first}",
                            port.protocol
                        ),
                    );
                } else {
                    host_ports.insert(key, port_at);
                }
            }
            None => {}
        }
    }

    check_mounts(errors, at, &container.volume_mounts, declared_volumes);
    check_resources(errors, at, &container.resources);

    if container.stop_timeout_secs > MAX_STOP_TIMEOUT_SECS {
        errors.push(
            format!("{at}.stopTimeoutSecs"),
            format!(
                "must be at most {MAX_STOP_TIMEOUT_SECS}, got {}",
                container.stop_timeout_secs
            ),
        );
    }
    container.probes.validate(errors, at);
    container.security.validate(errors, at);
}

fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if image.len() > MAX_IMAGE_LEN {
        return Some(format!(
            "must be at most {MAX_IMAGE_LEN} bytes, got {}",
            image.len()
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace or control characters".to_owned());
    }
    None
}

fn check_env<'a>(
    errors: &mut ValidationErrors,
    at: &str,
    list: &str,
    vars: &'a [EnvVar],
    seen: &mut HashMap<&'a str, String>,
) {
    for (i, var) in vars.iter().enumerate() {
        let var_at = format!("{at}.{list}[{i}]");
        if let Err(problem) = validate_env_name(&var.name) {
            errors.push(format!("{var_at}.name"), problem);
        } else if let Some(first) = seen.get(var.name.as_str()) {
            errors.push(
                format!("{var_at}.name"),
                format!("duplicate variable {:?}, also set at {first}", var.name),
            );
        } else {
            seen.insert(&var.name, var_at.clone());
        }
        // The messages never quote the value: it may be a secret.
        if var.value.len() > MAX_ENV_VALUE_LEN {
            errors.push(
                format!("{var_at}.value"),
                format!(
                    "must be at most {MAX_ENV_VALUE_LEN} bytes, got {}",
                    var.value.len()
                ),
            );
        } else if var.value.contains('\0') {
            errors.push(format!("{var_at}.value"), "must not contain NUL");
        } else if list == "env" && var.value.chars().any(|c| c.is_control() && c != '\t') {
            // Plain variables are shown in `ps`, logs and `env` output, where a
            // newline forges extra lines; multi-line values (keys,
            // certificates) belong in secretEnv, which only a 0600 file holds.
            errors.push(
                format!("{var_at}.value"),
                "must not contain newlines or control characters (use secretEnv for multi-line values)",
            );
        }
    }
}

fn check_mounts(
    errors: &mut ValidationErrors,
    at: &str,
    mounts: &[VolumeMount],
    declared_volumes: &HashSet<&str>,
) {
    // Docker refuses two mounts on one path; say so before it does.
    let mut paths: HashMap<&str, usize> = HashMap::new();
    for (i, mount) in mounts.iter().enumerate() {
        let mount_at = format!("{at}.volumeMounts[{i}]");
        if !declared_volumes.contains(mount.volume.as_str()) {
            errors.push(
                format!("{mount_at}.volume"),
                format!("refers to undeclared volume {:?}", mount.volume),
            );
        }
        if let Some(problem) = path_problem(&mount.path) {
            errors.push(format!("{mount_at}.path"), problem);
        } else if let Some(first) = paths.get(mount.path.as_str()) {
            errors.push(
                format!("{mount_at}.path"),
                format!(
                    "duplicate mount path {:?}, also used by {at}.volumeMounts[{first}]",
                    mount.path
                ),
            );
        } else {
            paths.insert(&mount.path, i);
        }
    }
}

fn check_resources(errors: &mut ValidationErrors, at: &str, resources: &Resources) {
    if let Some(memory) = resources.memory_bytes {
        if memory < MIN_MEMORY_BYTES {
            errors.push(
                format!("{at}.resources.memoryBytes"),
                format!("must be at least {MIN_MEMORY_BYTES} (4 MiB), got {memory}"),
            );
        }
    }
    if let Some(cpu) = resources.cpu_millis {
        if cpu < MIN_CPU_MILLIS {
            errors.push(
                format!("{at}.resources.cpuMillis"),
                format!("must be at least {MIN_CPU_MILLIS}, got {cpu}"),
            );
        }
    }
    if let Some(pids) = resources.pids_limit {
        if !(MIN_PIDS_LIMIT..=MAX_PIDS_LIMIT).contains(&pids) {
            errors.push(
                format!("{at}.resources.pidsLimit"),
                format!("must be between {MIN_PIDS_LIMIT} and {MAX_PIDS_LIMIT}, got {pids}"),
            );
        }
    }
}

/// Why `path` is not an absolute, normalized path, if it is not. Normalized
/// means the path names itself one way only, which an allow-list of host
/// directories relies on: no `//`, no `.` or `..` component, no trailing `/`.
fn path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if path.len() > MAX_PATH_LEN {
        return Some(format!(
            "must be at most {MAX_PATH_LEN} bytes, got {}",
            path.len()
        ));
    }
    // Covers NUL and newline, and the rest of the control characters that
    // have no business in a path and would garble logs and Docker options.
    if path.chars().any(char::is_control) {
        return Some("must not contain control characters".to_owned());
    }
    let Some(relative) = path.strip_prefix('/') else {
        return Some("must be an absolute path".to_owned());
    };
    if relative.is_empty() {
        return None;
    }
    if path.contains("//") {
        return Some("must not contain '//'".to_owned());
    }
    if relative.ends_with('/') {
        return Some("must not end with '/'".to_owned());
    }
    for component in relative.split('/') {
        let problem = match component {
            "." => "must not contain '.' components",
            ".." => "must not contain '..' components",
            _ => continue,
        };
        return Some(problem.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Port, RestartPolicy};

    fn container(name: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: "local/busybox".to_owned(),
            command: vec!["httpd".to_owned(), "-f".to_owned()],
            args: Vec::new(),
            env: Vec::new(),
            secret_env: Vec::new(),
            ports: Vec::new(),
            volume_mounts: Vec::new(),
            resources: Resources::default(),
            restart: RestartPolicy::Always,
            stop_timeout_secs: 10,
            probes: Default::default(),
            security: Default::default(),
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            name: "web".to_owned(),
            containers,
            volumes: Vec::new(),
            build: None,
        }
    }

    /// The `(field, message)` pairs of a pod that must fail.
    fn problems(pod: &Pod) -> Vec<(String, String)> {
        pod.validate()
            .expect_err("pod should be invalid")
            .errors()
            .iter()
            .map(|e| (e.field.clone(), e.message.clone()))
            .collect()
    }

    fn one_problem(pod: &Pod) -> (String, String) {
        let mut all = problems(pod);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn pair(field: &str, message: &str) -> (String, String) {
        (field.to_owned(), message.to_owned())
    }

    #[test]
    fn a_plain_pod_is_valid() {
        assert_eq!(
            pod(vec![container("app"), container("sidecar")]).validate(),
            Ok(())
        );
    }

    #[test]
    fn collects_every_error_in_field_order() {
        let mut bad = container("App");
        bad.image = String::new();
        bad.env.push(EnvVar::new("1X", "v"));
        bad.stop_timeout_secs = 3601;
        let mut p = pod(vec![bad]);
        p.name = "-web".to_owned();
        assert_eq!(
            problems(&p),
            [
                pair(
                    "name",
                    "must start and end with a lowercase letter or digit"
                ),
                pair(
                    "containers[0].name",
                    "must consist of lowercase letters, digits and '-', found 'A'"
                ),
                pair("containers[0].image", "must not be empty"),
                pair(
                    "containers[0].env[0].name",
                    "must match [A-Za-z_][A-Za-z0-9_]*"
                ),
                pair(
                    "containers[0].stopTimeoutSecs",
                    "must be at most 3600, got 3601"
                ),
            ]
        );
        let text = p.validate().unwrap_err().to_string();
        assert!(text.starts_with("name: must start and end"), "{text}");
        assert!(
            text.contains("; containers[0].image: must not be empty; "),
            "{text}"
        );
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let mut bad = container("app");
        bad.image = "bad image".to_owned();
        bad.env.push(EnvVar::new("", "x"));
        bad.ports.push(Port {
            container_port: 0,
            protocol: Protocol::Tcp,
            host_port: Some(0),
        });
        bad.volume_mounts.push(VolumeMount {
            volume: "nope".to_owned(),
            path: "rel".to_owned(),
            read_only: false,
        });
        bad.resources = Resources {
            memory_bytes: Some(1),
            cpu_millis: Some(1),
            pids_limit: None,
        };
        let mut p = pod(vec![bad, container("app")]);
        p.volumes.push(Volume::host_path("Bad", "/a/../b"));
        for (field, message) in problems(&p) {
            let first = message.chars().next().unwrap_or('x');
            assert!(!first.is_uppercase(), "{field}: {message}");
            assert!(!message.ends_with('.'), "{field}: {message}");
        }
    }

    #[test]
    fn pod_needs_a_container() {
        assert_eq!(
            one_problem(&pod(vec![])),
            pair("containers", "must have at least one container")
        );
    }

    #[test]
    fn names_are_dns_labels() {
        let mut p = pod(vec![container(&"a".repeat(64))]);
        p.name = String::new();
        assert_eq!(
            problems(&p),
            [
                pair("name", "must not be empty"),
                pair(
                    "containers[0].name",
                    "must be at most 63 characters, got 64"
                ),
            ]
        );
        assert_eq!(pod(vec![container(&"a".repeat(63))]).validate(), Ok(()));
    }

    #[test]
    fn container_names_are_unique() {
        let p = pod(vec![container("app"), container("db"), container("app")]);
        assert_eq!(
            one_problem(&p),
            pair(
                "containers[2].name",
                "duplicate container name \"app\", also used by containers[0]"
            )
        );
    }

    #[test]
    fn image_rules() {
        let cases = [
            ("", "must not be empty"),
            (
                "busy box",
                "must not contain whitespace or control characters",
            ),
            (
                "busybox\n",
                "must not contain whitespace or control characters",
            ),
            (
                "busy\u{7f}box",
                "must not contain whitespace or control characters",
            ),
            (
                "busy\u{a0}box",
                "must not contain whitespace or control characters",
            ),
        ];
        for (image, message) in cases {
            let mut c = container("app");
            c.image = image.to_owned();
            assert_eq!(
                one_problem(&pod(vec![c])),
                pair("containers[0].image", message),
                "{image:?}"
            );
        }
        let mut c = container("app");
        c.image = "r".repeat(256);
        assert_eq!(
            one_problem(&pod(vec![c.clone()])),
            pair("containers[0].image", "must be at most 255 bytes, got 256")
        );
        c.image = "r".repeat(255);
        assert_eq!(pod(vec![c]).validate(), Ok(()));
    }

    #[test]
    fn command_and_args_must_not_hold_nul() {
        let mut c = container("app");
        c.command = vec!["sh".to_owned(), "-c".to_owned(), "echo\0".to_owned()];
        c.args = vec!["ok % $ \" \\ \n".to_owned(), "\0".to_owned()];
        assert_eq!(
            problems(&pod(vec![c])),
            [
                pair("containers[0].command[2]", "must not contain NUL"),
                pair("containers[0].args[1]", "must not contain NUL"),
            ]
        );
    }

    #[test]
    fn env_field_paths_name_the_list_and_index() {
        let mut c = container("app");
        c.env = vec![
            EnvVar::new("A", "1"),
            EnvVar::new("B", "2"),
            EnvVar::new("bad-name", "3"),
        ];
        c.secret_env = vec![EnvVar::new("OK", "s"), EnvVar::new("no way", "s")];
        assert_eq!(
            problems(&pod(vec![container("first"), c])),
            [
                pair(
                    "containers[1].env[2].name",
                    "must match [A-Za-z_][A-Za-z0-9_]*"
                ),
                pair(
                    "containers[1].secretEnv[1].name",
                    "must match [A-Za-z_][A-Za-z0-9_]*"
                ),
            ]
        );
    }

    #[test]
    fn env_names_are_unique_across_env_and_secret_env() {
        let mut c = container("app");
        c.env = vec![EnvVar::new("A", "1"), EnvVar::new("A", "2")];
        c.secret_env = vec![EnvVar::new("TOKEN", "s"), EnvVar::new("A", "s")];
        assert_eq!(
            problems(&pod(vec![c])),
            [
                pair(
                    "containers[0].env[1].name",
                    "duplicate variable \"A\", also set at containers[0].env[0]"
                ),
                pair(
                    "containers[0].secretEnv[1].name",
                    "duplicate variable \"A\", also set at containers[0].env[0]"
                ),
            ]
        );
        // The same name in two containers is fine: each has its own environment.
        let mut a = container("a");
        a.env.push(EnvVar::new("A", "1"));
        let mut b = container("b");
        b.secret_env.push(EnvVar::new("A", "1"));
        assert_eq!(pod(vec![a, b]).validate(), Ok(()));
    }

    #[test]
    fn env_values_may_hold_anything_but_nul_within_32_kib() {
        let mut c = container("app");
        c.env = vec![
            EnvVar::new("NASTY", "tab\t%n $HOME ${X} \"q\" 'q' \\ \\n é"),
            EnvVar::new("EMPTY", ""),
            EnvVar::new("MAX", "v".repeat(32 * 1024)),
        ];
        c.secret_env = vec![EnvVar::new("S", "%%$$\n")];
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));

        c.env.push(EnvVar::new("BIG", "v".repeat(32 * 1024 + 1)));
        c.secret_env.push(EnvVar::new("NUL", "hunter2\0"));
        let all = problems(&pod(vec![c]));
        assert_eq!(
            all,
            [
                pair(
                    "containers[0].env[3].value",
                    "must be at most 32768 bytes, got 32769"
                ),
                pair("containers[0].secretEnv[1].value", "must not contain NUL"),
            ]
        );
        assert!(all.iter().all(|(_, m)| !m.contains("hunter2")));
    }

    #[test]
    fn plain_env_values_may_not_hold_newlines() {
        let mut c = container("app");
        c.env = vec![EnvVar::new("A", "line1\nline2"), EnvVar::new("B", "cr\r")];
        c.secret_env = vec![EnvVar::new("KEY", "-----BEGIN\nabc\n-----END\n")];
        let all = problems(&pod(vec![c]));
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].0, "containers[0].env[0].value");
        assert!(all[0].1.contains("newlines"));
        assert_eq!(all[1].0, "containers[0].env[1].value");
    }

    #[test]
    fn ports_are_in_range() {
        let mut c = container("app");
        c.ports = vec![
            Port {
                container_port: 0,
                protocol: Protocol::Tcp,
                host_port: None,
            },
            Port {
                container_port: 65535,
                protocol: Protocol::Udp,
                host_port: Some(0),
            },
            Port {
                container_port: 1,
                protocol: Protocol::Tcp,
                host_port: Some(65535),
            },
        ];
        assert_eq!(
            problems(&pod(vec![c])),
            [
                // hostPort 0 asks for any free port: not an error.
                pair(
                    "containers[0].ports[0].containerPort",
                    "must be between 1 and 65535"
                ),
            ]
        );
    }

    #[test]
    fn host_ports_are_unique_per_protocol_across_the_pod() {
        let tcp = |container_port, host_port| Port {
            container_port,
            protocol: Protocol::Tcp,
            host_port: Some(host_port),
        };
        let mut a = container("a");
        a.ports = vec![
            tcp(80, 8080),
            Port {
                container_port: 53,
                protocol: Protocol::Udp,
                host_port: Some(8080),
            },
        ];
        let mut b = container("b");
        b.ports = vec![tcp(81, 8080), tcp(82, 8081)];
        let mut c = container("c");
        c.ports = vec![tcp(83, 8081)];
        assert_eq!(
            problems(&pod(vec![a, b, c])),
            [
                pair(
                    "containers[1].ports[0].hostPort",
                    "host port 8080/tcp is already used by containers[0].ports[0]"
                ),
                pair(
                    "containers[2].ports[0].hostPort",
                    "host port 8081/tcp is already used by containers[1].ports[1]"
                ),
            ]
        );
    }

    #[test]
    fn mounts_refer_to_declared_volumes_at_absolute_paths() {
        let mount = |volume: &str, path: &str| VolumeMount {
            volume: volume.to_owned(),
            path: path.to_owned(),
            read_only: false,
        };
        let mut c = container("app");
        c.volume_mounts = vec![
            mount("data", "/var/lib/data"),
            mount("logs", "/var/log/app"),
            mount("cache", "tmp"),
            mount("data", "/var/lib/data"),
        ];
        let mut p = pod(vec![c]);
        p.volumes = vec![
            Volume::named("data"),
            Volume::host_path("logs", "/srv/logs"),
        ];
        assert_eq!(
            problems(&p),
            [
                pair("containers[0].volumeMounts[2].volume", "refers to undeclared volume \"cache\""),
                pair("containers[0].volumeMounts[2].path", "must be an absolute path"),
                pair(
                    "containers[0].volumeMounts[3].path",
                    "duplicate mount path \"/var/lib/data\", also used by containers[0].volumeMounts[0]"
                ),
            ]
        );
    }

    #[test]
    fn a_mount_of_a_misnamed_volume_is_reported_on_the_volume_only() {
        let mut c = container("app");
        c.volume_mounts.push(VolumeMount {
            volume: "Data".to_owned(),
            path: "/data".to_owned(),
            read_only: true,
        });
        let mut p = pod(vec![c]);
        p.volumes.push(Volume::named("Data"));
        assert_eq!(
            one_problem(&p),
            pair(
                "volumes[0].name",
                "must consist of lowercase letters, digits and '-', found 'D'"
            )
        );
    }

    #[test]
    fn volume_names_are_unique() {
        let mut p = pod(vec![container("app")]);
        p.volumes = vec![
            Volume::named("a"),
            Volume::named("b"),
            Volume::host_path("a", "/srv"),
        ];
        assert_eq!(
            one_problem(&p),
            pair(
                "volumes[2].name",
                "duplicate volume name \"a\", also declared at volumes[0]"
            )
        );
    }

    #[test]
    fn classes_and_network_sources_are_checked_and_exclusive() {
        use crate::pod::NetworkKind;
        let mut p = pod(vec![container("app")]);
        p.volumes = vec![
            Volume::classed("data", "fast"),
            Volume::on_network("files", NetworkKind::Glusterfs, "h1", "/v1/sub"),
            Volume::on_network("nas", NetworkKind::Nfs, "10.0.0.9", "/exports/a"),
        ];
        assert_eq!(p.validate(), Ok(()));

        p.volumes = vec![
            Volume::classed("a", "Fast"),
            Volume::on_network("b", NetworkKind::Glusterfs, "h1", "/"),
            Volume::on_network("c", NetworkKind::Nfs, "h 1", "/x/../y"),
            Volume::on_network("d", NetworkKind::Glusterfs, "fe80::1", "/v1%n"),
            Volume {
                class: Some("fast".into()),
                ..Volume::host_path("e", "/srv")
            },
        ];
        let fields: Vec<String> = problems(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "volumes[0].class",
                "volumes[1].glusterfs.path",
                "volumes[2].nfs.server",
                "volumes[2].nfs.path",
                "volumes[3].glusterfs.server",
                "volumes[3].glusterfs.path",
                "volumes[4]",
            ]
        );
    }

    #[test]
    fn network_servers_must_be_allowed() {
        use crate::pod::{check_network_servers, NetworkKind};
        let mut p = pod(vec![container("app")]);
        p.volumes = vec![
            Volume::named("data"),
            Volume::on_network("files", NetworkKind::Glusterfs, "H1", "/v1"),
            Volume::on_network("nas", NetworkKind::Nfs, "nas.example", "/x"),
        ];
        let mut errors = ValidationErrors::new();
        check_network_servers(
            &p,
            &["h1".to_owned()],
            "the master's",
            "template.",
            &mut errors,
        );
        let found: Vec<(String, String)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.clone(), e.message.clone()))
            .collect();
        assert_eq!(
            found,
            [pair(
                "template.volumes[2].nfs.server",
                "server \"nas.example\" is not on the master's allow-list of network volume servers (network-volume-servers)"
            )]
        );
    }

    #[test]
    fn host_paths_are_absolute_and_normalized() {
        for good in [
            "/",
            "/srv",
            "/srv/data",
            "/srv/my data",
            "/srv/.hidden",
            "/srv/a..b",
            "/é",
        ] {
            assert_eq!(path_problem(good), None, "{good}");
        }
        let cases = [
            ("", "must not be empty"),
            ("srv", "must be an absolute path"),
            ("./srv", "must be an absolute path"),
            ("/srv/", "must not end with '/'"),
            ("//srv", "must not contain '//'"),
            ("/srv//data", "must not contain '//'"),
            ("/srv//", "must not contain '//'"),
            ("/a//b/", "must not contain '//'"),
            ("/srv/./data", "must not contain '.' components"),
            ("/srv/.", "must not contain '.' components"),
            ("/srv/../etc", "must not contain '..' components"),
            ("/..", "must not contain '..' components"),
            ("/srv\0", "must not contain control characters"),
            ("/srv\n/etc", "must not contain control characters"),
            ("/srv\r", "must not contain control characters"),
        ];
        for (path, message) in cases {
            assert_eq!(path_problem(path).as_deref(), Some(message), "{path:?}");
            let mut p = pod(vec![container("app")]);
            p.volumes.push(Volume::host_path("v", path));
            assert_eq!(
                one_problem(&p),
                pair("volumes[0].hostPath", message),
                "{path:?}"
            );
        }
        let long = format!("/{}", "a".repeat(4096));
        assert_eq!(
            path_problem(&long).as_deref(),
            Some("must be at most 4096 bytes, got 4097")
        );
    }

    #[test]
    fn resource_minimums() {
        let mut c = container("app");
        c.resources = Resources {
            memory_bytes: Some(4 * 1024 * 1024 - 1),
            cpu_millis: Some(9),
            pids_limit: None,
        };
        assert_eq!(
            problems(&pod(vec![c.clone()])),
            [
                pair(
                    "containers[0].resources.memoryBytes",
                    "must be at least 4194304 (4 MiB), got 4194303"
                ),
                pair(
                    "containers[0].resources.cpuMillis",
                    "must be at least 10, got 9"
                ),
            ]
        );
        c.resources = Resources {
            memory_bytes: Some(4 * 1024 * 1024),
            cpu_millis: Some(10),
            pids_limit: None,
        };
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));
        c.resources = Resources {
            memory_bytes: Some(u64::MAX),
            cpu_millis: Some(u32::MAX),
            pids_limit: None,
        };
        assert_eq!(pod(vec![c]).validate(), Ok(()));
    }

    #[test]
    fn stop_timeout_is_at_most_an_hour() {
        let mut c = container("app");
        c.stop_timeout_secs = 3600;
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));
        c.stop_timeout_secs = 0;
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));
        c.stop_timeout_secs = u32::MAX;
        assert_eq!(
            one_problem(&pod(vec![c])),
            pair(
                "containers[0].stopTimeoutSecs",
                "must be at most 3600, got 4294967295"
            )
        );
    }

    #[test]
    fn pids_limit_is_bounded_and_defaults_to_4096() {
        let mut c = container("app");
        assert_eq!(c.resources.effective_pids_limit(), 4096);
        c.resources.pids_limit = Some(7);
        assert_eq!(
            one_problem(&pod(vec![c.clone()])),
            pair(
                "containers[0].resources.pidsLimit",
                "must be between 8 and 4194304, got 7"
            )
        );
        c.resources.pids_limit = Some(100);
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));
        assert_eq!(c.resources.effective_pids_limit(), 100);
    }

    #[test]
    fn users_are_names_or_ids_with_an_optional_group() {
        for good in [
            "1000",
            "1000:1000",
            "nobody",
            "www-data:www-data",
            "app_1.x",
        ] {
            let mut c = container("app");
            c.security.user = Some(good.to_owned());
            assert_eq!(pod(vec![c]).validate(), Ok(()), "{good}");
        }
        for bad in [
            "",
            ":",
            "1000:",
            "-u",
            "a b",
            "root:x:y",
            "a\nb",
            &"u".repeat(66),
        ] {
            let mut c = container("app");
            c.security.user = Some(bad.to_owned());
            let (field, _) = one_problem(&pod(vec![c]));
            assert_eq!(field, "containers[0].security.user", "{bad:?}");
        }
    }

    #[test]
    fn dropped_capabilities_are_known_names_or_all_once_each() {
        let mut c = container("app");
        c.security.cap_drop = vec!["NET_RAW".into(), "ALL".into(), "SYS_ADMIN".into()];
        assert_eq!(pod(vec![c.clone()]).validate(), Ok(()));
        c.security.cap_drop = vec![
            "CAP_NET_RAW".into(),
            "net_raw".into(),
            "CHOWN".into(),
            "CHOWN".into(),
        ];
        assert_eq!(
            problems(&pod(vec![c])),
            [
                pair(
                    "containers[0].security.capDrop[0]",
                    "unknown capability \"CAP_NET_RAW\" (write NET_RAW): use a name such as NET_RAW, or ALL"
                ),
                pair(
                    "containers[0].security.capDrop[1]",
                    "unknown capability \"net_raw\": use a name such as NET_RAW, or ALL"
                ),
                pair(
                    "containers[0].security.capDrop[3]",
                    "duplicate capability \"CHOWN\", also at capDrop[2]"
                ),
            ]
        );
    }

    #[test]
    fn security_round_trips_in_camel_case_and_is_omitted_when_default() {
        let json = r#"{"name":"web","containers":[{"name":"app","image":"local/busybox",
            "resources":{"pidsLimit":64},
            "security":{"user":"1000:1000","readOnlyRootFilesystem":true,"capDrop":["NET_RAW"]}}]}"#;
        let parsed: Pod = serde_json::from_str(json).unwrap();
        let app = &parsed.containers[0];
        assert_eq!(app.resources.pids_limit, Some(64));
        assert_eq!(app.security.user.as_deref(), Some("1000:1000"));
        assert!(app.security.read_only_root_filesystem);
        assert_eq!(app.security.cap_drop, ["NET_RAW"]);
        let text = serde_json::to_string(&parsed).unwrap();
        assert!(text.contains(r#""security":{"user":"1000:1000","readOnlyRootFilesystem":true,"capDrop":["NET_RAW"]}"#), "{text}");
        let plain = serde_json::to_string(&pod(vec![container("app")])).unwrap();
        assert!(
            !plain.contains("security") && !plain.contains("pidsLimit"),
            "{plain}"
        );
        assert!(serde_json::from_str::<Pod>(
            r#"{"name":"w","containers":[{"name":"a","image":"i","security":{"privileged":true}}]}"#
        )
        .is_err());
    }
}
