//! Log shipping throughput and the CPU cost of metrics sampling.
//!
//! `log-shipping`: a container prints N numbered lines while the agent is
//! stopped, so they wait in the journal. Then, from the same journal
//! position, in alternating order:
//! - the baseline: `journalctl -o export` piped into a sink that parses the
//!   entries and commits them, in batches, to a log database exactly as the
//!   master does (the same `LogStore` code, on the same host's disk);
//! - berth: the agent started again, resuming from its checkpoint, until the
//!   master has stored all N lines durably (polled with `berth logs`).
//!
//! The sink runs inside the lab host as `berth-bench log-sink` (the lab's
//! root is an overlay of the machine's, so this binary is visible there).

use std::io::Read as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use berth_harness::Lab;
use berth_master::logs::LogStore;
use berth_model::logs::{LogBatch, MAX_LOG_BATCH_LINES};

/// `berth-bench log-sink`: reads journal export from stdin, stores the
/// lines of `pod` in a fresh log database at `db`, and prints how long
/// storing `expect` of them took. Runs inside a lab host.
pub fn sink(db: &Path, pod: &str, expect: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = LogStore::open(db).with_context(|| format!("opening {}", db.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stored = runtime.block_on(async {
        let stdin = tokio::io::stdin();
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, stdin);
        let mut buffer = Vec::new();
        let mut batch = Vec::new();
        let mut stored = 0u64;
        loop {
            let entry = berth_agent::journal::next_entry(&mut reader, &mut buffer).await?;
            let done = entry.is_none();
            if let Some(line) = entry.as_ref().and_then(berth_agent::journal::shipped_line) {
                if line.pod == pod {
                    batch.push(line);
                }
            }
            if batch.len() >= MAX_LOG_BATCH_LINES || (done && !batch.is_empty()) {
                let lines = std::mem::take(&mut batch);
                stored += store.ingest("h1", &LogBatch { lines })?.stored;
            }
            if done || stored >= expect {
                return anyhow::Ok(stored);
            }
        }
    })?;
    println!("sink {stored} {}", started.elapsed().as_secs_f64());
    Ok(())
}

fn unit_of(service: &str) -> String {
    format!("berth-{service}\\x2d0-{service}.service")
}

/// `berth-bench log-shipping`.
pub fn shipping(lines: u64, rounds: usize) {
    let lab = Lab::up("bench-logs", 1);
    let sink_binary = std::env::current_exe().expect("the bench's own path");
    let mut berth_rates = Vec::new();
    let mut baseline_rates = Vec::new();
    for round in 0..rounds {
        let service = format!("flood{round}");
        // Printed a few seconds after start, when the agent is down.
        let script = format!("sleep 10; seq 1 {lines}; exec sleep 1000000");
        lab.exec(
            "h1",
            &[
                "berth",
                "run",
                &service,
                "--image",
                "local/busybox",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .assert_success();
        let unit = unit_of(&service);
        lab.eventually(
            std::time::Duration::from_secs(30),
            "the flood unit running",
            || {
                let state = lab.exec("h1", &["systemctl", "is-active", &unit]).stdout();
                (state.trim() == "active").then_some(())
            },
        );
        lab.exec("h1", &["systemctl", "stop", "berth-agent"])
            .assert_success();
        // Where the agent will resume; without a checkpoint yet, both sides
        // read the journal from its start.
        let cursor = lab
            .exec("h1", &["cat", "/var/lib/berth/journal.cursor"])
            .stdout();
        let after = if cursor.trim().is_empty() {
            String::new()
        } else {
            format!("--after-cursor='{}'", cursor.trim())
        };
        lab.eventually(
            std::time::Duration::from_secs(60),
            "every line in the journal",
            || {
                let last = lab
                    .sh(
                        "h1",
                        &format!("journalctl -q -o cat _SYSTEMD_UNIT='{unit}' | tail -n 1"),
                    )
                    .stdout();
                (last.trim() == lines.to_string()).then_some(())
            },
        );

        let pod = format!("{service}-0");
        let baseline = || {
            let db = format!("/var/lib/berth-bench-sink-{round}.db");
            let out = lab
                .sh(
                    "h1",
                    &format!(
                        "rm -f {db}*; journalctl -o export {after} \
                         | {} log-sink --db {db} --pod {pod} --expect {lines}; rm -f {db}*",
                        sink_binary.display()
                    ),
                )
                .assert_success();
            let mut words = out.split_whitespace().skip(1);
            let stored: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let secs: f64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(f64::NAN);
            assert_eq!(stored, lines, "the baseline lost lines");
            lines as f64 / secs
        };
        let berth = || {
            let out = lab
                .sh(
                    "h1",
                    &format!(
                        "t0=$(date +%s%N); systemctl start berth-agent; \
                         until berth logs {pod} --tail 1 2>/dev/null | grep -q '| {lines}$'; do sleep 0.05; done; \
                         t1=$(date +%s%N); echo $((t1 - t0))"
                    ),
                )
                .assert_success();
            let ns: f64 = out.trim().parse().expect("elapsed ns");
            let printed = lab
                .sh("h1", &format!("berth logs {pod} | wc -l"))
                .assert_success();
            assert_eq!(
                printed.trim().parse::<u64>().ok(),
                Some(lines),
                "berth lost or duplicated lines"
            );
            lines as f64 / (ns / 1e9)
        };
        // Alternate who goes first. Either way the agent runs again at the
        // end of the round (the next round's pod needs it), and the
        // baseline never reads while the agent ships.
        if round % 2 == 0 {
            baseline_rates.push(baseline());
            berth_rates.push(berth());
        } else {
            let rate = berth();
            baseline_rates.push(baseline());
            berth_rates.push(rate);
        }
        lab.exec("h1", &["berth", "rm", &service]).assert_success();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, base) = (median(&mut berth_rates), median(&mut baseline_rates));
    println!("log shipping, {lines} lines waiting in the journal, {rounds} rounds (median):");
    println!("  journalctl -o export | durable sink   {base:10.0} lines/s");
    println!("  berth-agent -> master, durable        {b:10.0} lines/s");
    println!("  ratio berth/baseline                  {:10.2}x  (targets >= 1.0x, >= 50,000 lines/s; zero loss checked)", b / base);
}

/// `berth-bench metrics-cpu`: CPU time one sampling round of N containers
/// costs, as a share of one core at the agent's default interval.
pub fn metrics_cpu(pods: usize, interval_secs: u64) {
    let lab = Lab::up("bench-metrics", 1);
    lab.exec("h1", &["systemctl", "start", "berth-agent"])
        .assert_success();
    let script = format!(
        "for i in $(seq 1 {pods}); do berth local run m$i --image local/busybox -- sleep 100000 >/dev/null || exit 1; done"
    );
    lab.sh("h1", &script).assert_success();
    let bench = std::env::current_exe().expect("the bench's own path");
    let out = lab
        .exec(
            "h1",
            &[
                &bench.display().to_string(),
                "metrics-sample",
                "--rounds",
                "200",
            ],
        )
        .assert_success();
    let mut words = out.split_whitespace().skip(1);
    let containers: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let cpu_per_round: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(f64::NAN);
    let raw_per_round: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(f64::NAN);
    let share = cpu_per_round / interval_secs as f64 * 100.0;
    println!("metrics sampling, {containers} containers (cgroup files as on the host):");
    println!(
        "  same files read raw (baseline)  {:8.2} ms",
        raw_per_round * 1e3
    );
    println!(
        "  berth sampling round (CPU)      {:8.2} ms",
        cpu_per_round * 1e3
    );
    println!(
        "  ratio berth/baseline            {:8.2}x",
        cpu_per_round / raw_per_round
    );
    println!("  share of one core at {interval_secs} s      {share:8.3} %  (target < 1%)");
}

/// `berth-bench metrics-sample`: inside a host, samples every berth pod's
/// containers `rounds` times and prints the CPU seconds per round.
pub fn sample_rounds(rounds: usize) -> anyhow::Result<()> {
    let pods_dir = Path::new("/var/lib/berth/pods");
    let mut pods = Vec::new();
    for entry in std::fs::read_dir(pods_dir)? {
        let path = entry?.path();
        let mut text = String::new();
        std::fs::File::open(&path)?.read_to_string(&mut text)?;
        let record: serde_json::Value = serde_json::from_str(&text)?;
        let pod = &record["pod"];
        let containers = pod["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(name) = pod["name"].as_str() {
            pods.push((name.to_owned(), containers));
        }
    }
    let metrics = berth_agent::metrics::Metrics::new();
    let before = cpu_seconds()?;
    for round in 0..rounds {
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        metrics.sample(&pods, round as u64 * 1000, &meminfo);
    }
    let per_round = (cpu_seconds()? - before) / rounds as f64;
    let sampled = metrics.latest_unless(None).pods.unwrap_or_default();
    let containers: usize = sampled.iter().map(|p| p.containers.len()).sum();
    // The baseline: the same cgroup files read raw, unparsed (the floor
    // any sampler pays), over the same containers.
    let files: Vec<std::path::PathBuf> = pods
        .iter()
        .flat_map(|(pod, containers)| {
            containers
                .iter()
                .map(move |c| berth_agent::unit::container_cgroup_path(pod, c))
        })
        .flat_map(|cgroup| {
            let v2 = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/'));
            let v1 = |controller: &str, file: &str| {
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(cgroup.trim_start_matches('/'))
                    .join(file)
            };
            if v2.join("cgroup.controllers").exists() {
                [
                    "memory.current",
                    "memory.stat",
                    "memory.peak",
                    "memory.events",
                    "cpu.stat",
                    "pids.current",
                    "io.stat",
                    "cpu.pressure",
                    "memory.pressure",
                    "io.pressure",
                ]
                .iter()
                .map(|f| v2.join(f))
                .collect::<Vec<_>>()
            } else {
                vec![
                    v1("memory", "memory.usage_in_bytes"),
                    v1("memory", "memory.stat"),
                    v1("memory", "memory.max_usage_in_bytes"),
                    v1("cpuacct", "cpuacct.usage"),
                    v1("pids", "pids.current"),
                    v1("blkio", "blkio.throttle.io_service_bytes_recursive"),
                ]
            }
        })
        .collect();
    let before = cpu_seconds()?;
    for _ in 0..rounds {
        let _ = std::fs::read_to_string("/proc/meminfo")?;
        for file in &files {
            let _ = std::fs::read_to_string(file);
        }
    }
    let raw_per_round = (cpu_seconds()? - before) / rounds as f64;
    println!("sampled {containers} {per_round} {raw_per_round}");
    Ok(())
}

/// This process's user + system CPU time, seconds.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the `(comm)`, which may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .context("no comm in /proc/self/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks / 100.0)
}
