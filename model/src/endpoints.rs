//! Where a service can be reached: one endpoint per replica and published
//! port, at its node's address and host port. Links and routers send
//! traffic only to endpoints that are ready.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterPod, Node};
use crate::pod::Protocol;
use crate::status::PodPhase;

/// One replica's published port, as other hosts reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The pod behind it.
    pub pod: String,
    /// The node the pod runs on.
    pub node: String,
    /// The node's address.
    pub address: String,
    /// The port on the node.
    pub port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
    /// Whether traffic may go there: the pod runs, every container is
    /// ready and the node is Ready.
    pub ready: bool,
}

/// A service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoints {
    /// The service.
    pub service: String,
    /// Its endpoints, ordered by pod then container port.
    pub endpoints: Vec<Endpoint>,
}

impl ServiceEndpoints {
    /// The ready endpoints for one container port.
    pub fn ready_on(&self, container_port: u16) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.ready && e.container_port == container_port)
    }
}

/// `GET /v1/endpoints`: every service's endpoints, with the store revision
/// they were read at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsView {
    /// Store revision of this view; pass it back as `after` to wait for a
    /// change.
    pub revision: u64,
    /// The services, ordered by name (as [`derive`] makes them).
    pub services: Vec<ServiceEndpoints>,
}

impl EndpointsView {
    /// The endpoints of `service`, found by name in the ordered list.
    pub fn service(&self, service: &str) -> Option<&ServiceEndpoints> {
        self.services
            .binary_search_by(|s| s.service.as_str().cmp(service))
            .ok()
            .map(|i| &self.services[i])
    }
}

/// Derives every service's endpoints from its pods as their nodes last
/// reported them. A pod not yet placed, not yet reported, or whose host
/// ports are unknown has no endpoint; one that runs but is not ready, or
/// whose node is not Ready, has endpoints with `ready: false`.
pub fn derive(
    pods: &[ClusterPod],
    nodes: &[Node],
    node_ready: impl Fn(&str) -> bool,
) -> Vec<ServiceEndpoints> {
    // Built in maps, then ordered once: a cluster may hold thousands of
    // nodes and tens of thousands of a service's pods.
    let nodes: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut services: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let Some(service) = pod.service.as_deref() else {
            continue;
        };
        let endpoints = services.entry(service).or_default();
        let (Some(node_name), Some(status)) = (pod.node.as_deref(), pod.status.as_ref()) else {
            continue;
        };
        let Some(node) = nodes.get(node_name) else {
            continue;
        };
        // A draining pod keeps running for the requests it has, and gets
        // no new ones.
        let ready = status.phase == PodPhase::Running
            && status.containers.iter().all(|c| c.ready)
            && pod.draining_since_ms.is_none()
            && node_ready(node_name);
        for container in &status.containers {
            for port in &container.host_ports {
                endpoints.push(Endpoint {
                    pod: pod.spec.name.clone(),
                    node: node_name.to_owned(),
                    address: node.address.clone(),
                    port: port.host_port,
                    container_port: port.container_port,
                    protocol: port.protocol,
                    ready,
                });
            }
        }
    }
    services
        .into_iter()
        .map(|(service, mut endpoints)| {
            endpoints.sort_by(|a, b| (&a.pod, a.container_port).cmp(&(&b.pod, b.container_port)));
            ServiceEndpoints {
                service: service.to_owned(),
                endpoints,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Pod;
    use crate::status::{ContainerStatus, HostPort, PodStatus};

    fn node(name: &str, address: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "name": name, "address": address,
            "capacity": {"memoryBytes": 1, "cpuMillis": 1}
        }))
        .unwrap()
    }

    fn pod(name: &str, service: Option<&str>, node: Option<&str>, phase: PodPhase) -> ClusterPod {
        let spec = serde_json::from_value(serde_json::json!({
            "name": name,
            "containers": [{"name": "app", "image": "local/busybox"}]
        }))
        .unwrap();
        let container = ContainerStatus {
            name: "app".into(),
            unit: format!("berth-{name}-app.service"),
            container_id: None,
            state: "active".into(),
            sub_state: "running".into(),
            pid: None,
            exit_code: None,
            reason: None,
            restarts: 0,
            host_ports: vec![HostPort {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_port: 30001,
            }],
            ready: true,
            health: None,
        };
        ClusterPod {
            status: Some(PodStatus {
                name: name.into(),
                phase,
                slice: format!("berth-{name}.slice"),
                containers: vec![container],
                spec: Pod::clone(&spec),
                start_failure: None,
                volumes: Vec::new(),
            }),
            service: service.map(str::to_owned),
            node: node.map(str::to_owned),
            ..ClusterPod::unplaced(spec)
        }
    }

    #[test]
    fn running_pods_on_ready_nodes_are_ready_endpoints() {
        let nodes = [node("h2", "10.231.0.12"), node("h3", "10.231.0.13")];
        let pods = [
            pod("web-1", Some("web"), Some("h3"), PodPhase::Running),
            pod("web-0", Some("web"), Some("h2"), PodPhase::Running),
            pod("solo", None, Some("h2"), PodPhase::Running),
        ];
        let services = derive(&pods, &nodes, |_| true);
        assert_eq!(
            services.len(),
            1,
            "pods without a service have no endpoints"
        );
        let web = &services[0];
        assert_eq!(web.service, "web");
        let seen: Vec<_> = web
            .ready_on(8080)
            .map(|e| (e.pod.as_str(), e.address.as_str(), e.port))
            .collect();
        assert_eq!(
            seen,
            [
                ("web-0", "10.231.0.12", 30001),
                ("web-1", "10.231.0.13", 30001)
            ]
        );
        assert_eq!(web.ready_on(9090).count(), 0);
    }

    #[test]
    fn services_and_their_endpoints_come_ordered_and_are_found_by_name() {
        let nodes = [node("h2", "10.231.0.12"), node("h3", "10.231.0.13")];
        let pods = [
            pod("web-2", Some("web"), Some("h3"), PodPhase::Running),
            pod("db-1", Some("db"), Some("h2"), PodPhase::Running),
            pod("web-0", Some("web"), Some("h2"), PodPhase::Running),
            pod("cache-0", Some("cache"), Some("h9"), PodPhase::Running),
            pod("web-1", Some("web"), Some("h3"), PodPhase::Running),
            pod("db-0", Some("db"), Some("h3"), PodPhase::Running),
        ];
        let view = EndpointsView {
            revision: 1,
            services: derive(&pods, &nodes, |_| true),
        };
        let names: Vec<_> = view.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["cache", "db", "web"]);
        let pods_of = |service: &str| -> Vec<String> {
            view.service(service)
                .unwrap_or_else(|| panic!("{service} not found"))
                .endpoints
                .iter()
                .map(|e| format!("{}@{}", e.pod, e.address))
                .collect()
        };
        assert_eq!(
            pods_of("web"),
            [
                "web-0@10.231.0.12",
                "web-1@10.231.0.13",
                "web-2@10.231.0.13"
            ]
        );
        assert_eq!(pods_of("db"), ["db-0@10.231.0.13", "db-1@10.231.0.12"]);
        assert!(
            pods_of("cache").is_empty(),
            "a pod on an unknown node has no endpoint"
        );
        assert!(view.service("nope").is_none());
    }

    #[test]
    fn pending_unready_and_lost_pods_are_not_ready() {
        let nodes = [node("h2", "10.231.0.12"), node("h3", "10.231.0.13")];
        let mut unready = pod("web-2", Some("web"), Some("h2"), PodPhase::Running);
        unready.status.as_mut().unwrap().containers[0].ready = false;
        let pods = [
            pod("web-0", Some("web"), Some("h2"), PodPhase::Pending),
            pod("web-1", Some("web"), Some("h3"), PodPhase::Running),
            unready,
        ];
        let services = derive(&pods, &nodes, |n| n != "h3");
        let web = &services[0];
        assert_eq!(web.endpoints.len(), 3);
        assert!(web.endpoints.iter().all(|e| !e.ready));
    }

    #[test]
    fn unplaced_pods_keep_their_service_listed_without_endpoints() {
        let pods = [pod("db-0", Some("db"), None, PodPhase::Pending)];
        let services = derive(&pods, &[], |_| true);
        assert_eq!(services[0].service, "db");
        assert!(services[0].endpoints.is_empty());
    }

    #[test]
    fn reports_without_ready_count_running_as_ready() {
        let json = r#"{"name":"app","unit":"u","containerId":null,"state":"active",
            "subState":"running","pid":null,"exitCode":null,"reason":null,
            "restarts":0,"hostPorts":[]}"#;
        let status: ContainerStatus = serde_json::from_str(json).unwrap();
        assert!(status.ready);
    }
}
