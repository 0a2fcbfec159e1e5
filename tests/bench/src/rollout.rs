//! `berth-bench rollout`: a rolling update of a replicated httpd service
//! and its rollback, under constant load through a router, against the
//! ideal computed from the same run's single-pod start.
//!
//! - Single-pod start: a scratch service of the same image, probe and
//!   node pool is scaled from 0 to 1 several times; each start is from
//!   the pod's `PodScheduled` event (the round that made and placed it)
//!   to its `readySinceMs` (the master's record of its node reporting it
//!   ready). The median is the pod start.
//! - Rollout: `berth set image` of the service, from the deployment's
//!   `createdMs` to its `endedMs` (the master's view), and from the CLI
//!   call to `berth rollout status -w` returning (the user's view). The
//!   ideal is `waves x (pod start + minReady)` with `waves = ceil(replicas
//!   / surge)`: each wave's pods start together, and the next wave may
//!   start once they have been ready for `minReady` (old pods drain
//!   beside it).
//! - Rollback: `berth rollout undo` on the same service, from the call to
//!   the rollback deployment `Complete`.
//!
//! Both run while `berth-bench load` sends about 100 req/s through the
//! router on fresh connections; every failed request is counted.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_harness::{Lab, Run, SERVE_VERSION};
use serde_json::{json, Value};

use crate::quantile;

/// h1's address in the lab: the master and the router run there.
const ROUTER: &str = "10.231.0.11";

/// The route's host name.
const HOST: &str = "www.example.test";

/// The Unix time on h1 in milliseconds (the master's clock: the machine's).
const NOW_MS: &str = "echo $(( $(date +%s%N) / 1000000 ))";

/// The lab's worker nodes (h1 runs the master and the router, cordoned).
const WORKERS: [&str; 2] = ["h2", "h3"];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Replicas of the service rolled out.
    pub replicas: u32,
    /// `--max-surge`, as the CLI takes it (`25%`, `3`).
    pub max_surge: String,
    /// `--min-ready`, seconds.
    pub min_ready: u32,
    /// `--probe-period` of the readiness probe, seconds.
    pub probe_period: u32,
    /// Requests per second through the router.
    pub rate: u32,
    /// Single-pod starts to time.
    pub starts: usize,
}

/// `berth-bench rollout`.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let lab = boot();
    let bench = lab.install_bench("h1");

    let starts = single_pod_starts(&lab, config);
    let mut sorted = starts.clone();
    sorted.sort_by(f64::total_cmp);
    let pod_start = quantile(&sorted, 0.5);
    let surge = surge_of(&config.max_surge, config.replicas);
    let waves = config.replicas.div_ceil(surge);
    let ideal = f64::from(waves) * (pod_start + f64::from(config.min_ready));
    println!(
        "single-pod start, created to ready as the master sees it, {} runs: p50 {:.2} s, max {:.2} s ({:?})",
        starts.len(),
        pod_start,
        sorted.last().copied().unwrap_or_default(),
        starts.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!(
        "ideal: {waves} waves x ({pod_start:.2} s start + {} s minReady) = {ideal:.2} s",
        config.min_ready
    );

    start_web(&lab, config);
    // The load outlasts a rollout of up to twice the ideal and 10 s.
    let load_secs = 3 + (2.0 * ideal).ceil() as u64 + 10;
    let timeout = format!("{}s", load_secs + 60);

    let (rollout, routed) = under_load(&lab, bench, config.rate, load_secs, || {
        timed_change(&lab, &["set", "image", "web", "local/web:v2"], &timeout)
    });
    let rollout_pods = pod_timeline(&lab, 2, rollout.created_ms);
    let rolled = deployment(&lab, 2);
    assert_eq!(
        rolled["status"]["phase"], "Complete",
        "the rollout did not complete: {rolled}"
    );
    let (rollback, rollback_routed) = under_load(&lab, bench, config.rate, load_secs, || {
        timed_change(&lab, &["rollout", "undo", "web"], &timeout)
    });
    let rollback_pods = pod_timeline(&lab, 3, rollback.created_ms);
    for (what, timed) in [("rollout", rollout), ("rollback", rollback)] {
        if timed.cli_secs() + 3.0 > load_secs as f64 {
            println!("note: the {what} outlasted its load of {load_secs} s");
        }
    }

    let wall = rollout.master_secs();
    let ratio = wall / ideal;
    let failed = routed["failed"].as_u64().unwrap_or(u64::MAX);
    let rollback_failed = rollback_routed["failed"].as_u64().unwrap_or(u64::MAX);
    println!(
        "rollout, {} replicas, maxSurge {} ({surge}), maxUnavailable 0, minReady {} s, readiness period {} s:",
        config.replicas, config.max_surge, config.min_ready, config.probe_period
    );
    println!(
        "  createdMs to endedMs        {wall:7.2} s   (set image to rollout status -w returning: {:.2} s)",
        rollout.cli_secs()
    );
    println!("  ideal                       {ideal:7.2} s");
    println!("  ratio                       {ratio:7.2}x  (target <= 1.30x)");
    println!(
        "  failed requests             {failed:7}   of {} sent (target 0)",
        routed["sent"]
    );
    println!(
        "  new pods, scheduled/ready s after createdMs: {}",
        timeline_text(&rollout_pods)
    );
    println!(
        "rollback (rollout undo to Complete): {:.2} s (undo to rollout status -w returning: {:.2} s), ratio to the ideal {:.2}x, failed requests {rollback_failed} of {}",
        rollback.master_secs(),
        rollback.cli_secs(),
        rollback.master_secs() / ideal,
        rollback_routed["sent"]
    );
    println!(
        "  pods, scheduled/ready s after createdMs: {}",
        timeline_text(&rollback_pods)
    );
    println!(
        "{}",
        json!({
            "bench": "rollout",
            "replicas": config.replicas,
            "maxSurge": config.max_surge,
            "surge": surge,
            "waves": waves,
            "minReadySecs": config.min_ready,
            "probePeriodSecs": config.probe_period,
            "podStartSecs": pod_start,
            "podStarts": starts,
            "idealSecs": ideal,
            "rolloutSecs": wall,
            "rolloutCliSecs": rollout.cli_secs(),
            "ratio": ratio,
            "failed": failed,
            "sent": routed["sent"],
            "rollbackSecs": rollback.master_secs(),
            "rollbackCliSecs": rollback.cli_secs(),
            "rollbackRatio": rollback.master_secs() / ideal,
            "rollbackFailed": rollback_failed,
            "rollbackSent": rollback_routed["sent"],
        })
    );
    lab.down();
    anyhow::ensure!(
        failed == 0 && rollback_failed == 0,
        "requests failed: rollout {routed}, rollback {rollback_routed}"
    );
    Ok(())
}

/// The surge `max_surge` (`N` or `P%`, rounded up) allows for `replicas`,
/// at least 1, as the master computes it.
fn surge_of(max_surge: &str, replicas: u32) -> u32 {
    let amount: berth_model::deployment::Amount =
        max_surge.parse().expect("--max-surge: a count or a share");
    amount.of(replicas, true).max(1)
}

/// A 3-host lab: h1 runs the master and the router and takes no pods; h2
/// and h3 hold `local/web:v1` and `local/web:v2`, the same server, each
/// answering with its version.
fn boot() -> Lab {
    let lab = Lab::up("rb-rollout", 1 + WORKERS.len());
    lab.eventually(Duration::from_secs(60), "3 nodes Ready", || {
        let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]);
        let nodes = nodes.success().then(|| nodes.json())?;
        let ready = nodes
            .as_array()?
            .iter()
            .filter(|n| n["condition"] == "Ready")
            .count();
        (ready == 1 + WORKERS.len()).then_some(())
    });
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    for host in WORKERS {
        lab.make_web_images(host);
    }
    lab.start_router("h1");
    lab
}

/// `berth run NAME` of `local/web:v1` with `replicas`, the readiness probe
/// and the strategy.
fn run_service(lab: &Lab, name: &str, replicas: u32, config: &Config) {
    let replicas = replicas.to_string();
    let period = config.probe_period.to_string();
    let min_ready = config.min_ready.to_string();
    lab.berth(
        "h1",
        &[
            "run",
            name,
            "--image",
            "local/web:v1",
            "--replicas",
            &replicas,
            "-p",
            "8080",
            "--readiness",
            "tcp:8080",
            "--probe-period",
            &period,
            "--max-surge",
            &config.max_surge,
            "--max-unavailable",
            "0",
            "--min-ready",
            &min_ready,
            "--",
            "sh",
            "-c",
            SERVE_VERSION,
        ],
    )
    .assert_success();
}

/// The master's pods of `service`.
fn pods_of(lab: &Lab, service: &str) -> Vec<Value> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service)
        .collect()
}

/// Whether the master sees `pod` ready and not draining.
fn is_ready(pod: &Value) -> bool {
    pod["readySinceMs"].is_u64() && pod["drainingSinceMs"].is_null()
}

/// When each pod was last scheduled (its latest `PodScheduled` event).
fn scheduled_ms(lab: &Lab) -> BTreeMap<String, u64> {
    let mut scheduled = BTreeMap::new();
    for event in lab.events("PodScheduled") {
        let (Some(pod), Some(time)) = (
            event["object"]
                .as_str()
                .and_then(|o| o.strip_prefix("pod/")),
            event["timeMs"].as_u64(),
        ) else {
            continue;
        };
        let latest = scheduled.entry(pod.to_owned()).or_insert(time);
        *latest = (*latest).max(time);
    }
    scheduled
}

/// Scales a scratch service of the same image and probe from 0 to 1
/// `config.starts` times; each start in seconds, from scheduled to ready.
fn single_pod_starts(lab: &Lab, config: &Config) -> Vec<f64> {
    run_service(lab, "scratch", 0, config);
    let mut starts = Vec::new();
    for _ in 0..config.starts {
        lab.berth("h1", &["scale", "scratch", "1"]).assert_success();
        let ready_ms = lab.eventually(Duration::from_secs(60), "scratch-0 ready", || {
            pods_of(lab, "scratch")
                .iter()
                .find(|p| is_ready(p))
                .and_then(|p| p["readySinceMs"].as_u64())
        });
        let scheduled = scheduled_ms(lab)["scratch-0"];
        starts.push(ready_ms.saturating_sub(scheduled) as f64 / 1e3);
        lab.berth("h1", &["scale", "scratch", "0"]).assert_success();
        lab.eventually(Duration::from_secs(60), "scratch-0 gone", || {
            pods_of(lab, "scratch").is_empty().then_some(())
        });
    }
    lab.berth("h1", &["rm", "scratch"]).assert_success();
    starts
}

/// Runs the service `web` with its route, and waits until every replica
/// is ready and the router answers v1.
fn start_web(lab: &Lab, config: &Config) {
    run_service(lab, "web", config.replicas, config);
    lab.berth("h1", &["route", "add", "web", HOST])
        .assert_success();
    lab.eventually(Duration::from_secs(180), "every web replica ready", || {
        let ready = pods_of(lab, "web").iter().filter(|p| is_ready(p)).count();
        (ready == config.replicas as usize).then_some(())
    });
    lab.eventually(Duration::from_secs(30), "v1 routed", || {
        let answer = lab.exec(
            "h1",
            &[
                "curl",
                "-sf",
                "--max-time",
                "5",
                "-H",
                &format!("Host: {HOST}"),
                &format!("http://{ROUTER}/"),
            ],
        );
        (answer.success() && answer.stdout().trim() == "v1").then_some(())
    });
}

/// One timed revision: the master's record and the CLI's times.
#[derive(Debug, Clone, Copy)]
struct Timed {
    /// Before the CLI call that made the revision (h1's clock).
    called_ms: u64,
    /// When `rollout status -w` returned.
    returned_ms: u64,
    /// The deployment's `createdMs`.
    created_ms: u64,
    /// Its `endedMs`.
    ended_ms: u64,
}

impl Timed {
    fn master_secs(&self) -> f64 {
        self.ended_ms.saturating_sub(self.created_ms) as f64 / 1e3
    }

    fn cli_secs(&self) -> f64 {
        self.returned_ms.saturating_sub(self.called_ms) as f64 / 1e3
    }
}

/// Runs `berth <change>` (which makes a revision of web) and waits with
/// `rollout status -w`, timed inside h1; reads the new deployment.
fn timed_change(lab: &Lab, change: &[&str], timeout: &str) -> Timed {
    let script = format!(
        "set -e; {NOW_MS}; berth {} >&2; berth rollout status web -w --timeout {timeout} >&2; {NOW_MS}",
        change.join(" ")
    );
    let out = lab.sh("h1", &script).assert_success();
    let times: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let latest = history(lab).last().cloned().expect("a deployment");
    Timed {
        called_ms: times[0],
        returned_ms: times[1],
        created_ms: latest["createdMs"].as_u64().expect("createdMs"),
        ended_ms: latest["status"]["endedMs"].as_u64().expect("endedMs"),
    }
}

/// `berth rollout history web -o json`.
fn history(lab: &Lab) -> Vec<Value> {
    lab.berth("h1", &["rollout", "history", "web", "-o", "json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Revision `revision` of web.
fn deployment(lab: &Lab, revision: u64) -> Value {
    history(lab)
        .into_iter()
        .find(|d| d["revision"] == revision)
        .unwrap_or(Value::Null)
}

/// The pods of web's `revision`: when each was scheduled and got ready,
/// in seconds after `since_ms`, by scheduling time.
fn pod_timeline(lab: &Lab, revision: u64, since_ms: u64) -> Vec<(String, f64, f64)> {
    let scheduled = scheduled_ms(lab);
    let secs = |ms: u64| ms as f64 / 1e3 - since_ms as f64 / 1e3;
    let mut pods: Vec<(String, f64, f64)> = pods_of(lab, "web")
        .iter()
        .filter(|p| p["revision"].as_u64().unwrap_or(1) == revision)
        .filter_map(|p| {
            let name = p["spec"]["name"].as_str()?;
            Some((
                name.to_owned(),
                secs(*scheduled.get(name)?),
                secs(p["readySinceMs"].as_u64()?),
            ))
        })
        .collect();
    pods.sort_by(|a, b| a.1.total_cmp(&b.1));
    pods
}

fn timeline_text(pods: &[(String, f64, f64)]) -> String {
    pods.iter()
        .map(|(name, scheduled, ready)| format!("{name} {scheduled:.1}/{ready:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `change` while `berth-bench load` sends `rate` req/s through the
/// router for `seconds`, starting 3 s before it; the change's result and
/// the load's summary.
fn under_load<T: Send>(
    lab: &Lab,
    bench: &str,
    rate: u32,
    seconds: u64,
    change: impl FnOnce() -> T + Send,
) -> (T, Value) {
    let rate = rate.to_string();
    let seconds = seconds.to_string();
    std::thread::scope(|scope| {
        let routed = scope.spawn(|| {
            lab.exec(
                "h1",
                &[
                    bench,
                    "load",
                    "--target",
                    &format!("{ROUTER}:80"),
                    "--host",
                    HOST,
                    "--rate",
                    &rate,
                    "--seconds",
                    &seconds,
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        let result = change();
        (result, summary(&routed.join().expect("router load")))
    })
}

/// The JSON summary line of a `berth-bench load` run.
fn summary(run: &Run) -> Value {
    let out = run.assert_success();
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("load summary {last:?}: {e}"))
}
