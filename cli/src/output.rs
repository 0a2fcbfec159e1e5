//! What the commands print: aligned tables for people, JSON for scripts.

use std::fmt::Write as _;

use berth_model::{ContainerStatus, HostPort, PodPhase, PodStatus};
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
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

#[cfg(test)]
mod tests {
    use berth_model::{Container, Pod, Protocol};

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
                    })
                    .collect(),
                volumes: Vec::new(),
            },
            containers,
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
}
