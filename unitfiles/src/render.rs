//! Rendering of berth's unit files from typed values.
//!
//! One service per container, `berth-<pod>-<container>.service`, inside one
//! slice per pod, `berth-<pod>.slice`, which systemd nests under
//! `berth.slice` because of the `-` in its name. Components are escaped with
//! [`super::escape::escape_unit_name_component`], so the only unescaped `-` are berth's own
//! separators and `berth-a\x2db-c.service` (pod `a-b`, container `c`) can
//! never be confused with `berth-a-b\x2dc.service` (pod `a`, container `b-c`).
//!
//! Secrets never appear in a unit file: unit settings, `Environment=`
//! included, are readable by any local user over D-Bus. The agent keeps
//! secret environment in a 0600 file of its own and hands it to Docker
//! itself; nothing here takes a secret as input.

use std::fmt::Write as _;

use berth_model::project::validate_qualified_name;
use berth_model::{validate_dns_label, Check, EnvVar, NameError, Probe, Probes, RestartPolicy};

use super::escape::{escape_free_text, quote_env_assignment, quote_exec_arg, EscapeError};
use super::name::{container_unit_name, pod_network_unit_name, pod_slice_name};

/// Longest unit name systemd accepts, suffix included.
pub const MAX_UNIT_NAME_LEN: usize = 255;

/// Longest line systemd reads from a unit file (`LONG_LINE_MAX`, 1 MiB).
pub const MAX_UNIT_LINE_LEN: usize = 1024 * 1024;

/// The slice that holds every pod slice; systemd derives it from the pod
/// slices' names, so it needs no unit file of its own.
pub const BERTH_SLICE: &str = "berth.slice";

/// Extra seconds systemd waits beyond the container's stop timeout before it
/// kills what is left, so that the shim's own `docker stop` (which waits the
/// stop timeout) always finishes first.
pub const STOP_TIMEOUT_MARGIN_SECS: u64 = 5;

/// Where the agent marks each unit it starts (`/run`: gone at boot). A
/// container that is never restarted has `ConditionPathExists=` on its
/// mark, so it stays ended across a reboot, as with Docker and Kubernetes:
/// started at boot, a failed one would fail again and leave the host
/// degraded.
pub const STARTED_MARKS_DIR: &str = "/run/berth/started";

/// Pause before a restart. systemd's default of 100 ms would spin a crashing
/// container; start rate limiting is switched off instead of relied on, since
/// it would leave the unit failed for good, unlike the restart policy asks.
pub const RESTART_DELAY_SECS: u32 = 2;

/// Largest `MemoryMax=` systemd accepts (`u64::MAX` itself is refused).
const MAX_MEMORY_MAX: u64 = u64::MAX - 1;

/// Largest CPU limit `CPUQuota=` can express: systemd keeps the quota in
/// hundredths of a percent in an `i32`.
pub const MAX_CPU_MILLIS: u32 = (i32::MAX as u32) / 10;

/// Everything needed to render one container's unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUnit<'a> {
    /// Pod name, a DNS-1123 label.
    pub pod: &'a str,
    /// Container name, a DNS-1123 label.
    pub container: &'a str,
    /// Free text for `Description=`; see [`escape_free_text`] for how it is
    /// made safe (it is shown, never parsed back).
    pub description: &'a str,
    /// Absolute path of the berth shim that runs the container, made of
    /// `[A-Za-z0-9/._+-]` only: it comes from the agent's configuration.
    pub shim_path: &'a str,
    /// Name of the Docker container the shim starts; any text without NUL.
    pub container_name: &'a str,
    /// Seconds the container gets between the stop signal and the kill;
    /// passed to the shim, and `TimeoutStopSec=` is this plus
    /// [`STOP_TIMEOUT_MARGIN_SECS`].
    pub stop_timeout_secs: u32,
    /// When systemd restarts the unit after the shim exits.
    pub restart: RestartPolicy,
    /// `MemoryMax=` in bytes.
    pub memory_max: Option<u64>,
    /// CPU limit in thousandths of a CPU, written as `CPUQuota=` (1000 = 100%).
    /// Taken in the model's unit so that no precision is lost on the way.
    pub cpu_millis: Option<u32>,
    /// Whether the container joins a pod network holder (pods of several
    /// containers): its unit then requires the pod's network unit.
    pub joins_pod_network: bool,
    /// Plain variables set on the shim process with `Environment=`. Anyone can
    /// read these over D-Bus: never secrets.
    pub environment: &'a [EnvVar],
    /// Health probes, run by the shim (validated by the model).
    pub probes: &'a Probes,
    /// Mount points of network volumes the container binds
    /// (`RequiresMountsFor=`): systemd mounts them first, and a container
    /// never starts on an empty directory in place of its data.
    pub mounts_for: &'a [String],
    /// The container engine's systemd unit (`docker.service`,
    /// `podman.socket`), which the unit requires and starts after.
    pub engine_unit: &'a str,
    /// The directory the shim runs in as its root (see
    /// [`push_shim_sandbox`]), or `/` for the host's: a shim that checks host
    /// paths before each start must see them.
    pub shim_root: &'a str,
}

/// No probes, for units that have none (the pod network holder).
pub const NO_PROBES: Probes = Probes {
    startup: None,
    readiness: None,
    liveness: None,
};

/// Why a unit file cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The pod or container name is not a DNS-1123 label.
    #[error("invalid {field} name {name:?}: {problem}")]
    InvalidName {
        /// `pod` or `container`.
        field: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameError,
    },
    /// The escaped unit name is longer than systemd allows (a name with many
    /// `-` grows fourfold when escaped).
    #[error("unit name {name:?} is {len} bytes, systemd allows at most {MAX_UNIT_NAME_LEN}")]
    UnitNameTooLong {
        /// The escaped unit name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The shim path is not absolute and normalized, or holds characters that
    /// systemd would treat specially in an executable path.
    #[error("shim path {0:?} must be an absolute, normalized path of [A-Za-z0-9/._+-]")]
    ShimPath(String),
    /// A mount point is not an absolute, normalized path of plain
    /// characters.
    #[error("mount point {0:?} must be an absolute, normalized path of [A-Za-z0-9/._+-]")]
    MountPath(String),
    /// The shim's root directory is neither `/` nor an absolute,
    /// normalized path of plain characters.
    #[error("shim root {0:?} must be / or an absolute, normalized path of [A-Za-z0-9/._+-]")]
    ShimRoot(String),
    /// A network volume's server or path holds characters a mount unit
    /// cannot take (the model's validation refuses them).
    #[error("network volume {0:?} must be SERVER:/PATH of [A-Za-z0-9._~+-] components")]
    NetworkSource(String),
    /// A value cannot be written into a unit file.
    #[error("{field}: {problem}")]
    Escape {
        /// Which input, e.g. `container_name` or `environment[2]`.
        field: String,
        /// What is wrong with it.
        problem: EscapeError,
    },
    /// A probe sets no check or several (the model's validation refuses it).
    #[error("probes.{0}: must set exactly one of tcp, http, exec")]
    Probe(&'static str),
    /// A resource limit is outside what systemd accepts.
    #[error("limit {setting}={value} is out of range, systemd accepts 1 to {max}")]
    LimitOutOfRange {
        /// The unit setting, e.g. `MemoryMax`.
        setting: &'static str,
        /// The value asked for.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A rendered line is longer than systemd reads.
    #[error("rendered {setting}= line is {len} bytes, systemd reads at most {MAX_UNIT_LINE_LEN}")]
    LineTooLong {
        /// The unit setting, e.g. `Environment`.
        setting: &'static str,
        /// Length of the rendered line in bytes.
        len: usize,
    },
    /// The engine's unit is not a plain `NAME.service` or `NAME.socket`
    /// (it comes from the agent's configuration).
    #[error("engine unit {0:?} must be NAME.service or NAME.socket of [A-Za-z0-9._-]")]
    EngineUnit(String),
}

/// The cgroup of the pod network unit, for Docker's `--cgroup-parent`.
pub fn pod_network_cgroup_path(pod: &str) -> String {
    format!(
        "/{BERTH_SLICE}/{}/{}",
        pod_slice_name(pod),
        pod_network_unit_name(pod)
    )
}

/// The cgroup systemd gives the unit of `container` in `pod`, relative to the
/// cgroup root, e.g. `/berth.slice/berth-web.slice/berth-web-app.service`.
/// The agent passes it to Docker as `--cgroup-parent` (cgroupfs driver), so
/// the container's processes are counted against the unit's limits.
pub fn container_cgroup_path(pod: &str, container: &str) -> String {
    format!(
        "/{BERTH_SLICE}/{}/{}",
        pod_slice_name(pod),
        container_unit_name(pod, container)
    )
}

/// Whether `name` is a unit the container units may depend on: a plain
/// service or socket name.
fn is_engine_unit_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".service")
        .or_else(|| name.strip_suffix(".socket"));
    stem.is_some_and(|stem| {
        !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

/// Renders the service unit of one container.
///
/// The unit runs `<shim_path> run <container_name> --stop-timeout <secs>`
/// (the `berth-shim` command line). The shim starts the
/// Docker container, relays its output to the journal, reports readiness
/// with sd_notify and exits with the container's exit status; `Type=notify`
/// and `NotifyAccess=main` take readiness from the shim alone. The
/// container's cgroup is nested under the unit's (see
/// [`container_cgroup_path`]); `Delegate=yes` tells systemd that subtree is
/// managed by someone else.
///
/// A container that joins the pod's network holder requires the pod's
/// network unit and starts after it (see [`render_pod_network_unit`]), so
/// stopping the pod's network stops its containers.
pub fn render_container_unit(unit: &ContainerUnit<'_>) -> Result<String, RenderError> {
    check_pod_name(unit.pod)?;
    check_label("container", unit.container)?;
    let name = container_unit_name(unit.pod, unit.container);
    let network_unit = unit
        .joins_pod_network
        .then(|| pod_network_unit_name(unit.pod));
    render_service(&name, unit, network_unit.as_deref())
}

/// Renders the unit of the pod's network holder: a `berth/pause` container
/// that owns the pod's network namespace and published ports, so they
/// outlive restarts of the pod's real containers. `unit.container` is not
/// used for naming (the unit is [`pod_network_unit_name`]) and is only
/// checked as a label.
pub fn render_pod_network_unit(unit: &ContainerUnit<'_>) -> Result<String, RenderError> {
    check_pod_name(unit.pod)?;
    check_label("container", unit.container)?;
    render_service(&pod_network_unit_name(unit.pod), unit, None)
}

fn render_service(
    name: &str,
    unit: &ContainerUnit<'_>,
    network_unit: Option<&str>,
) -> Result<String, RenderError> {
    check_unit_name(name)?;
    check_unit_name(&pod_slice_name(unit.pod))?;
    if !is_plain_absolute_path(unit.shim_path) {
        return Err(RenderError::ShimPath(unit.shim_path.to_owned()));
    }
    if unit.shim_root != "/" && !is_plain_absolute_path(unit.shim_root) {
        return Err(RenderError::ShimRoot(unit.shim_root.to_owned()));
    }
    let container_name =
        quote_exec_arg(unit.container_name).map_err(|problem| RenderError::Escape {
            field: "container_name".to_owned(),
            problem,
        })?;

    let mut out = String::new();
    // Labels were checked above, so the names cannot break the comment line.
    let _ = writeln!(
        out,
        "# Written by berth-agent for pod {}, container {}; changes are overwritten.",
        unit.pod, unit.container
    );
    out.push_str("[Unit]\n");
    push_description(&mut out, unit.description);
    if !is_engine_unit_name(unit.engine_unit) {
        return Err(RenderError::EngineUnit(unit.engine_unit.to_owned()));
    }
    let _ = writeln!(out, "After={}", unit.engine_unit);
    let _ = writeln!(out, "Requires={}", unit.engine_unit);
    if let Some(network_unit) = network_unit {
        let _ = writeln!(out, "After={network_unit}");
        let _ = writeln!(out, "Requires={network_unit}");
    }
    for path in unit.mounts_for {
        if !is_plain_absolute_path(path) {
            return Err(RenderError::MountPath(path.clone()));
        }
        let _ = writeln!(out, "RequiresMountsFor={path}");
    }
    out.push_str("StartLimitIntervalSec=0\n");
    if unit.restart == RestartPolicy::Never {
        let _ = writeln!(out, "ConditionPathExists={STARTED_MARKS_DIR}/%n");
    }

    out.push_str("\n[Service]\n");
    out.push_str("Type=notify\n");
    out.push_str("NotifyAccess=main\n");
    let _ = writeln!(out, "Slice={}", pod_slice_name(unit.pod));
    out.push_str("Delegate=yes\n");
    // Stop signal to the shim only: it stops the container through Docker
    // with the container's own timeout. Whatever is left at TimeoutStopSec=
    // is killed by systemd, the container's processes included.
    out.push_str("KillMode=mixed\n");
    push_environment(&mut out, unit.environment)?;
    // The shim gets the stop timeout too: its `docker stop` must finish within
    // TimeoutStopSec=, which is derived from the same number.
    let exec = format!(
        "ExecStart={} run {container_name} --stop-timeout {}{}\n",
        unit.shim_path,
        unit.stop_timeout_secs,
        probe_args(unit.probes)?
    );
    check_line_len("ExecStart", &exec)?;
    out.push_str(&exec);
    // READY=1 waits for the startup and readiness probes, however long they
    // take: the startup probe's threshold is what gives up, not a timer.
    if unit.probes.startup.is_some() || unit.probes.readiness.is_some() {
        out.push_str("TimeoutStartSec=infinity\n");
    }
    let _ = writeln!(out, "Restart={}", restart_setting(unit.restart));
    if unit.restart != RestartPolicy::Never {
        let _ = writeln!(out, "RestartSec={RESTART_DELAY_SECS}");
    }
    push_stop_and_limits(
        &mut out,
        unit.stop_timeout_secs,
        unit.memory_max,
        unit.cpu_millis,
    )?;

    push_shim_sandbox(&mut out, unit.probes, unit.shim_root, unit.shim_path);

    out.push_str("\n[Install]\n");
    out.push_str("WantedBy=multi-user.target\n");
    Ok(out)
}

/// `TimeoutStopSec=` (the stop timeout plus the margin), `MemoryMax=` and
/// `CPUQuota=`, as container and build units set them.
fn push_stop_and_limits(
    out: &mut String,
    stop_timeout_secs: u32,
    memory_max: Option<u64>,
    cpu_millis: Option<u32>,
) -> Result<(), RenderError> {
    let _ = writeln!(
        out,
        "TimeoutStopSec={}",
        u64::from(stop_timeout_secs) + STOP_TIMEOUT_MARGIN_SECS
    );
    if let Some(bytes) = memory_max {
        check_limit("MemoryMax", bytes, MAX_MEMORY_MAX)?;
        let _ = writeln!(out, "MemoryMax={bytes}");
    }
    if let Some(millis) = cpu_millis {
        check_limit("CPUQuota", millis.into(), MAX_CPU_MILLIS.into())?;
        let _ = writeln!(out, "CPUQuota={}", cpu_quota(millis));
    }
    Ok(())
}

/// Everything needed to render the mount unit of a pod's network volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMountUnit<'a> {
    /// Pod name (its project included).
    pub pod: &'a str,
    /// Volume name, a DNS-1123 label.
    pub volume: &'a str,
    /// The file system type: `glusterfs` or `nfs`.
    pub fs_type: &'a str,
    /// `server:/path`, as `mount` takes it.
    pub what: &'a str,
    /// Mount read-only: every container mounts it so.
    pub read_only: bool,
}

/// Renders the mount unit of a pod's network volume, at
/// [`network_volume_path`](crate::name::network_volume_path), named as
/// systemd names the mount of that path. The container units that bind it
/// require it with `RequiresMountsFor=`, so systemd mounts it before they
/// start and tries again whenever one of them starts again.
pub fn render_network_mount_unit(unit: &NetworkMountUnit<'_>) -> Result<String, RenderError> {
    check_pod_name(unit.pod)?;
    check_label("volume", unit.volume)?;
    let name = crate::name::network_volume_unit_name(unit.pod, unit.volume);
    check_unit_name(&name)?;
    // Checked here too, as the renderer takes no string on trust: only
    // `host:/plain/path` reaches `What=`, so nothing needs escaping there
    // and no `%` specifier can appear.
    let plain_what = unit.what.split_once(":/").is_some_and(|(server, path)| {
        !server.is_empty()
            && server
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._~+-".contains(&b))
    });
    if !plain_what || !matches!(unit.fs_type, "glusterfs" | "nfs") {
        return Err(RenderError::NetworkSource(unit.what.to_owned()));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by berth-agent for pod {}, volume {}; changes are overwritten.",
        unit.pod, unit.volume
    );
    out.push_str("[Unit]\n");
    push_description(
        &mut out,
        &format!(
            "berth pod {}, network volume {} ({} {})",
            unit.pod, unit.volume, unit.fs_type, unit.what
        ),
    );
    out.push_str("\n[Mount]\n");
    let _ = writeln!(out, "What={}", unit.what);
    let _ = writeln!(
        out,
        "Where={}",
        crate::name::network_volume_path(unit.pod, unit.volume)
    );
    let _ = writeln!(out, "Type={}", unit.fs_type);
    let options = if unit.read_only {
        "_netdev,ro"
    } else {
        "_netdev"
    };
    let _ = writeln!(out, "Options={options}");
    // A server that does not answer fails the mount, and with it the
    // container's start, which its unit's restart policy tries again.
    out.push_str("TimeoutSec=30\n");
    // Enabled like the pod's containers: the agent links it in (its file
    // lives in the agent's unit directory), and it mounts at boot.
    out.push_str("\n[Install]\n");
    out.push_str("WantedBy=multi-user.target\n");
    Ok(out)
}

/// Everything needed to render a build pod's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUnit<'a> {
    /// Pod name (qualified).
    pub pod: &'a str,
    /// Free text for `Description=`.
    pub description: &'a str,
    /// Absolute path of berth-agent, whose `build` command is the runner;
    /// made of `[A-Za-z0-9/._+-]` only.
    pub agent_path: &'a str,
    /// The build's directory, where the agent prepared its spec and
    /// sources; any text without NUL.
    pub build_dir: &'a str,
    /// Seconds the runner gets to stop its containers after SIGTERM;
    /// `TimeoutStopSec=` is this plus [`STOP_TIMEOUT_MARGIN_SECS`].
    pub stop_timeout_secs: u32,
    /// `MemoryMax=` in bytes.
    pub memory_max: Option<u64>,
    /// CPU limit in thousandths of a CPU (`CPUQuota=`).
    pub cpu_millis: Option<u32>,
    /// Plain variables for the runner (`DOCKER_HOST`); never secrets.
    pub environment: &'a [EnvVar],
}

/// Renders a build pod's unit, named like the unit of its one container
/// (`berth-<pod>-build.service`): `<agent> build <dir>` runs the build
/// through dockerd and pushes its image, its output is the build's log in
/// the journal, and its exit status is the build's. It runs once: never
/// restarted, and, like a never-restarted container, enabled but not run
/// again after a reboot. The builder containers it makes go under its cgroup (hence
/// `Delegate=yes` and the shim's sandbox, which keeps off the cgroup).
pub fn render_build_unit(unit: &BuildUnit<'_>) -> Result<String, RenderError> {
    check_pod_name(unit.pod)?;
    let name = container_unit_name(unit.pod, berth_model::build::BUILD_CONTAINER);
    check_unit_name(&name)?;
    check_unit_name(&pod_slice_name(unit.pod))?;
    if !is_plain_absolute_path(unit.agent_path) {
        return Err(RenderError::ShimPath(unit.agent_path.to_owned()));
    }
    let build_dir = quote_exec_arg(unit.build_dir).map_err(|problem| RenderError::Escape {
        field: "build_dir".to_owned(),
        problem,
    })?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by berth-agent for pod {}, build; changes are overwritten.",
        unit.pod
    );
    out.push_str("[Unit]\n");
    push_description(&mut out, unit.description);
    out.push_str("After=docker.service\n");
    out.push_str("Requires=docker.service\n");
    out.push_str("StartLimitIntervalSec=0\n");
    let _ = writeln!(out, "ConditionPathExists={STARTED_MARKS_DIR}/%n");

    out.push_str("\n[Service]\n");
    out.push_str("Type=exec\n");
    // The runner leaves the build's outcome as its status text.
    out.push_str("NotifyAccess=main\n");
    let _ = writeln!(out, "Slice={}", pod_slice_name(unit.pod));
    out.push_str("Delegate=yes\n");
    // SIGTERM to the runner only: it stops and removes its containers.
    out.push_str("KillMode=mixed\n");
    push_environment(&mut out, unit.environment)?;
    let exec = format!("ExecStart={} build {build_dir}\n", unit.agent_path);
    check_line_len("ExecStart", &exec)?;
    out.push_str(&exec);
    out.push_str("Restart=no\n");
    // A unit that ends well goes inactive and systemd forgets it, and
    // with it the runner's exit status, the build's outcome. Staying
    // active (exited) keeps it loaded until the pod is removed; a failed
    // unit is kept anyway.
    out.push_str("RemainAfterExit=yes\n");
    push_stop_and_limits(
        &mut out,
        unit.stop_timeout_secs,
        unit.memory_max,
        unit.cpu_millis,
    )?;
    out.push_str("StandardOutput=journal\n");
    out.push_str("StandardError=journal\n");
    // The runner reads its directory and talks to dockerd's socket, as
    // the shim does: the same sandbox fits.
    push_shim_sandbox(&mut out, &NO_PROBES, "/", unit.agent_path);

    // Enabling links the file where systemd finds it; at boot the
    // condition above keeps it from running again.
    out.push_str("\n[Install]\n");
    out.push_str("WantedBy=multi-user.target\n");
    Ok(out)
}

/// What berth-shim (or a build's runner), the unit's only process at
/// `program`, may do, and what it sees.
///
/// Unless `root` is `/`, it runs in a root of its own: `root`, a skeleton
/// of empty directories (see the agent's `shim_root`), where the unit sees
/// `/usr` and `/run` read-only (`/run` without the mounts below it:
/// Docker's network namespaces), and nothing else of the host: not
/// Docker's data, not `/etc`, not `/var`. `/run` holds the three sockets
/// the shim needs (Docker's or Podman's, the journal's, the notify
/// socket). A shim without network probes gets no `/proc`, `/sys` or
/// `/dev` there at all, which hides more than `ProtectProc=` and
/// `ProcSubset=` could; one with them gets its own `/proc` under those two
/// and an empty `/sys`, as in the host's root.
///
/// The root is also what makes a start cheap. systemd 252 reads the whole
/// mount table for each path it makes read-only or hides, and each
/// container on the host adds its overlay and its network namespace to
/// that table; under a root of its own the unit's tree holds a few dozen
/// mounts instead of every container's. With 100 pods up, the CPU of
/// setting up the sandbox fell from 56 ms to 35 ms a start with the API
/// file systems, and to 25 ms without (`systemd-run --wait /bin/true` with
/// the same directives, 5 rounds of 10 in a lab host).
///
/// The container is not sandboxed by this: dockerd starts it, outside the
/// unit's processes. Only the shim is, and it needs Docker's socket, the
/// journal's and the notify socket (all unix sockets with a path, so it
/// needs no network of its own). TCP and HTTP probes join the container's
/// network namespace from one thread: `setns` asks for `CAP_SYS_ADMIN`,
/// and opening `/proc/<pid>/ns/net` asks for `CAP_SYS_PTRACE` (the kernel
/// wants it whenever the target holds capabilities the opener lacks, which
/// any container's process does, root or not; tried in the lab), so a unit
/// gets both only when it has such a probe.
///
/// Nothing here may act on the unit's cgroup, since the container's cgroup
/// is nested under it: no `PrivateDevices=`, `DeviceAllow=` (which
/// `ProtectClock=` implies), `IPAddressDeny=` or `SocketBind*=`, which
/// would all apply to the container as well.
///
/// `/sys` is an empty read-only tmpfs, not the host's made read-only by
/// `ProtectKernelTunables=` and `ProtectControlGroups=`: the shim reads
/// nothing there, and `ProcSubset=pid` already hides `/proc/sys` and the
/// rest of `/proc` those cover. It protects as much, and it starts a pod
/// about 90 ms sooner with 100 pods on the host: systemd 252 reads the
/// whole mount table (each container adds its overlay to it) for each
/// path it makes read-only, about 20 of them for those two.
///
/// For the same cost, nothing asks for what the seccomp filter and the
/// empty capability set already refuse. `ProtectKernelModules=` and
/// `ProtectKernelLogs=` are left out: `@system-service` allows no module
/// and no `syslog` call, the bounding set holds neither
/// `CAP_SYS_MODULE` nor `CAP_SYSLOG` (without which the kernel refuses
/// reading `/dev/kmsg` under `kernel.dmesg_restrict`), and
/// `ProcSubset=pid` hides `/proc/kmsg`. What they would add is paths made
/// inaccessible, each another read of the mount table. `ProtectHome=` is
/// `tmpfs` (an empty read-only tmpfs on each home) rather than `yes`
/// (each home made inaccessible): nothing of the homes is visible either
/// way, and `tmpfs` measured 20-30 ms cheaper. With 100 pods up a start
/// took 95 ms instead of 160 ms (`systemd-run --wait /bin/true` in a lab
/// host). `ProtectHostname=` is left out too: the seccomp filter refuses
/// `sethostname` and `setdomainname` (both in `@privileged`), and
/// `ProcSubset=pid` hides the `/proc/sys/kernel` files it would make
/// read-only, so systemd only read the mount table again to fail to find
/// them; without it a start costs 15% less CPU.
fn push_shim_sandbox(out: &mut String, probes: &Probes, root: &str, program: &str) {
    let probes_network = probes
        .iter()
        .any(|(_, probe)| matches!(probe.check(), Some(Check::Tcp(_) | Check::Http(_))));
    out.push_str("NoNewPrivileges=yes\n");
    if probes_network {
        out.push_str("CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_PTRACE\n");
    } else {
        out.push_str("CapabilityBoundingSet=\n");
    }
    out.push_str("PrivateNetwork=yes\n");
    let own_root = root != "/";
    if own_root {
        let _ = writeln!(out, "RootDirectory={root}");
        out.push_str("BindReadOnlyPaths=/usr\n");
        out.push_str("BindReadOnlyPaths=/run:/run:norbind\n");
        if !program.starts_with("/usr/") {
            let _ = writeln!(out, "BindReadOnlyPaths={program}");
        }
    }
    out.push_str(concat!(
        "ProtectSystem=strict\n",
        "ProtectHome=tmpfs\n",
        "PrivateTmp=yes\n",
        "PrivateMounts=yes\n",
    ));
    // Network probes open `/proc/<pid>/ns/net`; nothing else reads /proc.
    if own_root && !probes_network {
        out.push_str("MountAPIVFS=no\n");
    } else {
        if own_root {
            out.push_str("MountAPIVFS=yes\n");
        }
        out.push_str(concat!(
            "TemporaryFileSystem=/sys:ro\n",
            "ProtectProc=invisible\n",
            "ProcSubset=pid\n",
        ));
    }
    if probes_network {
        out.push_str("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n");
        out.push_str("RestrictNamespaces=net\n");
    } else {
        out.push_str("RestrictAddressFamilies=AF_UNIX\n");
        out.push_str("RestrictNamespaces=yes\n");
    }
    out.push_str(concat!(
        "RestrictSUIDSGID=yes\n",
        "RestrictRealtime=yes\n",
        "LockPersonality=yes\n",
        "MemoryDenyWriteExecute=yes\n",
        "SystemCallArchitectures=native\n",
        "SystemCallFilter=@system-service\n",
        "SystemCallFilter=~@privileged @resources\n",
        "SystemCallErrorNumber=EPERM\n",
        "UMask=0077\n",
    ));
}

/// The shim's probe arguments (` --probe readiness http --port 8080 ...`),
/// every word quoted for `ExecStart=`.
fn probe_args(probes: &Probes) -> Result<String, RenderError> {
    let mut words: Vec<String> = Vec::new();
    for (role, probe) in probes.iter() {
        let Some(check) = probe.check() else {
            return Err(RenderError::Probe(role));
        };
        words.extend(["--probe".to_owned(), role.to_owned()]);
        match check {
            Check::Tcp(tcp) => words.extend(["tcp".into(), "--port".into(), tcp.port.to_string()]),
            Check::Http(http) => words.extend([
                "http".into(),
                "--port".into(),
                http.port.to_string(),
                "--path".into(),
                http.path,
            ]),
            Check::Exec(exec) => {
                words.push("exec".into());
                for word in exec.command {
                    words.extend(["--command".into(), word]);
                }
            }
        }
        words.extend(timing_args(probe));
    }
    let mut out = String::new();
    for (i, word) in words.iter().enumerate() {
        let quoted = quote_exec_arg(word).map_err(|problem| RenderError::Escape {
            field: format!("probe argument {i}"),
            problem,
        })?;
        out.push(' ');
        out.push_str(&quoted);
    }
    Ok(out)
}

fn timing_args(probe: &Probe) -> Vec<String> {
    [
        ("--initial-delay", probe.initial_delay_secs),
        ("--period", probe.period_secs),
        ("--timeout", probe.timeout_secs),
        ("--failure-threshold", probe.failure_threshold),
        ("--success-threshold", probe.success_threshold),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value.to_string()])
    .collect()
}

/// Renders the slice unit of `pod`. It only names the slice: limits live on
/// the container units, and the slice is pulled in by their `Slice=`.
pub fn render_pod_slice(pod: &str) -> Result<String, RenderError> {
    check_pod_name(pod)?;
    check_unit_name(&pod_slice_name(pod))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by berth-agent for pod {pod}; changes are overwritten."
    );
    out.push_str("[Unit]\n");
    push_description(&mut out, &format!("berth pod {pod}"));
    Ok(out)
}

/// The `Restart=` value for a policy.
pub fn restart_setting(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "no",
    }
}

/// `CPUQuota=` for a limit in thousandths of a CPU: 500 is `50%`, 15 is
/// `1.5%` (systemd takes up to two decimals).
fn cpu_quota(millis: u32) -> String {
    match millis % 10 {
        0 => format!("{}%", millis / 10),
        tenths => format!("{}.{tenths}%", millis / 10),
    }
}

/// `Environment=` lines, each assignment quoted.
fn push_environment(out: &mut String, environment: &[EnvVar]) -> Result<(), RenderError> {
    for (i, var) in environment.iter().enumerate() {
        let assignment =
            quote_env_assignment(&var.name, &var.value).map_err(|problem| RenderError::Escape {
                field: format!("environment[{i}]"),
                problem,
            })?;
        let line = format!("Environment={assignment}\n");
        check_line_len("Environment", &line)?;
        out.push_str(&line);
    }
    Ok(())
}

fn push_description(out: &mut String, description: &str) {
    let text = escape_free_text(description);
    // An empty Description= would only reset it; systemd then shows the unit name.
    if !text.is_empty() {
        let _ = writeln!(out, "Description={text}");
    }
}

fn check_label(field: &'static str, name: &str) -> Result<(), RenderError> {
    validate_dns_label(name).map_err(|problem| RenderError::InvalidName {
        field,
        name: name.to_owned(),
        problem,
    })
}

/// A pod's name on a node carries its project (`a.web-1`, see
/// `berth_model::project`).
fn check_pod_name(name: &str) -> Result<(), RenderError> {
    validate_qualified_name(name).map_err(|problem| RenderError::InvalidName {
        field: "pod",
        name: name.to_owned(),
        problem,
    })
}

fn check_unit_name(name: &str) -> Result<(), RenderError> {
    if name.len() > MAX_UNIT_NAME_LEN {
        return Err(RenderError::UnitNameTooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    Ok(())
}

fn check_line_len(setting: &'static str, line: &str) -> Result<(), RenderError> {
    if line.len() > MAX_UNIT_LINE_LEN {
        return Err(RenderError::LineTooLong {
            setting,
            len: line.len(),
        });
    }
    Ok(())
}

fn check_limit(setting: &'static str, value: u64, max: u64) -> Result<(), RenderError> {
    if value == 0 || value > max {
        return Err(RenderError::LimitOutOfRange {
            setting,
            value,
            max,
        });
    }
    Ok(())
}

/// Whether `path` can be written bare as the executable of `ExecStart=`:
/// absolute and normalized, as systemd requires, and free of anything it
/// would read as quoting, a specifier, a prefix or a variable.
pub fn is_plain_absolute_path(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    !relative.is_empty()
        && relative
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> ContainerUnit<'static> {
        ContainerUnit {
            pod: "web",
            container: "app",
            description: "berth pod web, container app",
            shim_path: "/usr/lib/berth/berth-shim",
            container_name: "berth-web-app",
            stop_timeout_secs: 10,
            restart: RestartPolicy::Always,
            memory_max: None,
            cpu_millis: None,
            joins_pod_network: false,
            environment: &[],
            probes: &NO_PROBES,
            mounts_for: &[],
            engine_unit: "docker.service",
            shim_root: "/",
        }
    }

    #[test]
    fn the_shim_runs_in_its_own_root_with_only_usr_and_run_of_the_host() {
        let text = render_container_unit(&ContainerUnit {
            shim_root: "/var/lib/berth/shim-root",
            ..unit()
        })
        .unwrap();
        assert!(
            text.contains(concat!(
                "\nRootDirectory=/var/lib/berth/shim-root\n",
                "BindReadOnlyPaths=/usr\n",
                "BindReadOnlyPaths=/run:/run:norbind\n",
                "ProtectSystem=strict\n",
            )),
            "{text}"
        );
        // No /proc, /sys or /dev at all without network probes; with them
        // /proc for their namespaces, as in the host's root.
        assert!(text.contains("\nMountAPIVFS=no\n"), "{text}");
        assert!(!text.contains("ProtectProc="), "{text}");
        let tcp = Probes {
            readiness: Some(Probe::new(Check::Tcp(berth_model::TcpCheck { port: 80 }))),
            ..NO_PROBES
        };
        let probed = render_container_unit(&ContainerUnit {
            shim_root: "/var/lib/berth/shim-root",
            probes: &tcp,
            ..unit()
        })
        .unwrap();
        assert!(
            probed.contains("\nMountAPIVFS=yes\nTemporaryFileSystem=/sys:ro\nProtectProc=invisible\nProcSubset=pid\n"),
            "{probed}"
        );

        // A shim elsewhere than /usr is bound in too.
        let text = render_container_unit(&ContainerUnit {
            shim_root: "/var/lib/berth/shim-root",
            shim_path: "/opt/berth/berth-shim",
            ..unit()
        })
        .unwrap();
        assert!(
            text.contains("\nBindReadOnlyPaths=/opt/berth/berth-shim\n"),
            "{text}"
        );

        // `/` is the host's root: none of it.
        let text = render_container_unit(&unit()).unwrap();
        assert!(!text.contains("RootDirectory="), "{text}");
        assert!(!text.contains("BindReadOnlyPaths="), "{text}");
        assert!(!text.contains("MountAPIVFS="), "{text}");
        assert!(text.contains("\nProtectProc=invisible\n"), "{text}");

        for bad in ["", "shim-root", "/var/lib/../shim", "/var/lib/my root"] {
            assert_eq!(
                render_container_unit(&ContainerUnit {
                    shim_root: bad,
                    ..unit()
                }),
                Err(RenderError::ShimRoot(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_shim_gets_capabilities_and_inet_only_for_network_probes() {
        let plain = render_container_unit(&unit()).unwrap();
        assert!(plain.contains("\nCapabilityBoundingSet=\n"), "{plain}");
        assert!(
            plain.contains("\nRestrictAddressFamilies=AF_UNIX\n"),
            "{plain}"
        );
        assert!(plain.contains("\nRestrictNamespaces=yes\n"), "{plain}");

        let exec_only = Probes {
            liveness: Some(Probe::new(Check::Exec(berth_model::ExecCheck {
                command: vec!["true".into()],
            }))),
            ..NO_PROBES
        };
        let text = render_container_unit(&ContainerUnit {
            probes: &exec_only,
            ..unit()
        })
        .unwrap();
        assert!(
            text.contains("\nCapabilityBoundingSet=\n"),
            "exec probes go through Docker"
        );

        let tcp = Probes {
            readiness: Some(Probe::new(Check::Tcp(berth_model::TcpCheck { port: 80 }))),
            ..NO_PROBES
        };
        let text = render_container_unit(&ContainerUnit {
            probes: &tcp,
            ..unit()
        })
        .unwrap();
        assert!(text.contains("\nCapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_PTRACE\n"));
        assert!(text.contains("\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"));
        assert!(text.contains("\nRestrictNamespaces=net\n"));
    }

    #[test]
    fn the_sandbox_never_acts_on_the_cgroup_the_container_is_nested_in() {
        let tcp = Probes {
            readiness: Some(Probe::new(Check::Tcp(berth_model::TcpCheck { port: 80 }))),
            ..NO_PROBES
        };
        for probes in [&NO_PROBES, &tcp] {
            let text = render_container_unit(&ContainerUnit { probes, ..unit() }).unwrap();
            for cgroup_wide in [
                "PrivateDevices=",
                "DevicePolicy=",
                "DeviceAllow=",
                "ProtectClock=",
                "IPAddressDeny=",
                "IPAddressAllow=",
                "SocketBindDeny=",
                "RestrictNetworkInterfaces=",
            ] {
                assert!(!text.contains(cgroup_wide), "{cgroup_wide} in\n{text}");
            }
        }
    }

    #[test]
    fn probes_become_quoted_shim_arguments_and_lift_the_start_timeout() {
        let mut liveness = Probe::new(Check::Exec(berth_model::ExecCheck {
            command: vec![
                "sh".into(),
                "-c".into(),
                "test -f /tmp/ok && echo $HOME 100%".into(),
            ],
        }));
        liveness.period_secs = 2;
        let probes = Probes {
            readiness: Some(Probe::new(Check::Http(berth_model::HttpCheck {
                port: 8080,
                path: "/ready?x=%41".into(),
            }))),
            liveness: Some(liveness),
            startup: None,
        };
        let probed = ContainerUnit {
            probes: &probes,
            ..unit()
        };
        let text = render_container_unit(&probed).unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert_eq!(
            exec,
            "ExecStart=/usr/lib/berth/berth-shim run \"berth-web-app\" --stop-timeout 10 \
             \"--probe\" \"readiness\" \"http\" \"--port\" \"8080\" \"--path\" \"/ready?x=%%41\" \
             \"--initial-delay\" \"0\" \"--period\" \"10\" \"--timeout\" \"1\" \"--failure-threshold\" \"3\" \"--success-threshold\" \"1\" \
             \"--probe\" \"liveness\" \"exec\" \"--command\" \"sh\" \"--command\" \"-c\" \"--command\" \"test -f /tmp/ok && echo $$HOME 100%%\" \
             \"--initial-delay\" \"0\" \"--period\" \"2\" \"--timeout\" \"1\" \"--failure-threshold\" \"3\" \"--success-threshold\" \"1\""
        );
        assert!(text.contains("\nTimeoutStartSec=infinity\n"), "{text}");
        let plain = render_container_unit(&unit()).unwrap();
        assert!(!plain.contains("TimeoutStartSec"), "{plain}");
    }

    #[test]
    fn names_escape_each_component() {
        assert_eq!(container_unit_name("web", "app"), "berth-web-app.service");
        assert_eq!(container_unit_name("a-b", "c"), "berth-a\\x2db-c.service");
        assert_eq!(container_unit_name("a", "b-c"), "berth-a-b\\x2dc.service");
        assert_eq!(pod_slice_name("my-pod"), "berth-my\\x2dpod.slice");
        assert_eq!(
            container_cgroup_path("my-pod", "db"),
            "/berth.slice/berth-my\\x2dpod.slice/berth-my\\x2dpod-db.service"
        );
    }

    #[test]
    fn restart_policies_map_to_systemd() {
        assert_eq!(restart_setting(RestartPolicy::Always), "always");
        assert_eq!(restart_setting(RestartPolicy::OnFailure), "on-failure");
        assert_eq!(restart_setting(RestartPolicy::Never), "no");
    }

    #[test]
    fn cpu_quota_keeps_tenths_of_a_percent() {
        assert_eq!(cpu_quota(10), "1%");
        assert_eq!(cpu_quota(15), "1.5%");
        assert_eq!(cpu_quota(500), "50%");
        assert_eq!(cpu_quota(1505), "150.5%");
        assert_eq!(cpu_quota(MAX_CPU_MILLIS), "21474836.4%");
    }

    #[test]
    fn stop_timeout_gets_a_margin() {
        let mut u = unit();
        u.stop_timeout_secs = u32::MAX;
        let text = render_container_unit(&u).unwrap();
        assert!(text.contains("\nTimeoutStopSec=4294967300\n"), "{text}");
    }

    #[test]
    fn never_restarting_units_have_no_restart_delay_and_do_not_start_at_boot() {
        let always = render_container_unit(&unit()).unwrap();
        assert!(!always.contains("ConditionPathExists"), "{always}");
        let mut u = unit();
        u.restart = RestartPolicy::Never;
        let text = render_container_unit(&u).unwrap();
        assert!(
            text.contains("\nRestart=no\n") && !text.contains("RestartSec"),
            "{text}"
        );
        assert!(
            text.contains("\nConditionPathExists=/run/berth/started/%n\n"),
            "{text}"
        );
    }

    #[test]
    fn rejects_names_that_are_not_labels() {
        let mut u = unit();
        u.pod = "";
        assert_eq!(
            render_container_unit(&u),
            Err(RenderError::InvalidName {
                field: "pod",
                name: String::new(),
                problem: NameError::Empty
            })
        );
        let mut u = unit();
        u.container = "App";
        assert!(matches!(
            render_container_unit(&u),
            Err(RenderError::InvalidName {
                field: "container",
                ..
            })
        ));
        assert!(matches!(
            render_pod_slice("a_b"),
            Err(RenderError::InvalidName { .. })
        ));
    }

    #[test]
    fn rejects_unit_names_systemd_would_refuse() {
        // 61 dashes escape to 244 bytes, 246 with the two letters.
        let dashy = format!("a{}b", "-".repeat(61));
        let mut u = unit();
        u.pod = &dashy;
        u.container = &dashy;
        match render_container_unit(&u) {
            Err(RenderError::UnitNameTooLong { len, .. }) => assert_eq!(len, 6 + 246 + 1 + 246 + 8),
            other => panic!("{other:?}"),
        }
        // The longest plain labels fit easily.
        let long = "x".repeat(63);
        u.pod = &long;
        u.container = &long;
        assert!(render_container_unit(&u).is_ok());
        assert!(render_pod_slice(&long).is_ok());
        assert!(matches!(
            render_pod_slice(&dashy),
            Err(RenderError::UnitNameTooLong { .. })
        ));
    }

    #[test]
    fn rejects_shim_paths_that_are_not_plain() {
        for bad in [
            "",
            "berth-shim",
            "/",
            "/usr//bin/shim",
            "/usr/bin/../shim",
            "/usr/./shim",
            "/usr/bin/",
            "/opt/my shim",
            "/opt/%n",
            "/opt/$X",
            "/opt/\"q\"",
            "/opt/a\\b",
        ] {
            let mut u = unit();
            u.shim_path = bad;
            assert_eq!(
                render_container_unit(&u),
                Err(RenderError::ShimPath(bad.to_owned())),
                "{bad:?}"
            );
        }
        let mut u = unit();
        u.shim_path = "/opt/berth-1.0/bin/berth_shim+x";
        assert!(render_container_unit(&u).is_ok());
    }

    #[test]
    fn rejects_values_without_a_spelling() {
        let mut u = unit();
        u.container_name = "a\0b";
        assert_eq!(
            render_container_unit(&u),
            Err(RenderError::Escape {
                field: "container_name".to_owned(),
                problem: EscapeError::Nul
            })
        );
        let env = [EnvVar::new("OK", "1"), EnvVar::new("not-valid", "x")];
        let mut u = unit();
        u.environment = &env;
        assert_eq!(
            render_container_unit(&u).unwrap_err().to_string(),
            "environment[1]: invalid environment variable name \"not-valid\""
        );
    }

    #[test]
    fn rejects_limits_systemd_would_ignore() {
        for (memory, cpu, setting) in [
            (Some(0), None, "MemoryMax"),
            (Some(u64::MAX), None, "MemoryMax"),
            (None, Some(0), "CPUQuota"),
            (None, Some(MAX_CPU_MILLIS + 1), "CPUQuota"),
        ] {
            let mut u = unit();
            u.memory_max = memory;
            u.cpu_millis = cpu;
            match render_container_unit(&u) {
                Err(RenderError::LimitOutOfRange { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{memory:?} {cpu:?}: {other:?}"),
            }
        }
        let mut u = unit();
        u.memory_max = Some(u64::MAX - 1);
        u.cpu_millis = Some(MAX_CPU_MILLIS);
        assert!(render_container_unit(&u).is_ok());
    }

    #[test]
    fn rejects_lines_systemd_would_not_read() {
        let env = [EnvVar::new("BIG", "\u{1}".repeat(MAX_UNIT_LINE_LEN / 4))];
        let mut u = unit();
        u.environment = &env;
        assert!(matches!(
            render_container_unit(&u),
            Err(RenderError::LineTooLong {
                setting: "Environment",
                ..
            })
        ));
    }

    #[test]
    fn every_line_is_a_comment_section_or_setting() {
        let env = [EnvVar::new("MULTI", "one\ntwo\r\nthree\\")];
        let mut u = unit();
        u.description = "line one\nline two \\";
        u.container_name = "name\nwith\\newline\\";
        u.environment = &env;
        let text = render_container_unit(&u).unwrap();
        for line in text.lines() {
            assert!(
                line.is_empty()
                    || line.starts_with('#')
                    || (line.starts_with('[') && line.ends_with(']'))
                    || line
                        .split_once('=')
                        .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric())),
                "{line:?}"
            );
            assert!(!line.ends_with('\\') && !line.contains('\r'), "{line:?}");
        }
    }

    #[test]
    fn error_messages_are_lowercase_without_period() {
        let errors = [
            render_pod_slice("").unwrap_err(),
            RenderError::UnitNameTooLong {
                name: "x".to_owned(),
                len: 300,
            },
            RenderError::ShimPath("x".to_owned()),
            RenderError::ShimRoot("x".to_owned()),
            RenderError::LimitOutOfRange {
                setting: "MemoryMax",
                value: 0,
                max: 1,
            },
            RenderError::LineTooLong {
                setting: "Environment",
                len: 1,
            },
        ];
        for error in errors {
            let text = error.to_string();
            let first = text.chars().next().unwrap_or('x');
            assert!(!first.is_uppercase() && !text.ends_with('.'), "{text}");
        }
    }
}
