//! `failover`: three masters on a 3-member etcd (`berth-lab up --masters
//! 3`); each trial `kill -9`s the leader's master and at once scales a
//! service up by one through plain `berth` (which finds a surviving master
//! by itself). The figure is from the kill to the new pod's `PodScheduled`
//! event, which only a leader writes: the death noticed, a lease expired,
//! a new leader elected and its first placement committed. Both ends are
//! read on the machine's one clock (the lab's hosts share it). Between
//! trials systemd has restarted the killed master and all three serve.

use std::time::{Duration, Instant};

use berth_harness::Lab;
use serde_json::Value;

use crate::quantile;

/// The leader's name, from the election key in etcd.
fn leader(lab: &Lab) -> Option<String> {
    let run = lab.exec(
        "h2",
        &[
            "etcdctl",
            "get",
            "/berth/masters/leader",
            "--print-value-only",
        ],
    );
    let name = run.stdout().trim().to_owned();
    (run.success() && !name.is_empty()).then_some(name)
}

/// How many masters `berth master ls` shows healthy, with one leader.
fn healthy_masters(lab: &Lab) -> usize {
    let run = lab.berth("h1", &["master", "ls", "-o", "json"]);
    if !run.success() {
        return 0;
    }
    let listed = run.json();
    let listed = listed.as_array().cloned().unwrap_or_default();
    let leaders = listed.iter().filter(|m| m["leader"] == true).count();
    if leaders != 1 {
        return 0;
    }
    listed.iter().filter(|m| m["healthy"] == true).count()
}

/// The earliest `PodScheduled` at or after `since_ms`, in Unix ms.
fn first_scheduled_since(lab: &Lab, since_ms: u64) -> Option<u64> {
    let run = lab.berth("h1", &["events", "-o", "json"]);
    if !run.success() {
        return None;
    }
    run.json()
        .as_array()?
        .iter()
        .filter(|e| e["kind"] == "PodScheduled")
        .filter_map(|e: &Value| e["timeMs"].as_u64())
        .filter(|t| *t >= since_ms)
        .min()
}

/// `berth-bench failover`: `trials` leader kills.
pub fn failover(trials: usize) {
    let lab = Lab::up_with("bn-failover", 3, &["--masters", "3"]);
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "1",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let mut figures = Vec::new();
    for trial in 1..=trials {
        lab.eventually(Duration::from_secs(60), "three healthy masters", || {
            (healthy_masters(&lab) == 3).then_some(())
        });
        let leader = lab.eventually(Duration::from_secs(10), "a leader", || leader(&lab));
        let pid = lab.main_pid(&leader, "berth-master");
        let killed_ms = berth_harness::now_ms();
        let killed = Instant::now();
        lab.exec(&leader, &["kill", "-9", &pid]).assert_success();
        let replicas = (trial + 1).to_string();
        lab.berth("h1", &["scale", "web", &replicas])
            .assert_success();
        let scheduled_ms = lab.eventually(Duration::from_secs(30), "the new pod placed", || {
            first_scheduled_since(&lab, killed_ms)
        });
        let seconds = (scheduled_ms - killed_ms) as f64 / 1000.0;
        println!(
            "trial {trial}: kill -9 of {leader}'s master to the next pod scheduled: {seconds:.3} s \
             (seen by the bench after {:.1} s)",
            killed.elapsed().as_secs_f64()
        );
        figures.push(seconds);
    }
    figures.sort_by(f64::total_cmp);
    let (p50, p99) = (quantile(&figures, 0.5), quantile(&figures, 0.99));
    println!(
        "failover over {trials} trials: p50 {p50:.3} s, p99 {p99:.3} s \
         (target p99 <= 3 s; Kubernetes' default lease alone is 15 s + 2 s)"
    );
    lab.down();
}
