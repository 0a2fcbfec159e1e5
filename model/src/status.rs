//! What the agent reports about a pod: its phase, and per container the
//! systemd unit, the Docker container, its state and its host ports. The
//! local API and (later) the master share these types.

use serde::{Deserialize, Serialize};

use crate::pod::{Pod, Protocol};

/// Where a pod stands, summed up from its containers' units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum PodPhase {
    /// Accepted; containers being created or started.
    Pending,
    /// Every container's unit is active.
    Running,
    /// Stopped on request (`berth local stop`).
    Stopped,
    /// Every container exited with status 0 and will not restart.
    Succeeded,
    /// A container failed and will not be restarted by systemd.
    Failed,
    /// A container failed and systemd is restarting it.
    Restarting,
}

/// One container as systemd and Docker see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name in the pod.
    pub name: String,
    /// Its systemd unit (`berth-web-app.service`).
    pub unit: String,
    /// Docker's container ID, when the container exists.
    pub container_id: Option<String>,
    /// The unit's `ActiveState` (`active`, `failed`, `inactive`, ...).
    pub state: String,
    /// The unit's `SubState` (`running`, `auto-restart`, `dead`, ...).
    pub sub_state: String,
    /// PID of the container's main process on the host, while it runs.
    pub pid: Option<u32>,
    /// Exit code of the last run, once it ended.
    pub exit_code: Option<i64>,
    /// Why the container last ended, in words (`OOMKilled`, `Error`, ...).
    pub reason: Option<String>,
    /// How often systemd restarted the unit (`NRestarts`).
    pub restarts: u32,
    /// Ports published on the host.
    pub host_ports: Vec<HostPort>,
    /// Whether it may receive traffic: its unit is active and running and
    /// its readiness probe (if any) passes. Absent in older
    /// reports, where running meant ready.
    #[serde(default = "ready_by_default")]
    pub ready: bool,
    /// What the container's probes last said, in words (`ready`, `not
    /// ready: readiness probe http :8080/ failed: ...`), while it runs and
    /// has probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

fn ready_by_default() -> bool {
    true
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPort {
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
    /// The port on the host.
    pub host_port: u16,
}

/// A pod as the agent's API reports it. Secret values are never included:
/// the spec's `secretEnv` entries carry their names with empty values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// The pod's name.
    pub name: String,
    /// Where it stands.
    pub phase: PodPhase,
    /// The pod's slice (`berth-web.slice`).
    pub slice: String,
    /// Per container, in spec order.
    pub containers: Vec<ContainerStatus>,
    /// The spec the pod was created from, secrets redacted.
    pub spec: Pod,
    /// Why the pod could not be started on its node, while the node keeps
    /// trying: nothing of it runs meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_failure: Option<StartFailure>,
    /// How much data each of its named volumes holds on its node, as the
    /// node last measured it (at most every 30 s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeUsage>,
}

/// The data one named volume of a pod holds on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeUsage {
    /// The volume's name in the pod.
    pub name: String,
    /// Bytes of its files.
    pub bytes: u64,
}

/// A pod start that failed on its node, and when the node tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartFailure {
    /// What failed, named as its event is (`ImagePullFailed`,
    /// `HostPortConflict`, `StartFailed`, `PodRefused`).
    pub reason: String,
    /// What the failing part said: the registry's message, Docker's error,
    /// the host's refusal.
    pub message: String,
    /// Attempts so far, the failed ones.
    pub attempts: u32,
    /// When the node tries again (milliseconds since the Unix epoch); each
    /// failure doubles the wait, up to five minutes.
    pub next_attempt_ms: u64,
}

/// The body of every error the agent and master APIs return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// What went wrong, in one lowercase line.
    pub error: String,
    /// The fields at fault, when the request was invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<crate::validation::FieldError>,
}

impl Pod {
    /// A copy with every secret value blanked, safe to return and to log.
    pub fn redacted(&self) -> Pod {
        let mut pod = self.clone();
        for container in &mut pod.containers {
            for var in &mut container.secret_env {
                var.value.clear();
            }
        }
        pod
    }

    /// The pod with each secret value it was sent blank taken from
    /// `stored`'s variable of the same container and name: what
    /// [`Pod::redacted`] blanked comes back unchanged when a user sends a
    /// shown object again (`berth describe -o yaml | berth apply -f -`).
    /// A secret that is truly meant to be empty cannot be told apart, and
    /// keeps its stored value too.
    pub fn with_secrets_from(mut self, stored: &Pod) -> Pod {
        for container in &mut self.containers {
            let Some(old) = stored.containers.iter().find(|c| c.name == container.name) else {
                continue;
            };
            restore_blank_values(&mut container.secret_env, &old.secret_env);
        }
        self
    }
}

/// Fills each blank value of `vars` from the variable of the same name in
/// `stored`.
pub fn restore_blank_values(vars: &mut [crate::pod::EnvVar], stored: &[crate::pod::EnvVar]) {
    for var in vars.iter_mut().filter(|v| v.value.is_empty()) {
        if let Some(old) = stored.iter().find(|o| o.name == var.name) {
            var.value.clone_from(&old.value);
        }
    }
}

impl PodStatus {
    /// The status with its spec's secret values blanked.
    pub fn redacted(mut self) -> PodStatus {
        self.spec = self.spec.redacted();
        self
    }
}
