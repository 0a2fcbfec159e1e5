//! Router benchmarks on a 3-host lab (master and router on h1, replicas on
//! h2 and h3, load from h2), each against a baseline in the same run:
//!
//! - `router-change`: a route switched to another service with `berth route
//!   add --replace` (master, long poll, router, runtime API), until the
//!   first answer from the new backend under 200 req/s; against the same
//!   switch made by hand through HAProxy's runtime API on a hand-written
//!   HAProxy beside it. Failed requests are counted on both.
//! - `router-throughput`: requests/s through berth's generated configuration
//!   against a minimal hand-written one for the same backend, closed loop,
//!   rounds alternating; each round's ratio and their median, and each
//!   HAProxy's CPU time per request. Both HAProxies are pinned to the same
//!   CPU and the load generator to another, so neither proxy gets more of
//!   the machine than the other and the load does not take their CPU.

use std::time::Duration;

use berth_harness::{Lab, SERVE_HOSTNAME};

use crate::quantile;
use serde_json::Value;

/// h1, where the router and the hand-written HAProxy run.
const ROUTER: &str = "10.231.0.11";
/// The hand-written HAProxy's port.
const HAND_PORT: u16 = 8081;
/// Its admin socket.
const HAND_SOCKET: &str = "/run/hand/admin.sock";

fn bench_binary() -> String {
    berth_harness::bin_dir()
        .join("berth-bench")
        .to_string_lossy()
        .into_owned()
}

/// The lab: services `blue` and `green` (one replica each, answering with
/// their container's hostname), route `www` to blue, a router on h1 and a
/// hand-written HAProxy on h1:8081 whose backend has blue enabled and
/// green disabled. Returns the bodies of blue and green.
///
/// The hand-written HAProxy runs as a systemd unit like berth's: started
/// outside systemd it would sit in another cgroup and get another share of
/// a busy machine's CPU, which skewed the ratio by 15-20 %.
///
/// With two CPUs or more, both HAProxies start pinned to CPU 0
/// ([`PROXY_CPU`]), so they also run as many threads as each other
/// (HAProxy starts one per CPU it may use).
fn setup(name: &str) -> (Lab, String, String) {
    let lab = Lab::up(name, 3);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    let affinity = match pinned() {
        Some(_) => {
            lab.sh(
                "h1",
                &format!(
                    "mkdir -p /run/systemd/system/berth-router-haproxy.service.d && \
                     printf '[Service]\\nCPUAffinity={PROXY_CPU}\\n' \
                     > /run/systemd/system/berth-router-haproxy.service.d/bench-cpu.conf && \
                     systemctl daemon-reload"
                ),
            )
            .assert_success();
            format!("-p CPUAffinity={PROXY_CPU}")
        }
        None => String::new(),
    };
    lab.exec("h1", &["systemctl", "enable", "--now", "berth-router"])
        .assert_success();
    for service in ["blue", "green"] {
        lab.berth(
            "h1",
            &[
                "run",
                service,
                "--image",
                "local/busybox",
                "-p",
                "8080",
                "--",
                "sh",
                "-c",
                SERVE_HOSTNAME,
            ],
        )
        .assert_success();
    }
    lab.berth(
        "h1",
        &["route", "add", "blue", "www.example.test", "--name", "www"],
    )
    .assert_success();
    let endpoints = lab.eventually(Duration::from_secs(90), "blue and green ready", || {
        let out = lab
            .sh(
                "h1",
                "curl -sf --cacert /var/lib/berth/master/ca.crt \
                 -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" \
                 https://h1:7443/v1/endpoints",
            )
            .stdout();
        let view: Value = serde_json::from_str(&out).ok()?;
        let address = |service: &str| -> Option<String> {
            let e = view["services"]
                .as_array()?
                .iter()
                .find(|s| s["service"] == service)?["endpoints"]
                .get(0)?
                .clone();
            let address = e["address"].as_str()?;
            (e["ready"] == true).then(|| format!("{address}:{}", e["port"]))
        };
        Some((address("blue")?, address("green")?))
    });
    let (blue, green) = endpoints;
    let hand = format!(
        "global\n    maxconn 4000\n    stats socket {HAND_SOCKET} mode 600 level admin\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n\
         frontend hand\n    bind :{HAND_PORT}\n    default_backend hand\n\
         backend hand\n    server blue {blue}\n    server green {green} disabled\n"
    );
    lab.sh(
        "h1",
        &format!(
            "mkdir -p /run/hand && cat > /run/hand/haproxy.cfg <<'EOF'\n{hand}EOF\n\
             systemd-run --unit=bench-hand-haproxy -p Type=notify {affinity} \\
             /usr/sbin/haproxy -Ws -f /run/hand/haproxy.cfg"
        ),
    )
    .assert_success();
    let body = |port: u16, host: &str| {
        lab.eventually(Duration::from_secs(60), "an answer", || {
            let run = lab.exec(
                "h2",
                &[
                    "curl",
                    "-sf",
                    "-m",
                    "5",
                    "-H",
                    &format!("Host: {host}"),
                    &format!("http://{ROUTER}:{port}/"),
                ],
            );
            run.success().then(|| run.stdout().trim().to_owned())
        })
    };
    let blue_body = body(80, "www.example.test");
    assert_eq!(body(HAND_PORT, "hand"), blue_body, "both serve blue");
    let green_body = lab
        .exec(
            "h2",
            &["curl", "-sf", "-m", "5", &format!("http://{green}/")],
        )
        .assert_success()
        .trim()
        .to_owned();
    (lab, blue_body, green_body)
}

/// The CPU both HAProxies are pinned to.
const PROXY_CPU: usize = 0;
/// The CPU the load generator is pinned to.
const LOAD_CPU: usize = 1;

/// `Some(())` when the machine has a CPU for the proxies and another for
/// the load: lab hosts share the machine's CPUs.
fn pinned() -> Option<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus > LOAD_CPU).then_some(())
}

/// The CPU time (ns) the unit's processes have used so far, every thread
/// counted, read inside h1.
fn unit_cpu_ns(lab: &Lab, unit: &str) -> f64 {
    let out = lab
        .sh(
            "h1",
            &format!(
                "cg=$(systemctl show -p ControlGroup --value {unit}); \
                 for p in $(cat /sys/fs/cgroup/systemd$cg/cgroup.procs); do \
                 cat /proc/$p/task/*/schedstat 2>/dev/null; done | \
                 awk '{{s += $1}} END {{printf \"%.0f\\n\", s}}'"
            ),
        )
        .assert_success();
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{unit}: CPU time {out:?}: {e}"))
}

/// Runs `script` on h1 and returns the wall-clock ms just before it ran.
fn timed_change(lab: &Lab, script: &str) -> u64 {
    let out = lab
        .sh("h1", &format!("date +%s%3N; {script} >/dev/null"))
        .assert_success();
    out.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a start time")
}

/// The first time (ms) after `since` that the load saw `body`.
fn first_seen(lines: &[Value], body: &str, since: u64) -> Option<u64> {
    lines
        .iter()
        .filter(|l| l["body"] == body)
        .filter_map(|l| l["timeMs"].as_u64())
        .find(|t| *t >= since)
}

/// `router-change`: see the module comment.
pub fn change(switches: usize) {
    let (lab, blue, green) = setup("bench-router-change");
    let seconds = (switches as u64) * 8 + 6;
    let load = |port: u16, host: &'static str| {
        let lab = &lab;
        move || {
            lab.exec(
                "h2",
                &[
                    &bench_binary(),
                    "load",
                    "--target",
                    &format!("{ROUTER}:{port}"),
                    "--host",
                    host,
                    "--rate",
                    "200",
                    "--seconds",
                    &seconds.to_string(),
                    "--report-changes",
                ],
            )
        }
    };
    let route =
        |service: &str| format!("berth route add {service} www.example.test --name www --replace");
    let hand = |on: &str, off: &str| {
        format!(
            "{} haproxy-runtime --socket {HAND_SOCKET} 'set server hand/{on} state ready' \
             'set server hand/{off} state maint'",
            bench_binary()
        )
    };
    let (berth_runs, hand_runs, changes) = std::thread::scope(|scope| {
        let berth_load = scope.spawn(load(80, "www.example.test"));
        let hand_load = scope.spawn(load(HAND_PORT, "hand"));
        std::thread::sleep(Duration::from_secs(3));
        let mut changes = Vec::new();
        for _ in 0..switches {
            for (target, on, off) in [(&green, "green", "blue"), (&blue, "blue", "green")] {
                let t = timed_change(&lab, &route(on));
                changes.push(("berth", target.clone(), t));
                std::thread::sleep(Duration::from_secs(2));
                let t = timed_change(&lab, &hand(on, off));
                changes.push(("hand", target.clone(), t));
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        let berth_runs = berth_load.join().expect("load thread").assert_success();
        let hand_runs = hand_load.join().expect("load thread").assert_success();
        (berth_runs, hand_runs, changes)
    });
    let parse = |out: &str| -> Vec<Value> {
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let (berth_lines, hand_lines) = (parse(&berth_runs), parse(&hand_runs));
    let mut latencies = std::collections::BTreeMap::<&str, Vec<f64>>::new();
    for (side, body, since) in &changes {
        let lines = if *side == "berth" {
            &berth_lines
        } else {
            &hand_lines
        };
        match first_seen(lines, body, *since) {
            Some(t) => latencies.entry(side).or_default().push((t - since) as f64),
            None => eprintln!("{side}: the change at {since} never reached {body}"),
        }
    }
    let summary = |lines: &[Value]| lines.last().cloned().unwrap_or_default();
    println!("router-change: {switches} switches each way, 200 req/s on each side");
    for (side, lines) in [("berth", &berth_lines), ("hand", &hand_lines)] {
        let mut samples = latencies.remove(side).unwrap_or_default();
        samples.sort_by(f64::total_cmp);
        let s = summary(lines);
        if samples.is_empty() {
            println!("  {side}: no change observed; load {s}");
            continue;
        }
        println!(
            "  {side:5}: change to first answer from the new backend p50 {:.0} ms, p99 {:.0} ms ({} samples); requests {} failed {}",
            quantile(&samples, 0.5),
            quantile(&samples, 0.99),
            samples.len(),
            s["sent"],
            s["failed"],
        );
        latencies.insert(side, samples);
    }
    if let (Some(b), Some(h)) = (latencies.get("berth"), latencies.get("hand")) {
        println!(
            "  ratio berth/hand: p50 {:.2}x, p99 {:.2}x (target p99 <= 200 ms, zero failed)",
            quantile(b, 0.5) / quantile(h, 0.5).max(1.0),
            quantile(b, 0.99) / quantile(h, 0.99).max(1.0),
        );
    }
}

/// One round: (req/s, HAProxy CPU us per request) of berth's side, then
/// of the hand-written one.
type Round = ((f64, f64), (f64, f64));

/// `router-throughput`: see the module comment.
pub fn throughput(seconds: u64, rounds: usize, concurrency: u32) {
    let (lab, _, _) = setup("bench-router-rps");
    // (req/s, HAProxy CPU us per request) of one run of `seconds`.
    let run = |port: u16, host: &str, unit: &str, seconds: u64| -> (f64, f64) {
        let mut argv: Vec<String> = Vec::new();
        if pinned().is_some() {
            argv.extend(["taskset", "-c", &LOAD_CPU.to_string()].map(String::from));
        }
        argv.extend(
            [
                &bench_binary(),
                "load",
                "--target",
                &format!("{ROUTER}:{port}"),
                "--host",
                host,
                "--seconds",
                &seconds.to_string(),
                "--concurrency",
                &concurrency.to_string(),
            ]
            .map(String::from),
        );
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let cpu_before = unit_cpu_ns(&lab, unit);
        let out = lab.exec("h2", &argv).assert_success();
        let cpu = unit_cpu_ns(&lab, unit) - cpu_before;
        let summary: Value = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        assert_eq!(summary["failed"], 0, "failed requests: {summary}");
        let ok = summary["ok"].as_f64().unwrap_or_default().max(1.0);
        (
            summary["ratePerSec"].as_f64().unwrap_or_default(),
            cpu / 1e3 / ok,
        )
    };
    let berth = |seconds| {
        run(
            80,
            "www.example.test",
            "berth-router-haproxy.service",
            seconds,
        )
    };
    let hand = |seconds| run(HAND_PORT, "hand", "bench-hand-haproxy.service", seconds);
    // Warm-up, not counted: the first seconds after setup are slower
    // (the cluster still settling), and would count against whoever went
    // first.
    berth(2);
    hand(2);
    let mut per_round: Vec<Round> = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs right after
        // the other's load.
        let (b, h) = if round % 2 == 0 {
            let b = berth(seconds);
            (b, hand(seconds))
        } else {
            let h = hand(seconds);
            (berth(seconds), h)
        };
        println!(
            "  round {}: berth {:.0} req/s ({:.1} us CPU/req), hand {:.0} req/s ({:.1} us CPU/req), ratio {:.3}x",
            round + 1,
            b.0,
            b.1,
            h.0,
            h.1,
            b.0 / h.0
        );
        per_round.push((b, h));
    }
    let sorted = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = per_round.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let ratios = sorted(&|(b, h)| b.0 / h.0);
    let cpu_ratios = sorted(&|(b, h)| b.1 / h.1);
    let pinning = if pinned().is_some() {
        format!("both HAProxies on CPU {PROXY_CPU}, load on CPU {LOAD_CPU}")
    } else {
        "one CPU: nothing pinned".to_owned()
    };
    println!(
        "router-throughput: {rounds} rounds of {seconds} s, {concurrency} clients, new connection per request, {pinning}\n  \
         berth's config: {:.0} req/s, {:.1} us CPU/req (medians)\n  \
         hand-written:   {:.0} req/s, {:.1} us CPU/req\n  \
         ratio: median of per-round ratios {:.3}x (min {:.3}x, max {:.3}x; target >= 0.98x)\n  \
         HAProxy CPU per request, berth/hand: median {:.3}x",
        quantile(&sorted(&|(b, _)| b.0), 0.5),
        quantile(&sorted(&|(b, _)| b.1), 0.5),
        quantile(&sorted(&|(_, h)| h.0), 0.5),
        quantile(&sorted(&|(_, h)| h.1), 0.5),
        quantile(&ratios, 0.5),
        ratios.first().copied().unwrap_or_default(),
        ratios.last().copied().unwrap_or_default(),
        quantile(&cpu_ratios, 0.5),
    );
}
