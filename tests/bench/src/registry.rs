//! Integrated registry benchmarks, each against a baseline run beside it
//! in the same lab (h1 runs the master and the registry and takes no pods;
//! h2 runs them):
//!
//! - `push-to-rollout`: from `docker push` returning to the first pod of
//!   the new revision scheduled (the master's `PodScheduled` event), for a
//!   service following the pushed tag, against the same rollout started by
//!   moving the tag through the API (`berth tag` returning), interleaved.
//!   OpenShift re-imports on a schedule, every 15 minutes by default: its
//!   expected delay is printed beside.
//! - `registry-pull`: `berth run --image-stream` of an image only the
//!   registry has, from the command to its container started (Docker's
//!   `start` event), against `docker pull` of an image of the same size
//!   from the same registry with a node's credential, then `docker run`,
//!   timed the same way; interleaved, alternating which goes first.

use std::time::Duration;

use berth_harness::{now_ms, Lab, REGISTRY};

use crate::quantile;

/// Records every container start on the host, `<ns> <name>` a line.
const RECORD_STARTS: &str = "systemd-run --unit=bench-starts sh -c \
     'exec docker events --filter type=container --filter event=start \
      --format \"{{.TimeNano}} {{.Actor.Attributes.name}}\" > /run/bench-starts.log'";

/// OpenShift's scheduled import every 15 minutes: a push falls uniformly
/// within a period.
const POLL_15MIN_P50_MS: f64 = 450_000.0;

/// A lab whose h1 serves and pushes, and logged in to the registry.
fn lab(name: &str) -> Lab {
    let lab = Lab::up(name, 2);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.berth("h1", &["registry", "login"]).assert_success();
    lab
}

/// Makes `count` images `local/NAME-<i>` on h1, each with `bytes` of
/// noise of its own, so that no layer is shared.
fn make_images(lab: &Lab, name: &str, count: usize, bytes: usize) {
    for i in 0..count {
        lab.make_noise_image("h1", &format!("{name}-{i}"), bytes);
    }
}

/// The first `PodScheduled` of `service`'s pods after `after_ms`.
fn scheduled_after(lab: &Lab, service: &str, after_ms: u64) -> Option<u64> {
    let events = lab
        .berth("h1", &["events", "--type", "PodScheduled", "-o", "json"])
        .json();
    events
        .as_array()?
        .iter()
        .filter(|e| {
            e["object"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("pod/{service}-")))
        })
        .filter_map(|e| e["timeMs"].as_u64())
        .filter(|t| *t >= after_ms)
        .min()
}

fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `berth-bench push-to-rollout`: `pushes` of each side, interleaved.
pub fn push_to_rollout(pushes: usize) {
    let lab = lab("bench-push");
    make_images(&lab, "pushed", pushes + 1, 1024);
    make_images(&lab, "tagged", pushes, 1024);
    // The tag side's images are in the registry before anything is timed:
    // it measures moving a tag, not uploading.
    let tagged: Vec<String> = (0..pushes)
        .map(|i| lab.push_image(&format!("local/tagged-{i}"), &format!("src:{i}")))
        .collect();
    lab.push_image("local/pushed-0", "web:v1");
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image-stream",
            "web:v1",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let complete = |lab: &Lab| {
        lab.berth(
            "h1",
            &["rollout", "status", "web", "-w", "--timeout", "120s"],
        )
        .assert_success();
    };
    complete(&lab);
    let (mut by_push, mut by_tag) = (Vec::new(), Vec::new());
    for (i, tagged) in tagged.iter().enumerate() {
        lab.push_image(&format!("local/pushed-{}", i + 1), "web:v1");
        let pushed = now_ms();
        let at = wait("the pushed revision's pod", || {
            scheduled_after(&lab, "web", pushed)
        });
        by_push.push(at.saturating_sub(pushed) as f64);
        complete(&lab);

        let source = format!("{REGISTRY}/default/src@{tagged}");
        lab.berth("h1", &["tag", &source, "web:v1"])
            .assert_success();
        let moved = now_ms();
        let at = wait("the tagged revision's pod", || {
            scheduled_after(&lab, "web", moved)
        });
        by_tag.push(at.saturating_sub(moved) as f64);
        complete(&lab);
    }
    by_push.sort_by(f64::total_cmp);
    by_tag.sort_by(f64::total_cmp);
    let (p50, p99) = (quantile(&by_push, 0.5), quantile(&by_push, 0.99));
    let (t50, t99) = (quantile(&by_tag, 0.5), quantile(&by_tag, 0.99));
    println!("push to rollout start (first new pod scheduled), {pushes} each (ms):");
    println!("  berth tag (API) returning    p50 {t50:7.0}  p99 {t99:7.0}");
    println!("  docker push returning        p50 {p50:7.0}  p99 {p99:7.0}  (target p99 <= 1000)");
    println!(
        "  ratio push/tag               p50 {:7.2}x p99 {:7.2}x",
        p50 / t50.max(1.0),
        p99 / t99.max(1.0)
    );
    println!(
        "  against a 15-minute scheduled import (p50 {} s): {:.5}x",
        POLL_15MIN_P50_MS / 1000.0,
        p50 / POLL_15MIN_P50_MS
    );
    lab.down();
}

/// When container `name` started on h2, in Unix milliseconds.
fn started_ms(lab: &Lab, name: &str) -> Option<u64> {
    let starts = lab.exec("h2", &["cat", "/run/bench-starts.log"]).stdout();
    starts.lines().find_map(|line| {
        let (ns, started) = line.split_once(' ')?;
        (started == name).then(|| ns.parse::<u64>().ok().map(|ns| ns / 1_000_000))?
    })
}

/// `berth-bench registry-pull`: `runs` pairs, interleaved.
pub fn registry_pull(runs: usize, megabytes: usize) {
    let lab = lab("bench-pull");
    make_images(&lab, "viaberth", runs, megabytes << 20);
    make_images(&lab, "viadocker", runs, megabytes << 20);
    for i in 0..runs {
        lab.push_image(&format!("local/viaberth-{i}"), &format!("pb{i}:v1"));
        lab.push_image(&format!("local/viadocker-{i}"), &format!("pd{i}:v1"));
    }
    // The baseline pulls with a node's credential, as berth's agent does.
    let credential = lab.node_credential("h2");
    lab.exec(
        "h2",
        &["docker", "login", REGISTRY, "-u", "h2", "-p", &credential],
    )
    .assert_success();
    lab.sh("h2", RECORD_STARTS).assert_success();
    std::thread::sleep(Duration::from_secs(1));
    let berth_side = |i: usize| -> f64 {
        let asked = now_ms();
        let (name, stream) = (format!("pb{i}"), format!("pb{i}:v1"));
        lab.berth(
            "h1",
            &[
                "run",
                &name,
                "--image-stream",
                &stream,
                "--",
                "sleep",
                "100000",
            ],
        )
        .assert_success();
        let container = format!("berth.{name}-0.{name}");
        let at = wait("berth's container", || started_ms(&lab, &container));
        at.saturating_sub(asked) as f64
    };
    let docker_side = |i: usize| -> f64 {
        let asked = now_ms();
        let image = format!("{REGISTRY}/default/pd{i}:v1");
        lab.sh(
            "h2",
            &format!("docker pull -q {image} >/dev/null && docker run -d --name pd{i} {image} sleep 100000 >/dev/null"),
        )
        .assert_success();
        let at = wait("docker's container", || started_ms(&lab, &format!("pd{i}")));
        at.saturating_sub(asked) as f64
    };
    let (mut berth, mut docker) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            docker.push(docker_side(i));
            berth.push(berth_side(i));
        } else {
            berth.push(berth_side(i));
            docker.push(docker_side(i));
        }
    }
    berth.sort_by(f64::total_cmp);
    docker.sort_by(f64::total_cmp);
    let (b50, d50) = (quantile(&berth, 0.5), quantile(&docker, 0.5));
    println!("pull through the integrated registry to container started, {megabytes} MB images, {runs} each (ms):");
    println!(
        "  docker pull + docker run     p50 {d50:7.0}  max {:7.0}",
        docker[docker.len() - 1]
    );
    println!(
        "  berth run --image-stream     p50 {b50:7.0}  max {:7.0}",
        berth[berth.len() - 1]
    );
    println!(
        "  ratio berth/docker           p50 {:7.2}x  (target <= 1.1x)",
        b50 / d50.max(1.0)
    );
    lab.down();
}
