//! The pod spec: containers placed together on one host, sharing network and
//! volumes. This is the wire form accepted by the master and the agent; see
//! [`Pod::validate`] for the rules a pod must satisfy before anything acts on it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{DEFAULT_PIDS_LIMIT, DEFAULT_STOP_TIMEOUT_SECS};
use crate::probe::Probes;

pub mod build_task;
mod security;
mod validate;

pub(crate) use validate::check_network_source;

pub use security::{Security, CAPABILITIES};

/// Containers that run together on one host and share its network namespace
/// and the pod's volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    /// DNS-1123 label; part of every unit and Docker container name of the pod.
    pub name: String,
    /// At least one; defaulted to empty on input so that validation, not the
    /// parser, reports a missing list with the field's name.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Volumes the containers may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// A build pod's build: its one container, named `build`, runs it
    /// instead of a command of its image (see `berth_model::build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<build_task::BuildTask>,
}

/// One container of a pod; it becomes one systemd unit.
///
/// `Debug` hides the values of `secret_env`, so a pod can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// DNS-1123 label, unique within the pod.
    pub name: String,
    /// Image reference, e.g. `registry.example/web:1.2` or `local/busybox`.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's default arguments when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Plain environment variables; they may show up in unit files and
    /// `systemctl show`, so they must not hold secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Environment variables that are secrets: the agent keeps them in a 0600
    /// file and never writes them into a unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<EnvVar>,
    /// Ports the container listens on, optionally published on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Where the pod's volumes appear inside the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Memory and CPU limits, enforced through the unit's cgroup.
    #[serde(default)]
    pub resources: Resources,
    /// When systemd restarts the container after it exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Seconds between the stop signal and the kill.
    #[serde(default = "default_stop_timeout_secs")]
    pub stop_timeout_secs: u32,
    /// Startup, readiness and liveness probes.
    #[serde(default, skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
    /// Opt-in hardening beyond berth's defaults: user, read-only root
    /// filesystem, capabilities dropped.
    #[serde(default, skip_serializing_if = "Security::is_default")]
    pub security: Security,
}

fn default_stop_timeout_secs() -> u32 {
    DEFAULT_STOP_TIMEOUT_SECS
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pods get logged with `?pod`; a derived Debug would put secrets in the journal.
        let secret_names: Vec<Redacted<'_>> = self
            .secret_env
            .iter()
            .map(|var| Redacted(&var.name))
            .collect();
        f.debug_struct("Container")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("secret_env", &secret_names)
            .field("ports", &self.ports)
            .field("volume_mounts", &self.volume_mounts)
            .field("resources", &self.resources)
            .field("restart", &self.restart)
            .field("stop_timeout_secs", &self.stop_timeout_secs)
            .field("probes", &self.probes)
            .field("security", &self.security)
            .finish()
    }
}

/// Prints a secret variable as `NAME=<redacted>`.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}=<redacted>", self.0)
    }
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    /// Any text without NUL; may hold newlines, `%`, `$`, quotes and
    /// backslashes, which renderers escape.
    #[serde(default)]
    pub value: String,
}

impl EnvVar {
    /// A variable `name=value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A port a container listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port inside the pod's network namespace, 1 to 65535.
    pub container_port: u16,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Port published on the host, unique per protocol within the pod:
    /// absent means not published, `0` means any free port from the agent's
    /// range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
}

/// Transport protocol of a port.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lowercase name used on the wire, by Docker and by iptables.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pod volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Name of a volume declared in the pod's `volumes`.
    pub volume: String,
    /// Absolute, normalized path inside the container.
    pub path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Resource limits of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Hard memory limit in bytes (`MemoryMax=`), at least 4 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a CPU (`CPUQuota=`), at least 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Most processes and threads the container may run at once; absent
    /// means [`DEFAULT_PIDS_LIMIT`], never unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
}

impl Resources {
    /// The PID limit that applies: the spec's, or berth's default.
    pub fn effective_pids_limit(&self) -> u32 {
        self.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT)
    }
}

/// When a container is restarted after it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status, the default.
    #[default]
    Always,
    /// Only after a non-zero exit status, a signal or a timeout.
    OnFailure,
    /// Never.
    Never,
}

impl RestartPolicy {
    /// The name used on the wire: `always`, `on-failure` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Storage shared by the containers of a pod: a named Docker volume (in
/// the node's directory of a volume class when `class` is set), a
/// directory of the host when `host_path` is set, or a network file system
/// (`glusterfs`, `nfs`) that the node mounts through a systemd mount unit,
/// given directly or by the name of a network volume an admin defined
/// (`network_volume`, whose source the master fills in). At most one of
/// `host_path`, `class`, `glusterfs` and `nfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// DNS-1123 label, unique within the pod; mounts refer to it.
    pub name: String,
    /// Absolute, normalized host directory to bind. The model only checks its
    /// form: the agent must also check it against its allow-list, since only
    /// the host knows which of its directories may be handed to a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// A volume class (a DNS-1123 label): the named volume lives in the
    /// directory the node's agent maps this class to, and only nodes that
    /// have the class take the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// A GlusterFS volume, mounted by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glusterfs: Option<NetworkSource>,
    /// An NFS export, mounted by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NetworkSource>,
    /// A network volume an admin defined (`berth volume create`), by name.
    /// The master fills in its `glusterfs` or `nfs` source when the object
    /// holding this pod template is written, so nodes mount what it was
    /// then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_volume: Option<String>,
}

impl Volume {
    /// A named Docker volume.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            host_path: None,
            class: None,
            glusterfs: None,
            nfs: None,
            network_volume: None,
        }
    }

    /// A bind mount of a host directory.
    pub fn host_path(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            host_path: Some(path.into()),
            ..Self::named(name)
        }
    }

    /// A named volume in the node's directory of volume class `class`.
    pub fn classed(name: impl Into<String>, class: impl Into<String>) -> Self {
        Self {
            class: Some(class.into()),
            ..Self::named(name)
        }
    }

    /// A network volume of `kind` at `server`, `path`.
    pub fn on_network(
        name: impl Into<String>,
        kind: NetworkKind,
        server: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        let source = Some(NetworkSource {
            server: server.into(),
            path: path.into(),
        });
        let mut volume = Self::named(name);
        match kind {
            NetworkKind::Glusterfs => volume.glusterfs = source,
            NetworkKind::Nfs => volume.nfs = source,
        }
        volume
    }

    /// A reference to the network volume an admin defined as `volume`.
    pub fn defined(name: impl Into<String>, volume: impl Into<String>) -> Self {
        Self {
            network_volume: Some(volume.into()),
            ..Self::named(name)
        }
    }

    /// Whether Docker keeps the volume's data as a named volume of the
    /// node (not a host directory nor a network file system).
    pub fn is_named(&self) -> bool {
        self.host_path.is_none() && !self.is_on_network()
    }

    /// Whether its data is on a network file system, given directly or by
    /// a defined network volume's name (filled in or not yet).
    pub fn is_on_network(&self) -> bool {
        self.network().is_some() || self.network_volume.is_some()
    }

    /// The network file system the volume is, if it is one.
    pub fn network(&self) -> Option<(NetworkKind, &NetworkSource)> {
        match (&self.glusterfs, &self.nfs) {
            (Some(source), _) => Some((NetworkKind::Glusterfs, source)),
            (None, Some(source)) => Some((NetworkKind::Nfs, source)),
            (None, None) => None,
        }
    }
}

/// Which network file system a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetworkKind {
    /// GlusterFS, mounted with FUSE (`mount -t glusterfs`).
    Glusterfs,
    /// NFS, mounted by the kernel's client.
    Nfs,
}

impl NetworkKind {
    /// The field of [`Volume`], the URL scheme of `-v` and the file system
    /// type of the mount: `glusterfs` or `nfs`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Glusterfs => "glusterfs",
            NetworkKind::Nfs => "nfs",
        }
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a network volume is served: `server:path` as `mount` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSource {
    /// The server's host name or IP address; it must be on the allow-list
    /// of the master and of the node.
    pub server: String,
    /// Absolute, normalized path of `[A-Za-z0-9._~+-]` components: for
    /// GlusterFS `/VOLUME` or `/VOLUME/SUBDIR`, for NFS the export.
    pub path: String,
}

impl NetworkSource {
    /// `server:path`, as `mount` and the unit's `What=` take it.
    pub fn what(&self) -> String {
        format!("{}:{}", self.server, self.path)
    }
}

/// Checks that every network volume of `pod` is served by a server on
/// `allowed`, pushing each one that is not as `{prefix}volumes[i].KIND.server`.
/// `whose` says whose allow-list it is, for the message.
pub fn check_network_servers(
    pod: &Pod,
    allowed: &[String],
    whose: &str,
    prefix: &str,
    errors: &mut crate::ValidationErrors,
) {
    for (i, volume) in pod.volumes.iter().enumerate() {
        if let Some((kind, source)) = volume.network() {
            if !allowed
                .iter()
                .any(|server| server.eq_ignore_ascii_case(&source.server))
            {
                errors.push(
                    format!("{prefix}volumes[{i}].{kind}.server"),
                    format!(
                        "server {:?} is not on {whose} allow-list of network volume servers (network-volume-servers)",
                        source.server
                    ),
                );
            }
        }
    }
}

/// How long a node's agent goes without reaching the master before it
/// stops its network-backed pods (fences them): past this, the master may
/// start them on another node, and the data must have one writer.
pub const NETWORK_FENCE_AFTER_SECS: u64 = 5;

impl Pod {
    /// Whether all of the pod's data is on the network: it has volumes, and
    /// each is a network volume. Such a pod, even a stateful one, may start
    /// on another node when its node dies, once that node fenced it.
    pub fn network_backed(&self) -> bool {
        !self.volumes.is_empty() && self.volumes.iter().all(Volume::is_on_network)
    }

    /// Whether a container writes to one of the pod's network volumes.
    pub fn writes_network_volume(&self) -> bool {
        self.containers.iter().any(|c| {
            c.volume_mounts.iter().any(|m| {
                !m.read_only
                    && self
                        .volumes
                        .iter()
                        .any(|v| v.name == m.volume && v.is_on_network())
            })
        })
    }
}

/// The volume classes `pod` asks for, sorted, each once.
pub fn volume_classes(pod: &Pod) -> Vec<String> {
    let mut classes: Vec<String> = pod.volumes.iter().filter_map(|v| v.class.clone()).collect();
    classes.sort_unstable();
    classes.dedup();
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"name":"web","containers":[{"name":"app","image":"local/busybox","command":["httpd","-f"]}]}"#;

    #[test]
    fn minimal_json_parses_with_defaults() {
        let pod: Pod = serde_json::from_str(MINIMAL).unwrap();
        assert_eq!(pod.name, "web");
        assert!(pod.volumes.is_empty());
        let app = &pod.containers[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.image, "local/busybox");
        assert_eq!(app.command, ["httpd", "-f"]);
        assert!(app.args.is_empty() && app.env.is_empty() && app.secret_env.is_empty());
        assert!(app.ports.is_empty() && app.volume_mounts.is_empty());
        assert_eq!(app.resources, Resources::default());
        assert_eq!(app.restart, RestartPolicy::Always);
        assert_eq!(app.stop_timeout_secs, 10);
        assert_eq!(pod.validate(), Ok(()));
    }

    #[test]
    fn full_json_parses_in_camel_case() {
        let json = r#"{
            "name": "shop",
            "containers": [{
                "name": "api",
                "image": "registry.example/api:1.2",
                "command": ["/api"],
                "args": ["--verbose"],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                "secretEnv": [{"name": "DB_PASSWORD", "value": "hunter2"}],
                "ports": [
                    {"containerPort": 8080, "hostPort": 80},
                    {"containerPort": 53, "protocol": "udp"}
                ],
                "volumeMounts": [{"volume": "data", "path": "/var/lib/api", "readOnly": true}],
                "resources": {"memoryBytes": 268435456, "cpuMillis": 500},
                "restart": "on-failure",
                "stopTimeoutSecs": 30
            }],
            "volumes": [{"name": "data"}, {"name": "logs", "hostPath": "/srv/logs"}]
        }"#;
        let pod: Pod = serde_json::from_str(json).unwrap();
        let api = &pod.containers[0];
        assert_eq!(api.env[1], EnvVar::new("EMPTY", ""));
        assert_eq!(api.secret_env[0], EnvVar::new("DB_PASSWORD", "hunter2"));
        assert_eq!(
            api.ports,
            [
                Port {
                    container_port: 8080,
                    protocol: Protocol::Tcp,
                    host_port: Some(80)
                },
                Port {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_port: None
                },
            ]
        );
        assert!(api.volume_mounts[0].read_only);
        assert_eq!(api.resources.memory_bytes, Some(268_435_456));
        assert_eq!(api.resources.cpu_millis, Some(500));
        assert_eq!(api.restart, RestartPolicy::OnFailure);
        assert_eq!(api.stop_timeout_secs, 30);
        assert_eq!(
            pod.volumes,
            [
                Volume::named("data"),
                Volume::host_path("logs", "/srv/logs")
            ]
        );
        assert_eq!(pod.validate(), Ok(()));

        let again: Pod = serde_json::from_str(&serde_json::to_string(&pod).unwrap()).unwrap();
        assert_eq!(again, pod);
    }

    #[test]
    fn unknown_fields_are_rejected_at_every_level() {
        for json in [
            r#"{"name":"web","containers":[],"replicas":2}"#,
            r#"{"name":"web","containers":[{"name":"a","image":"i","cmd":["x"]}]}"#,
            r#"{"name":"web","containers":[{"name":"a","image":"i","env":[{"name":"A","val":"b"}]}]}"#,
            r#"{"name":"web","containers":[{"name":"a","image":"i","ports":[{"containerPort":1,"hostIp":"0.0.0.0"}]}]}"#,
            r#"{"name":"web","containers":[{"name":"a","image":"i","resources":{"memory":"1Gi"}}]}"#,
            r#"{"name":"web","containers":[{"name":"a","image":"i","volume_mounts":[]}]}"#,
            r#"{"name":"web","containers":[],"volumes":[{"name":"v","hostpath":"/x"}]}"#,
        ] {
            let error = serde_json::from_str::<Pod>(json).unwrap_err().to_string();
            assert!(error.contains("unknown field"), "{json}: {error}");
        }
    }

    #[test]
    fn enums_use_their_wire_names() {
        for (json, policy) in [
            ("\"always\"", RestartPolicy::Always),
            ("\"on-failure\"", RestartPolicy::OnFailure),
            ("\"never\"", RestartPolicy::Never),
        ] {
            assert_eq!(serde_json::from_str::<RestartPolicy>(json).unwrap(), policy);
            assert_eq!(serde_json::to_string(&policy).unwrap(), json);
            assert_eq!(format!("\"{policy}\""), json);
        }
        assert!(serde_json::from_str::<RestartPolicy>("\"OnFailure\"").is_err());
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), "\"udp\"");
        assert!(serde_json::from_str::<Protocol>("\"sctp\"").is_err());
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
    }

    #[test]
    fn missing_containers_is_left_to_validation() {
        let pod: Pod = serde_json::from_str(r#"{"name":"web"}"#).unwrap();
        let errors = pod.validate().unwrap_err();
        assert_eq!(
            errors.message_for("containers"),
            Some("must have at least one container")
        );
    }

    #[test]
    fn debug_hides_secret_values() {
        let mut pod: Pod = serde_json::from_str(MINIMAL).unwrap();
        pod.containers[0].env.push(EnvVar::new("MODE", "visible"));
        pod.containers[0]
            .secret_env
            .push(EnvVar::new("DB_PASSWORD", "hunter2"));
        let debug = format!("{pod:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("\"DB_PASSWORD\"=<redacted>"), "{debug}");
        assert!(debug.contains("visible"), "{debug}");
    }

    #[test]
    fn defaults_are_not_serialized_when_empty() {
        let pod: Pod = serde_json::from_str(MINIMAL).unwrap();
        assert_eq!(
            serde_json::to_string(&pod).unwrap(),
            r#"{"name":"web","containers":[{"name":"app","image":"local/busybox","command":["httpd","-f"],"resources":{},"restart":"always","stopTimeoutSecs":10}]}"#
        );
    }
}
