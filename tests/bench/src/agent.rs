//! The agent at scale on one lab node joined to a master:
//!
//! - `agent-cpu`: the agent's CPU time (its process and the processes it
//!   waited for: `journalctl` for events and logs) over a window with no
//!   pods, then with N idle pods of a service, as a share of one core.
//! - `burst`: N pods of one service placed on the node at once, from the
//!   API call (`berth run --replicas N`) to the last container started
//!   (Docker's `StartedAt`) and to all pods Running (`berth ps`), against
//!   N bare `docker run -d` at the agent's concurrency in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_harness::Lab;

/// Boots a one-node lab joined to its master, with `agent` installed in
/// place of the freshly built berth-agent if given.
fn one_node(name: &str, agent: Option<&Path>) -> Lab {
    let lab = Lab::up(name, 1);
    if let Some(agent) = agent {
        lab.exec("h1", &["systemctl", "stop", "berth-agent"])
            .assert_success();
        lab.copy_in("h1", agent, "/usr/bin/berth-agent");
        lab.exec("h1", &["chmod", "0755", "/usr/bin/berth-agent"])
            .assert_success();
        lab.exec("h1", &["systemctl", "start", "berth-agent"])
            .assert_success();
    }
    lab.eventually(Duration::from_secs(60), "the node Ready", || {
        let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]);
        let nodes = nodes.success().then(|| nodes.json())?;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["condition"] == "Ready")
            .then_some(())
    });
    lab.exec("h1", &["docker", "run", "--rm", "local/busybox", "true"])
        .assert_success();
    lab
}

/// Waits (checking once a second, so as not to load what is measured)
/// until `count` pods of `service` are Running; returns when it saw them.
fn all_running(lab: &Lab, service: &str, count: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    let prefix = format!("{service}-");
    loop {
        let pods = lab.pods();
        let running = pods
            .iter()
            .filter(|p| {
                p["spec"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if running >= count {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{running} of {count} pods of {service} Running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Starts a service of `pods` idle replicas.
fn run_idle(lab: &Lab, service: &str, pods: usize) {
    lab.berth(
        "h1",
        &[
            "run",
            service,
            "--image",
            "local/busybox",
            "--replicas",
            &pods.to_string(),
            "--",
            "sleep",
            "1000000",
        ],
    )
    .assert_success();
}

/// The agent's CPU time so far in clock ticks: its own and that of the
/// children it waited for (`utime stime cutime cstime` of
/// `/proc/PID/stat`), and the ticks per second.
fn agent_ticks(lab: &Lab) -> (u64, u64) {
    let pid = lab.main_pid("h1", "berth-agent");
    let out = lab
        .sh("h1", &format!("getconf CLK_TCK; cat /proc/{pid}/stat"))
        .assert_success();
    let mut lines = out.lines();
    let hz: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("CLK_TCK");
    let stat = lines.next().expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses: the state
    // is field 3, utime 14 .. cstime 17.
    let after = stat.rsplit_once(") ").expect("a stat line").1;
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().expect("a tick count"))
        .collect();
    (fields.iter().sum(), hz)
}

/// The agent's CPU over `seconds`, as a percentage of one core.
fn agent_cpu_share(lab: &Lab, seconds: u64) -> f64 {
    let (before, hz) = agent_ticks(lab);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (after, _) = agent_ticks(lab);
    let elapsed = started.elapsed().as_secs_f64();
    (after - before) as f64 / hz as f64 / elapsed * 100.0
}

/// `berth-bench agent-cpu`: the agent's CPU with no pods, then with
/// `pods` idle pods, each over `seconds`.
pub fn agent_cpu(pods: usize, seconds: u64, agent: Option<&Path>) {
    // Its own lab name, so a before and an after can run side by side.
    let name = if agent.is_some() {
        "agent-cpu-other"
    } else {
        "agent-cpu"
    };
    let lab = one_node(name, agent);
    // Past the agent's start and its first full reads.
    std::thread::sleep(Duration::from_secs(35));
    let idle = agent_cpu_share(&lab, seconds);
    run_idle(&lab, "idle", pods);
    all_running(
        &lab,
        "idle",
        pods,
        Duration::from_secs(60 + 3 * pods as u64),
    );
    // Past the starts' events and a full resync of the status cache.
    std::thread::sleep(Duration::from_secs(35));
    let loaded = agent_cpu_share(&lab, seconds);
    let which = agent.map_or("freshly built".to_string(), |a| a.display().to_string());
    println!("berth-agent CPU ({which}), share of one core over {seconds} s:");
    println!("  no pods          {idle:6.2}%");
    println!("  {pods:3} idle pods    {loaded:6.2}%  (target <= 0.5%)");
    lab.down();
}

/// The latest `StartedAt` of the containers Docker lists with `filter`,
/// in Unix milliseconds, and how many there are.
fn last_started_ms(lab: &Lab, filter: &str) -> (u64, usize) {
    let out = lab
        .sh(
            "h1",
            &format!(
                "docker ps -q --filter {filter} | xargs -r docker inspect \
                 -f '{{{{.State.StartedAt}}}}' | xargs -r -n1 date +%s%3N -d"
            ),
        )
        .assert_success();
    let times: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (times.iter().copied().max().unwrap_or(0), times.len())
}

/// The Unix time on h1 in milliseconds.
fn now_ms(lab: &Lab) -> u64 {
    lab.sh("h1", "date +%s%3N")
        .assert_success()
        .trim()
        .parse()
        .expect("the time")
}

/// `berth-bench burst`: `pods` pods at once, against `pods` bare
/// `docker run -d` with `concurrency` at a time; with `agent` instead of
/// the freshly built berth-agent if given.
pub fn burst(pods: usize, concurrency: usize, rounds: usize, agent: Option<&Path>) {
    let name = if agent.is_some() {
        "burst-other"
    } else {
        "burst"
    };
    let lab = one_node(name, agent);
    let mut berth = Vec::new();
    let mut ready = Vec::new();
    let mut docker = Vec::new();
    for round in 0..rounds {
        let service = format!("burst{round}");
        let mut berth_round = || {
            let t0 = now_ms(&lab);
            run_idle(&lab, &service, pods);
            let asked = Instant::now();
            let seen = all_running(
                &lab,
                &service,
                pods,
                Duration::from_secs(60 + 3 * pods as u64),
            );
            let (last, started) = last_started_ms(&lab, "label=berth.pod");
            assert!(started >= pods, "only {started} berth containers run");
            berth.push(last.saturating_sub(t0) as f64 / 1e3);
            ready.push((seen - asked).as_secs_f64());
            lab.berth("h1", &["rm", &service]).assert_success();
            lab.eventually(Duration::from_secs(120), "the burst's pods gone", || {
                (last_started_ms(&lab, "label=berth.pod").1 == 0).then_some(())
            });
        };
        let docker_round = || {
            let script = format!(
                "t0=$(date +%s%3N); seq 1 {pods} | xargs -P {concurrency} -I N \
                 docker run -d --name bare-N --label bench-bare=1 local/busybox sleep 1000000 \
                 >/dev/null && echo $t0"
            );
            let t0: u64 = lab
                .sh("h1", &script)
                .assert_success()
                .trim()
                .parse()
                .expect("the start time");
            let (last, started) = last_started_ms(&lab, "label=bench-bare=1");
            assert_eq!(started, pods, "bare containers running");
            lab.sh(
                "h1",
                "docker rm -f $(docker ps -aq --filter label=bench-bare=1) >/dev/null",
            )
            .assert_success();
            last.saturating_sub(t0) as f64 / 1e3
        };
        if round % 2 == 0 {
            docker.push(docker_round());
            berth_round();
        } else {
            berth_round();
            docker.push(docker_round());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, r, d) = (median(&mut berth), median(&mut ready), median(&mut docker));
    println!("burst start, {pods} pods on one node, {rounds} rounds (median, s):");
    println!("  docker run -d, {concurrency} at a time              {d:7.2}");
    println!("  berth run --replicas, to last container started {b:7.2}");
    println!("  berth run --replicas, to all Running (berth ps) {r:7.2}");
    println!(
        "  ratio berth/docker                              {:7.2}x  (target <= 1.2x)",
        b / d
    );
    lab.down();
}
