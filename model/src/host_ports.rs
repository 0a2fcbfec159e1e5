//! Which fixed host ports a pod may publish. A pod that names its host port
//! (`-p 22:22`) takes that port on every node it lands on, so an admin
//! bounds them: ports in the node port range, plus an explicit allow list
//! (80 and 443 by default). The master and the agent judge with the same
//! rule; each reads the range and the list from its own config.

use serde::Deserialize;

use crate::pod::Pod;
use crate::validation::ValidationErrors;

/// Fixed host ports allowed besides the range when the config names none.
pub const DEFAULT_HOST_PORTS_ALLOW: &[u16] = &[80, 443];

/// A range of host ports, both ends included: `host-ports = { first = 30000, last = 32767 }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range.
    pub last: u16,
}

impl PortRange {
    /// The node port range berth uses when the config says nothing.
    pub const DEFAULT: PortRange = PortRange {
        first: 30000,
        last: 32767,
    };

    /// The ports of the range.
    pub fn ports(&self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

/// The fixed host ports a pod may publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortPolicy {
    /// Every port of this range is allowed.
    pub range: PortRange,
    /// And these ports outside it.
    pub allow: Vec<u16>,
}

impl Default for HostPortPolicy {
    fn default() -> Self {
        Self {
            range: PortRange::DEFAULT,
            allow: DEFAULT_HOST_PORTS_ALLOW.to_vec(),
        }
    }
}

impl HostPortPolicy {
    /// Whether a pod may publish `port` by number.
    pub fn allows(&self, port: u16) -> bool {
        self.range.ports().contains(&port) || self.allow.contains(&port)
    }

    /// Records every fixed host port of `pod` the policy refuses, under
    /// `<prefix>containers[i].ports[j].hostPort` (`prefix` is `template.`
    /// for a service's pod template, else empty). `hostPort: 0` (any free
    /// port) is always fine.
    pub fn check(&self, pod: &Pod, prefix: &str, errors: &mut ValidationErrors) {
        for (c, container) in pod.containers.iter().enumerate() {
            for (p, port) in container.ports.iter().enumerate() {
                let Some(host_port) = port.host_port.filter(|h| *h != 0) else {
                    continue;
                };
                if self.allows(host_port) {
                    continue;
                }
                let allowed = if self.allow.is_empty() {
                    "none".to_owned()
                } else {
                    let list: Vec<String> = self.allow.iter().map(u16::to_string).collect();
                    list.join(", ")
                };
                errors.push(
                    format!("{prefix}containers[{c}].ports[{p}].hostPort"),
                    format!(
                        "host port {host_port} is outside the host-ports range {}-{} and not in host-ports-allow ({allowed}); \
                         publish without a host port (-p {}) to get one from the range",
                        self.range.first, self.range.last, port.container_port
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Container, Port, Protocol};

    fn pod_publishing(host_ports: &[Option<u16>]) -> Pod {
        let ports = host_ports
            .iter()
            .map(|host_port| Port {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_port: *host_port,
            })
            .collect();
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "app", "image": "local/busybox"
        }))
        .unwrap();
        Pod {
            name: "web".into(),
            containers: vec![Container { ports, ..container }],
            volumes: Vec::new(),
            build: None,
        }
    }

    #[test]
    fn the_range_and_the_allow_list_pass_anything_else_names_the_field() {
        let policy = HostPortPolicy::default();
        let pod = pod_publishing(&[
            None,
            Some(0),
            Some(30000),
            Some(32767),
            Some(80),
            Some(443),
            Some(22),
            Some(32768),
        ]);
        let mut errors = ValidationErrors::new();
        policy.check(&pod, "template.", &mut errors);
        let found: Vec<(&str, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "template.containers[0].ports[6].hostPort",
                    "host port 22 is outside the host-ports range 30000-32767 and not in host-ports-allow (80, 443); \
                     publish without a host port (-p 8080) to get one from the range"
                ),
                (
                    "template.containers[0].ports[7].hostPort",
                    "host port 32768 is outside the host-ports range 30000-32767 and not in host-ports-allow (80, 443); \
                     publish without a host port (-p 8080) to get one from the range"
                ),
            ]
        );
    }

    #[test]
    fn an_admin_may_allow_more_or_nothing() {
        let open = HostPortPolicy {
            range: PortRange::DEFAULT,
            allow: vec![22],
        };
        assert!(open.allows(22) && !open.allows(80));
        let closed = HostPortPolicy {
            range: PortRange {
                first: 40000,
                last: 40010,
            },
            allow: Vec::new(),
        };
        let mut errors = ValidationErrors::new();
        closed.check(&pod_publishing(&[Some(80)]), "", &mut errors);
        assert!(errors.errors()[0]
            .message
            .contains("not in host-ports-allow (none)"));
    }
}
