use std::collections::BTreeMap;

use berth_model::{
    Capacity, ClusterPod, Container, Node, NodeCondition, Pod, Port, Protocol, Resources, Service,
};

use super::filters;
use super::reason::{bytes, cpu, Round};
use super::*;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

fn node(name: &str, memory_bytes: u64, cpu_millis: u64) -> Node {
    Node {
        name: name.to_owned(),
        address: format!("{name}.example"),
        labels: BTreeMap::new(),
        capacity: Capacity {
            memory_bytes,
            cpu_millis,
        },
        unschedulable: false,
        unit_settings: None,
        volume_classes: Default::default(),
    }
}

fn view(nodes: &[Node]) -> ClusterView {
    let mut view = ClusterView::new();
    for n in nodes {
        view.upsert_node(n, NodeCondition::Ready);
    }
    view
}

fn request(memory_bytes: u64, cpu_millis: u64) -> PodRequest {
    PodRequest {
        memory_bytes,
        cpu_millis,
        ..PodRequest::default()
    }
}

fn tcp(port: u16) -> FixedPort {
    FixedPort {
        protocol: Protocol::Tcp,
        port,
    }
}

/// Decides and, when placed, assigns, as the master does.
fn place(view: &mut ClusterView, pod: &PodRequest) -> String {
    match decide(view, pod) {
        Placement::Placed { node, .. } => {
            view.assign(&node, pod).unwrap();
            node
        }
        Placement::Unschedulable { reason } => panic!("unschedulable: {reason}"),
    }
}

fn unschedulable_reason(view: &ClusterView, pod: &PodRequest) -> String {
    match decide(view, pod) {
        Placement::Unschedulable { reason } => reason,
        placed => panic!("expected unschedulable, got {placed:?}"),
    }
}

#[test]
fn three_replicas_spread_over_three_nodes() {
    let mut view = view(&[
        node("a", GI, 1000),
        node("b", GI, 1000),
        node("c", GI, 1000),
    ]);
    let web = request(64 * MI, 100).with_service("web");
    let mut placed: Vec<String> = (0..3).map(|_| place(&mut view, &web)).collect();
    placed.sort();
    assert_eq!(placed, ["a", "b", "c"]);
    for n in ["a", "b", "c"] {
        assert_eq!(view.service_pods(n, "web"), 1);
    }
}

#[test]
fn spreading_beats_free_memory() {
    // b is much emptier, but already runs a replica of web.
    let mut view = view(&[node("a", GI, 1000), node("b", 8 * GI, 1000)]);
    let web = request(512 * MI, 0).with_service("web");
    assert_eq!(place(&mut view, &web), "b");
    assert_eq!(place(&mut view, &web), "a");
    // Another service is not spread against web's pods: b has more room.
    assert_eq!(
        place(&mut view, &request(64 * MI, 0).with_service("db")),
        "b"
    );
}

#[test]
fn replicas_spread_evenly_over_many_nodes() {
    let nodes: Vec<Node> = (0..10)
        .map(|i| node(&format!("n{i}"), 4 * GI, 4000))
        .collect();
    let mut view = view(&nodes);
    for _ in 0..30 {
        place(&mut view, &request(10 * MI, 10).with_service("web"));
    }
    for n in &nodes {
        assert_eq!(view.service_pods(&n.name, "web"), 3, "{}", n.name);
    }
}

#[test]
fn least_loaded_by_free_memory_fraction() {
    // After placing 1Gi: a keeps 3/4 free, b 7/8, c 1/2.
    let mut view = view(&[
        node("a", 4 * GI, 1000),
        node("b", 8 * GI, 1000),
        node("c", 2 * GI, 1000),
    ]);
    assert_eq!(place(&mut view, &request(GI, 0)), "b");
    // b now 6/8 free after another 1Gi, a 3/4: a tie, broken by name.
    assert_eq!(place(&mut view, &request(GI, 0)), "a");
}

#[test]
fn pods_that_ask_for_no_memory_spread_by_count() {
    let mut view = view(&[
        node("a", 8 * GI, 4000),
        node("b", 8 * GI, 4000),
        node("c", 8 * GI, 4000),
    ]);
    let placed: Vec<String> = (0..6).map(|_| place(&mut view, &request(0, 0))).collect();
    assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn ties_are_broken_by_name_whatever_the_insertion_order() {
    let pod = request(MI, 1);
    let forward = view(&[
        node("a", GI, 1000),
        node("b", GI, 1000),
        node("c", GI, 1000),
    ]);
    let backward = view(&[
        node("c", GI, 1000),
        node("b", GI, 1000),
        node("a", GI, 1000),
    ]);
    assert_eq!(decide(&forward, &pod), decide(&backward, &pod));
    let Placement::Placed { node, reason } = decide(&backward, &pod) else {
        panic!("not placed");
    };
    assert_eq!(node, "a");
    assert_eq!(
        reason,
        "3/3 nodes fit; chosen for most free memory (99% after placement)"
    );
}

#[test]
fn placed_reason_names_the_service_spread() {
    let mut view = view(&[node("a", GI, 1000), node("b", GI, 1000)]);
    let web = request(256 * MI, 0).with_service("web");
    view.assign("a", &web).unwrap();
    assert_eq!(
        decide(&view, &web),
        Placement::Placed {
            node: "b".to_owned(),
            reason: "2/2 nodes fit; chosen for fewest pods of service web (0) then most free \
                     memory (75% after placement)"
                .to_owned(),
        }
    );
}

#[test]
fn unschedulable_reason_names_each_cause() {
    let mut view = view(&[
        node("a", GI, 1000),
        node("b", GI, 1000),
        node("c", 96 * MI, 1000),
    ]);
    view.set_condition("a", NodeCondition::NotReady).unwrap();
    let mut cordoned = node("b", GI, 1000);
    cordoned.unschedulable = true;
    view.upsert_node(&cordoned, NodeCondition::Ready);
    view.assign("c", &request(64 * MI, 0)).unwrap();
    assert_eq!(
        unschedulable_reason(&view, &request(64 * MI, 0)),
        "0/3 nodes fit: 1 not ready, 1 cordoned, 1 insufficient memory (needs 64Mi, 32Mi free)"
    );
}

#[test]
fn unschedulable_reason_counts_every_kind_of_rejection() {
    let mut labelled = node("sel", 8 * GI, 8000);
    labelled.labels.insert("zone".to_owned(), "eu".to_owned());
    let mut view = view(&[
        node("mem1", GI, 8000),
        node("mem2", 1536 * MI, 8000),
        node("cpu", 8 * GI, 500),
        node("port", 8 * GI, 8000),
        labelled,
    ]);
    view.set_condition("sel", NodeCondition::NotReady).unwrap();
    let holder = PodRequest {
        host_ports: vec![tcp(80)],
        ..request(0, 0)
    };
    view.assign("port", &holder).unwrap();
    // Only sel carries zone=eu, and it lacks disk=ssd.
    let pod = PodRequest {
        host_ports: vec![tcp(80)],
        ..request(2 * GI, 1500)
    }
    .with_node_label("zone", "eu")
    .with_node_label("disk", "ssd");
    let mut everywhere = pod.clone();
    everywhere.node_selector.clear();
    assert_eq!(
        unschedulable_reason(&view, &everywhere),
        "0/5 nodes fit: 1 not ready, 2 insufficient memory (needs 2Gi, at most 1.5Gi free), \
         1 insufficient cpu (needs 1500m, 500m free), 1 host port in use (80/tcp)"
    );
    // Readiness is checked first, so sel counts as not ready.
    assert_eq!(
        unschedulable_reason(&view, &pod),
        "0/5 nodes fit: 1 not ready, 4 not matching node selector disk=ssd,zone=eu"
    );
}

#[test]
fn no_nodes_at_all() {
    assert_eq!(
        unschedulable_reason(&ClusterView::new(), &request(0, 0)),
        "0/0 nodes fit: no nodes are registered"
    );
}

#[test]
fn cordoned_and_not_ready_nodes_are_skipped() {
    // The skipped nodes are the emptiest and first by name.
    let mut cordoned = node("a", 64 * GI, 64_000);
    cordoned.unschedulable = true;
    let mut view = view(&[cordoned, node("b", 64 * GI, 64_000), node("c", GI, 1000)]);
    view.set_condition("b", NodeCondition::NotReady).unwrap();
    for _ in 0..3 {
        assert_eq!(place(&mut view, &request(MI, 1)), "c");
    }
    view.set_condition("b", NodeCondition::Ready).unwrap();
    assert_eq!(place(&mut view, &request(MI, 1)), "b");
}

#[test]
fn host_ports_conflict_only_on_the_same_protocol_and_number() {
    let mut view = view(&[node("a", 8 * GI, 1000), node("b", GI, 1000)]);
    let http = PodRequest {
        host_ports: vec![tcp(80)],
        ..request(MI, 0)
    };
    assert_eq!(place(&mut view, &http), "a");
    assert!(view.host_port_in_use("a", tcp(80)));
    // a still has far more room, but 80/tcp is taken there.
    assert_eq!(place(&mut view, &http), "b");
    assert_eq!(
        unschedulable_reason(&view, &http),
        "no node has host port 80 free"
    );
    let dns = PodRequest {
        host_ports: vec![FixedPort {
            protocol: Protocol::Udp,
            port: 80,
        }],
        ..request(MI, 0)
    };
    assert_eq!(place(&mut view, &dns), "a");
    // Unassigning frees the port again.
    view.unassign("a", &http).unwrap();
    assert!(!view.host_port_in_use("a", tcp(80)));
    assert_eq!(place(&mut view, &http), "a");
}

#[test]
fn any_host_port_never_conflicts() {
    let pod = Pod {
        name: "web".to_owned(),
        containers: vec![container(
            None,
            None,
            vec![Port {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_port: Some(0),
            }],
        )],
        volumes: Vec::new(),
        build: None,
    };
    let pod = PodRequest::from_pod(&pod);
    assert!(pod.host_ports.is_empty());
    let mut view = view(&[node("a", GI, 1000)]);
    assert_eq!(place(&mut view, &pod), "a");
    assert_eq!(place(&mut view, &pod), "a");
}

#[test]
fn node_selector_picks_matching_nodes_only() {
    let mut eu = node("eu", GI, 1000);
    eu.labels.insert("zone".to_owned(), "eu".to_owned());
    let mut us = node("us", 64 * GI, 64_000);
    us.labels.insert("zone".to_owned(), "us".to_owned());
    let mut view = view(&[eu, us, node("bare", 64 * GI, 64_000)]);
    let pod = request(MI, 1).with_node_label("zone", "eu");
    for _ in 0..3 {
        assert_eq!(place(&mut view, &pod), "eu");
    }
    assert_eq!(
        unschedulable_reason(&view, &request(MI, 1).with_node_label("zone", "ap")),
        "0/3 nodes fit: 3 not matching node selector zone=ap"
    );
}

#[test]
fn resources_fit_exactly_and_not_a_byte_more() {
    let mut view = view(&[node("a", 64 * MI, 1000)]);
    assert_eq!(place(&mut view, &request(32 * MI, 500)), "a");
    assert_eq!(place(&mut view, &request(32 * MI, 500)), "a");
    assert_eq!(
        unschedulable_reason(&view, &request(1, 0)),
        "0/1 nodes fit: 1 insufficient memory (needs 1B, 0B free)"
    );
    assert_eq!(
        unschedulable_reason(&view, &request(0, 1)),
        "0/1 nodes fit: 1 insufficient cpu (needs 1m, 0 free)"
    );
    // A pod asking for nothing fits a full node.
    assert_eq!(place(&mut view, &request(0, 0)), "a");
}

#[test]
fn an_overcommitted_node_has_nothing_free() {
    // Pods found running after a restart are counted even beyond capacity.
    let mut view = view(&[node("a", GI, 1000), node("b", GI, 1000)]);
    view.assign("a", &request(2 * GI, 2000)).unwrap();
    assert_eq!(
        view.usage("a").map(|u| u.requested.memory_bytes),
        Some(2 * GI)
    );
    assert_eq!(place(&mut view, &request(0, 0)), "b");
    view.remove_node("b");
    assert_eq!(
        unschedulable_reason(&view, &request(MI, 0)),
        "0/1 nodes fit: 1 insufficient memory (needs 1Mi, 0B free)"
    );
}

#[test]
fn a_node_without_memory_ranks_last() {
    let mut view = view(&[node("a", 0, 1000), node("b", GI, 1000)]);
    assert_eq!(place(&mut view, &request(0, 0)), "b");
    // Filled completely, b has no free fraction left either: name decides.
    view.assign("b", &request(GI, 0)).unwrap();
    assert_eq!(place(&mut view, &request(0, 0)), "a");
}

#[test]
fn assign_and_unassign_are_symmetric() {
    let mut view = view(&[node("a", GI, 1000)]);
    let pod = PodRequest {
        host_ports: vec![tcp(443)],
        ..request(100 * MI, 250)
    }
    .with_service("web");
    view.assign("a", &pod).unwrap();
    assert_eq!(
        view.usage("a"),
        Some(NodeUsage {
            capacity: Capacity {
                memory_bytes: GI,
                cpu_millis: 1000
            },
            requested: Capacity {
                memory_bytes: 100 * MI,
                cpu_millis: 250
            },
            pods: 1,
        })
    );
    view.unassign("a", &pod).unwrap();
    let usage = view.usage("a").unwrap();
    assert_eq!((usage.requested, usage.pods), (Capacity::default(), 0));
    assert_eq!(view.service_pods("a", "web"), 0);
    assert!(!view.host_port_in_use("a", tcp(443)));
    // Taking away what was never there saturates instead of wrapping.
    view.unassign("a", &pod).unwrap();
    assert_eq!(view.usage("a").unwrap().requested, Capacity::default());
}

#[test]
fn unknown_nodes_are_errors() {
    let mut view = view(&[node("a", GI, 1000)]);
    let error = view.assign("zz", &request(0, 0)).unwrap_err();
    assert_eq!(error, ViewError::UnknownNode("zz".to_owned()));
    assert_eq!(error.to_string(), "node zz is not in the cluster view");
    assert!(view.unassign("zz", &request(0, 0)).is_err());
    assert!(view.set_condition("zz", NodeCondition::Ready).is_err());
    assert!(!view.remove_node("zz"));
    assert_eq!(view.usage("zz"), None);
}

#[test]
fn upsert_keeps_placements_and_removal_keeps_the_others_intact() {
    let mut view = view(&[
        node("a", GI, 1000),
        node("b", GI, 1000),
        node("c", GI, 1000),
    ]);
    let web = request(MI, 1).with_service("web");
    view.assign("a", &web).unwrap();
    view.assign("c", &web).unwrap();
    view.assign("c", &web).unwrap();
    // New capacity, same placements.
    view.upsert_node(&node("c", 2 * GI, 1000), NodeCondition::Ready);
    assert_eq!(view.usage("c").unwrap().capacity.memory_bytes, 2 * GI);
    assert_eq!(view.service_pods("c", "web"), 2);
    // Removing a moves c into its slot; c's counts must move with it.
    assert!(view.remove_node("a"));
    assert_eq!(view.len(), 2);
    assert_eq!(view.service_pods("c", "web"), 2);
    assert_eq!(view.service_pods("b", "web"), 0);
    assert_eq!(view.usage("c").unwrap().pods, 2);
    assert_eq!(place(&mut view, &web), "b");
    // A node that comes back starts empty.
    view.upsert_node(&node("a", GI, 1000), NodeCondition::Ready);
    assert_eq!(view.service_pods("a", "web"), 0);
    assert_eq!(place(&mut view, &web), "a");
    assert!(view.remove_node("b") && view.remove_node("a") && view.remove_node("c"));
    assert!(view.is_empty());
    assert!(view.services.is_empty());
}

/// A container with only the fields the scheduler reads set.
fn container(memory_bytes: Option<u64>, cpu_millis: Option<u32>, ports: Vec<Port>) -> Container {
    Container {
        name: "app".to_owned(),
        image: "local/busybox".to_owned(),
        command: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        secret_env: Vec::new(),
        ports,
        volume_mounts: Vec::new(),
        resources: Resources {
            memory_bytes,
            cpu_millis,
            pids_limit: None,
        },
        restart: Default::default(),
        stop_timeout_secs: 10,
        probes: Default::default(),
        security: Default::default(),
    }
}

#[test]
fn requests_sum_container_limits_and_collect_fixed_ports() {
    let port = |number, protocol, host_port| Port {
        container_port: number,
        protocol,
        host_port,
    };
    let pod = Pod {
        name: "shop".to_owned(),
        containers: vec![
            container(
                Some(256 * MI),
                Some(500),
                vec![
                    port(8080, Protocol::Tcp, Some(80)),
                    port(9090, Protocol::Tcp, None),
                ],
            ),
            container(None, Some(250), vec![port(53, Protocol::Udp, Some(53))]),
            container(
                Some(64 * MI),
                None,
                vec![port(8443, Protocol::Tcp, Some(0))],
            ),
        ],
        volumes: Vec::new(),
        build: None,
    };
    let request = PodRequest::from_pod(&pod);
    assert_eq!(request.memory_bytes, 320 * MI);
    assert_eq!(request.cpu_millis, 750);
    assert_eq!(
        request.host_ports,
        [
            tcp(80),
            FixedPort {
                protocol: Protocol::Udp,
                port: 53
            }
        ]
    );
    assert_eq!(request.service, None);
    assert!(request.node_selector.is_empty());

    let cluster_pod = ClusterPod {
        service: Some("shop".to_owned()),
        ..ClusterPod::unplaced(pod.clone())
    };
    let service = Service {
        name: "shop".to_owned(),
        labels: Default::default(),
        replicas: 2,
        stateful: false,
        node_selector: BTreeMap::from([("zone".to_owned(), "eu".to_owned())]),
        template: pod,
        env: Vec::new(),
        links: Vec::new(),
        egress: Default::default(),
        publish: Vec::new(),
        generated_env: Vec::new(),
        strategy: Default::default(),
        triggers: berth_model::deployment::default_triggers(),
    };
    let request = PodRequest::from_cluster_pod(&cluster_pod, Some(&service));
    assert_eq!(request.service.as_deref(), Some("shop"));
    assert_eq!(request.node_selector, service.node_selector);
    assert_eq!(request.memory_bytes, 320 * MI);
    let bare = PodRequest::from_cluster_pod(&cluster_pod, None);
    assert!(bare.node_selector.is_empty());

    // Placed, the pod also holds the port its node allocated for 8443.
    let mut placed = cluster_pod.clone();
    placed.node = Some("a".to_owned());
    let mut status: berth_model::PodStatus = serde_json::from_value(serde_json::json!({
        "name": "shop-0", "phase": "Running", "slice": "berth-shop\\x2d0.slice",
        "containers": [{"name": "c", "unit": "u", "state": "active", "subState": "running",
            "restarts": 0, "ready": true,
            "hostPorts": [{"containerPort": 8443, "protocol": "tcp", "hostPort": 30123}]}],
        "spec": cluster_pod.spec,
    }))
    .expect("a status");
    status.spec = placed.spec.clone();
    placed.status = Some(status);
    let holding = PodRequest::from_cluster_pod(&placed, None);
    assert!(
        holding.host_ports.contains(&tcp(30123)),
        "{:?}",
        holding.host_ports
    );
    assert!(holding.host_ports.contains(&tcp(80)));
}

#[test]
fn quantities_read_like_specs_and_never_flatter_the_fit() {
    assert_eq!(bytes(0, Round::Down), "0B");
    assert_eq!(bytes(1023, Round::Up), "1023B");
    assert_eq!(bytes(64 * MI, Round::Up), "64Mi");
    assert_eq!(bytes(GI + GI / 2, Round::Down), "1.5Gi");
    assert_eq!(bytes(GI + 1, Round::Up), "1.1Gi");
    assert_eq!(bytes(GI + 1, Round::Down), "1Gi");
    assert_eq!(bytes(2 * GI - 1, Round::Up), "2Gi");
    assert_eq!(bytes(3 << 40, Round::Up), "3Ti");
    assert_eq!(cpu(0), "0");
    assert_eq!(cpu(2000), "2");
    assert_eq!(cpu(1500), "1500m");
}

#[test]
fn the_fast_filter_agrees_with_the_explained_one() {
    let mut labelled = node("l", 4 * GI, 4000);
    labelled.labels.insert("zone".to_owned(), "eu".to_owned());
    let mut cordoned = node("k", 4 * GI, 4000);
    cordoned.unschedulable = true;
    let mut view = view(&[
        labelled,
        cordoned,
        node("n", 4 * GI, 4000),
        node("small", 64 * MI, 100),
        node("zero", 0, 0),
    ]);
    view.set_condition("n", NodeCondition::NotReady).unwrap();
    view.assign(
        "l",
        &PodRequest {
            host_ports: vec![tcp(80)],
            ..request(GI, 1000)
        },
    )
    .unwrap();
    let mut pods = Vec::new();
    for (memory, cpu) in [
        (0, 0),
        (MI, 10),
        (64 * MI, 100),
        (3 * GI, 3000),
        (4 * GI, 0),
    ] {
        for ports in [vec![], vec![tcp(80)], vec![tcp(81)]] {
            let pod = PodRequest {
                host_ports: ports,
                ..request(memory, cpu)
            };
            pods.push(pod.clone().with_node_label("zone", "eu"));
            pods.push(pod.clone().with_node_label("zone", "us"));
            pods.push(pod);
        }
    }
    for pod in &pods {
        for node in &view.nodes {
            assert_eq!(
                filters::fits(node, pod),
                filters::check(node, pod).is_ok(),
                "{} {pod:?}",
                node.name
            );
        }
    }
}

#[test]
fn name_order_survives_removals() {
    let mut view = view(&[
        node("d", GI, 1000),
        node("b", GI, 1000),
        node("a", GI, 1000),
    ]);
    view.upsert_node(&node("c", GI, 1000), NodeCondition::Ready);
    // Removing a swaps c, the last added, into its slot.
    assert!(view.remove_node("a"));
    assert_eq!(place(&mut view, &request(0, 0)), "b");
    assert!(view.remove_node("b"));
    view.upsert_node(&node("e", GI, 1000), NodeCondition::Ready);
    let names: Vec<&str> = view
        .order
        .iter()
        .map(|&i| view.nodes[i].name.as_str())
        .collect();
    assert_eq!(names, ["c", "d", "e"]);
    assert_eq!(place(&mut view, &request(0, 0)), "c");
}

#[test]
fn measured_available_memory_limits_a_node() {
    let mut cluster = view(&[node("h1", 8 * GI, 4000), node("h2", 8 * GI, 4000)]);
    // h1 has the most unrequested memory, but something else uses it.
    cluster.assign("h2", &request(GI, 0)).unwrap();
    cluster.set_memory_available("h1", 512 * MI).unwrap();
    assert_eq!(place(&mut cluster.clone(), &request(MI, 0)), "h2");
    assert_eq!(place(&mut cluster.clone(), &request(GI, 0)), "h2");
    cluster.set_memory_available("h2", 256 * MI).unwrap();
    let Placement::Unschedulable { reason } = decide(&cluster, &request(GI, 0)) else {
        panic!("placed beyond what the nodes have available");
    };
    assert!(reason.contains("insufficient memory"), "{reason}");
}

#[test]
fn a_node_where_the_pod_could_not_start_is_left_out_and_named_in_the_reason() {
    let view = view(&[node("a", 8 * GI, 8000), node("b", GI, 8000)]);
    let mut pod = PodRequest {
        host_ports: vec![tcp(30000)],
        ..request(0, 0)
    };
    pod.avoid_nodes = vec!["a".to_owned()];
    assert_eq!(place(&mut view.clone(), &pod), "b");
    pod.avoid_nodes.push("b".to_owned());
    assert_eq!(
        unschedulable_reason(&view, &pod),
        "0/2 nodes fit: 2 where it could not start lately (tried again after 5 minutes)"
    );
}

#[test]
fn a_pod_goes_only_to_a_node_with_every_volume_class_it_asks_for() {
    let classed = |name: &str, classes: &[&str]| {
        let mut n = node(name, GI, 1000);
        n.volume_classes = classes
            .iter()
            .map(|c| ((*c).to_owned(), format!("/srv/{c}")))
            .collect();
        n
    };
    let mut pod = request(0, 0);
    pod.volume_classes = vec!["bulk".to_owned(), "fast".to_owned()];
    let cluster = view(&[
        classed("h1", &["fast"]),
        classed("h2", &["bulk", "fast"]),
        classed("h3", &["bulk"]),
    ]);
    assert!(matches!(decide(&cluster, &pod), Placement::Placed { node, .. } if node == "h2"));

    let cluster = view(&[classed("h1", &["fast"]), classed("h3", &[])]);
    assert_eq!(
        decide(&cluster, &pod),
        Placement::Unschedulable {
            reason: "0/2 nodes fit: 2 missing volume class bulk, 1 missing volume class fast"
                .to_owned()
        }
    );
    let cluster = view(&[classed("h1", &["fast"])]);
    assert_eq!(
        decide(&cluster, &pod),
        Placement::Unschedulable {
            reason: "0/1 nodes fit: 1 missing volume class bulk".to_owned()
        }
    );
}
