//! Moves with data: a stateful pod's named volume goes with it, agent to
//! agent over TLS, checksum verified; the source's copy goes once the pod
//! runs on the target (or stays with `--keep-source`); a target agent
//! and the master killed mid-copy cost a retry, never the data, and the
//! pod never runs on two nodes.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::time::Duration;

use berth_harness::Lab;
use serde_json::Value;

/// The pod's container, as Docker names it.
const CONTAINER: &str = "berth.db-0.db";

/// Boots three hosts and runs the stateful `db` with a named volume on h2
/// (h1 and h3 cordoned while it is placed).
fn db_on_h2(name: &str) -> Lab {
    let lab = Lab::up(name, 3);
    for host in ["h1", "h3"] {
        lab.berth("h1", &["node", "cordon", host]).assert_success();
    }
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "-v",
            "data:/data",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    running_on(&lab, "h2");
    for host in ["h1", "h3"] {
        lab.berth("h1", &["node", "uncordon", host])
            .assert_success();
    }
    lab
}

/// Waits until db-0's container runs on `host`.
#[track_caller]
fn running_on(lab: &Lab, host: &str) {
    lab.eventually(
        Duration::from_secs(90),
        &format!("db-0 running on {host}"),
        || {
            let out = lab.exec(
                host,
                &[
                    "docker",
                    "ps",
                    "-q",
                    "--filter",
                    &format!("name={CONTAINER}"),
                ],
            );
            (out.success() && !out.stdout().trim().is_empty()).then_some(())
        },
    );
}

/// Writes `megabytes` of random data to the volume; its SHA-256.
#[track_caller]
fn write_blob(lab: &Lab, host: &str, megabytes: u32) -> String {
    let script = format!(
        "head -c {} /dev/urandom > /data/blob && sync && sha256sum /data/blob",
        megabytes * 1024 * 1024
    );
    let out = lab
        .exec(host, &["docker", "exec", CONTAINER, "sh", "-c", &script])
        .assert_success();
    out.split_whitespace()
        .next()
        .expect("a checksum")
        .to_owned()
}

/// The blob's SHA-256 as db-0 sees it on `host`.
#[track_caller]
fn blob_checksum(lab: &Lab, host: &str) -> String {
    let out = lab
        .exec(
            host,
            &["docker", "exec", CONTAINER, "sha256sum", "/data/blob"],
        )
        .assert_success();
    out.split_whitespace()
        .next()
        .expect("a checksum")
        .to_owned()
}

/// Whether db-0's Docker volume exists on `host`.
fn has_volume(lab: &Lab, host: &str) -> bool {
    let out = lab.exec(
        host,
        &[
            "docker",
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=berth.pod=db-0",
        ],
    );
    !out.stdout().trim().is_empty()
}

/// How many of the hosts run a db-0 container.
fn running_copies(lab: &Lab) -> usize {
    ["h1", "h2", "h3"]
        .into_iter()
        .filter(|host| {
            let out = lab.exec(
                host,
                &["docker", "ps", "-q", "--filter", "label=berth.pod=db-0"],
            );
            !out.stdout().trim().is_empty()
        })
        .count()
}

/// db-0's move record, while it moves.
fn moving(lab: &Lab) -> Value {
    lab.pod("db-0")
        .map(|p| p["moving"].clone())
        .unwrap_or(Value::Null)
}

/// Waits until the move is over: no record left, db-0 bound to `host`;
/// past the wait, prints what the master and the agents say.
#[track_caller]
fn moved_to(lab: &Lab, host: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while std::time::Instant::now() < deadline {
        // The master may be restarting: no answer is no news.
        let ps = lab.berth("h1", &["ps", "-o", "json"]);
        let pods: Value = serde_json::from_str(&ps.stdout()).unwrap_or(Value::Null);
        let pod = pods
            .as_array()
            .and_then(|pods| pods.iter().find(|p| p["spec"]["name"] == "db-0"));
        if let Some(pod) = pod {
            if pod["moving"].is_null() && pod["node"] == host {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{}", lab.berth("h1", &["describe", "pod", "db-0"]).stdout());
    eprintln!("{}", lab.berth("h1", &["events"]).stdout());
    for node in ["h2", "h3"] {
        let journal = lab.exec(
            node,
            &[
                "sh",
                "-c",
                "journalctl -u berth-agent --no-pager | tail -40",
            ],
        );
        eprintln!("--- {node}\n{}", journal.stdout());
    }
    panic!("the move to {host} did not finish in time");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_stateful_pod_moves_with_its_data_and_the_source_copy_goes() {
    let lab = db_on_h2("mv-data");
    let written = write_blob(&lab, "h2", 50);

    let out = lab
        .berth("h1", &["move", "db-0", "--to", "h3"])
        .assert_success();
    assert!(out.contains("with its data"), "{out}");
    moved_to(&lab, "h3");
    running_on(&lab, "h3");
    assert_eq!(blob_checksum(&lab, "h3"), written, "the data on h3");
    assert_eq!(running_copies(&lab), 1, "db-0 runs on one node");
    assert!(!has_volume(&lab, "h2"), "the source copy on h2 is removed");
    let copied = lab.events("MoveCopied");
    assert!(
        copied
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or_default().contains("sha256:")),
        "{copied:?}"
    );
    assert!(!lab.events("MoveFinished").is_empty());

    // Back to h2, keeping h3's copy.
    lab.berth("h1", &["move", "db-0", "--to", "h2", "--keep-source"])
        .assert_success();
    moved_to(&lab, "h2");
    running_on(&lab, "h2");
    assert_eq!(blob_checksum(&lab, "h2"), written, "the data back on h2");
    assert!(has_volume(&lab, "h3"), "--keep-source keeps h3's copy");
    assert_eq!(running_copies(&lab), 1, "db-0 runs on one node");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_target_agent_killed_mid_copy_costs_a_retry_not_the_data() {
    let lab = db_on_h2("mv-kill");
    let written = write_blob(&lab, "h2", 100);
    // Slow h2's link (tbf on its lab interface) so the copy takes a while.
    let dev = lab
        .exec(
            "h2",
            &[
                "sh",
                "-c",
                "ip -o route get 10.231.0.13 | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'",
            ],
        )
        .assert_success()
        .trim()
        .to_owned();
    assert!(!dev.is_empty(), "h2's lab interface");
    lab.exec(
        "h2",
        &[
            "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "200mbit", "burst", "256kb",
            "latency", "50ms",
        ],
    )
    .assert_success();

    lab.berth("h1", &["move", "db-0", "--to", "h3"])
        .assert_success();
    lab.eventually(Duration::from_secs(90), "the copy under way", || {
        let bytes = moving(&lab)["bytesCopied"].as_u64().unwrap_or(0);
        (bytes > 5 * 1024 * 1024).then_some(())
    });
    let describe = lab
        .berth("h1", &["describe", "pod", "db-0"])
        .assert_success();
    assert!(describe.contains("moving: h2 -> h3"), "{describe}");
    assert!(describe.contains("MB/s"), "{describe}");
    // The target agent dies mid-copy, and the master with it; systemd
    // brings both back, and the move goes on from the master's store.
    lab.exec("h3", &["systemctl", "kill", "-s", "KILL", "berth-agent"])
        .assert_success();
    lab.exec("h1", &["systemctl", "kill", "-s", "KILL", "berth-master"])
        .assert_success();
    assert_eq!(running_copies(&lab), 0, "nothing runs while the data moves");
    lab.exec("h2", &["tc", "qdisc", "del", "dev", &dev, "root"])
        .assert_success();

    moved_to(&lab, "h3");
    running_on(&lab, "h3");
    assert_eq!(blob_checksum(&lab, "h3"), written, "all the data on h3");
    assert_eq!(running_copies(&lab), 1, "db-0 runs on exactly one node");
    assert!(
        !lab.events("MoveFailed").is_empty(),
        "the cut attempt is reported"
    );
}
