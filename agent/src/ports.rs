//! Host ports. The allocator has no file of its own: a port is taken exactly
//! when a pod record holds it, so allocation persists with the record and is
//! freed with it. The runtime allocates under its lock, so two pods never get
//! one port.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use berth_model::{Pod, Protocol};

use crate::config::PortRange;
use crate::store::PortBinding;

/// Why a pod's ports cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A fixed host port is held by another pod or process.
    #[error("host port {port}/{protocol} is already in use{}", by.as_ref().map(|p| format!(" by pod {p}")).unwrap_or_default())]
    Taken {
        /// The JSON path of the port, e.g. `containers[0].ports[1].hostPort`.
        field: String,
        /// The port.
        port: u16,
        /// Its protocol.
        protocol: Protocol,
        /// The pod holding it, if it is one of berth's.
        by: Option<String>,
    },
    /// Every port of the range is taken.
    #[error("no free host port left in {first}-{last}")]
    Exhausted {
        /// The JSON path of the port that asked for one.
        field: String,
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
}

impl PortError {
    /// The field at fault.
    pub fn field(&self) -> &str {
        match self {
            PortError::Taken { field, .. } | PortError::Exhausted { field, .. } => field,
        }
    }
}

/// A port held by a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Held {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// The pod.
    pub pod: String,
}

/// Gives host ports to every port of `pod` that is published: the fixed ones
/// as asked, the others (`hostPort: 0`) from `range`. `in_use_elsewhere` says
/// whether a process outside berth holds a port. Pure apart from that probe.
pub fn allocate(
    pod: &Pod,
    held: &[Held],
    range: PortRange,
    in_use_elsewhere: impl Fn(u16, Protocol) -> bool,
) -> Result<Vec<PortBinding>, PortError> {
    let mut taken: BTreeSet<(u16, Protocol)> = held.iter().map(|h| (h.port, h.protocol)).collect();
    let holder = |port, protocol| {
        held.iter()
            .find(|h| h.port == port && h.protocol == protocol)
            .map(|h| h.pod.clone())
    };
    let mut bindings = Vec::new();
    // Fixed ports first, so an automatic one never takes a port asked for by
    // name further down the same pod.
    for fixed_pass in [true, false] {
        for (c, container) in pod.containers.iter().enumerate() {
            for (p, port) in container.ports.iter().enumerate() {
                let field = format!("containers[{c}].ports[{p}].hostPort");
                // `None`: not published; `Some(0)`: any host port.
                let Some(host) = port.host_port else { continue };
                let fixed = host != 0;
                if fixed != fixed_pass {
                    continue;
                }
                let protocol = port.protocol;
                let host = if fixed {
                    if taken.contains(&(host, protocol)) || in_use_elsewhere(host, protocol) {
                        return Err(PortError::Taken {
                            field,
                            port: host,
                            protocol,
                            by: holder(host, protocol),
                        });
                    }
                    host
                } else {
                    range
                        .ports()
                        .find(|c| {
                            !taken.contains(&(*c, protocol)) && !in_use_elsewhere(*c, protocol)
                        })
                        .ok_or(PortError::Exhausted {
                            field,
                            first: range.first,
                            last: range.last,
                        })?
                };
                taken.insert((host, protocol));
                bindings.push(binding(
                    &container.name,
                    port.container_port,
                    protocol,
                    host,
                ));
            }
        }
    }
    Ok(bindings)
}

fn binding(
    container: &str,
    container_port: u16,
    protocol: Protocol,
    host_port: u16,
) -> PortBinding {
    PortBinding {
        container: container.to_owned(),
        container_port,
        protocol,
        host_port,
    }
}

/// Whether some process on this host already listens on `port`.
pub fn bound_on_host(port: u16, protocol: Protocol) -> bool {
    match protocol {
        Protocol::Tcp => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_err(),
        Protocol::Udp => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::{Container, Port};

    fn pod(ports: Vec<Port>) -> Pod {
        let mut container: Container =
            serde_json::from_str(r#"{"name":"app","image":"i"}"#).unwrap();
        container.ports = ports;
        Pod {
            name: "web".into(),
            containers: vec![container],
            volumes: vec![],
            build: None,
        }
    }

    fn port(container_port: u16, host_port: Option<u16>) -> Port {
        Port {
            container_port,
            protocol: Protocol::Tcp,
            host_port,
        }
    }

    const RANGE: PortRange = PortRange {
        first: 31000,
        last: 31002,
    };

    #[test]
    fn automatic_ports_come_from_the_range_and_skip_held_ones() {
        let held = [Held {
            port: 31000,
            protocol: Protocol::Tcp,
            pod: "db".into(),
        }];
        let got = allocate(
            &pod(vec![port(80, Some(0)), port(81, Some(0))]),
            &held,
            RANGE,
            |_, _| false,
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|b| b.host_port).collect::<Vec<_>>(),
            [31001, 31002]
        );
    }

    #[test]
    fn unpublished_ports_get_nothing() {
        let got = allocate(&pod(vec![port(80, None)]), &[], RANGE, |_, _| false).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn a_fixed_port_that_is_taken_is_an_error_naming_the_field_and_holder() {
        let held = [Held {
            port: 8080,
            protocol: Protocol::Tcp,
            pod: "db".into(),
        }];
        let err = allocate(
            &pod(vec![port(80, None), port(8080, Some(8080))]),
            &held,
            RANGE,
            |_, _| false,
        )
        .unwrap_err();
        assert_eq!(err.field(), "containers[0].ports[1].hostPort");
        assert_eq!(
            err.to_string(),
            "host port 8080/tcp is already in use by pod db"
        );
        let err = allocate(&pod(vec![port(80, Some(22))]), &[], RANGE, |p, _| p == 22).unwrap_err();
        assert_eq!(err.to_string(), "host port 22/tcp is already in use");
    }

    #[test]
    fn fixed_ports_are_served_before_automatic_ones() {
        let got = allocate(
            &pod(vec![port(80, Some(0)), port(81, Some(31000))]),
            &[],
            RANGE,
            |_, _| false,
        )
        .unwrap();
        assert_eq!(got[0].host_port, 31000);
        assert_eq!(got[0].container_port, 81);
        assert_eq!(got[1].host_port, 31001);
    }

    #[test]
    fn an_exhausted_range_is_an_error() {
        let err = allocate(&pod(vec![port(80, Some(0))]), &[], RANGE, |_, _| true).unwrap_err();
        assert_eq!(err.to_string(), "no free host port left in 31000-31002");
    }
}
