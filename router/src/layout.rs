//! What HAProxy should serve, decided from routes and endpoints by pure
//! functions: the [`Layout`] (frontends, rules, backends and their slot
//! counts: changing it needs a reload) and the servers in the slots
//! (changed through HAProxy's runtime API while the layout stays).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use berth_model::endpoints::ServiceEndpoints;
use berth_model::Route;

/// One backend server: a ready endpoint's node address and host port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Server {
    /// The node's IP address.
    pub address: IpAddr,
    /// The host port.
    pub port: u16,
}

/// How a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP (plain and edge routes).
    Http,
    /// Bytes (passthrough routes).
    Tcp,
}

/// One route's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `be_<route>` (route names are DNS labels).
    pub name: String,
    /// HTTP or TCP.
    pub mode: Mode,
    /// Keep upgraded connections open.
    pub websocket: bool,
    /// How many server slots it has: servers come and go through the
    /// runtime API while they fit.
    pub slots: usize,
}

/// A host (and path) rule of an HTTP frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// The route's hostname.
    pub host: String,
    /// The path prefix (`/` for all).
    pub path: String,
    /// The backend it selects.
    pub backend: String,
}

/// An edge route's certificate, for the crt-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCertificate {
    /// The route's name (names the PEM file).
    pub route: String,
    /// The SNI name it is served for.
    pub host: String,
    /// Certificate chain and key, PEM, written to a 0600 file.
    pub pem: String,
}

/// Everything whose change needs HAProxy to reload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Plain HTTP rules, most specific first.
    pub http: Vec<HostRule>,
    /// Edge (TLS ended here) rules, most specific first.
    pub edge: Vec<HostRule>,
    /// Passthrough rules: SNI name -> backend.
    pub passthrough: Vec<HostRule>,
    /// Edge certificates.
    pub certificates: Vec<EdgeCertificate>,
    /// Every route's backend.
    pub backends: Vec<Backend>,
}

/// The servers wanted per backend.
pub type Wanted = BTreeMap<String, BTreeSet<Server>>;

/// The backend name of a route.
pub fn backend_name(route: &str) -> String {
    format!("be_{route}")
}

/// Slots a backend gets for `servers` servers: room to grow (double, at
/// least 8) so that scaling up rarely needs a reload.
pub fn slots_for(servers: usize) -> usize {
    (servers * 2).max(8).next_power_of_two()
}

/// The routes' layout (with slot counts for the wanted servers) and the
/// ready servers of each backend. Routes in `skip` (rejected by HAProxy
/// before) are left out.
pub fn decide(
    routes: &[Route],
    endpoints: &[ServiceEndpoints],
    skip: &BTreeSet<String>,
) -> (Layout, Wanted) {
    let mut layout = Layout::default();
    let mut wanted = Wanted::new();
    for route in routes.iter().filter(|r| !skip.contains(&r.name)) {
        let backend = backend_name(&route.name);
        let servers = servers_of(route, endpoints);
        let rule = HostRule {
            host: route.host.clone(),
            path: route.path.clone(),
            backend: backend.clone(),
        };
        let mode = if route.is_passthrough() {
            layout.passthrough.push(rule);
            Mode::Tcp
        } else if route.is_edge() {
            if let Some(tls) = &route.tls {
                let mut pem = tls.certificate.clone().unwrap_or_default();
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                pem.push_str(tls.key.as_deref().unwrap_or_default());
                layout.certificates.push(EdgeCertificate {
                    route: route.name.clone(),
                    host: route.host.clone(),
                    pem,
                });
            }
            layout.edge.push(rule);
            Mode::Http
        } else {
            layout.http.push(rule);
            Mode::Http
        };
        layout.backends.push(Backend {
            name: backend.clone(),
            mode,
            websocket: route.websocket,
            slots: slots_for(servers.len()),
        });
        wanted.insert(backend, servers);
    }
    // HAProxy takes the first rule that matches: longer paths first.
    for rules in [&mut layout.http, &mut layout.edge, &mut layout.passthrough] {
        rules.sort_by(|a, b| {
            a.host
                .cmp(&b.host)
                .then(b.path.len().cmp(&a.path.len()))
                .then(a.path.cmp(&b.path))
        });
    }
    layout.backends.sort_by(|a, b| a.name.cmp(&b.name));
    layout.certificates.sort_by(|a, b| a.route.cmp(&b.route));
    (layout, wanted)
}

/// The ready servers of a route: its service's ready endpoints on the
/// route's port (or the service's lowest container port). Endpoints whose
/// address is not an IP address are left out: HAProxy would resolve a name
/// once, at start.
fn servers_of(route: &Route, endpoints: &[ServiceEndpoints]) -> BTreeSet<Server> {
    let Some(service) = endpoints.iter().find(|s| s.service == route.service) else {
        return BTreeSet::new();
    };
    let port = route
        .port
        .or_else(|| service.endpoints.iter().map(|e| e.container_port).min());
    let Some(port) = port else {
        return BTreeSet::new();
    };
    service
        .ready_on(port)
        .filter_map(|e| {
            Some(Server {
                address: e.address.parse().ok()?,
                port: e.port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::endpoints::Endpoint;
    use berth_model::{Protocol, RouteTls, TlsTermination};

    fn route(name: &str, host: &str, path: &str) -> Route {
        Route {
            name: name.into(),
            labels: Default::default(),
            service: "web".into(),
            host: host.into(),
            path: path.into(),
            port: None,
            tls: None,
            websocket: false,
        }
    }

    fn endpoint(pod: &str, address: &str, port: u16, container_port: u16, ready: bool) -> Endpoint {
        Endpoint {
            pod: pod.into(),
            node: "h2".into(),
            address: address.into(),
            port,
            container_port,
            protocol: Protocol::Tcp,
            ready,
        }
    }

    fn web(endpoints: Vec<Endpoint>) -> Vec<ServiceEndpoints> {
        vec![ServiceEndpoints {
            service: "web".into(),
            endpoints,
        }]
    }

    #[test]
    fn only_ready_endpoints_on_the_route_port_are_servers() {
        let endpoints = web(vec![
            endpoint("web-0", "10.0.0.2", 30001, 8080, true),
            endpoint("web-1", "10.0.0.3", 30002, 8080, false),
            endpoint("web-2", "10.0.0.4", 30003, 8080, true),
            endpoint("web-2", "10.0.0.4", 30004, 9090, true),
            endpoint("web-3", "not-an-ip", 30005, 8080, true),
        ]);
        let (layout, wanted) = decide(
            &[route("www", "www.example.test", "/")],
            &endpoints,
            &BTreeSet::new(),
        );
        let servers: Vec<String> = wanted["be_www"]
            .iter()
            .map(|s| format!("{}:{}", s.address, s.port))
            .collect();
        assert_eq!(servers, ["10.0.0.2:30001", "10.0.0.4:30003"]);
        assert_eq!(layout.backends[0].slots, 8);

        let mut admin = route("admin", "www.example.test", "/admin");
        admin.port = Some(9090);
        let (_, wanted) = decide(&[admin], &endpoints, &BTreeSet::new());
        assert_eq!(wanted["be_admin"].len(), 1);
    }

    #[test]
    fn longer_paths_come_first_and_tls_routes_go_to_their_frontends() {
        let mut edge = route("secure", "secure.example.test", "/");
        edge.tls = Some(RouteTls {
            termination: TlsTermination::Edge,
            certificate: Some("CERT".into()),
            key: Some("KEY".into()),
        });
        let mut passthrough = route("pt", "pt.example.test", "/");
        passthrough.tls = Some(RouteTls {
            termination: TlsTermination::Passthrough,
            certificate: None,
            key: None,
        });
        let routes = [
            route("root", "www.example.test", "/"),
            route("api", "www.example.test", "/api"),
            edge,
            passthrough,
            route("bad", "bad.example.test", "/"),
        ];
        let skip = BTreeSet::from(["bad".to_owned()]);
        let (layout, _) = decide(&routes, &[], &skip);
        let http: Vec<&str> = layout.http.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(http, ["be_api", "be_root"]);
        assert_eq!(layout.edge[0].backend, "be_secure");
        assert_eq!(layout.certificates[0].pem, "CERT\nKEY");
        assert_eq!(layout.passthrough[0].backend, "be_pt");
        assert_eq!(layout.backends.len(), 4);
        assert!(layout.backends.iter().any(|b| b.mode == Mode::Tcp));
    }

    #[test]
    fn slots_leave_room_to_grow() {
        assert_eq!(slots_for(0), 8);
        assert_eq!(slots_for(4), 8);
        assert_eq!(slots_for(5), 16);
    }
}
