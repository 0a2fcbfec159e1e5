//! berth-master with agents joined on every lab host: joining is guarded by
//! one-time tokens and per-node credentials, services are spread over the
//! hosts and serve, and a partitioned host's pods move and never run twice.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_harness::{Lab, MASTER, SERVE_HOSTNAME};
use serde_json::Value;

/// A shell line that writes the master's CA (as a joined agent pinned it) to
/// /run/master-ca.pem, for curl's --cacert.
const PINNED_CA: &str = "jq -r .caPem /var/lib/berth/master.json > /run/master-ca.pem";

/// The master's store in a test.
#[derive(Debug, Clone, Copy)]
enum Store {
    Embedded,
    Etcd,
}

/// Boots a lab whose master uses `store`.
fn up(store: Store, name: &str, hosts: usize) -> Lab {
    match store {
        Store::Embedded => Lab::up(name, hosts),
        Store::Etcd => Lab::up_with(&format!("{name}-etcd"), hosts, &["--store", "etcd"]),
    }
}

/// Pod name -> node, from `berth ps -o json` on h1.
fn placements(lab: &Lab) -> BTreeMap<String, Option<String>> {
    let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
    pods.as_array()
        .expect("ps -o json is a list")
        .iter()
        .map(|p| {
            (
                p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                p["node"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn agents_join_with_one_time_tokens_and_node_credentials_are_confined() {
    agents_join_with_one_time_tokens_and_node_credentials_are_confined_with(Store::Embedded);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn agents_join_with_one_time_tokens_and_node_credentials_are_confined_on_etcd() {
    agents_join_with_one_time_tokens_and_node_credentials_are_confined_with(Store::Etcd);
}

fn agents_join_with_one_time_tokens_and_node_credentials_are_confined_with(store: Store) {
    let lab = up(store, "cluster-join", 3);
    // `berth-lab up` started the master on h1 and joined all three hosts.
    let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
    let ready: Vec<&str> = nodes
        .as_array()
        .expect("node ls -o json is a list")
        .iter()
        .filter(|n| n["condition"] == "Ready")
        .filter_map(|n| n["node"]["name"].as_str())
        .collect();
    assert_eq!(ready, ["h1", "h2", "h3"], "{nodes:#}");

    let issued = lab.berth("h1", &["node", "token", "-o", "json"]).json();
    let token = issued["token"].as_str().expect("token").to_owned();
    let command = issued["command"].as_str().expect("command").to_owned();
    let ca_hash = command
        .split_whitespace()
        .skip_while(|w| *w != "--ca-hash")
        .nth(1)
        .expect("--ca-hash in the join command")
        .to_owned();
    let join = |host: &str, token: &str, ca_hash: &str| {
        lab.exec(
            host,
            &[
                "berth-agent",
                "join",
                MASTER,
                "--token",
                token,
                "--ca-hash",
                ca_hash,
            ],
        )
    };
    let err = join("h2", "not-a-token", &ca_hash).assert_failure();
    assert!(err.contains("join token is unknown"), "{err}");
    let wrong_ca = format!("sha256:{}", "0".repeat(64));
    let err = join("h2", &token, &wrong_ca).assert_failure();
    assert!(
        err.contains("refusing to send the join token"),
        "a wrong CA was trusted: {err}"
    );
    // h2 is registered: a plain token does not take it over, and stays
    // unused; a token bound to h2 by the admin re-registers it.
    let err = join("h2", &token, &ca_hash).assert_failure();
    assert!(
        err.contains("409") && err.contains("berth node rejoin h2"),
        "a registered name was taken over: {err}"
    );
    let rejoin = lab
        .berth("h1", &["node", "rejoin", "h2", "-o", "json"])
        .json();
    let rejoin = rejoin["token"].as_str().expect("token").to_owned();
    join("h2", &rejoin, &ca_hash).assert_success();
    let err = join("h3", &rejoin, &ca_hash).assert_failure();
    assert!(
        err.contains("join token is unknown, used or expired"),
        "a reused token was accepted: {err}"
    );

    // h2's credential reads h2's assignments, never h3's.
    let joined = lab
        .exec("h2", &["cat", "/var/lib/berth/master.json"])
        .json();
    let credential = joined["credential"].as_str().expect("credential");
    let header = format!("Authorization: Bearer {credential}");
    lab.sh("h2", PINNED_CA).assert_success();
    let code = |node: &str| {
        let url = format!("{MASTER}/v1/nodes/{node}/assignments");
        let curl = [
            "curl",
            "-s",
            "--cacert",
            "/run/master-ca.pem",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        let mut argv = curl.to_vec();
        argv.extend(["-H", &header, &url]);
        lab.exec("h2", &argv).assert_success()
    };
    assert_eq!(code("h2"), "200");
    assert_eq!(code("h3"), "403");
    let mode = lab
        .exec("h2", &["stat", "-c", "%a", "/var/lib/berth/master.json"])
        .assert_success();
    assert_eq!(mode.trim(), "600");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_service_spreads_serves_and_leaves_a_partitioned_host() {
    a_service_spreads_serves_and_leaves_a_partitioned_host_with(Store::Embedded);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_service_spreads_serves_and_leaves_a_partitioned_host_on_etcd() {
    a_service_spreads_serves_and_leaves_a_partitioned_host_with(Store::Etcd);
}

fn a_service_spreads_serves_and_leaves_a_partitioned_host_with(store: Store) {
    let lab = up(store, "cluster-run", 3);
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "3",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            SERVE_HOSTNAME,
        ],
    )
    .assert_success();

    // One pod per host, each serving on its host port.
    let pods = lab.eventually(
        Duration::from_secs(30),
        "3 pods placed and reported",
        || {
            let placed = placements(&lab);
            let ports: Option<Vec<(String, String, u64)>> = placed
                .iter()
                .map(|(pod, node)| Some((pod.clone(), node.clone()?, lab.host_port(pod)?)))
                .collect();
            ports.filter(|p| p.len() == 3)
        },
    );
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|(_, n, _)| n).collect();
    assert_eq!(nodes.len(), 3, "not one pod per host: {pods:?}");
    // A pod's host port is reported as soon as it is allocated, before the
    // container listens: each must serve within seconds.
    for (pod, node, port) in &pods {
        lab.eventually(
            Duration::from_secs(20),
            &format!("{pod} serving on {node}:{port}"),
            || {
                lab.exec(
                    "h1",
                    &[
                        "curl",
                        "-sS",
                        "--max-time",
                        "5",
                        &format!("http://{node}:{port}/"),
                    ],
                )
                .success()
                .then_some(())
            },
        );
    }

    // Cut h3 off: its pod runs elsewhere within 5 s.
    let (lost, _, _) = pods
        .iter()
        .find(|(_, n, _)| n == "h3")
        .expect("a pod on h3")
        .clone();
    lab.lab(&["partition", "h3"]).assert_success();
    let cut = Instant::now();
    let moved = lab.eventually(Duration::from_secs(10), "h3's pod to run elsewhere", || {
        let placed = placements(&lab);
        let off_h3 = placed.len() == 3
            && placed
                .values()
                .all(|n| n.as_deref().is_some_and(|n| n != "h3"));
        let running = placed.keys().all(|p| lab.host_port(p).is_some());
        (off_h3 && running).then_some(placed)
    });
    let took = cut.elapsed();
    eprintln!("measured: partitioned host's pod running elsewhere after {took:.2?}");
    assert!(took <= Duration::from_secs(5), "took {took:?}: {moved:?}");
    assert!(
        !moved.contains_key(&lost),
        "the lost pod {lost} is still listed: {moved:?}"
    );

    // Heal: h3 stops its orphan, and exactly 3 pods remain.
    // The events say what happened.
    let events = lab.berth("h1", &["events", "-o", "json"]).json();
    let events = events.as_array().expect("events -o json is a list");
    let said = |kind: &str, object: &str| {
        events
            .iter()
            .any(|e| e["kind"] == kind && e["object"] == object)
    };
    assert!(
        said("NodeNotReady", "node/h3"),
        "no NodeNotReady for h3: {events:#?}"
    );
    assert!(
        said("PodEvicted", &format!("pod/{lost}")),
        "no PodEvicted for {lost}: {events:#?}"
    );

    lab.lab(&["heal", "h3"]).assert_success();
    lab.eventually(Duration::from_secs(15), "h3 to stop its orphan", || {
        let left = lab
            .exec("h3", &["docker", "ps", "-q", "--filter", "label=berth.pod"])
            .assert_success();
        left.trim().is_empty().then_some(())
    });
    assert_eq!(placements(&lab).len(), 3);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_stateful_service_stays_on_a_dead_host_until_moved() {
    a_stateful_service_stays_on_a_dead_host_until_moved_with(Store::Embedded);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_stateful_service_stays_on_a_dead_host_until_moved_on_etcd() {
    a_stateful_service_stays_on_a_dead_host_until_moved_with(Store::Etcd);
}

fn a_stateful_service_stays_on_a_dead_host_until_moved_with(store: Store) {
    let lab = up(store, "cluster-stateful", 3);
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let node = lab.eventually(Duration::from_secs(20), "db placed", || {
        placements(&lab).get("db-0").cloned().flatten()
    });
    let other = ["h2", "h3"]
        .into_iter()
        .find(|h| *h != node)
        .expect("another host");
    // Partition db's host (never h1: the master lives there).
    let victim = if node == "h1" {
        lab.berth("h1", &["move", "db-0", "--to", other])
            .assert_success();
        lab.eventually(Duration::from_secs(20), "db moved off h1", || {
            (placements(&lab).get("db-0").cloned().flatten().as_deref() == Some(other))
                .then_some(())
        });
        other.to_owned()
    } else {
        node
    };
    lab.lab(&["partition", &victim]).assert_success();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        placements(&lab).get("db-0").cloned().flatten().as_deref(),
        Some(victim.as_str()),
        "a stateful pod moved by itself"
    );

    // An explicit move does move it; the old host stops it once it is back.
    let target = ["h2", "h3"]
        .into_iter()
        .find(|h| *h != victim)
        .expect("a target");
    lab.berth("h1", &["move", "db-0", "--to", target])
        .assert_success();
    lab.eventually(Duration::from_secs(20), "db running on the target", || {
        let out = lab
            .exec(
                target,
                &["docker", "ps", "-q", "--filter", "label=berth.pod=db-0"],
            )
            .assert_success();
        (!out.trim().is_empty()).then_some(())
    });
    lab.lab(&["heal", &victim]).assert_success();
    lab.eventually(Duration::from_secs(15), "the old host to stop db", || {
        let out = lab
            .exec(
                &victim,
                &["docker", "ps", "-q", "--filter", "label=berth.pod=db-0"],
            )
            .assert_success();
        out.trim().is_empty().then_some(())
    });
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn killing_the_master_during_creates_loses_no_acknowledged_write() {
    killing_the_master_during_creates_loses_no_acknowledged_write_with(Store::Embedded);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn killing_the_master_during_creates_loses_no_acknowledged_write_on_etcd() {
    killing_the_master_during_creates_loses_no_acknowledged_write_with(Store::Etcd);
}

fn killing_the_master_during_creates_loses_no_acknowledged_write_with(store: Store) {
    let lab = up(store, "cluster-crash", 2);
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "2",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let containers = |host: &str| {
        lab.exec(
            host,
            &[
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                "label=berth.pod",
            ],
        )
        .assert_success()
    };
    lab.eventually(Duration::from_secs(20), "2 pods running", || {
        let n = containers("h1").lines().count() + containers("h2").lines().count();
        (n == 2).then_some(())
    });
    let before = (containers("h1"), containers("h2"));

    // 1,000 creates, acknowledged ones printed; the master is SIGKILLed
    // part-way through and started again.
    let script = r#"
admin=$(cat /var/lib/berth/master/admin.token)
( for i in $(seq 1 1000); do
    body="{\"name\":\"svc-$i\",\"replicas\":0,\"template\":{\"name\":\"t\",\"containers\":[{\"name\":\"c\",\"image\":\"local/busybox\"}]}}"
    code=$(curl -s --cacert /var/lib/berth/master/ca.crt -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $admin" -d "$body" https://h1:7443/v1/services)
    [ "$code" = 201 ] && echo "svc-$i"
  done > /run/acked ) &
sleep 1.5
systemctl kill --signal=KILL berth-master
wait
systemctl start berth-master
"#;
    lab.sh("h1", script).assert_success();
    let acked = lab.exec("h1", &["cat", "/run/acked"]).assert_success();
    let acked: Vec<&str> = acked.lines().collect();
    assert!(
        acked.len() > 10,
        "too few creates were acknowledged: {}",
        acked.len()
    );
    let list = "curl -sf --cacert /var/lib/berth/master/ca.crt -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" https://h1:7443/v1/services";
    let services = lab.eventually(
        Duration::from_secs(10),
        "the master to answer again",
        || {
            let run = lab.sh("h1", list);
            run.success()
                .then(|| serde_json::from_str::<Value>(&run.stdout()).ok())
                .flatten()
        },
    );
    let names: std::collections::BTreeSet<&str> = services
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let lost: Vec<&&str> = acked.iter().filter(|a| !names.contains(**a)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged creates are gone: {lost:?}",
        lost.len()
    );
    eprintln!(
        "measured: {} creates acknowledged before the kill, all present after restart",
        acked.len()
    );
    assert_eq!(
        (containers("h1"), containers("h2")),
        before,
        "running pods were touched"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn an_agent_joins_through_its_config_file_with_labels_pods_select() {
    let lab = up(Store::Embedded, "cluster-config", 2);
    // h2 is registered: re-registering it takes a token bound to it.
    let issued = lab
        .berth("h1", &["node", "rejoin", "h2", "-o", "json"])
        .json();
    let token = issued["token"].as_str().expect("token");
    let command = issued["command"].as_str().expect("command");
    let ca_hash = command
        .split_whitespace()
        .skip_while(|w| *w != "--ca-hash")
        .nth(1)
        .expect("--ca-hash");
    let config = format!(
        "[labels]\ndisk = \"ssd\"\n[master]\nurl = \"{MASTER}\"\ntoken = \"{token}\"\nca-hash = \"{ca_hash}\"\n"
    );
    // h2 forgets its join and joins again from its config file at start.
    lab.exec("h2", &["systemctl", "stop", "berth-agent"])
        .assert_success();
    lab.exec("h2", &["rm", "/var/lib/berth/master.json"])
        .assert_success();
    lab.sh(
        "h2",
        &format!("mkdir -p /etc/berth && cat > /etc/berth/agent.toml <<'EOF'\n{config}EOF"),
    )
    .assert_success();
    lab.exec("h2", &["systemctl", "start", "berth-agent"])
        .assert_success();
    lab.eventually(Duration::from_secs(15), "h2 to join with its label", || {
        let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
        let h2 = nodes
            .as_array()?
            .iter()
            .find(|n| n["node"]["name"] == "h2")?
            .clone();
        (h2["condition"] == "Ready" && h2["node"]["labels"]["disk"] == "ssd").then_some(())
    });
    lab.berth(
        "h1",
        &[
            "run",
            "fast",
            "--image",
            "local/busybox",
            "--replicas",
            "2",
            "--node-selector",
            "disk=ssd",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let placed = lab.eventually(Duration::from_secs(15), "both replicas placed", || {
        let placed = placements(&lab);
        (placed.len() == 2 && placed.values().all(Option::is_some)).then_some(placed)
    });
    assert!(
        placed.values().all(|n| n.as_deref() == Some("h2")),
        "the selector was ignored: {placed:?}"
    );
    let drained = lab.berth("h1", &["node", "drain", "h2"]).assert_success();
    assert!(drained.contains("evicted"), "{drained}");
    // Nowhere else carries the label: the evicted pods wait, saying why.
    let reasons = lab.eventually(
        Duration::from_secs(15),
        "the evicted pods to be unschedulable",
        || {
            let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
            let reasons: Vec<String> = pods
                .as_array()?
                .iter()
                .filter(|p| p["node"].is_null())
                .filter_map(|p| p["unschedulableReason"].as_str().map(String::from))
                .collect();
            (reasons.len() == 2).then_some(reasons)
        },
    );
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("cordoned") && r.contains("selector")),
        "{reasons:?}"
    );
}
