//! Link benchmarks.
//!
//! `link-throughput`: a 2-host cluster; `client` on h1 links to `sink` on
//! h2. From inside the client's container, the same download (and the
//! same small requests) go through the link (127.0.0.1, DNAT in the pod's
//! namespace) and directly to the sink's host address and port (no link
//! DNAT), interleaved.
//!
//! `link-add`: in one lab host, a container's namespace gets N links
//! installed by the agent's own code (plan + `iptables-restore`), then one
//! more link is added and timed, again and again; the baseline is adding
//! the first link. The timed part runs inside the lab host (this binary,
//! visible there through the host's overlay root, re-executes itself with
//! the hidden `link-add-in-host` subcommand).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_agent::links::converge;
use berth_agent::links::plan::{Backend, PodWiring};
use berth_harness::Lab;
use berth_model::{EgressPolicy, Link};

use crate::quantile;

fn berth(lab: &Lab, args: &[&str]) -> String {
    let mut argv = vec!["berth"];
    argv.extend(args);
    lab.exec("h1", &argv).assert_success()
}

fn pods(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&berth(lab, &["ps", "-o", "json"])).expect("ps -o json")
}

/// (node, host port) of a running pod.
fn running(lab: &Lab, pod: &str) -> Option<(String, u64)> {
    let pods = pods(lab);
    let pod = pods.as_array()?.iter().find(|p| p["spec"]["name"] == pod)?;
    if pod["status"]["phase"] != "Running" {
        return None;
    }
    let port = pod["status"]["containers"][0]["hostPorts"][0]["hostPort"]
        .as_u64()
        .unwrap_or(0);
    Some((pod["node"].as_str()?.to_owned(), port))
}

fn place(lab: &Lab, pod: &str, node: &str) -> u64 {
    let (first, _) = lab.eventually(Duration::from_secs(60), pod, || running(lab, pod));
    if first != node {
        berth(lab, &["move", pod, "--to", node]);
    }
    lab.eventually(Duration::from_secs(60), pod, || {
        running(lab, pod).filter(|(n, _)| n == node).map(|(_, p)| p)
    })
}

/// Throughput and request latency through a link against the same traffic
/// sent straight to the endpoint.
pub fn throughput(runs: usize, megabytes: usize, requests: usize) {
    let lab = Lab::up("bench-link-throughput", 2);
    berth(
        &lab,
        &[
            "run",
            "sink",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            &format!(
                "mkdir -p /www; dd if=/dev/zero of=/www/big bs=1M count={megabytes} 2>/dev/null; \
                 echo ok > /www/small; exec httpd -f -p 8080 -h /www"
            ),
        ],
    );
    let sink_port = place(&lab, "sink-0", "h2");
    berth(
        &lab,
        &[
            "run",
            "client",
            "--image",
            "local/busybox",
            "--link",
            "sink:8080:18080",
            "--",
            "sleep",
            "1d",
        ],
    );
    place(&lab, "client-0", "h1");
    let direct = format!("10.231.0.12:{sink_port}");
    let linked = "127.0.0.1:18080";
    let pid = lab
        .exec(
            "h1",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.Pid}}",
                "berth.client-0.client",
            ],
        )
        .assert_success();
    let pid = pid.trim();
    // The client's network namespace (where the link's rules live), with
    // the host's curl and date: busybox has no nanosecond clock.
    let in_client =
        |script: &str| lab.exec("h1", &["nsenter", "-t", pid, "-n", "sh", "-c", script]);
    lab.eventually(Duration::from_secs(30), "the link", || {
        in_client(&format!("curl -sf -m 2 http://{linked}/small"))
            .stdout()
            .contains("ok")
            .then_some(())
    });
    // Timed inside the host: one shell, no `berth-lab exec` per sample.
    let script = format!(
        r#"set -e
for i in $(seq 1 {runs}); do
  for way in link:{linked} direct:{direct}; do
    name=${{way%%:*}}; target=${{way#*:}}
    t0=$(date +%s%N); curl -sf -o /dev/null http://$target/big; t1=$(date +%s%N)
    echo bulk $name $((t1 - t0))
    t0=$(date +%s%N)
    j=0; while [ $j -lt {requests} ]; do curl -sf -o /dev/null http://$target/small; j=$((j + 1)); done
    t1=$(date +%s%N)
    echo small $name $((t1 - t0))
  done
done"#
    );
    let out = in_client(&script).assert_success();
    let samples = |kind: &str, way: &str| -> Vec<f64> {
        let mut v: Vec<f64> = out
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 3 && w[0] == kind && w[1] == way)
                    .then(|| w[2].parse::<f64>().ok())
                    .flatten()
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let mib_per_s = |ns: f64| megabytes as f64 / (ns / 1e9);
    let (bulk_link, bulk_direct) = (samples("bulk", "link"), samples("bulk", "direct"));
    let (small_link, small_direct) = (samples("small", "link"), samples("small", "direct"));
    let (tl, td) = (
        mib_per_s(quantile(&bulk_link, 0.5)),
        mib_per_s(quantile(&bulk_direct, 0.5)),
    );
    let per_request = |v: &[f64], q: f64| quantile(v, q) / requests as f64 / 1e6;
    println!("link throughput, {runs} interleaved runs of {megabytes} MiB (median):");
    println!("  direct to {direct:<18} {td:8.1} MiB/s");
    println!("  through the link {linked:<10} {tl:8.1} MiB/s");
    println!("  ratio link/direct {:.3}x  (target >= 0.97x)", tl / td);
    println!("request latency, new connection per request, {requests} requests per run (ms per request):");
    println!(
        "  direct   p50 {:6.3}  p99 {:6.3}",
        per_request(&small_direct, 0.5),
        per_request(&small_direct, 0.99)
    );
    println!(
        "  link     p50 {:6.3}  p99 {:6.3}",
        per_request(&small_link, 0.5),
        per_request(&small_link, 0.99)
    );
    println!(
        "  ratio link/direct p50 {:.3}x",
        per_request(&small_link, 0.5) / per_request(&small_direct, 0.5)
    );
}

/// Time to add one link with 0 (the baseline: the first link) and each of
/// `installed` links already in the namespace.
pub fn add(installed: &[usize], runs: usize) {
    let lab = Lab::up("bench-link-add", 1);
    lab.exec(
        "h1",
        &[
            "docker",
            "run",
            "-d",
            "--name",
            "linked",
            "local/busybox",
            "sleep",
            "1d",
        ],
    )
    .assert_success();
    let pid = lab
        .exec(
            "h1",
            &["docker", "inspect", "-f", "{{.State.Pid}}", "linked"],
        )
        .assert_success();
    let exe = std::env::current_exe().expect("own path");
    let counts: Vec<String> = std::iter::once(0)
        .chain(installed.iter().copied())
        .map(|n| n.to_string())
        .collect();
    let out = lab
        .exec(
            "h1",
            &[
                exe.to_str().expect("utf-8 path"),
                "link-add-in-host",
                "--pid",
                pid.trim(),
                "--installed",
                &counts.join(","),
                "--runs",
                &runs.to_string(),
            ],
        )
        .assert_success();
    print!("{out}");
}

fn wiring(links: usize) -> PodWiring {
    PodWiring {
        links: (0..links)
            .map(|i| {
                let link = Link {
                    service: format!("svc{i}"),
                    port: 8080,
                    local_port: Some(10_000 + i as u16),
                };
                let backend = Backend {
                    address: Ipv4Addr::new(10, 231, 0, 12),
                    port: 30_000 + (i % 2000) as u16,
                };
                (link, vec![backend])
            })
            .collect(),
        egress: EgressPolicy::Open,
    }
}

/// Inside the lab host: installs each count of links in the namespace of
/// `pid`, then times adding one more link, `runs` times (each on top of
/// the last), through the agent's converge: the append path, as when a
/// link is added to a running pod.
pub fn add_in_host(pid: u32, installed: &[usize], runs: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut baseline_p99 = None;
        println!("adding one link to a pod's namespace, {runs} runs each (ms):");
        for &n in installed {
            let setup = Instant::now();
            converge(pid, wiring(n), None).await?;
            let setup = setup.elapsed();
            let mut samples = Vec::with_capacity(runs);
            for i in 0..runs {
                let (before, after) = (wiring(n + i), wiring(n + i + 1));
                let t0 = Instant::now();
                converge(pid, after, Some(before)).await?;
                samples.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            samples.sort_by(f64::total_cmp);
            let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
            let base = *baseline_p99.get_or_insert(p99);
            println!(
                "  {n:6} installed  p50 {p50:8.2}  p99 {p99:8.2}  p99 ratio to the first link {:6.2}x  (installing them took {setup:.2?})",
                p99 / base
            );
        }
        println!("  target: p99 <= 2 ms with 20000 installed");
        converge(pid, PodWiring::default(), None).await?;
        anyhow::Ok(())
    })
}
