//! Job benchmarks, each against a baseline run beside it in the same lab:
//!
//! - `cron-precision`: how late a cron job's container starts after its
//!   scheduled second, against a systemd timer (`OnCalendar=`, accuracy
//!   1 ms) running `docker run --rm` of the same image on the same host.
//!   The two fire on alternate halves of the period, so they never start
//!   at the same time. Both are timed from Docker's own `start` event for
//!   the container (`docker events`, the moment Docker records as
//!   `State.StartedAt`). berth's slot comes from the job's name
//!   (`<cron>-<slot>`); the timer's is the calendar point just before its
//!   container started (the delay is far below the period).
//! - `job-throughput`: N run-once jobs of `true` submitted at once to a
//!   3-node cluster, from the first submission to the last job
//!   `Succeeded` (its recorded end), against the same count of bare
//!   `docker run --rm` spread evenly over the same 3 hosts, as many at
//!   once per host as berth's agent starts
//!   ([`START_CONCURRENCY`](berth_agent::runtime::START_CONCURRENCY)).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_harness::Lab;
use serde_json::Value;

use berth_agent::runtime::START_CONCURRENCY;

use crate::quantile;

/// The baseline timer's unit and its containers' name prefix.
const TIMER_UNIT: &str = "bench-timer";

/// Records every container start on the host, `<ns> <name>` a line.
const RECORD_STARTS: &str = "systemd-run --unit=bench-starts sh -c \
     'exec docker events --filter type=container --filter event=start \
      --format \"{{.TimeNano}} {{.Actor.Attributes.name}}\" > /run/bench-starts.log'";

/// The expected delay of a controller that polls every 10 s (Kubernetes'
/// old CronJob controller): a slot falls uniformly within a poll period.
const POLL_10S_P50: f64 = 5.0;
const POLL_10S_P99: f64 = 9.9;

/// `berth-bench cron-precision`: `runs` slots of each side, `period`
/// seconds apart (a divisor of 60, so both schedules stay regular).
pub fn cron_precision(runs: usize, period: u64) {
    assert!(
        period >= 2 && 60 % period == 0,
        "--period must divide 60 and be at least 2, not {period}"
    );
    let offset = period / 2;
    let lab = Lab::up("jb-cron", 1);
    lab.sh(
        "h1",
        &format!("docker run --rm local/busybox true && {RECORD_STARTS}"),
    )
    .assert_success();
    // Docker subscribes the recorder before the first slot comes.
    std::thread::sleep(Duration::from_secs(1));
    lab.berth(
        "h1",
        &[
            "cron",
            "create",
            "tick",
            "--schedule",
            &format!("*/{period} * * * * *"),
            "--image",
            "local/busybox",
            "--",
            "true",
        ],
    )
    .assert_success();
    // systemd's default AccuracySec is a minute: 1 ms makes it fire on
    // the second, as a cron daemon would.
    lab.sh(
        "h1",
        &format!(
            "systemd-run --unit={TIMER_UNIT} --on-calendar='*:*:{offset}/{period}' \
             --timer-property=AccuracySec=1ms \
             sh -c 'exec docker run --rm --name {TIMER_UNIT}-$(date +%s) local/busybox true'"
        ),
    )
    .assert_success();
    let wait = Duration::from_secs((runs as u64 + 2) * period + 5);
    println!(
        "cron precision: {runs} runs each, every {period} s; about {} s",
        wait.as_secs()
    );
    let (berth, timer) = poll(wait, "the runs of both sides", || {
        let (berth, timer) = start_delays(&lab, period, offset);
        (berth.len() >= runs && timer.len() >= runs).then_some((berth, timer))
    });
    report_cron(runs, period, berth, timer);
    lab.down();
}

/// Each side's start delays in seconds, by slot, from the recorded starts.
fn start_delays(lab: &Lab, period: u64, offset: u64) -> (Vec<f64>, Vec<f64>) {
    let starts = lab.exec("h1", &["cat", "/run/bench-starts.log"]).stdout();
    let mut berth = BTreeMap::new();
    let mut timer = BTreeMap::new();
    for line in starts.lines() {
        let Some((ns, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(ns) = ns.parse::<u64>() else {
            continue;
        };
        let started = ns as f64 / 1e9;
        // berth's job container: berth.tick-<slot>-<attempt>.tick
        if let Some(slot) = name
            .strip_prefix("berth.tick-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|slot| slot.parse::<u64>().ok())
        {
            berth.insert(slot, started - slot as f64);
        } else if name.starts_with(TIMER_UNIT) {
            let secs = ns / 1_000_000_000;
            let slot = secs - (secs + period - offset) % period;
            timer.insert(slot, started - slot as f64);
        }
    }
    (berth.into_values().collect(), timer.into_values().collect())
}

fn report_cron(runs: usize, period: u64, mut berth: Vec<f64>, mut timer: Vec<f64>) {
    berth.truncate(runs);
    timer.truncate(runs);
    berth.sort_by(f64::total_cmp);
    timer.sort_by(f64::total_cmp);
    let (b50, b99) = (quantile(&berth, 0.5), quantile(&berth, 0.99));
    let (t50, t99) = (quantile(&timer, 0.5), quantile(&timer, 0.99));
    println!("cron precision, scheduled second to container started, {runs} runs each, every {period} s (ms):");
    println!(
        "  systemd timer + docker run  p50 {:7.0}  p99 {:7.0}",
        t50 * 1e3,
        t99 * 1e3
    );
    println!(
        "  berth cron job              p50 {:7.0}  p99 {:7.0}  (target p99 <= 1000)",
        b50 * 1e3,
        b99 * 1e3
    );
    println!(
        "  ratio berth/timer           p50 {:7.2}x p99 {:7.2}x",
        b50 / t50,
        b99 / t99
    );
    println!(
        "  ratio berth/10 s poll       p50 {:7.2}x p99 {:7.2}x  (a poll every 10 s: p50 {POLL_10S_P50} s, p99 {POLL_10S_P99} s, plus the start)",
        b50 / POLL_10S_P50,
        b99 / POLL_10S_P99
    );
}

/// Like [`Lab::eventually`], but checking once a second: listing hundreds
/// of jobs ten times a second would load the master being measured.
fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The lab's nodes.
const NODES: [&str; 3] = ["h1", "h2", "h3"];

/// `berth-bench job-throughput`: `jobs` jobs per side and round; `rounds`
/// rounds alternating which side goes first, medians reported.
pub fn job_throughput(jobs: usize, rounds: usize) {
    let lab = Lab::up("jb-jobs", NODES.len());
    lab.eventually(Duration::from_secs(60), "3 nodes Ready", || {
        let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]);
        let nodes = nodes.success().then(|| nodes.json())?;
        let ready = nodes
            .as_array()?
            .iter()
            .filter(|n| n["condition"] == "Ready")
            .count();
        (ready == NODES.len()).then_some(())
    });
    for host in NODES {
        lab.exec(host, &["docker", "run", "--rm", "local/busybox", "true"])
            .assert_success();
    }
    let mut berth_rates = Vec::new();
    let mut docker_rates = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            docker_rates.push(docker_runs(&lab, jobs));
            berth_rates.push(berth_jobs(&lab, jobs, round));
        } else {
            berth_rates.push(berth_jobs(&lab, jobs, round));
            docker_rates.push(docker_runs(&lab, jobs));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, d) = (median(&mut berth_rates), median(&mut docker_rates));
    println!(
        "job throughput, {jobs} run-once jobs of `true` on {} nodes, {rounds} rounds (median):",
        NODES.len()
    );
    println!("  docker run --rm, {START_CONCURRENCY} at a time per host     {d:7.2} jobs/s");
    println!("  berth job run, submission to Succeeded    {b:7.2} jobs/s");
    println!(
        "  ratio berth/docker                         {:7.2}x  (target >= 0.70x)",
        b / d
    );
    lab.down();
}

/// The Unix time on h1 in milliseconds (the master's clock: the machine's).
const NOW_MS: &str = "echo $(( $(date +%s%N) / 1000000 ))";

/// Runs `jobs` bare `docker run --rm` spread evenly over the hosts, as
/// many at a time on each as the agent starts, all hosts at once; jobs per
/// second.
fn docker_runs(lab: &Lab, jobs: usize) -> f64 {
    let spans: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let runs: Vec<_> = NODES
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let count = jobs / NODES.len() + usize::from(i < jobs % NODES.len());
                scope.spawn(move || {
                    let script = format!(
                        "{NOW_MS}; seq 1 {count} | xargs -P {START_CONCURRENCY} -I N \
                         docker run --rm local/busybox true || exit 1; {NOW_MS}"
                    );
                    let out = lab.sh(host, &script).assert_success();
                    let times: Vec<u64> = out.lines().filter_map(|l| l.parse().ok()).collect();
                    (times[0], times[1])
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a host's docker runs"))
            .collect()
    });
    let started = spans.iter().map(|s| s.0).min().unwrap_or(0);
    let ended = spans.iter().map(|s| s.1).max().unwrap_or(0);
    jobs as f64 / ((ended - started) as f64 / 1e3)
}

/// Submits `jobs` jobs of `true` one after another with the CLI, waits for
/// all to succeed, and returns jobs per second from the first submission
/// to the latest job's recorded end.
fn berth_jobs(lab: &Lab, jobs: usize, round: usize) -> f64 {
    let prefix = format!("r{round}-");
    let script = format!(
        "{NOW_MS}; for i in $(seq 1 {jobs}); do \
         berth job run {prefix}$i --image local/busybox -- true >/dev/null || exit 1; done"
    );
    let out = lab.sh("h1", &script).assert_success();
    let submitted: u64 = out.trim().parse().expect("the submission time");
    let ends = poll(
        Duration::from_secs(60 + jobs as u64),
        "every job Succeeded",
        || {
            let listed = lab.berth("h1", &["job", "ls", "-o", "json"]).json();
            let ours: Vec<&Value> = listed
                .as_array()?
                .iter()
                .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
                .collect();
            let failed: Vec<&str> = ours
                .iter()
                .filter(|j| j["status"]["phase"] == "Failed")
                .filter_map(|j| j["name"].as_str())
                .collect();
            assert!(failed.is_empty(), "jobs failed: {failed:?}");
            let ends: Vec<u64> = ours
                .iter()
                .filter(|j| j["status"]["phase"] == "Succeeded")
                .filter_map(|j| j["status"]["endMs"].as_u64())
                .collect();
            (ends.len() == jobs).then_some(ends)
        },
    );
    let ended = ends.into_iter().max().unwrap_or(submitted);
    jobs as f64 / (ended.saturating_sub(submitted) as f64 / 1e3)
}
