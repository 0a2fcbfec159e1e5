//! `LinkRewired` events: the controller compares, round after round, the
//! ready backends behind every link, and records an event for each link
//! whose backends changed (a move, a scale, a dead node). The agents
//! rewire on their own from the endpoints; this is the story users read in
//! `berth events`. Pure: the caller keeps the previous round's view.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::endpoints::derive;
use berth_model::{ClusterPod, Event, EventKind, Link, Node, NodeCondition};

use super::Cluster;

/// Every link (linking service, link) with its ready backends as
/// `address:port`.
pub type LinkBackends = BTreeMap<(String, Link), BTreeSet<String>>;

/// The ready backends behind every link of `cluster`.
pub fn link_backends(cluster: &Cluster) -> LinkBackends {
    // Most rounds of most clusters: nothing to derive.
    if cluster.services.iter().all(|s| s.object.links.is_empty()) {
        return LinkBackends::new();
    }
    let pods: Vec<ClusterPod> = cluster.pods.iter().map(|p| p.object.clone()).collect();
    let nodes: Vec<Node> = cluster.nodes.iter().map(|(n, _)| n.clone()).collect();
    let ready = |name: &str| {
        cluster
            .nodes
            .iter()
            .any(|(n, c)| n.name == name && *c == NodeCondition::Ready)
    };
    let endpoints = derive(&pods, &nodes, ready);
    let mut backends = LinkBackends::new();
    for service in &cluster.services {
        for link in &service.object.links {
            let ready: BTreeSet<String> = endpoints
                .iter()
                .filter(|e| e.service == link.service)
                .flat_map(|e| e.ready_on(link.port))
                .map(|e| format!("{}:{}", e.address, e.port))
                .collect();
            backends.insert((service.object.name.clone(), link.clone()), ready);
        }
    }
    backends
}

/// The events for links whose backends differ between `before` and `now`
/// (a link that is new in `now` is made, not rewired).
pub fn rewired(before: &LinkBackends, now: &LinkBackends, now_ms: u64) -> Vec<Event> {
    let list = |set: &BTreeSet<String>| {
        if set.is_empty() {
            "no ready endpoint".to_owned()
        } else {
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    now.iter()
        .filter_map(|((service, link), backends)| {
            let old = before.get(&(service.clone(), link.clone()))?;
            (old != backends).then(|| Event {
                time_ms: now_ms,
                kind: EventKind::LinkRewired,
                object: format!("service/{service}"),
                node: None,
                reason: format!(
                    "link to {}:{} now reaches {} (was {})",
                    link.service,
                    link.port,
                    list(backends),
                    list(old)
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> (String, Link) {
        (
            "web".into(),
            Link {
                service: "db".into(),
                port,
                local_port: None,
                address: None,
                wait_ready: false,
            },
        )
    }

    #[test]
    fn only_changed_existing_links_are_rewired() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let before = LinkBackends::from([
            (key(3306), set(&["10.231.0.12:30000"])),
            (key(5432), set(&["10.231.0.12:30001"])),
        ]);
        let now = LinkBackends::from([
            (key(3306), set(&["10.231.0.13:30000"])),
            (key(5432), set(&["10.231.0.12:30001"])),
            (key(6379), set(&[])),
        ]);
        let events = rewired(&before, &now, 7);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::LinkRewired);
        assert_eq!(events[0].object, "service/web");
        assert_eq!(
            events[0].reason,
            "link to db:3306 now reaches 10.231.0.13:30000 (was 10.231.0.12:30000)"
        );
    }
}
