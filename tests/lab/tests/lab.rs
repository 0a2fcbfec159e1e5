//! The lab itself: hosts boot with systemd and dockerd, share a private
//! network that reaches nothing else, reboot on their own disk, can be cut
//! off and plugged back in, and leave nothing behind.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use berth_harness::{berth_lab, Lab};

/// Pings `to` once from `from`; true if it answered.
fn pings(lab: &Lab, from: &str, to: &str) -> bool {
    lab.exec(from, &["busybox", "ping", "-c", "1", "-W", "1", to])
        .success()
}

/// The machine's own global IPv4 addresses.
fn machine_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn hosts_run_systemd_and_docker_on_a_private_network() {
    let lab = Lab::up("boot", 3);
    eprintln!(
        "measured: berth-lab up --hosts 3 took {:.2?}",
        lab.boot_time
    );

    let state = lab
        .exec("h2", &["systemctl", "is-system-running"])
        .assert_success();
    assert_eq!(state.trim(), "running");
    let echoed = lab
        .exec(
            "h3",
            &["docker", "run", "--rm", "local/busybox", "echo", "ok"],
        )
        .assert_success();
    assert_eq!(echoed.trim(), "ok");

    let h3 = lab.host("h3");
    assert!(
        pings(&lab, "h1", &h3.address.to_string()),
        "h1 cannot reach h3 at {}",
        h3.address
    );
    assert!(pings(&lab, "h1", "h3"), "h1 cannot reach h3 by name");

    // Nothing outside the lab is reachable: no default route, so the kernel
    // refuses at once and no packet ever leaves the lab.
    let routes = lab.exec("h1", &["ip", "route"]).assert_success();
    assert!(
        !routes.contains("default"),
        "h1 has a default route:\n{routes}"
    );
    let mut outside = vec!["192.0.2.1".to_string()];
    outside.extend(machine_addresses());
    for address in outside {
        let err = lab
            .exec("h1", &["busybox", "nc", "-w", "1", &address, "22"])
            .assert_failure();
        assert!(
            err.contains("unreachable"),
            "reaching {address} from h1: {err}"
        );
    }

    // `exec` passes stdin through and returns the command's exit code.
    let code = lab.exec("h1", &["sh", "-c", "exit 7"]).code();
    assert_eq!(code, Some(7));

    let took = lab.down();
    eprintln!("measured: berth-lab down (3 hosts) took {took:.2?}");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn reboot_keeps_the_disk_and_forgets_run() {
    let lab = Lab::up("reboot", 2);
    lab.sh("h2", "mkdir -p /var/lib/berth-test && echo kept > /var/lib/berth-test/file && echo gone > /run/berth-test-file")
        .assert_success();
    let before = lab.host("h2").pid;

    lab.lab(&["reboot", "h2"]).assert_success();

    assert_ne!(
        lab.host("h2").pid,
        before,
        "h2 has the same PID 1 after reboot"
    );
    assert_eq!(
        lab.exec("h2", &["cat", "/var/lib/berth-test/file"])
            .assert_success()
            .trim(),
        "kept"
    );
    lab.exec("h2", &["test", "-e", "/run/berth-test-file"])
        .assert_failure();
    assert_eq!(
        lab.exec("h2", &["systemctl", "is-system-running"])
            .assert_success()
            .trim(),
        "running"
    );
    // Docker's storage is part of the disk: the image survives.
    lab.exec("h2", &["docker", "image", "inspect", "local/busybox"])
        .assert_success();
    assert!(
        pings(&lab, "h1", "h2"),
        "h2 is off the network after reboot"
    );
    // The other host was not touched.
    assert_eq!(lab.host("h1").state, "running");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn partition_cuts_a_host_off_and_heal_restores_it() {
    let lab = Lab::up("partition", 3);
    assert!(pings(&lab, "h1", "h3"));

    lab.lab(&["partition", "h3"]).assert_success();
    assert!(lab.host("h3").partitioned);
    assert!(!pings(&lab, "h1", "h3"), "h1 still reaches h3");
    assert!(!pings(&lab, "h3", "h2"), "h3 still reaches h2");
    assert!(
        pings(&lab, "h1", "h2"),
        "the rest of the lab lost its network"
    );

    lab.lab(&["heal", "h3"]).assert_success();
    assert!(!lab.host("h3").partitioned);
    lab.eventually(Duration::from_secs(5), "h1 to reach h3 again", || {
        pings(&lab, "h1", "h3").then_some(())
    });
}

/// Live processes of a lab, as (PID, start time): those in its cgroups.
fn lab_processes(name: &str) -> BTreeSet<(i32, String)> {
    let marker = format!("/berth-lab.{name}/");
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let start = rest.split(' ').nth(19)?.to_owned();
            (!rest.starts_with('Z') && cgroups.contains(&marker)).then_some((pid, start))
        })
        .collect()
}

/// Whether any of `processes` still runs (same PID, same start time).
fn still_running(processes: &BTreeSet<(i32, String)>) -> Vec<i32> {
    processes
        .iter()
        .filter(|(pid, start)| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ").is_some_and(|(_, rest)| {
                    !rest.starts_with('Z') && rest.split(' ').nth(19) == Some(start.as_str())
                })
            })
        })
        .map(|(pid, _)| *pid)
        .collect()
}

fn lab_mounts(name: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| {
            l.contains(&format!("/berth-lab/{name}")) || l.contains(&format!("berth-lab.{name}"))
        })
        .map(String::from)
        .collect()
}

fn lab_cgroups(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let dir = hierarchy.path().join(format!("berth-lab.{name}"));
        if dir.exists() {
            found.push(dir.display().to_string());
        }
    }
    found
}

fn links() -> String {
    let out = std::process::Command::new("ip")
        .args(["-br", "link"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn down_leaves_nothing_behind() {
    let canary = Path::new("/tmp/berth-lab-test-canary");
    fs::write(canary, "still here").expect("writing the canary");
    let links_before = links();

    let lab = Lab::up("down", 2);
    let name = lab.name().to_owned();
    let hosts = lab_processes(&name);
    assert!(
        hosts.len() > 6,
        "expected the hosts' systemd, journald, dockerd...: {hosts:?}"
    );
    assert!(!lab_mounts(&name).is_empty());
    assert!(!lab_cgroups(&name).is_empty());

    lab.down();

    let left = still_running(&hosts);
    assert!(
        left.is_empty(),
        "processes of the lab are still alive: {left:?}"
    );
    assert_eq!(lab_mounts(&name), Vec::<String>::new(), "mounts left");
    assert_eq!(lab_cgroups(&name), Vec::<String>::new(), "cgroups left");
    assert!(
        !Path::new("/var/lib/berth-lab").join(&name).exists(),
        "state dir left"
    );
    assert_eq!(
        links(),
        links_before,
        "network links changed on the machine"
    );
    assert_eq!(
        fs::read_to_string(canary).expect("the canary in /tmp is gone"),
        "still here"
    );
    fs::remove_file(canary).ok();

    // `down` of a lab that is not up is harmless, and `status` says so.
    berth_lab(&["down", "--name", &name]).assert_success();
    let err = berth_lab(&["status", "--name", &name]).assert_failure();
    assert!(err.contains("is not up"), "{err}");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn bad_requests_get_clear_errors() {
    let err = berth_lab(&["up", "--name", "Bad_Name"]).assert_failure();
    assert!(err.contains("lab name"), "{err}");
    let lab = Lab::up("errors", 1);
    let err = lab.lab(&["exec", "h9", "--", "true"]).assert_failure();
    assert!(err.contains("no host \"h9\""), "{err}");
    let err = lab.lab(&["up", "--hosts", "1"]).assert_failure();
    assert!(err.contains("already up"), "{err}");
}
