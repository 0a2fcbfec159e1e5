//! Faults that must not move or stop workloads: Docker restarting under
//! its pods, the master's own host cut off from the rest, and an agent
//! that lost its state directory (and its credential).
//!
//! Root only: run with `cargo test -p berth-lab-tests --test faults -- --ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_harness::{Lab, MASTER};
use serde_json::Value;

/// A pod as the master lists it: its node, phase and first host port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    node: Option<String>,
    phase: Option<String>,
    host_port: Option<u64>,
}

/// Every pod the master knows, by name.
fn pods(lab: &Lab) -> BTreeMap<String, Listed> {
    let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
    pods.as_array()
        .expect("ps -o json is a list")
        .iter()
        .map(|p| {
            (
                p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                Listed {
                    node: p["node"].as_str().map(String::from),
                    phase: p["status"]["phase"].as_str().map(String::from),
                    host_port: p["status"]["containers"][0]["hostPorts"][0]["hostPort"].as_u64(),
                },
            )
        })
        .collect()
}

/// Each node's condition.
fn conditions(lab: &Lab) -> BTreeMap<String, String> {
    let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
    nodes
        .as_array()
        .expect("node ls -o json is a list")
        .iter()
        .map(|n| {
            (
                n["node"]["name"].as_str().unwrap_or_default().to_owned(),
                n["condition"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `docker inspect` of every berth container on `host`: name -> (ID, PID,
/// running, start of the current run). A container removed between the
/// listing and the inspection is left out.
fn containers(lab: &Lab, host: &str) -> BTreeMap<String, (String, u64, bool, String)> {
    let out = lab
        .sh(
            host,
            "ids=$(docker ps -aq --filter label=berth.pod); \
             [ -z \"$ids\" ] || docker inspect -f \
             '{{.Name}} {{.Id}} {{.State.Pid}} {{.State.Running}} {{.State.StartedAt}}' $ids \
             2>/dev/null; true",
        )
        .assert_success();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.trim_start_matches('/').to_owned(),
                (
                    (*f.get(1)?).to_owned(),
                    f.get(2)?.parse().ok()?,
                    *f.get(3)? == "true",
                    (*f.get(4)?).to_owned(),
                ),
            ))
        })
        .collect()
}

/// Runs service `name` of `replicas` busybox httpd pods, each with a host
/// port, and waits until all are Running.
fn run_service(lab: &Lab, name: &str, replicas: u32) -> BTreeMap<String, Listed> {
    lab.berth(
        "h1",
        &[
            "run",
            name,
            "--image",
            "local/busybox",
            "--replicas",
            &replicas.to_string(),
            "-p",
            "8080",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(120),
        &format!("{replicas} pods of {name} running with host ports"),
        || {
            let listed = pods(lab);
            let ready = listed.len() == replicas as usize
                && listed
                    .values()
                    .all(|p| p.phase.as_deref() == Some("Running") && p.host_port.is_some());
            ready.then_some(listed)
        },
    )
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn restarting_docker_restarts_pods_in_place_and_evicts_nothing() {
    let lab = Lab::up("fe-docker", 3);
    for host in ["h1", "h3"] {
        lab.berth("h1", &["node", "cordon", host]).assert_success();
    }
    let before = run_service(&lab, "web", 30);
    assert!(
        before.values().all(|p| p.node.as_deref() == Some("h2")),
        "{before:#?}"
    );

    let mut slowest = Duration::ZERO;
    for round in 1..=6 {
        let runs_before = containers(&lab, "h2");
        assert_eq!(runs_before.len(), 30, "{runs_before:#?}");
        let restarted = Instant::now();
        // docker.service allows 3 starts a minute (StartLimitBurst): the
        // count is reset so that 6 restarts in a row are allowed at all.
        lab.sh(
            "h2",
            "systemctl reset-failed docker; systemctl restart docker",
        )
        .assert_success();
        // Every container runs again, each a new run of the same container,
        // and the master lists the same pods on the same ports.
        lab.eventually(
            Duration::from_secs(30),
            &format!("restart {round}: the 30 pods running again in place"),
            || {
                let runs = containers(&lab, "h2");
                let in_place = runs.len() == 30
                    && runs.iter().all(|(name, (id, _, running, started))| {
                        *running
                            && runs_before
                                .get(name)
                                .is_some_and(|(old_id, _, _, old_started)| {
                                    old_id == id && old_started != started
                                })
                    });
                (in_place && pods(&lab) == before).then_some(())
            },
        );
        let took = restarted.elapsed();
        eprintln!("measured: docker restart {round}: all 30 pods running again after {took:.2?}");
        slowest = slowest.max(took);
        assert!(
            lab.events("PodEvicted").is_empty(),
            "restart {round} evicted pods"
        );
        // The heartbeat that says Docker answers again may come a beat
        // after the pods are seen running.
        lab.eventually(
            Duration::from_secs(10),
            &format!("restart {round}: h2 Ready again"),
            || (conditions(&lab)["h2"] == "Ready").then_some(()),
        );
    }
    eprintln!("measured: slowest of 6 docker restarts to all 30 running: {slowest:.2?}");
    let engine_down = lab.events("NodeEngineUnavailable");
    assert!(
        engine_down.iter().any(|e| e["object"] == "node/h2"),
        "no NodeEngineUnavailable for h2: {engine_down:#?}"
    );
    let not_ready = lab.events("NodeNotReady");
    if !not_ready.is_empty() {
        for host in ["h1", "h2", "h3"] {
            eprintln!(
                "--- {host}'s agent journal (warnings):\n{}",
                lab.sh(
                    host,
                    "journalctl -u berth-agent -p warning --no-pager -o short-precise | tail -40"
                )
                .stdout()
            );
        }
        eprintln!(
            "--- the master's journal:\n{}",
            lab.sh(
                "h1",
                "journalctl -u berth-master --no-pager -o short-precise | tail -60"
            )
            .stdout()
        );
    }
    assert!(
        not_ready.is_empty(),
        "a docker restart made a node NotReady: {not_ready:#?}"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn cutting_off_the_masters_host_evicts_nothing() {
    let lab = Lab::up("fe-cutoff", 3);
    let before = run_service(&lab, "web", 6);
    let on = |node: &str| {
        before
            .values()
            .filter(|p| p.node.as_deref() == Some(node))
            .count()
    };
    assert!(on("h2") > 0 && on("h3") > 0, "{before:#?}");
    let runs_h2 = containers(&lab, "h2");
    let runs_h3 = containers(&lab, "h3");

    lab.lab(&["partition", "h1"]).assert_success();
    let cut = Instant::now();
    let held = lab.eventually(
        Duration::from_secs(15),
        "an event that evictions are held back",
        || lab.events("EvictionsHeld").into_iter().next(),
    );
    eprintln!(
        "measured: evictions held {:.2?} after the cut",
        cut.elapsed()
    );
    let reason = held["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("2 of 3 nodes (h2, h3)"), "{held:#}");
    lab.eventually(Duration::from_secs(10), "h2 and h3 NotReady", || {
        let during = conditions(&lab);
        (during["h2"] == "NotReady" && during["h3"] == "NotReady").then_some(())
    });
    let pause = Duration::from_secs(15).saturating_sub(cut.elapsed());
    std::thread::sleep(pause);
    assert_eq!(
        pods(&lab),
        before,
        "pods moved while the master was cut off"
    );
    lab.lab(&["heal", "h1"]).assert_success();

    lab.eventually(Duration::from_secs(20), "h2 and h3 Ready again", || {
        let now = conditions(&lab);
        (now["h2"] == "Ready" && now["h3"] == "Ready").then_some(())
    });
    // Well past the settling time after the heal: still nothing moved.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(pods(&lab), before);
    assert!(lab.events("PodEvicted").is_empty());
    assert!(!lab.events("EvictionsResumed").is_empty());
    assert_eq!(containers(&lab, "h2"), runs_h2, "h2's containers changed");
    assert_eq!(containers(&lab, "h3"), runs_h3, "h3's containers changed");
}

/// Stops h2's agent, deletes what `script` deletes of its state, starts it.
fn lose_state(lab: &Lab, script: &str) {
    lab.sh(
        "h2",
        &format!("systemctl stop berth-agent && {script} && systemctl start berth-agent"),
    )
    .assert_success();
}

/// A join token from the master: `berth node rejoin h2` (which binds the
/// token to the node's name) where the master has it, else `berth node token`.
fn rejoin_token(lab: &Lab) -> (String, String) {
    let issued = lab
        .berth("h1", &["node", "rejoin", "h2", "-o", "json"])
        .json();
    let token = issued["token"].as_str().expect("token").to_owned();
    let command = issued["command"].as_str().expect("command").to_owned();
    let ca_hash = command
        .split_whitespace()
        .skip_while(|w| *w != "--ca-hash")
        .nth(1)
        .expect("--ca-hash in the join command")
        .to_owned();
    (token, ca_hash)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn an_agent_that_lost_its_state_keeps_every_container_running() {
    let lab = Lab::up("fe-state", 2);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    let before = run_service(&lab, "web", 3);
    let runs = containers(&lab, "h2");
    assert_eq!(runs.len(), 3, "{runs:#?}");

    // The pod records and unit files go; the credential stays.
    lose_state(
        &lab,
        "find /var/lib/berth -mindepth 1 -maxdepth 1 ! -name master.json -exec rm -rf {} +",
    );
    lab.eventually(
        Duration::from_secs(30),
        "the agent to adopt its pods",
        || {
            let adopted = lab
                .sh("h2", "ls /var/lib/berth/pods | wc -l")
                .assert_success();
            (adopted.trim() == "3").then_some(())
        },
    );
    // A few resyncs later: the same containers, the same processes.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(containers(&lab, "h2"), runs, "containers were restarted");
    assert_eq!(pods(&lab), before);
    assert!(lab.events("PodEvicted").is_empty());

    // Everything goes, the credential too: nothing stops.
    lose_state(&lab, "rm -rf /var/lib/berth");
    let log = lab.eventually(
        Duration::from_secs(20),
        "the rejoin hint in the log",
        || {
            let log = lab
                .exec(
                    "h2",
                    &["journalctl", "-u", "berth-agent", "--no-pager", "-n", "50"],
                )
                .assert_success();
            log.contains("--reuse-name").then_some(log)
        },
    );
    assert!(log.contains("berth node rejoin h2"), "{log}");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        containers(&lab, "h2"),
        runs,
        "containers stopped without a credential"
    );

    // Rejoining under the same name restores the node.
    let (token, ca_hash) = rejoin_token(&lab);
    lab.exec(
        "h2",
        &[
            "berth-agent",
            "join",
            MASTER,
            "--token",
            &token,
            "--ca-hash",
            &ca_hash,
            "--reuse-name",
        ],
    )
    .assert_success();
    let after = lab.eventually(
        Duration::from_secs(60),
        "h2 Ready with the service's 3 pods running on it",
        || {
            let listed = pods(&lab);
            let running = listed.len() == 3
                && listed.values().all(|p| {
                    p.node.as_deref() == Some("h2") && p.phase.as_deref() == Some("Running")
                });
            (conditions(&lab)["h2"] == "Ready" && running).then_some(listed)
        },
    );
    // No orphans: exactly the master's pods run on h2, one container each.
    let running_pods = || -> Vec<String> {
        containers(&lab, "h2")
            .into_iter()
            .filter(|(_, (_, _, running, _))| *running)
            .filter_map(|(name, _)| Some(name.split('.').nth(1)?.to_owned()))
            .collect()
    };
    let expected: Vec<String> = after.keys().cloned().collect();
    lab.eventually(Duration::from_secs(30), "no orphan left on h2", || {
        let running = running_pods();
        eprintln!("running on h2: {running:?}, the master's: {expected:?}");
        (running == expected).then_some(())
    });
}

/// `fixed`, one pod asking for host port 30000.
fn run_fixed_on_30000(lab: &Lab) {
    lab.berth(
        "h1",
        &[
            "run",
            "fixed",
            "--image",
            "local/busybox",
            "-p",
            "30000:8080",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .assert_success();
}

/// The first event of `kind`, waited for: the agent ships events from the
/// journal every second.
fn first_event(lab: &Lab, kind: &str) -> Value {
    lab.eventually(Duration::from_secs(10), &format!("a {kind} event"), || {
        let events = lab
            .berth("h1", &["events", "--type", kind, "-o", "json"])
            .json();
        events.as_array()?.first().cloned()
    })
}

/// The pod slices (`berth-<pod>.slice`) systemd has loaded on `host`.
fn pod_slices(lab: &Lab, host: &str) -> Vec<String> {
    lab.exec(
        host,
        &[
            "systemctl",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "berth-*.slice",
        ],
    )
    .assert_success()
    .lines()
    .filter_map(|line| line.split_whitespace().next().map(String::from))
    .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn removing_every_service_leaves_no_pod_slice_loaded() {
    let lab = Lab::up("fe-slices", 2);
    run_service(&lab, "sc", 2);
    let loaded: Vec<String> = ["h1", "h2"]
        .iter()
        .flat_map(|host| pod_slices(&lab, host))
        .collect();
    assert_eq!(
        loaded.len(),
        2,
        "one slice per pod while they run: {loaded:?}"
    );

    lab.berth("h1", &["rm", "sc"]).assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "no pod slice loaded on any host",
        || {
            ["h1", "h2"]
                .iter()
                .all(|host| pod_slices(&lab, host).is_empty())
                .then_some(())
        },
    );
    // The cgroup directories go with them, on every hierarchy, within
    // seconds (a container's last processes may still be exiting).
    let cgroups_left = || {
        lab.sh(
            "h2",
            "find /sys/fs/cgroup/*/berth.slice -mindepth 1 -type d 2>/dev/null",
        )
        .assert_success()
        .trim()
        .to_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = cgroups_left();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = cgroups_left();
    }
    assert_eq!(left, "", "cgroup directories of removed pods");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_fixed_host_port_the_agents_allocated_is_never_placed_where_it_is_held() {
    let lab = Lab::up("fe-ports", 2);
    // One replica per node, each given the first free port of the range.
    let held = run_service(&lab, "auto", 2);
    let ports: BTreeSet<Option<u64>> = held.values().map(|p| p.host_port).collect();
    assert_eq!(ports, BTreeSet::from([Some(30000)]), "{held:?}");

    run_fixed_on_30000(&lab);
    lab.eventually(Duration::from_secs(30), "fixed waits, saying why", || {
        let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
        let fixed = pods
            .as_array()?
            .iter()
            .find(|p| p["spec"]["name"] == "fixed-0")?
            .clone();
        let reason = fixed["unschedulableReason"].as_str()?.to_owned();
        assert!(
            fixed["node"].is_null(),
            "placed where 30000 is held: {fixed}"
        );
        (reason == "no node has host port 30000 free").then_some(())
    });

    // Freeing the port on one node lets it go there, and only there.
    lab.berth("h1", &["scale", "auto", "1"]).assert_success();
    let placed = lab.eventually(Duration::from_secs(60), "fixed running", || {
        let listed = pods(&lab);
        let fixed = listed.get("fixed-0")?;
        (fixed.phase.as_deref() == Some("Running")).then(|| (listed.clone(), fixed.clone()))
    });
    let (listed, fixed) = placed;
    let auto_node = listed
        .iter()
        .find(|(name, _)| name.starts_with("auto-"))
        .and_then(|(_, p)| p.node.clone());
    assert_ne!(fixed.node, auto_node, "{listed:?}");
    assert_eq!(fixed.host_port, Some(30000));
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn an_image_that_does_not_pull_says_why_within_seconds_and_is_retried_with_backoff() {
    let lab = Lab::up("fe-pull", 1);
    lab.berth("h1", &["run", "x", "--image", "nosuch/image:1"])
        .assert_success();
    let asked = Instant::now();

    let row = lab.eventually(Duration::from_secs(5), "berth ps says why", || {
        lab.berth("h1", &["ps"])
            .assert_success()
            .lines()
            .find(|line| line.starts_with("x-0 ") && line.contains("Pending: ImagePullFailed"))
            .map(String::from)
    });
    println!("{row}");
    let described = lab.berth("h1", &["describe", "x"]).assert_success();
    // No registry is reachable from the lab: Docker's word is about
    // reaching Docker Hub's.
    assert!(
        described.contains("start failures:")
            && described.contains("x-0: ImagePullFailed: pull nosuch/image:1: ")
            && described.contains("registry-1.docker.io")
            && described.contains("attempt "),
        "describe gives Docker's word on the pull: {described}"
    );
    let listed = lab.berth("h1", &["ps", "-o", "json"]).json();
    let failure = &listed[0]["status"]["startFailure"];
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis();
    let next = u128::from(
        failure["nextAttemptMs"]
            .as_u64()
            .expect("the next try's time"),
    );
    assert!(
        failure["attempts"].as_u64() >= Some(1) && next + 1_000 >= now_ms,
        "the status says when the next try is: {failure}"
    );
    let first = first_event(&lab, "ImagePullFailed");
    assert_eq!(first["object"], "pod/x-0", "{first}");
    assert!(
        first["reason"].as_str().is_some_and(
            |r| r.contains("registry-1.docker.io") && r.contains("(attempt 1; next in 2s)")
        ),
        "{first}"
    );

    // A minute of retries: the wait doubles, so few pulls are made.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(asked.elapsed()));
    let pulls = lab
        .sh(
            "h1",
            "journalctl -u berth-agent --no-pager -o verbose | grep -c 'ACTION=.*pull nosuch/image:1'",
        )
        .assert_success();
    let pulls: u32 = pulls.trim().parse().expect("a count");
    assert!((2..10).contains(&pulls), "{pulls} pull attempts in 60 s");
    let events = lab
        .berth("h1", &["events", "--type", "ImagePullFailed", "-o", "json"])
        .json();
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(pulls as usize),
        "one event per failed pull: {events}"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_pod_whose_host_port_a_process_holds_moves_to_a_node_where_it_is_free() {
    let lab = Lab::up("fe-moved", 2);
    // A process of h1's own, not a pod, holds 30000.
    lab.sh(
        "h1",
        "systemd-run --unit=squatter --property=Type=exec python3 -m http.server 30000",
    )
    .assert_success();
    lab.eventually(Duration::from_secs(10), "the squatter listens", || {
        lab.sh("h1", "ss -Hltn 'sport = :30000' | grep -q LISTEN")
            .success()
            .then_some(())
    });
    lab.berth("h1", &["node", "cordon", "h2"]).assert_success();
    run_fixed_on_30000(&lab);

    // Placed on h1, it cannot start there: it is taken off h1 and, with
    // h2 cordoned, waits saying why.
    let reason = lab.eventually(Duration::from_secs(30), "fixed taken off h1", || {
        let listed = lab.berth("h1", &["ps", "-o", "json"]).json();
        let fixed = listed.as_array()?.first()?.clone();
        let failed_on_h1 = fixed["startFailedOn"].get("h1").is_some();
        (fixed["node"].is_null() && failed_on_h1)
            .then(|| fixed["unschedulableReason"].as_str().map(String::from))
            .flatten()
    });
    assert!(
        reason.contains("1 cordoned") && reason.contains("1 where it could not start lately"),
        "{reason}"
    );
    let conflict = first_event(&lab, "HostPortConflict");
    assert_eq!(conflict["object"], "pod/fixed-0");
    assert_eq!(conflict["node"], "h1");
    assert!(
        conflict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("30000/tcp is already in use")),
        "{conflict}"
    );

    // Where the port is free, it runs.
    lab.berth("h1", &["node", "uncordon", "h2"])
        .assert_success();
    let fixed = lab.eventually(Duration::from_secs(60), "fixed running on h2", || {
        let fixed = pods(&lab).remove("fixed-0")?;
        (fixed.phase.as_deref() == Some("Running")).then_some(fixed)
    });
    assert_eq!(fixed.node.as_deref(), Some("h2"));
    assert_eq!(fixed.host_port, Some(30000));
    lab.sh("h1", "systemctl stop squatter").assert_success();
}
