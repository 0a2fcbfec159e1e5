//! What the commands print: aligned tables and summaries for people, JSON
//! and YAML for scripts.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use berth_model::api::{MasterView, NodeView, Versioned};
use berth_model::{
    ClusterPod, Container, ContainerStatus, Event, HostPort, NodeCondition, PodPhase, PodStatus,
    Service,
};
use clap::ValueEnum;
use serde::Serialize;

/// How many characters of a Docker container ID are shown, as `docker ps` does.
pub const SHORT_ID_LEN: usize = 12;

/// Columns of `berth local ps`.
const PS_HEADERS: [&str; 8] = [
    "NAME",
    "PHASE",
    "CONTAINER",
    "UNIT",
    "STATE",
    "ID",
    "PORTS",
    "REASON",
];

/// Shown in a cell that has no value.
const NONE: &str = "-";

/// The `berth local ps` table: one row per container, the pod's name and
/// phase repeated on each so that every row stands alone under `grep`.
pub fn pods_table(pods: &[PodStatus]) -> String {
    let mut rows = Vec::new();
    for pod in pods {
        let phase = phase_name(pod.phase);
        if pod.containers.is_empty() {
            let mut row = vec![pod.name.clone(), phase.to_owned()];
            row.resize(PS_HEADERS.len(), NONE.to_owned());
            rows.push(row);
        }
        for container in &pod.containers {
            rows.push(vec![
                pod.name.clone(),
                phase.to_owned(),
                container.name.clone(),
                container.unit.clone(),
                unit_state(container),
                short_id(container.container_id.as_deref()).to_owned(),
                or_none(host_ports(&container.host_ports)),
                or_none(container.reason.clone().unwrap_or_default()),
            ]);
        }
    }
    table(&PS_HEADERS, &rows)
}

/// A short report of a pod just created: name, phase and, per container,
/// its unit, short container ID and host ports.
pub fn pod_summary(pod: &PodStatus, created: bool) -> String {
    let mut out = String::new();
    let verb = if created { "created" } else { "unchanged" };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "pod {}: {verb}", pod.name);
    let _ = writeln!(out, "phase: {}", phase_name(pod.phase));
    for container in &pod.containers {
        if pod.containers.len() > 1 {
            let _ = writeln!(out, "container {}:", container.name);
        }
        let _ = writeln!(out, "unit: {}", container.unit);
        let _ = writeln!(
            out,
            "container id: {}",
            short_id(container.container_id.as_deref())
        );
        let _ = writeln!(out, "ports: {}", or_none(host_ports(&container.host_ports)));
    }
    out
}

/// Pretty JSON followed by a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// The phase as the API spells it (`Running`).
pub fn phase_name(phase: PodPhase) -> &'static str {
    match phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Stopped => "Stopped",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
        PodPhase::Restarting => "Restarting",
    }
}

/// The first 12 characters of a container ID, or `-` when there is none.
fn short_id(id: Option<&str>) -> &str {
    match id {
        Some(id) if !id.is_empty() => id
            .char_indices()
            .nth(SHORT_ID_LEN)
            .map_or(id, |(end, _)| &id[..end]),
        _ => NONE,
    }
}

/// `active/running`, systemd's ActiveState and SubState.
fn unit_state(container: &ContainerStatus) -> String {
    match (container.state.as_str(), container.sub_state.as_str()) {
        ("", "") => NONE.to_owned(),
        (state, "") => state.to_owned(),
        (state, sub_state) => format!("{state}/{sub_state}"),
    }
}

/// `31001->8080/tcp,31002->53/udp`.
fn host_ports(ports: &[HostPort]) -> String {
    let shown: Vec<String> = ports
        .iter()
        .map(|port| {
            format!(
                "{}->{}/{}",
                port.host_port, port.container_port, port.protocol
            )
        })
        .collect();
    shown.join(",")
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        NONE.to_owned()
    } else {
        text
    }
}

/// Left-aligned columns separated by three spaces, without trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            // Pads by characters, not bytes, so non-ASCII names stay aligned.
            let _ = write!(line, "{cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `-o` values of the cluster commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns or a summary, for people.
    Table,
    /// Aligned columns, more of them where a listing has more to show
    /// (`berth ps`: restarts and images).
    Wide,
    /// The master's objects as JSON, secret values blanked.
    Json,
    /// The same as YAML.
    Yaml,
}

/// `value` as JSON or YAML; `None` for [`Format::Table`] and
/// [`Format::Wide`], which every command renders its own way.
pub fn structured<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> anyhow::Result<Option<String>> {
    match format {
        Format::Table | Format::Wide => Ok(None),
        Format::Json => Ok(Some(
            json(value).context("cannot encode the answer as JSON")?,
        )),
        Format::Yaml => Ok(Some(
            yaml(value).context("cannot encode the answer as YAML")?,
        )),
    }
}

/// YAML, ending in a newline.
pub fn yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(value)
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Columns of `berth node ls`.
const NODE_HEADERS: [&str; 7] = [
    "NAME",
    "STATUS",
    "ADDRESS",
    "CPUS",
    "MEMORY",
    "PODS",
    "HEARTBEAT",
];

/// The `berth node ls` table: one row per node.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|view| {
            vec![
                view.node.name.clone(),
                node_status(view),
                or_none(view.node.address.clone()),
                cpus(view.node.capacity.cpu_millis),
                bytes(view.node.capacity.memory_bytes),
                view.pods.to_string(),
                heartbeat(view.last_heartbeat_ms_ago),
            ]
        })
        .collect();
    table(&NODE_HEADERS, &rows)
}

const MASTER_HEADERS: [&str; 4] = ["NAME", "URL", "HEALTHY", "LEADER"];

/// `berth master ls`: one master a row, the leader marked.
pub fn masters_table(masters: &[MasterView]) -> String {
    let rows: Vec<Vec<String>> = masters
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.url.clone(),
                if m.healthy { "yes" } else { "no" }.into(),
                if m.leader { "*" } else { "" }.into(),
            ]
        })
        .collect();
    table(&MASTER_HEADERS, &rows)
}

/// `berth node show`: one node, a line per property.
pub fn node_details(view: &NodeView) -> String {
    let node = &view.node;
    let labels: Vec<String> = node
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "node: {}", node.name);
    let _ = writeln!(out, "status: {}", node_status(view));
    let _ = writeln!(out, "address: {}", or_none(node.address.clone()));
    let _ = writeln!(out, "cpus: {}", cpus(node.capacity.cpu_millis));
    let _ = writeln!(out, "memory: {}", bytes(node.capacity.memory_bytes));
    let _ = writeln!(out, "pods: {}", view.pods);
    let _ = writeln!(
        out,
        "last heartbeat: {}",
        heartbeat(view.last_heartbeat_ms_ago)
    );
    if let Some(error) = &view.engine_error {
        let _ = writeln!(out, "container engine: not answering ({error})");
    }
    let _ = writeln!(out, "labels: {}", or_none(labels.join(", ")));
    out
}

/// `Ready`, `NotReady`, with `,Cordoned` when no new pods go there.
fn node_status(view: &NodeView) -> String {
    let condition = match view.condition {
        NodeCondition::Ready => "Ready",
        NodeCondition::NotReady => "NotReady",
        NodeCondition::EngineUnavailable => "EngineUnavailable",
    };
    if view.node.unschedulable {
        format!("{condition},Cordoned")
    } else {
        condition.to_owned()
    }
}

/// `3s ago`, `5m ago`, ... or `never`.
fn heartbeat(ms_ago: Option<u64>) -> String {
    let Some(ms) = ms_ago else {
        return "never".to_owned();
    };
    let secs = ms / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// Thousandths of a CPU as CPUs: `0.5`, `2`, `0.25`.
pub fn cpus(millis: u64) -> String {
    let (whole, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        whole.to_string()
    } else {
        let fraction = format!("{fraction:03}");
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
}

/// Bytes in the units `--memory` takes: `64M` when exact, `1.5G` otherwise.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        let size = 1u64 << shift;
        if bytes >= size {
            // `size` is a power of two: the low bits are the remainder.
            if bytes & (size - 1) == 0 {
                return format!("{}{unit}", bytes >> shift);
            }
            return format!("{:.1}{unit}", bytes as f64 / size as f64);
        }
    }
    bytes.to_string()
}

/// Columns of `berth ps`.
const CLUSTER_PS_HEADERS: [&str; 6] = ["NAME", "SERVICE", "NODE", "PHASE", "READY", "HOST PORTS"];

/// Columns `berth ps -o wide` adds.
const CLUSTER_PS_WIDE_HEADERS: [&str; 2] = ["RESTARTS", "IMAGES"];

/// The `berth ps` table: one row per pod.
pub fn cluster_pods_table(pods: &[Versioned<ClusterPod>]) -> String {
    cluster_pods_columns(pods, false)
}

/// The `berth ps -o wide` table: also restarts and images.
pub fn cluster_pods_wide_table(pods: &[Versioned<ClusterPod>]) -> String {
    cluster_pods_columns(pods, true)
}

fn cluster_pods_columns(pods: &[Versioned<ClusterPod>], wide: bool) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|pod| {
            let pod = &pod.object;
            let ports: Vec<HostPort> = pod
                .status
                .iter()
                .flat_map(|status| &status.containers)
                .flat_map(|container| container.host_ports.iter().cloned())
                .collect();
            let mut row = vec![
                pod.spec.name.clone(),
                or_none(pod.service.clone().unwrap_or_default()),
                or_none(pod.node.clone().unwrap_or_default()),
                cluster_phase(pod),
                ready_count(pod),
                or_none(host_ports(&ports)),
            ];
            if wide {
                let restarts: u32 = pod
                    .status
                    .iter()
                    .flat_map(|status| &status.containers)
                    .map(|c| c.restarts)
                    .sum();
                let images: Vec<&str> = pod
                    .spec
                    .containers
                    .iter()
                    .map(|c| c.image.as_str())
                    .collect();
                row.push(restarts.to_string());
                row.push(images.join(","));
            }
            row
        })
        .collect();
    if wide {
        let headers: Vec<&str> = CLUSTER_PS_HEADERS
            .iter()
            .chain(&CLUSTER_PS_WIDE_HEADERS)
            .copied()
            .collect();
        table(&headers, &rows)
    } else {
        table(&CLUSTER_PS_HEADERS, &rows)
    }
}

/// Containers ready (running, readiness probe passing) out of all, as its
/// node last reported: `1/2`; `-` before the first report.
fn ready_count(pod: &ClusterPod) -> String {
    match &pod.status {
        Some(status) => format!(
            "{}/{}",
            status.containers.iter().filter(|c| c.ready).count(),
            status.containers.len()
        ),
        None => NONE.to_owned(),
    }
}

/// Where a pod of the cluster stands: `Waiting` while a `--wait-ready`
/// link holds it back, `Unschedulable` (with the reason) while no node
/// fits it, the phase its node last reported, or `Pending`
/// until the node reports.
pub fn cluster_phase(pod: &ClusterPod) -> String {
    match (&pod.node, &pod.status) {
        (None, _) if pod.waiting_for.is_some() => {
            format!(
                "Waiting: {}",
                pod.waiting_for.as_deref().unwrap_or_default()
            )
        }
        (None, _) => match &pod.unschedulable_reason {
            Some(reason) if !reason.is_empty() => format!("Unschedulable: {reason}"),
            _ => "Unschedulable".to_owned(),
        },
        (Some(_), Some(status)) => {
            let phase = phase_name(status.phase);
            // A pod that does not run says why, as its node reported it.
            let reason = status
                .containers
                .iter()
                .filter(|_| status.phase != PodPhase::Running)
                .find_map(|c| c.reason.as_deref().filter(|r| !r.is_empty()));
            match reason {
                Some(reason) => format!("{phase}: {reason}"),
                None => phase.to_owned(),
            }
        }
        (Some(_), None) => phase_name(PodPhase::Pending).to_owned(),
    }
}

/// `berth describe`: the service, its pod template, then its pods.
pub fn service_details(service: &Versioned<Service>, pods: &[Versioned<ClusterPod>]) -> String {
    let spec = &service.object;
    let selector: Vec<String> = spec
        .node_selector
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "service: {}", spec.name);
    let _ = writeln!(out, "replicas: {}", spec.replicas);
    let _ = writeln!(
        out,
        "stateful: {}",
        if spec.stateful { "yes" } else { "no" }
    );
    let _ = writeln!(out, "node selector: {}", or_none(selector.join(", ")));
    let _ = writeln!(out, "resource version: {}", service.resource_version);
    if !spec.generated_env.is_empty() {
        // Names and expressions only: the values were shown once.
        let generated: Vec<String> = spec
            .generated_env
            .iter()
            .map(|var| format!("{} (from {})", var.name, var.from))
            .collect();
        let _ = writeln!(out, "generated env: {}", generated.join(", "));
    }
    for container in &spec.template.containers {
        let _ = writeln!(out, "container {}:", container.name);
        container_details(&mut out, container, &spec.template.volumes);
    }
    let _ = writeln!(out, "pods: {}", pods.len());
    if !pods.is_empty() {
        out.push('\n');
        out.push_str(&cluster_pods_table(pods));
    }
    let health: Vec<String> = pods
        .iter()
        .filter_map(|pod| Some((&pod.object.spec.name, pod.object.status.as_ref()?)))
        .flat_map(|(name, status)| {
            status.containers.iter().filter_map(move |c| {
                let health = c.health.as_deref()?;
                Some(format!("  {name}/{}: {health}", c.name))
            })
        })
        .collect();
    if !health.is_empty() {
        out.push_str("\nhealth:\n");
        for line in health {
            let _ = writeln!(out, "{line}");
        }
    }
    let failures: Vec<String> = pods
        .iter()
        .filter_map(|pod| {
            let failure = pod.object.status.as_ref()?.start_failure.as_ref()?;
            Some(format!(
                "  {}: {}: {}\n    attempt {}, next try at {} UTC",
                pod.object.spec.name,
                failure.reason,
                failure.message,
                failure.attempts,
                utc_time_of_ms(failure.next_attempt_ms),
            ))
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nstart failures:\n");
        for line in failures {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// A container's probes in a few words: `readiness http GET :8080/ every
/// 10s, 3 failures`.
fn probes_summary(probes: &berth_model::Probes) -> String {
    let described: Vec<String> = probes
        .iter()
        .map(|(name, probe)| {
            let check = match probe.check() {
                Some(berth_model::Check::Tcp(tcp)) => format!("tcp :{}", tcp.port),
                Some(berth_model::Check::Http(http)) => {
                    format!("http GET :{}{}", http.port, http.path)
                }
                Some(berth_model::Check::Exec(exec)) => format!("exec {}", exec.command.join(" ")),
                None => "?".to_owned(),
            };
            format!(
                "{name} {check} every {}s, {} failures",
                probe.period_secs, probe.failure_threshold
            )
        })
        .collect();
    or_none(described.join("; "))
}

/// `berth describe pod`: where the pod is, how each container stands and
/// why, then its spec.
pub fn pod_details(pod: &Versioned<ClusterPod>) -> String {
    let object = &pod.object;
    let mut out = String::new();
    let _ = writeln!(out, "pod: {}", object.spec.name);
    let _ = writeln!(
        out,
        "service: {}",
        or_none(object.service.clone().unwrap_or_default())
    );
    let _ = writeln!(
        out,
        "node: {}",
        or_none(object.node.clone().unwrap_or_default())
    );
    let _ = writeln!(out, "phase: {}", cluster_phase(object));
    let _ = writeln!(out, "resource version: {}", pod.resource_version);
    if let Some(moving) = &object.moving {
        let _ = writeln!(
            out,
            "moving: {} -> {} ({}), {:.1} MB copied at {:.1} MB/s, attempt {}{}",
            moving.from,
            moving.to,
            moving.phase,
            moving.bytes_copied as f64 / 1e6,
            moving.rate_bytes_per_sec as f64 / 1e6,
            moving.attempts.max(1),
            if moving.keep_source {
                ", keeping the source's copy"
            } else {
                ""
            }
        );
        if let Some(checksum) = &moving.checksum {
            let _ = writeln!(out, "  verified: {checksum}");
        }
        if let Some(error) = &moving.last_error {
            let _ = writeln!(out, "  last error: {error}");
        }
    }
    if !object.start_failed_on.is_empty() {
        let nodes: Vec<String> = object
            .start_failed_on
            .iter()
            .map(|(node, until)| format!("{node} (until {} UTC)", utc_time_of_ms(*until)))
            .collect();
        let _ = writeln!(out, "left out after failing to start: {}", nodes.join(", "));
    }
    if let Some(status) = &object.status {
        if let Some(failure) = &status.start_failure {
            let _ = writeln!(
                out,
                "start failure: {}: {}\n  attempt {}, next try at {} UTC",
                failure.reason,
                failure.message,
                failure.attempts,
                utc_time_of_ms(failure.next_attempt_ms)
            );
        }
        for c in &status.containers {
            let _ = writeln!(out, "container {}:", c.name);
            let _ = writeln!(out, "  unit: {} ({}/{})", c.unit, c.state, c.sub_state);
            let _ = writeln!(
                out,
                "  id: {}",
                or_none(c.container_id.clone().unwrap_or_default())
            );
            if let Some(pid) = c.pid {
                let _ = writeln!(out, "  pid: {pid}");
            }
            if let Some(code) = c.exit_code {
                let _ = writeln!(out, "  exit code: {code}");
            }
            if let Some(reason) = &c.reason {
                let _ = writeln!(out, "  reason: {reason}");
            }
            let _ = writeln!(out, "  restarts: {}", c.restarts);
            let _ = writeln!(out, "  ready: {}", if c.ready { "yes" } else { "no" });
            if let Some(health) = &c.health {
                let _ = writeln!(out, "  health: {health}");
            }
            let _ = writeln!(out, "  host ports: {}", or_none(host_ports(&c.host_ports)));
        }
    }
    out.push_str("\nspec:\n");
    for container in &object.spec.containers {
        let _ = writeln!(out, "container {}:", container.name);
        container_details(&mut out, container, &object.spec.volumes);
    }
    out
}

/// A container's spec, indented under its name. Secret values are never
/// shown, only their names.
fn container_details(out: &mut String, container: &Container, volumes: &[berth_model::Volume]) {
    let words = |list: &[String]| or_none(list.join(" "));
    let ports: Vec<String> = container
        .ports
        .iter()
        .map(|port| match port.host_port {
            None => format!("{}/{}", port.container_port, port.protocol),
            Some(0) => format!("any->{}/{}", port.container_port, port.protocol),
            Some(host) => format!("{host}->{}/{}", port.container_port, port.protocol),
        })
        .collect();
    let env: Vec<String> = container
        .env
        .iter()
        .map(|var| format!("{}={}", var.name, var.value))
        .collect();
    let secret_env: Vec<String> = container
        .secret_env
        .iter()
        .map(|var| var.name.clone())
        .collect();
    let mounts: Vec<String> = container
        .volume_mounts
        .iter()
        .map(|mount| {
            // As `-v` spells it: a host path, a network URL, or the
            // volume's name (with its class).
            let volume = volumes.iter().find(|volume| volume.name == mount.volume);
            let source = match volume {
                Some(v) if v.host_path.is_some() => v.host_path.clone().unwrap_or_default(),
                Some(v) => match v.network() {
                    Some((kind, net)) => format!("{kind}://{}{}", net.server, net.path),
                    None => mount.volume.clone(),
                },
                None => mount.volume.clone(),
            };
            let class = volume
                .and_then(|v| v.class.as_deref())
                .map(|class| format!(" (class {class})"))
                .unwrap_or_default();
            let mode = if mount.read_only { ":ro" } else { "" };
            let mode = format!("{mode}{class}");
            format!("{source}:{}{mode}", mount.path)
        })
        .collect();
    let resources = &container.resources;
    let _ = writeln!(out, "  image: {}", container.image);
    let _ = writeln!(out, "  command: {}", words(&container.command));
    if !container.args.is_empty() {
        let _ = writeln!(out, "  args: {}", words(&container.args));
    }
    let _ = writeln!(out, "  ports: {}", or_none(ports.join(", ")));
    let _ = writeln!(out, "  env: {}", or_none(env.join(" ")));
    let _ = writeln!(out, "  secret env: {}", or_none(secret_env.join(" ")));
    let _ = writeln!(out, "  volumes: {}", or_none(mounts.join(", ")));
    let memory = match resources.memory_bytes {
        Some(limit) => format!(
            "{} (the container's limit; its unit's MemoryMax= is {}, with {} for berth-shim)",
            bytes(limit),
            bytes(limit.saturating_add(berth_model::limits::SHIM_MEMORY_HEADROOM)),
            bytes(berth_model::limits::SHIM_MEMORY_HEADROOM),
        ),
        None => NONE.to_owned(),
    };
    let _ = writeln!(out, "  memory: {memory}");
    let _ = writeln!(
        out,
        "  cpus: {}",
        resources
            .cpu_millis
            .map_or(NONE.to_owned(), |millis| cpus(u64::from(millis)))
    );
    let _ = writeln!(out, "  restart: {}", container.restart);
    let _ = writeln!(out, "  probes: {}", probes_summary(&container.probes));
    let _ = writeln!(out, "  security: {}", security_summary(container));
}

/// The security settings a container runs with, berth's defaults included:
/// `no-new-privileges, pids-limit 4096, user image default, root filesystem
/// read-write, cap-drop -`.
pub fn security_summary(container: &Container) -> String {
    let security = &container.security;
    format!(
        "no-new-privileges, pids-limit {}, user {}, root filesystem {}, cap-drop {}",
        container.resources.effective_pids_limit(),
        security.user.as_deref().unwrap_or("image default"),
        if security.read_only_root_filesystem {
            "read-only"
        } else {
            "read-write"
        },
        or_none(security.cap_drop.join(","))
    )
}

/// Columns of `berth events`.
const EVENT_HEADERS: [&str; 5] = ["TIME (UTC)", "TYPE", "OBJECT", "NODE", "REASON"];

/// Widths of the columns of `berth events -w` but the last: rows are
/// printed as events arrive, so the widths cannot come from the rows. They
/// fit the time, the longest kind, and most object and node names.
const EVENT_WATCH_WIDTHS: [usize; 4] = [19, 18, 24, 12];

fn event_cells(event: &Event) -> Vec<String> {
    vec![
        utc_time_of_ms(event.time_ms),
        event.kind.to_string(),
        event.object.clone(),
        or_none(event.node.clone().unwrap_or_default()),
        or_none(event.reason.clone()),
    ]
}

/// The `berth events` table: one row per event, in the order given.
pub fn events_table(events: &[Event]) -> String {
    let rows: Vec<Vec<String>> = events.iter().map(event_cells).collect();
    table(&EVENT_HEADERS, &rows)
}

/// The header of `berth events -w`, aligned with [`event_line`].
pub fn events_header() -> String {
    let cells: Vec<String> = EVENT_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    fixed_row(&cells)
}

/// One event as a row of `berth events -w`.
pub fn event_line(event: &Event) -> String {
    fixed_row(&event_cells(event))
}

/// A row with the widths of [`EVENT_WATCH_WIDTHS`]; a longer cell pushes
/// the rest of its row right rather than being cut.
fn fixed_row(cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str("   ");
        }
        let width = EVENT_WATCH_WIDTHS.get(i).copied().unwrap_or(0);
        let _ = write!(line, "{cell:<width$}");
    }
    let mut line = line.trim_end().to_owned();
    line.push('\n');
    line
}

/// Unix milliseconds as a UTC date and time to the second,
/// `2026-05-01 12:05:07`.
pub fn utc_time_of_ms(unix_ms: u64) -> String {
    let unix_secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days(unix_secs / 86_400);
    let secs_of_day = unix_secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Unix seconds as a UTC date and time, `2026-05-01 12:00 UTC`.
pub fn utc_time(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_model::{Capacity, Container, EventKind, Node, Pod, Protocol};

    use super::*;

    fn container_status(name: &str, id: Option<&str>, ports: Vec<HostPort>) -> ContainerStatus {
        ContainerStatus {
            name: name.to_owned(),
            unit: format!("berth-web-{name}.service"),
            container_id: id.map(str::to_owned),
            state: "active".to_owned(),
            sub_state: "running".to_owned(),
            pid: Some(4242),
            exit_code: None,
            reason: None,
            restarts: 0,
            host_ports: ports,
            health: None,
            ready: true,
        }
    }

    fn pod_status(name: &str, phase: PodPhase, containers: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            name: name.to_owned(),
            phase,
            slice: format!("berth-{name}.slice"),
            spec: Pod {
                name: name.to_owned(),
                containers: containers
                    .iter()
                    .map(|c| Container {
                        name: c.name.clone(),
                        image: "local/busybox".to_owned(),
                        command: Vec::new(),
                        args: Vec::new(),
                        env: Vec::new(),
                        secret_env: Vec::new(),
                        ports: Vec::new(),
                        volume_mounts: Vec::new(),
                        resources: Default::default(),
                        restart: Default::default(),
                        stop_timeout_secs: 10,
                        probes: Default::default(),
                        security: Default::default(),
                    })
                    .collect(),
                volumes: Vec::new(),
                build: None,
            },
            containers,
            start_failure: None,
            volumes: Vec::new(),
        }
    }

    #[test]
    fn ps_table_has_one_aligned_row_per_container() {
        let web = pod_status(
            "web",
            PodPhase::Running,
            vec![
                container_status(
                    "web",
                    Some("0123456789abcdef0123"),
                    vec![
                        HostPort {
                            container_port: 8080,
                            protocol: Protocol::Tcp,
                            host_port: 31001,
                        },
                        HostPort {
                            container_port: 53,
                            protocol: Protocol::Udp,
                            host_port: 31002,
                        },
                    ],
                ),
                ContainerStatus {
                    state: "activating".to_owned(),
                    sub_state: "auto-restart".to_owned(),
                    reason: Some("OOMKilled".to_owned()),
                    ..container_status("sidecar", None, Vec::new())
                },
            ],
        );
        let table = pods_table(&[web]);
        let expected = "\
NAME   PHASE     CONTAINER   UNIT                        STATE                     ID             PORTS                           REASON
web    Running   web         berth-web-web.service       active/running            0123456789ab   31001->8080/tcp,31002->53/udp   -
web    Running   sidecar     berth-web-sidecar.service   activating/auto-restart   -              -                               OOMKilled
";
        assert_eq!(table, expected);
    }

    #[test]
    fn ps_table_of_nothing_is_the_header() {
        assert_eq!(
            pods_table(&[]),
            "NAME   PHASE   CONTAINER   UNIT   STATE   ID   PORTS   REASON\n"
        );
    }

    #[test]
    fn ps_table_shows_a_pod_without_containers() {
        let table = pods_table(&[pod_status("empty", PodPhase::Pending, Vec::new())]);
        assert_eq!(
            table.lines().nth(1),
            Some("empty   Pending   -           -      -       -    -       -")
        );
    }

    #[test]
    fn short_ids_are_twelve_characters() {
        assert_eq!(short_id(Some("0123456789abcdef")), "0123456789ab");
        assert_eq!(short_id(Some("abc")), "abc");
        assert_eq!(short_id(Some("")), "-");
        assert_eq!(short_id(None), "-");
    }

    #[test]
    fn summary_names_unit_id_and_ports() {
        let status = pod_status(
            "web",
            PodPhase::Pending,
            vec![container_status(
                "web",
                Some("0123456789abcdef"),
                vec![HostPort {
                    container_port: 8080,
                    protocol: Protocol::Tcp,
                    host_port: 31001,
                }],
            )],
        );
        assert_eq!(
            pod_summary(&status, true),
            "pod web: created\nphase: Pending\nunit: berth-web-web.service\n\
             container id: 0123456789ab\nports: 31001->8080/tcp\n"
        );
        assert!(pod_summary(&status, false).starts_with("pod web: unchanged\n"));
    }

    #[test]
    fn json_is_pretty_with_a_final_newline() {
        let text = json(&[1, 2]).unwrap();
        assert_eq!(text, "[\n  1,\n  2\n]\n");
    }

    fn node_view(name: &str, condition: NodeCondition, cordoned: bool) -> NodeView {
        NodeView {
            node: Node {
                name: name.to_owned(),
                address: "10.0.0.1".to_owned(),
                labels: BTreeMap::from([
                    ("disk".to_owned(), "ssd".to_owned()),
                    ("zone".to_owned(), "a".to_owned()),
                ]),
                capacity: Capacity {
                    memory_bytes: 4 << 30,
                    cpu_millis: 2000,
                },
                unschedulable: cordoned,
                unit_settings: None,
                volume_classes: Default::default(),
            },
            condition,
            engine_error: None,
            last_heartbeat_ms_ago: Some(2_500),
            pods: 3,
        }
    }

    fn cluster_pod(
        name: &str,
        node: Option<&str>,
        status: Option<PodStatus>,
        reason: Option<&str>,
    ) -> Versioned<ClusterPod> {
        Versioned {
            resource_version: 7,
            object: ClusterPod {
                service: Some("web".to_owned()),
                node: node.map(str::to_owned),
                unschedulable_reason: reason.map(str::to_owned),
                status,
                ..ClusterPod::unplaced(pod_status(name, PodPhase::Pending, Vec::new()).spec)
            },
        }
    }

    fn running_web_0() -> Versioned<ClusterPod> {
        let status = pod_status(
            "web-0",
            PodPhase::Running,
            vec![container_status(
                "web",
                Some("0123456789abcdef"),
                vec![HostPort {
                    container_port: 8080,
                    protocol: Protocol::Tcp,
                    host_port: 31001,
                }],
            )],
        );
        cluster_pod("web-0", Some("node-a"), Some(status), None)
    }

    #[test]
    fn nodes_table_shows_condition_cordon_capacity_and_heartbeat() {
        let mut quiet = node_view("node-b", NodeCondition::NotReady, true);
        quiet.last_heartbeat_ms_ago = None;
        quiet.node.address = String::new();
        quiet.node.capacity = Capacity {
            memory_bytes: 1536 << 20,
            cpu_millis: 500,
        };
        let table = nodes_table(&[node_view("node-a", NodeCondition::Ready, false), quiet]);
        let expected = "\
NAME     STATUS              ADDRESS    CPUS   MEMORY   PODS   HEARTBEAT
node-a   Ready               10.0.0.1   2      4G       3      2s ago
node-b   NotReady,Cordoned   -          0.5    1.5G     3      never
";
        assert_eq!(table, expected);
    }

    #[test]
    fn masters_table_marks_the_leader_and_the_unhealthy() {
        let master = |name: &str, healthy, leader| MasterView {
            name: name.into(),
            url: format!("https://{name}:7443"),
            healthy,
            leader,
        };
        let table = masters_table(&[
            master("h1", false, false),
            master("h2", true, true),
            master("h3", true, false),
        ]);
        let expected = "\
NAME   URL               HEALTHY   LEADER
h1     https://h1:7443   no
h2     https://h2:7443   yes       *
h3     https://h3:7443   yes
";
        assert_eq!(table, expected);
    }

    #[test]
    fn node_details_list_every_property() {
        let details = node_details(&node_view("node-a", NodeCondition::Ready, true));
        assert_eq!(
            details,
            "node: node-a\nstatus: Ready,Cordoned\naddress: 10.0.0.1\ncpus: 2\nmemory: 4G\n\
             pods: 3\nlast heartbeat: 2s ago\nlabels: disk=ssd, zone=a\n"
        );
    }

    #[test]
    fn cluster_ps_shows_phase_unschedulable_reason_or_pending() {
        let pods = [
            running_web_0(),
            cluster_pod(
                "web-1",
                None,
                None,
                Some("0/2 nodes fit: 2 insufficient memory"),
            ),
            cluster_pod("web-2", Some("node-b"), None, None),
            Versioned {
                resource_version: 1,
                object: ClusterPod {
                    service: None,
                    ..cluster_pod("solo", None, None, None).object
                },
            },
        ];
        let expected = "\
NAME    SERVICE   NODE     PHASE                                                 READY   HOST PORTS
web-0   web       node-a   Running                                               1/1     31001->8080/tcp
web-1   web       -        Unschedulable: 0/2 nodes fit: 2 insufficient memory   -       -
web-2   web       node-b   Pending                                               -       -
solo    -         -        Unschedulable                                         -       -
";
        assert_eq!(cluster_pods_table(&pods), expected);
    }

    #[test]
    fn service_details_show_the_template_and_the_pods() {
        let template: Pod = serde_json::from_value(serde_json::json!({
            "name": "web",
            "containers": [{
                "name": "web",
                "image": "local/busybox",
                "command": ["httpd", "-f"],
                "env": [{"name": "MODE", "value": "prod"}],
                "secretEnv": [{"name": "PW", "value": ""}],
                "ports": [
                    {"containerPort": 8080, "hostPort": 0},
                    {"containerPort": 53, "protocol": "udp", "hostPort": 5353},
                    {"containerPort": 9090}
                ],
                "volumeMounts": [
                    {"volume": "vol0", "path": "/data", "readOnly": true},
                    {"volume": "cache", "path": "/cache"}
                ],
                "resources": {"memoryBytes": 67108864, "cpuMillis": 250}
            }],
            "volumes": [{"name": "vol0", "hostPath": "/srv/data"}, {"name": "cache"}]
        }))
        .unwrap();
        let service = Versioned {
            resource_version: 12,
            object: Service {
                name: "web".to_owned(),
                labels: Default::default(),
                replicas: 1,
                stateful: true,
                node_selector: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
                template,
                env: Vec::new(),
                links: Vec::new(),
                egress: Default::default(),
                publish: Vec::new(),
                generated_env: Vec::new(),
                strategy: Default::default(),
                triggers: berth_model::deployment::default_triggers(),
            },
        };
        let expected = "\
service: web
replicas: 1
stateful: yes
node selector: zone=a
resource version: 12
container web:
  image: local/busybox
  command: httpd -f
  ports: any->8080/tcp, 5353->53/udp, 9090/tcp
  env: MODE=prod
  secret env: PW
  volumes: /srv/data:/data:ro, cache:/cache
  memory: 64M (the container's limit; its unit's MemoryMax= is 72M, with 8M for berth-shim)
  cpus: 0.25
  restart: always
  probes: -
  security: no-new-privileges, pids-limit 4096, user image default, root filesystem read-write, cap-drop -
pods: 1

NAME    SERVICE   NODE     PHASE     READY   HOST PORTS
web-0   web       node-a   Running   1/1     31001->8080/tcp
";
        assert_eq!(service_details(&service, &[running_web_0()]), expected);
        let alone = service_details(&service, &[]);
        assert!(alone.ends_with("cap-drop -\npods: 0\n"), "{alone}");
        let mut generated = service.clone();
        generated.object.generated_env = vec![berth_model::template::GeneratedVar {
            name: "TOKEN".into(),
            from: "[a-z]{8}".into(),
            value: "s3cretvalue".into(),
        }];
        let shown = service_details(&generated, &[]);
        assert!(
            shown.contains("resource version: 12\ngenerated env: TOKEN (from [a-z]{8})\n"),
            "{shown}"
        );
        assert!(!shown.contains("s3cretvalue"), "{shown}");
    }

    #[test]
    fn yaml_and_json_are_structured_and_tables_are_not() {
        let value = serde_json::json!({"name": "web", "ports": [8080, 53], "stateful": false});
        assert_eq!(
            structured(Format::Yaml, &value).unwrap().unwrap(),
            "name: web\nports:\n- 8080\n- 53\nstateful: false\n"
        );
        assert_eq!(
            structured(Format::Json, &value).unwrap().unwrap(),
            json(&value).unwrap()
        );
        assert_eq!(structured(Format::Table, &value).unwrap(), None);
    }

    #[test]
    fn yaml_quotes_strings_that_would_read_as_something_else() {
        let value = serde_json::json!({"a": "yes", "b": "123", "c": "", "d": "x: y"});
        let text = yaml(&value).unwrap();
        let back: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }

    #[test]
    fn sizes_and_cpus_read_like_the_flags() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(64 << 20), "64M");
        assert_eq!(bytes(512 << 10), "512K");
        assert_eq!(bytes((1 << 30) + (1 << 29)), "1.5G");
        assert_eq!(cpus(0), "0");
        assert_eq!(cpus(250), "0.25");
        assert_eq!(cpus(2000), "2");
        assert_eq!(cpus(1005), "1.005");
    }

    #[test]
    fn heartbeats_are_rounded_down() {
        assert_eq!(heartbeat(None), "never");
        assert_eq!(heartbeat(Some(999)), "0s ago");
        assert_eq!(heartbeat(Some(61_000)), "1m ago");
        assert_eq!(heartbeat(Some(7_200_000)), "2h ago");
        assert_eq!(heartbeat(Some(3 * 86_400_000)), "3d ago");
    }

    fn event(time_ms: u64, kind: EventKind, object: &str, node: Option<&str>) -> Event {
        Event {
            time_ms,
            kind,
            object: object.to_owned(),
            node: node.map(str::to_owned),
            reason: "because".to_owned(),
        }
    }

    #[test]
    fn events_table_has_time_type_object_node_and_reason() {
        let events = [
            event(
                1_777_637_107_999,
                EventKind::NodeNotReady,
                "node/h3",
                Some("h3"),
            ),
            event(
                1_777_637_108_000,
                EventKind::ServiceScaled,
                "service/web",
                None,
            ),
        ];
        let expected = "\
TIME (UTC)            TYPE            OBJECT        NODE   REASON
2026-05-01 12:05:07   NodeNotReady    node/h3       h3     because
2026-05-01 12:05:08   ServiceScaled   service/web   -      because
";
        assert_eq!(events_table(&events), expected);
    }

    #[test]
    fn watched_events_line_up_under_their_header() {
        let header = events_header();
        let line = event_line(&event(0, EventKind::PodUnschedulable, "pod/web-1", None));
        assert_eq!(
            header,
            "TIME (UTC)            TYPE                 OBJECT                     NODE           REASON\n"
        );
        assert_eq!(
            line,
            "1970-01-01 00:00:00   PodUnschedulable     pod/web-1                  -              because\n"
        );
        assert_eq!(header.find("REASON"), line.find("because"));
    }

    #[test]
    fn utc_times_are_calendar_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_time(1_777_637_100), "2026-05-01 12:05 UTC");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59 UTC");
    }
}
