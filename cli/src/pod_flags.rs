//! The flags that describe a one-container pod (`--image`, `-p`, `-e`, ...),
//! shared by `berth local run` (a pod on this host) and `berth run` (the
//! template of a cluster service), so both build the same pod from the same
//! command line.

use std::collections::HashSet;

use berth_model::limits::DEFAULT_STOP_TIMEOUT_SECS;
use berth_model::{
    Check, Container, EnvVar, Pod, Port, Probe, Probes, Resources, RestartPolicy, Security, Volume,
    VolumeMount,
};
use clap::{Args, ValueEnum};

use crate::parse::{self, SecretEnvVar, VolumeFlag, VolumeSource};

/// Everything about the pod but its name.
#[derive(Debug, Args)]
pub struct PodFlags {
    /// Image to run, e.g. `local/busybox` or `registry.example/web:1.2`.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Publish a container port on the host; without HOSTPORT (or with 0)
    /// the agent picks a free one from its range. Repeatable.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOSTPORT:]PORT[/tcp|/udp]",
        value_parser = parse::port
    )]
    pub ports: Vec<Port>,

    /// Set an environment variable (the value may be empty: `NAME=`).
    /// Visible to whoever can read the pod (`berth describe`, `docker
    /// inspect`): use --secret-env for secrets.
    /// Repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = parse::env_var)]
    pub env: Vec<EnvVar>,

    /// Set a secret environment variable, kept out of units and never
    /// printed. `NAME` alone takes the value from berth's own environment,
    /// which keeps it out of the command line. Repeatable.
    #[arg(long = "secret-env", value_name = "NAME[=VALUE]", value_parser = parse::secret_env_var)]
    pub secret_env: Vec<SecretEnvVar>,

    /// Memory limit: bytes, or with K, M or G (powers of 1024; Ki, Mi, Gi
    /// too), e.g. 64M. At least 4M.
    #[arg(long, value_name = "SIZE", value_parser = parse::memory_bytes)]
    pub memory: Option<u64>,

    /// CPU limit in CPUs, e.g. 0.5 for half of one CPU, or 250m.
    #[arg(long, value_name = "CPUS", value_parser = parse::cpu_millis)]
    pub cpus: Option<u32>,

    /// Mount a volume: an absolute SRC is a host directory (the agent must
    /// allow it), `glusterfs://SERVER/VOLUME[/SUBDIR]` or
    /// `nfs://SERVER/EXPORT` a network file system (the master and the
    /// node must allow the server), `volume://NAME` a network volume an
    /// admin defined (berth volume create), any other SRC names a Docker volume,
    /// in the node's directory of a volume class with `:class=NAME`.
    /// `:ro` mounts it read-only. Repeatable.
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "SRC:DST[:ro,class=NAME]",
        value_parser = parse::volume
    )]
    pub volumes: Vec<VolumeFlag>,

    /// When systemd restarts the container after it exits.
    #[arg(long, value_enum, default_value_t = RestartArg::Always)]
    pub restart: RestartArg,

    /// Seconds between the stop signal and the kill [default: 10].
    #[arg(long = "stop-timeout", value_name = "SECS")]
    pub stop_timeout: Option<u32>,

    /// Health probes.
    #[command(flatten)]
    pub probes: Box<ProbeFlags>,

    /// Hardening beyond the defaults.
    #[command(flatten)]
    pub security: Box<SecurityFlags>,

    /// Command and arguments replacing the image's entrypoint, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The probe flags: `--readiness`, `--liveness`, `--startup` and their
/// timing, shared by the probes given.
#[derive(Debug, Args)]
pub struct ProbeFlags {
    /// Readiness probe: until it passes the unit is not active and the pod
    /// gets no traffic.
    #[arg(long, value_name = "tcp:PORT|http:PORT[/PATH]|exec:CMD", value_parser = boxed_probe_check)]
    pub readiness: Option<Box<Check>>,

    /// Liveness probe: failing it restarts the container.
    #[arg(long, value_name = "tcp:PORT|http:PORT[/PATH]|exec:CMD", value_parser = boxed_probe_check)]
    pub liveness: Option<Box<Check>>,

    /// Startup probe: readiness and liveness wait until it passed once;
    /// failing it restarts the container.
    #[arg(long, value_name = "tcp:PORT|http:PORT[/PATH]|exec:CMD", value_parser = boxed_probe_check)]
    pub startup: Option<Box<Check>>,

    /// Seconds between two checks of each probe [default: 10].
    #[arg(long = "probe-period", value_name = "SECS")]
    pub probe_period: Option<u32>,

    /// Seconds a check may take [default: 1].
    #[arg(long = "probe-timeout", value_name = "SECS")]
    pub probe_timeout: Option<u32>,

    /// Failures in a row that make a probe fail [default: 3].
    #[arg(long = "probe-failures", value_name = "N")]
    pub probe_failures: Option<u32>,

    /// Seconds after the start before the first check [default: 0].
    #[arg(long = "probe-delay", value_name = "SECS")]
    pub probe_delay: Option<u32>,
}

/// The hardening flags: `--pids-limit`, `--user`, `--read-only`,
/// `--cap-drop`. Every container runs with no-new-privileges and a PID
/// limit whatever they say.
#[derive(Debug, Args)]
pub struct SecurityFlags {
    /// Most processes and threads the container may run at once, e.g.
    /// `--pids-limit 256` [default: 4096].
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u32>,

    /// Run as this user instead of the image's (often root): uid, name,
    /// uid:gid or name:group, e.g. `--user 1000:1000`.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Mount the container's root filesystem read-only; volumes keep their
    /// mode, e.g. `--read-only -v /srv/berth/data:/data`.
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Drop a Linux capability (a name like NET_RAW, or ALL), e.g.
    /// `--cap-drop NET_RAW --cap-drop SYS_CHROOT`. Repeatable. Every container
    /// also runs with no-new-privileges.
    #[arg(long = "cap-drop", value_name = "CAPABILITY")]
    pub cap_drop: Vec<String>,
}

/// The `--restart` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartArg {
    /// Whatever the exit status.
    Always,
    /// Only after a failure: non-zero exit status, signal or timeout.
    OnFailure,
    /// Never.
    #[value(alias = "never")]
    No,
}

impl From<RestartArg> for RestartPolicy {
    fn from(arg: RestartArg) -> Self {
        match arg {
            RestartArg::Always => RestartPolicy::Always,
            RestartArg::OnFailure => RestartPolicy::OnFailure,
            RestartArg::No => RestartPolicy::Never,
        }
    }
}

impl PodFlags {
    /// The pod `name` of one container, also called `name`, that these flags
    /// describe. The same flags always give the same pod, so that running a
    /// command twice is idempotent.
    pub fn pod(&self, name: &str) -> Pod {
        let (volumes, volume_mounts) = volumes_and_mounts(&self.volumes);
        let container = Container {
            name: name.to_owned(),
            image: self.image.clone().unwrap_or_default(),
            command: self.command.clone(),
            args: Vec::new(),
            env: self.env.clone(),
            secret_env: self.secret_env.iter().map(|var| var.0.clone()).collect(),
            ports: self.ports.clone(),
            volume_mounts,
            resources: Resources {
                memory_bytes: self.memory,
                cpu_millis: self.cpus,
                pids_limit: self.security.pids_limit,
            },
            restart: self.restart.into(),
            stop_timeout_secs: self.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS),
            probes: Probes {
                startup: self.probes.startup.as_deref().map(|c| self.probes.probe(c)),
                readiness: self
                    .probes
                    .readiness
                    .as_deref()
                    .map(|c| self.probes.probe(c)),
                liveness: self
                    .probes
                    .liveness
                    .as_deref()
                    .map(|c| self.probes.probe(c)),
            },
            security: Security {
                user: self.security.user.clone(),
                read_only_root_filesystem: self.security.read_only,
                cap_drop: self.security.cap_drop.clone(),
            },
        };
        Pod {
            name: name.to_owned(),
            containers: vec![container],
            volumes,
            build: None,
        }
    }
}

/// Boxed, so that the pod flags stay small beside other commands' flags.
fn boxed_probe_check(text: &str) -> Result<Box<Check>, String> {
    parse::probe_check(text).map(Box::new)
}

impl ProbeFlags {
    /// A probe of `check` with the timing flags.
    fn probe(&self, check: &Check) -> Probe {
        let mut probe = Probe::new(check.clone());
        if let Some(period) = self.probe_period {
            probe.period_secs = period;
        }
        if let Some(timeout) = self.probe_timeout {
            probe.timeout_secs = timeout;
        }
        if let Some(failures) = self.probe_failures {
            probe.failure_threshold = failures;
        }
        if let Some(delay) = self.probe_delay {
            probe.initial_delay_secs = delay;
        }
        probe
    }
}

/// Declares one volume per named volume, per host directory and per
/// network source, in flag order, and mounts them. Host directories and
/// network sources get the first free name of `vol0`, `vol1`, ...
fn volumes_and_mounts(flags: &[VolumeFlag]) -> (Vec<Volume>, Vec<VolumeMount>) {
    let named: HashSet<&str> = flags
        .iter()
        .filter_map(|flag| match &flag.source {
            VolumeSource::Named(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut next_index = 0;
    let mut volumes: Vec<Volume> = Vec::new();
    let mut mounts = Vec::new();
    for flag in flags {
        let wanted = match &flag.source {
            VolumeSource::Named(name) => Volume {
                class: flag.class.clone(),
                ..Volume::named(name.clone())
            },
            VolumeSource::HostPath(path) => Volume::host_path("", path.clone()),
            VolumeSource::Network { kind, server, path } => {
                Volume::on_network("", *kind, server.clone(), path.clone())
            }
            VolumeSource::Defined(name) => Volume::defined("", name.clone()),
        };
        // The same source twice is one volume; a named volume is known by
        // its name (a second class for it is left to validation).
        let existing = volumes.iter().find(|volume| match &flag.source {
            VolumeSource::Named(name) => volume.is_named() && volume.name == *name,
            _ => {
                volume.host_path == wanted.host_path
                    && volume.glusterfs == wanted.glusterfs
                    && volume.nfs == wanted.nfs
                    && volume.network_volume == wanted.network_volume
            }
        });
        let volume = match (existing, &flag.source) {
            (Some(volume), _) => volume.name.clone(),
            (None, VolumeSource::Named(name)) => {
                volumes.push(wanted);
                name.clone()
            }
            // A defined volume is called by its own name in the pod,
            // unless a named volume of the pod already is.
            (None, VolumeSource::Defined(name)) if !named.contains(name.as_str()) => {
                volumes.push(Volume {
                    name: name.clone(),
                    ..wanted
                });
                name.clone()
            }
            (None, _) => {
                let name = loop {
                    let candidate = format!("vol{next_index}");
                    next_index += 1;
                    if !named.contains(candidate.as_str()) {
                        break candidate;
                    }
                };
                volumes.push(Volume {
                    name: name.clone(),
                    ..wanted
                });
                name
            }
        };
        mounts.push(VolumeMount {
            volume,
            path: flag.path.clone(),
            read_only: flag.read_only,
        });
    }
    (volumes, mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_declared_once_and_host_paths_avoid_taken_names() {
        let flags: Vec<VolumeFlag> = ["vol0:/a", "/srv:/b", "/srv:/c:ro", "vol0:/d"]
            .iter()
            .map(|text| parse::volume(text).unwrap())
            .collect();
        let (volumes, mounts) = volumes_and_mounts(&flags);
        assert_eq!(
            volumes,
            [Volume::named("vol0"), Volume::host_path("vol1", "/srv")]
        );
        let used: Vec<&str> = mounts.iter().map(|m| m.volume.as_str()).collect();
        assert_eq!(used, ["vol0", "vol1", "vol1", "vol0"]);
    }
}
