//! `berth-bench`: benchmarks, each comparing berth with a baseline measured
//! in the same run and reporting the ratio. Most run on real lab hosts, side
//! by side and interleaved; run them as root after
//! `cargo build --release --workspace`:
//!
//! ```text
//! scripts/build-release
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench pod-start --runs 30
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench agent-memory --pods 100
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench router-change --switches 10
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench router-throughput --rounds 5
//! ```
//!
//! Log shipping and metrics sampling also run in a lab:
//!
//! ```text
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench log-shipping --lines 200000
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench metrics-cpu --pods 100
//! ```
//!
//! So do the job benchmarks:
//!
//! ```text
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench cron-precision --runs 30
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench job-throughput --jobs 300
//! ```
//!
//! And the deployment benchmark, a rolling update and its rollback under
//! load:
//!
//! ```text
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench rollout --replicas 12
//! ```
//!
//! And the integrated registry's, push to rollout start and pulls:
//!
//! ```text
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench push-to-rollout --pushes 10
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench registry-pull --runs 5
//!
//! And builds', git push to serving and a no-op build's overhead:
//!
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench push-to-serving --pushes 5
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench build-overhead --runs 5
//! ```
//!
//! And a stateful move with data against `tar | nc`:
//!
//! ```text
//! BERTH_BIN_DIR=target/dist target/dist/berth-bench move-throughput --megabytes 200
//! ```
//!
//! `scheduling` needs no lab and no root: it runs the master's scheduler
//! and embedded store in-process.
//!
//! ```text
//! cargo run --release -p berth-bench -- scheduling --nodes 1000 --pods 20000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use berth_harness::Lab;
use clap::{Parser, Subcommand};

mod agent;
mod builds;
mod cluster_sim;
mod failover;
mod jobs;
mod links;
mod load;
mod logs;
mod moves;
mod registry;
mod rollout;
mod router;
mod scheduling;
mod writes;

/// Benchmarks berth on lab hosts against baselines measured in the same run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// A real berth-master with N simulated agents in this process: from
    /// create to all pods Running, from a scale-up to the node seeing its
    /// assignment (p50, p99), the master's CPU and RSS in steady state, and
    /// from a node going silent to its pods Running elsewhere.
    ClusterSim {
        /// Simulated nodes.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Pods, in services of 100.
        #[arg(long, default_value_t = 20_000)]
        pods: usize,
        /// Where the master keeps its state.
        #[arg(long, value_enum, default_value = "embedded")]
        store: cluster_sim::SimStore,
        /// Scale-ups to time, one at a time.
        #[arg(long, default_value_t = 200)]
        scale_ups: usize,
        /// Seconds of steady state to measure the master's CPU over.
        #[arg(long, default_value_t = 20)]
        steady_secs: u64,
    },
    /// Pod start, API call to running (`berth local run`), against a bare
    /// `docker run -d` of the same image, interleaved.
    PodStart {
        /// Pairs of starts to measure.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// The host's container engine: with `podman` (a lab booted with
        /// `--engine podman`), the baseline is a bare `podman run -d`.
        #[arg(long, value_enum, default_value_t = Engine::Docker)]
        engine: Engine,
    },
    /// Master failover on three masters: `kill -9` of the leader to the
    /// next pod scheduled by the new leader (p50, p99).
    Failover {
        /// Leader kills to time.
        #[arg(long, default_value_t = 10)]
        trials: usize,
    },
    /// Creates per second through three masters on a 3-member etcd,
    /// against one master on one etcd member in the same run.
    WriteThroughput {
        /// Clients creating at once.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds a round.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds on each side, interleaved.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// (Used by write-throughput inside a lab host.) Creates services as
    /// fast as `clients` at once can, spread over `urls`; prints a JSON
    /// summary.
    CreateLoad {
        /// Master URLs, comma-separated.
        #[arg(long, value_delimiter = ',')]
        urls: Vec<String>,
        /// A file holding the admin's token.
        #[arg(long)]
        token_file: std::path::PathBuf,
        /// The cluster's CA certificate.
        #[arg(long)]
        ca: std::path::PathBuf,
        /// Clients at once.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Names are PREFIX-CLIENT-N.
        #[arg(long)]
        prefix: String,
    },
    /// Cron job start delay, scheduled second to container started (p50,
    /// p99), against a systemd timer running `docker run --rm` on the
    /// same host, firing on the other half of the period.
    CronPrecision {
        /// Runs to time on each side.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Seconds between runs (a divisor of 60).
        #[arg(long, default_value_t = 4)]
        period: u64,
    },
    /// Run-once jobs of `true` on 3 nodes, submission to all Succeeded,
    /// against the same count of bare `docker run --rm` spread over the
    /// same hosts.
    JobThroughput {
        /// Jobs per side and round.
        #[arg(long, default_value_t = 300)]
        jobs: usize,
        /// Rounds, alternating which side goes first; medians reported.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// A rolling update (`berth set image`) of N replicas under constant
    /// load through a router, from its deployment's creation to Complete,
    /// against the ideal `waves x (pod start + minReady)` from the same
    /// run's single-pod start; then `berth rollout undo` the same way.
    Rollout {
        /// Replicas of the service.
        #[arg(long, default_value_t = 12)]
        replicas: u32,
        /// maxSurge: a count or a share.
        #[arg(long, default_value = "25%")]
        max_surge: String,
        /// minReadySeconds.
        #[arg(long, default_value_t = 2)]
        min_ready: u32,
        /// Seconds between readiness checks.
        #[arg(long, default_value_t = 1)]
        probe_period: u32,
        /// Requests per second through the router.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Single-pod starts to time (the median is the pod start).
        #[arg(long, default_value_t = 5)]
        starts: usize,
    },
    /// From `docker push` returning to the first pod of the new revision
    /// scheduled, for a service following the tag (p50, p99), against the
    /// same rollout started by `berth tag`, interleaved.
    PushToRollout {
        /// Pushes (and tag moves) to time.
        #[arg(long, default_value_t = 10)]
        pushes: usize,
    },
    /// From `git push` returning to the route serving the pushed page,
    /// by stage, against docker build, docker push and berth set image.
    PushToServing {
        /// Pushes (and by-hand changes) to time.
        #[arg(long, default_value_t = 5)]
        pushes: usize,
    },
    /// A no-op source build against a bare docker build of the Dockerfile
    /// source-to-image would generate.
    BuildOverhead {
        /// Builds of each to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// `berth run --image-stream` of an image only the integrated registry
    /// has, to its container started, against `docker pull` + `docker
    /// run` of an image of the same size from the same registry with a
    /// node's credential.
    RegistryPull {
        /// Pairs to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Size of each image's own layer, MiB.
        #[arg(long, default_value_t = 32)]
        megabytes: usize,
    },
    /// berth-agent's RSS idle and with N pods, and the shims' RSS.
    AgentMemory {
        /// Pods to start.
        #[arg(long, default_value_t = 100)]
        pods: usize,
    },
    /// berth-agent's CPU, as a share of one core, with no pods and with N
    /// idle pods of a service, on one node joined to a master.
    AgentCpu {
        /// Idle pods.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Seconds each is measured over.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// A berth-agent binary to measure instead of the freshly built
        /// one (one built from an earlier commit, for a before and after).
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// N pods of one service on one node at once, from the API call to
    /// the last container started and to all Running, against N bare
    /// `docker run -d` at the agent's concurrency.
    Burst {
        /// Pods (and bare containers) per round.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Bare `docker run -d` at once (the agent's bound on the pods
        /// it starts at once).
        #[arg(long, default_value_t = berth_agent::runtime::START_CONCURRENCY)]
        concurrency: usize,
        /// Rounds, alternating which side goes first; medians reported.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// A berth-agent binary to measure instead of the freshly built
        /// one.
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// Log lines per second from the journal to the master, durably
    /// stored, against `journalctl -o export` piped into the same durable
    /// sink, from the same journal position.
    LogShipping {
        /// Lines the container prints per round.
        #[arg(long, default_value_t = 200_000)]
        lines: u64,
        /// Rounds, alternating which side goes first; medians reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The baseline's sink (runs inside a lab host): journal export on
    /// stdin into a fresh log database.
    #[command(hide = true)]
    LogSink {
        /// The database to create.
        #[arg(long)]
        db: PathBuf,
        /// Only this pod's lines.
        #[arg(long)]
        pod: String,
        /// Stop once this many are stored.
        #[arg(long)]
        expect: u64,
    },
    /// CPU time of sampling N containers' cgroups, as a share of one core
    /// at the agent's default interval.
    MetricsCpu {
        /// Pods (one container each) to sample.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// The sampling interval, seconds (the agent's default).
        #[arg(long, default_value_t = 10)]
        interval: u64,
    },
    /// Samples the host's berth pods (runs inside a lab host).
    #[command(hide = true)]
    MetricsSample {
        /// Sampling rounds.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Pods placed per second with durable bindings on simulated nodes,
    /// against a round-robin placer through the same store writes.
    Scheduling {
        /// Simulated nodes.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Pods to place.
        #[arg(long, default_value_t = 20_000)]
        pods: usize,
        /// Bindings committed per store transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Times each placer is measured, alternating which goes first;
        /// the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Directory for the stores; must not exist, removed at the end.
        #[arg(long, default_value = "target/bench-scheduling")]
        dir: PathBuf,
    },
    /// Throughput and request latency through a link, against the same
    /// traffic sent straight to the endpoint (no link DNAT), interleaved.
    LinkThroughput {
        /// Interleaved runs (a multiple of 4 balances the order: each way
        /// goes first once and follows each other way once in 4 runs).
        #[arg(long, default_value_t = 12)]
        runs: usize,
        /// Size of each download, MiB.
        #[arg(long, default_value_t = 128)]
        megabytes: usize,
        /// Small requests (one connection each) per run.
        #[arg(long, default_value_t = 100)]
        requests: usize,
    },
    /// A stateful pod's named volume moved with its data (`berth move`,
    /// agent to agent over TLS, checksum verified), MB/s against plain
    /// `tar | nc` between the same lab hosts, alternating direction.
    MoveThroughput {
        /// Size of the volume's data, MiB.
        #[arg(long, default_value_t = 200)]
        megabytes: u32,
        /// Rounds (one move and one `tar | nc` each); medians reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Time to add one link to a pod with N links installed, against
    /// adding the first link.
    LinkAdd {
        /// Links already installed, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 5000, 20000])]
        installed: Vec<usize>,
        /// Additions timed per count.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// The timed part of `link-add`, run inside the lab host.
    #[command(hide = true)]
    LinkAddInHost {
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[arg(long, value_delimiter = ',')]
        installed: Vec<usize>,
        #[arg(long)]
        runs: usize,
    },
    /// Route or endpoint change until the first answer from the new
    /// backend under load, against the same change by hand through
    /// HAProxy's runtime API.
    RouterChange {
        /// Switches each way, per side.
        #[arg(long, default_value_t = 10)]
        switches: usize,
    },
    /// Requests/s through berth's generated HAProxy configuration against
    /// a minimal hand-written one for the same backend.
    RouterThroughput {
        /// Seconds per round.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds per side (median reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: u32,
    },
    /// Sends commands to an HAProxy admin socket (the by-hand baseline of
    /// router-change).
    HaproxyRuntime {
        /// The admin socket.
        #[arg(long)]
        socket: PathBuf,
        /// The commands.
        commands: Vec<String>,
    },
    /// Constant-rate HTTP load on fresh connections (the router tests'
    /// load generator): prints a JSON summary counting every failed
    /// request.
    Load {
        /// `address:port` to send to.
        #[arg(long)]
        target: String,
        /// The Host header.
        #[arg(long)]
        host: String,
        /// The path.
        #[arg(long, default_value = "/")]
        path: String,
        /// Requests per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Print a line each time the body differs from the previous one.
        #[arg(long)]
        report_changes: bool,
        /// Closed loop with this many clients instead of a fixed rate.
        #[arg(long)]
        concurrency: Option<u32>,
    },
}

fn main() -> ExitCode {
    match Args::parse().bench {
        Bench::RouterChange { switches } => router::change(switches),
        Bench::RouterThroughput {
            seconds,
            rounds,
            concurrency,
        } => router::throughput(seconds, rounds, concurrency),
        Bench::HaproxyRuntime { socket, commands } => {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    // The hand-written configuration has no `description`:
                    // its worker's reload mark is empty.
                    runtime
                        .block_on(berth_router::haproxy::runtime::send(&socket, &commands, ""))
                        .map_err(anyhow::Error::from)
                });
            if let Err(error) = result {
                eprintln!("berth-bench haproxy-runtime: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::Load {
            target,
            host,
            path,
            rate,
            seconds,
            report_changes,
            concurrency,
        } => {
            let config = load::Config {
                target,
                host,
                path,
                rate,
                duration: std::time::Duration::from_secs(seconds),
                report_changes,
                concurrency,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = runtime
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(load::run(config)));
            if let Err(error) = result {
                eprintln!("berth-bench load: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::ClusterSim {
            nodes,
            pods,
            store,
            scale_ups,
            steady_secs,
        } => {
            let config = cluster_sim::Config {
                nodes,
                pods,
                store,
                scale_ups,
                steady_secs,
            };
            if let Err(error) = cluster_sim::run(&config) {
                eprintln!("berth-bench cluster-sim: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::Rollout {
            replicas,
            max_surge,
            min_ready,
            probe_period,
            rate,
            starts,
        } => {
            let config = rollout::Config {
                replicas,
                max_surge,
                min_ready,
                probe_period,
                rate,
                starts,
            };
            if let Err(error) = rollout::run(&config) {
                eprintln!("berth-bench rollout: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::PodStart { runs, engine } => pod_start(runs, engine),
        Bench::PushToRollout { pushes } => registry::push_to_rollout(pushes),
        Bench::RegistryPull { runs, megabytes } => registry::registry_pull(runs, megabytes),
        Bench::PushToServing { pushes } => builds::push_to_serving(pushes),
        Bench::BuildOverhead { runs } => builds::build_overhead(runs),
        Bench::AgentMemory { pods } => agent_memory(pods),
        Bench::AgentCpu {
            pods,
            seconds,
            agent,
        } => agent::agent_cpu(pods, seconds, agent.as_deref()),
        Bench::Burst {
            pods,
            concurrency,
            rounds,
            agent,
        } => agent::burst(pods, concurrency, rounds, agent.as_deref()),
        Bench::Failover { trials } => failover::failover(trials),
        Bench::WriteThroughput {
            clients,
            seconds,
            rounds,
        } => writes::write_throughput(clients, seconds, rounds),
        Bench::CreateLoad {
            urls,
            token_file,
            ca,
            clients,
            seconds,
            prefix,
        } => {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(writes::create_load(
                        urls, token_file, ca, clients, seconds, prefix,
                    ))
                });
            if let Err(error) = result {
                eprintln!("berth-bench create-load: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::CronPrecision { runs, period } => jobs::cron_precision(runs, period),
        Bench::JobThroughput { jobs, rounds } => jobs::job_throughput(jobs, rounds),
        Bench::LinkThroughput {
            runs,
            megabytes,
            requests,
        } => links::throughput(runs, megabytes, requests),
        Bench::LinkAdd { installed, runs } => links::add(&installed, runs),
        Bench::MoveThroughput { megabytes, rounds } => {
            if let Err(error) = moves::throughput(megabytes, rounds) {
                eprintln!("berth-bench move-throughput: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::LinkAddInHost {
            pids,
            installed,
            runs,
        } => {
            if let Err(error) = links::add_in_host(&pids, &installed, runs) {
                eprintln!("berth-bench link-add: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::LogShipping { lines, rounds } => logs::shipping(lines, rounds),
        Bench::LogSink { db, pod, expect } => {
            if let Err(error) = logs::sink(&db, &pod, expect) {
                eprintln!("berth-bench log-sink: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::MetricsCpu { pods, interval } => logs::metrics_cpu(pods, interval),
        Bench::MetricsSample { rounds } => {
            if let Err(error) = logs::sample_rounds(rounds) {
                eprintln!("berth-bench metrics-sample: {error:#}");
                return ExitCode::FAILURE;
            }
        }
        Bench::Scheduling {
            nodes,
            pods,
            batch,
            rounds,
            dir,
        } => {
            let config = scheduling::Config {
                nodes,
                pods,
                batch,
                rounds,
                dir,
            };
            if let Err(error) = scheduling::run(&config) {
                eprintln!("berth-bench scheduling: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn lab_with_agent(name: &str) -> Lab {
    let lab = Lab::up(name, 1);
    lab.exec("h1", &["systemctl", "start", "berth-agent"])
        .assert_success();
    lab
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The container engine of the lab host a benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    /// dockerd.
    Docker,
    /// Podman's Docker-compatible API (`berth-lab up --engine podman`).
    Podman,
}

fn pod_start(runs: usize, engine: Engine) {
    let (lab, bare) = match engine {
        Engine::Docker => (lab_with_agent("bench-start"), "docker"),
        Engine::Podman => {
            let lab = Lab::up_with("bench-start-podman", 1, &["--engine", "podman"]);
            lab.exec("h1", &["systemctl", "start", "berth-agent"])
                .assert_success();
            (lab, "podman")
        }
    };
    // Timed inside the host, so `berth-lab exec` costs nothing to either side.
    // Both sides are a CLI calling an API that returns once the container runs.
    let script = format!(
        r#"set -e
{bare} run --rm local/busybox true >/dev/null
for i in $(seq 1 {runs}); do
  t0=$(date +%s%N); {bare} run -d --name base-$i local/busybox sleep 1000 >/dev/null; t1=$(date +%s%N)
  echo docker $((t1 - t0))
  t0=$(date +%s%N); berth local run bench-$i --image local/busybox -- sleep 1000 >/dev/null; t1=$(date +%s%N)
  echo berth $((t1 - t0))
  {bare} rm -f base-$i >/dev/null; berth local rm bench-$i >/dev/null
done"#
    );
    let out = lab.sh("h1", &script).assert_success();
    let mut docker = Vec::new();
    let mut berth = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(who), Some(ns)) = (
            words.next(),
            words.next().and_then(|n| n.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let ms = ns / 1e6;
        if who == "docker" {
            docker.push(ms);
        } else {
            berth.push(ms);
        }
    }
    docker.sort_by(f64::total_cmp);
    berth.sort_by(f64::total_cmp);
    let (d50, d99, b50, b99) = (
        quantile(&docker, 0.5),
        quantile(&docker, 0.99),
        quantile(&berth, 0.5),
        quantile(&berth, 0.99),
    );
    println!("pod start, {runs} interleaved pairs (ms):");
    println!("  {bare} run -d       p50 {d50:7.1}  p99 {d99:7.1}");
    println!("  berth local run     p50 {b50:7.1}  p99 {b99:7.1}");
    println!(
        "  ratio berth/{bare}  p50 {:7.2}x p99 {:7.2}x  (targets 1.10x, 1.25x)",
        b50 / d50,
        b99 / d99
    );
}

/// A field of `/proc/PID/smaps_rollup` in KiB (`Rss`, `Pss`).
fn smaps_kib(lab: &Lab, pid: &str, field: &str) -> u64 {
    let rollup = lab
        .exec("h1", &["cat", &format!("/proc/{pid}/smaps_rollup")])
        .assert_success();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(lab: &Lab, pid: &str) -> u64 {
    smaps_kib(lab, pid, "Rss")
}

fn agent_memory(pods: usize) {
    let lab = lab_with_agent("bench-memory");
    // Let it settle after its first resync.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle = rss_kib(&lab, &lab.main_pid("h1", "berth-agent"));
    let script = format!("for i in $(seq 1 {pods}); do berth local run mem-$i --image local/busybox -- sleep 100000 >/dev/null || exit 1; done; berth local ps -o json >/dev/null");
    lab.sh("h1", &script).assert_success();
    // A full resync over every pod, then measure.
    std::thread::sleep(std::time::Duration::from_secs(12));
    let loaded = rss_kib(&lab, &lab.main_pid("h1", "berth-agent"));
    let shims = lab.exec("h1", &["pidof", "berth-shim"]).assert_success();
    let shim_rss: Vec<u64> = shims
        .split_whitespace()
        .map(|pid| rss_kib(&lab, pid))
        .collect();
    let shim_pss: Vec<u64> = shims
        .split_whitespace()
        .map(|pid| smaps_kib(&lab, pid, "Pss"))
        .collect();
    let shim_avg = shim_rss.iter().sum::<u64>() as f64 / shim_rss.len().max(1) as f64;
    let shim_pss_avg = shim_pss.iter().sum::<u64>() as f64 / shim_pss.len().max(1) as f64;
    println!("berth-agent RSS:");
    println!(
        "  idle            {:6.1} MiB  (target <= 15 MiB)",
        idle as f64 / 1024.0
    );
    println!(
        "  with {pods:3} pods   {:6.1} MiB  (target <= 25 MiB)",
        loaded as f64 / 1024.0
    );
    println!(
        "  berth-shim      {:6.2} MiB RSS, {:.2} MiB PSS each on average over {} shims (target <= 2 MiB)",
        shim_avg / 1024.0,
        shim_pss_avg / 1024.0,
        shim_rss.len()
    );
}
