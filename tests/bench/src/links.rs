//! Link benchmarks.
//!
//! `link-throughput`: a 2-host cluster; `client` on h1 links to `sink` on
//! h2. From inside the client's container, the same download (and the
//! same small requests) go through the link (127.0.0.1, DNAT in the pod's
//! namespace) and directly to the sink's host address and port (no link
//! DNAT), interleaved, and directly a second time: a control that shows
//! how far two samples of the same path fall apart on the machine as it
//! is (with a shared, busy machine that spread is wider than the gap to
//! the target).
//!
//! `link-add`: in one lab host, one container's namespace for each count
//! gets N links installed by the agent's own code (plan + one nf_tables
//! transaction over netlink), then one more link is added to each and
//! timed, the counts taking turns, again and again; the baseline is
//! adding the first links. The timed part runs inside the lab host (this
//! binary, visible there through the host's overlay root, re-executes
//! itself with the hidden `link-add-in-host` subcommand).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::links::converge;
use berth_agent::links::netns::Namespace;
use berth_agent::links::plan::{Backend, LinkBackends, PodWiring};
use berth_harness::Lab;
use berth_model::{EgressPolicy, Link};

use crate::quantile;

fn pods(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&lab.berth("h1", &["ps", "-o", "json"]).assert_success())
        .expect("ps -o json")
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
        lab.berth("h1", &["move", pod, "--to", node])
            .assert_success();
    }
    lab.eventually(Duration::from_secs(60), pod, || {
        running(lab, pod).filter(|(n, _)| n == node).map(|(_, p)| p)
    })
}

/// Throughput and request latency through a link against the same traffic
/// sent straight to the endpoint.
pub fn throughput(runs: usize, megabytes: usize, requests: usize) {
    let lab = Lab::up("bench-link-throughput", 2);
    lab.berth(
        "h1",
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
    )
    .assert_success();
    let sink_port = place(&lab, "sink-0", "h2");
    lab.berth(
        "h1",
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
    )
    .assert_success();
    place(&lab, "client-0", "h1");
    // The same link again on a stable address of its own.
    lab.berth(
        "h1",
        &[
            "link",
            "client",
            "sink",
            "--port",
            "8080",
            "--local-port",
            "18081",
            "--address",
            "169.254.10.1",
        ],
    )
    .assert_success();
    let stable = "169.254.10.1:18081";
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
    // Every way answers before the first timed transfer: the stable
    // address's link is added after the pod started, and its rule lands
    // a moment later. Waiting only for 127.0.0.1, as before, let the
    // first run's transfer through 169.254.10.1 fail (the 0.000x run).
    for (way, target) in [
        ("the link", linked),
        ("the stable link", stable),
        ("the sink", &direct),
    ] {
        lab.eventually(Duration::from_secs(30), way, || {
            in_client(&format!("curl -sf -m 2 http://{target}/small"))
                .stdout()
                .contains("ok")
                .then_some(())
        });
    }
    // Timed by curl itself, inside the host: one shell, no `berth-lab
    // exec` per sample. Which side goes first alternates run by run, and
    // each run's ratio is taken within the pair (the machine is shared).
    // curl runs pinned to one CPU, the same for every way, and each way
    // moves the file once untimed first (connection tracking, the sink's
    // page cache and httpd warm for all three alike).
    let pin = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "taskset -c 1 "
    } else {
        ""
    };
    let script = format!(
        r#"set -e
# One transfer: prints "speed size" or stops the benchmark with why. curl's
# own status is checked (a reset or a timeout mid-transfer), and so are the
# HTTP status and the size (a short body is a failure, not a slow sample).
fetch() {{
  want=$3
  r=$({pin}curl -sS -o /dev/null -w '%{{http_code}} %{{speed_download}} %{{size_download}}' "$2") \
    || {{ rc=$?; echo "$1: curl $2 failed with exit status $rc" >&2; exit 1; }}
  set -- "$1" "$2" $r
  [ "$3" = 200 ] || {{ echo "$1: curl $2 answered HTTP $3" >&2; exit 1; }}
  [ "$5" = "$want" ] || {{ echo "$1: curl $2 moved $5 bytes, not $want" >&2; exit 1; }}
  echo "$4 $5"
}}
for way in link:{linked} stable:{stable} direct:{direct}; do
  fetch "warm-up through ${{way%%:*}}" "http://${{way#*:}}/big" {bulk_bytes} >/dev/null
done
for i in $(seq 1 {runs}); do
  # A Williams square: over 4 runs each way comes first once and follows
  # each other way once. A plain rotation gave every way the same
  # predecessor in every run, so whatever one transfer leaves behind
  # (its sockets closing, the sink's process exiting) always fell on the
  # same next way.
  case $((i % 4)) in
    1) ways="link:{linked} stable:{stable} again:{direct} direct:{direct}" ;;
    2) ways="stable:{stable} direct:{direct} link:{linked} again:{direct}" ;;
    3) ways="direct:{direct} again:{direct} stable:{stable} link:{linked}" ;;
    *) ways="again:{direct} link:{linked} direct:{direct} stable:{stable}" ;;
  esac
  for way in $ways; do
    name=${{way%%:*}}; target=${{way#*:}}
    # A failed transfer stops the benchmark: averaged in, it would read as
    # a slow one (curl -w prints a speed of 0 when a transfer fails).
    # The last transfer's sockets and processes are gone before the next.
    sleep 0.5
    r=$(fetch "run $i through $name" "http://$target/big" {bulk_bytes})
    echo "bulk $i $name $r"
  done
  for way in $ways; do
    name=${{way%%:*}}; target=${{way#*:}}
    j=0; while [ $j -lt {requests} ]; do
      r=$({pin}curl -sS -o /dev/null -w '%{{http_code}} %{{time_total}} %{{size_download}}' http://$target/small) \
        || {{ rc=$?; echo "run $i: a request for /small through $name ($target) failed with exit status $rc" >&2; exit 1; }}
      case "$r" in
        "200 "*" 3") echo "small $i $name ${{r#200 }}" ;;
        *) echo "run $i: a request for /small through $name ($target) ended with $r" >&2; exit 1 ;;
      esac
      j=$((j + 1))
    done
  done
done"#,
        bulk_bytes = megabytes << 20,
    );
    let out = in_client(&script).assert_success();
    // (run, way, value)
    // Every line is a sample: one that does not parse is a failure too.
    let rows: Vec<(&str, usize, &str, f64)> = out
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let parsed = match w.as_slice() {
                [kind, run, way, value, size] => {
                    (|| Some((*kind, run.parse().ok()?, *way, value.parse().ok()?, *size)))()
                }
                _ => None,
            };
            parsed.unwrap_or_else(|| panic!("link-throughput: not a sample: {l:?}"))
        })
        .map(|(kind, run, way, value, size)| {
            // Every transfer must move the whole file: a short one is a
            // failure, not a sample.
            let whole = if kind == "bulk" { megabytes << 20 } else { 3 };
            assert_eq!(
                size.parse::<usize>().ok(),
                Some(whole),
                "run {run}: a {kind} transfer through {way} moved {size} bytes, not {whole}"
            );
            (kind, run, way, value)
        })
        .collect();
    // And every transfer has its sample: none lost on the way.
    for (kind, each) in [("bulk", 1), ("small", requests)] {
        let count = rows.iter().filter(|r| r.0 == kind).count();
        assert_eq!(
            count,
            runs * 4 * each,
            "link-throughput: {count} {kind} samples, not {}",
            runs * 4 * each
        );
    }
    let values = |kind: &str, way: &str| -> Vec<f64> {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == kind && r.2 == way)
            .map(|r| r.3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let pair_ratios = |way: &str| -> Vec<f64> {
        let mut ratios: Vec<f64> = (1..=runs)
            .filter_map(|run| {
                let get = |way: &str| {
                    rows.iter()
                        .find(|r| r.0 == "bulk" && r.1 == run && r.2 == way)
                        .map(|r| r.3)
                };
                Some(get(way)? / get("direct")?)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    };
    let mib = |bytes_per_s: f64| bytes_per_s / (1024.0 * 1024.0);
    let ms = |v: &[f64], q: f64| quantile(v, q) * 1e3;
    println!("link throughput, {runs} runs of {megabytes} MiB, order rotating (median):");
    let direct_bulk = values("bulk", "direct");
    println!(
        "  direct to {direct:<22} {:8.1} MiB/s",
        mib(quantile(&direct_bulk, 0.5))
    );
    for (way, target) in [
        ("link", linked),
        ("stable", stable),
        ("again", direct.as_str()),
    ] {
        let ratios = pair_ratios(way);
        assert_eq!(ratios.len(), runs, "{way}: a run without its pair");
        println!(
            "  link at {target:<24} {:8.1} MiB/s  ratio to direct: median of per-run ratios {:.3}x (min {:.3}x, max {:.3}x)",
            mib(quantile(&values("bulk", way), 0.5)),
            quantile(&ratios, 0.5),
            ratios.first().copied().unwrap_or(0.0),
            ratios.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "  target >= 0.97x; the last line is the control, the direct path against itself: \
         how far apart two samples of the same path fall on this machine now"
    );
    println!(
        "request latency, one new connection per request, {} requests each (ms):",
        runs * requests
    );
    let direct_ms = values("small", "direct");
    println!(
        "  direct                  p50 {:6.3}  p99 {:6.3}",
        ms(&direct_ms, 0.5),
        ms(&direct_ms, 0.99)
    );
    for (way, target) in [("link", linked), ("stable", stable)] {
        let v = values("small", way);
        println!(
            "  link at {target:<15} p50 {:6.3}  p99 {:6.3}  ratio to direct p50 {:.3}x  p99 {:.3}x",
            ms(&v, 0.5),
            ms(&v, 0.99),
            ms(&v, 0.5) / ms(&direct_ms, 0.5),
            ms(&v, 0.99) / ms(&direct_ms, 0.99)
        );
    }
}

/// Time to add one link with 0 (the baseline: the first link) and each of
/// `installed` links already in the namespace.
pub fn add(installed: &[usize], runs: usize) {
    let lab = Lab::up("bench-link-add", 1);
    let counts: Vec<usize> = std::iter::once(0)
        .chain(installed.iter().copied())
        .collect();
    // One container, and so one namespace, for each count.
    let pids: Vec<String> = (0..counts.len())
        .map(|i| {
            let name = format!("linked{i}");
            lab.exec(
                "h1",
                &[
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "local/busybox",
                    "sleep",
                    "1d",
                ],
            )
            .assert_success();
            lab.exec("h1", &["docker", "inspect", "-f", "{{.State.Pid}}", &name])
                .assert_success()
                .trim()
                .to_owned()
        })
        .collect();
    let exe = std::env::current_exe().expect("own path");
    let join = |items: Vec<String>| items.join(",");
    let out = lab
        .exec(
            "h1",
            &[
                exe.to_str().expect("utf-8 path"),
                "link-add-in-host",
                "--pids",
                &join(pids),
                "--installed",
                &join(counts.iter().map(usize::to_string).collect()),
                "--runs",
                &runs.to_string(),
            ],
        )
        .assert_success();
    print!("{out}");
}

fn wiring(links: usize) -> PodWiring {
    PodWiring::new(links_to(links), EgressPolicy::Open)
}

/// `links` links, each with one backend.
fn links_to(links: usize) -> Vec<LinkBackends> {
    (0..links)
        .map(|i| {
            let link = Link {
                service: format!("svc{i}"),
                port: 8080,
                local_port: Some(10_000 + i as u16),
                address: None,
                wait_ready: false,
            };
            let backend = Backend {
                address: Ipv4Addr::new(10, 231, 0, 12),
                port: 30_000 + (i % 2000) as u16,
            };
            (link, vec![backend])
        })
        .collect()
}

/// Inside the lab host: installs each count of links in its own
/// namespace (that of `pids[i]` for `installed[i]`), then times adding one
/// more link to each, `runs` times (each on top of the last), through the
/// agent's converge: the path a link added to a running pod takes (the
/// changes computed from the last wiring, one nf_tables transaction over
/// netlink). The counts take turns, one addition each in a new order
/// each round, so that the machine's drift over a run (another CPU's
/// load, its frequency) falls on all of them alike. Each new wiring is
/// built just before the clock starts, as the agent builds it before it
/// converges, and that build is timed apart; the namespaces are held
/// open, as the agent holds them between resyncs.
pub fn add_in_host(pids: &[u32], installed: &[usize], runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        pids.len() == installed.len() && !pids.is_empty(),
        "--pids must name one process for each count in --installed"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        struct Count {
            n: usize,
            namespace: Namespace,
            wiring: Arc<PodWiring>,
            samples: Vec<f64>,
            builds: Vec<f64>,
            setup: Duration,
            resync: Duration,
        }
        let mut counts = Vec::new();
        for (&pid, &n) in pids.iter().zip(installed) {
            let namespace = Namespace::of(pid)?;
            let setup = Instant::now();
            let wiring = Arc::new(wiring(n));
            converge(&namespace, Arc::clone(&wiring), None).await?;
            let setup = setup.elapsed();
            // A resync reads the whole table back; over an unchanged
            // table it must write nothing.
            let resync = Instant::now();
            if let Some(changes) = converge(&namespace, Arc::clone(&wiring), None).await? {
                anyhow::bail!("a resync of {n} unchanged links made {changes} changes");
            }
            let resync = resync.elapsed();
            counts.push(Count {
                n,
                namespace,
                wiring,
                samples: Vec::with_capacity(runs),
                builds: Vec::with_capacity(runs),
                setup,
                resync,
            });
        }
        // Each round takes the counts in a new order, so that each follows
        // the largest (whose new wiring leaves the caches cold) as often.
        let mut order: Vec<usize> = (0..counts.len()).collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for i in 0..runs {
            for at in (1..order.len()).rev() {
                // xorshift64: the order needs no more than to vary.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(at, (seed % (at as u64 + 1)) as usize);
            }
            for &turn in &order {
                let count = &mut counts[turn];
                let links = links_to(count.n + i + 1);
                let built = Instant::now();
                let after = Arc::new(PodWiring::new(links, EgressPolicy::Open));
                count.builds.push(built.elapsed().as_secs_f64() * 1e3);
                let t0 = Instant::now();
                converge(&count.namespace, Arc::clone(&after), Some(Arc::clone(&count.wiring)))
                    .await?;
                count.samples.push(t0.elapsed().as_secs_f64() * 1e3);
                // The agent, too, frees the last wiring after converging.
                count.wiring = after;
            }
        }
        println!("adding one link to a pod's namespace, {runs} runs each, the counts taking turns (ms):");
        let mut baseline = None;
        for count in &mut counts {
            count.samples.sort_by(f64::total_cmp);
            count.builds.sort_by(f64::total_cmp);
            let (p50, p99) = (quantile(&count.samples, 0.5), quantile(&count.samples, 0.99));
            let (base50, base99) = *baseline.get_or_insert((p50, p99));
            println!(
                "  {:6} installed  p50 {p50:6.3}  p99 {p99:6.3}  ratio to the first link: p50 {:5.2}x  p99 {:5.2}x  (installing them took {:.2?}, a resync reading them back {:.2?}; building the new wiring from its links, before converging, p50 {:.3} ms)",
                count.n,
                p50 / base50,
                p99 / base99,
                count.setup,
                count.resync,
                quantile(&count.builds, 0.5),
            );
        }
        println!("  target: p99 <= 2 ms with 20000 installed, <= 2x the first link's");
        for count in &counts {
            converge(&count.namespace, Arc::new(PodWiring::default()), None).await?;
        }
        anyhow::Ok(())
    })
}
