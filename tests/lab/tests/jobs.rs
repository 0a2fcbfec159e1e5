//! Jobs on real hosts: a job's pods run once as `Restart=no` units and
//! leave nothing behind; failed attempts are retried after a backoff up to
//! the backoff limit; a deadline and a cancel stop a job; completions run
//! at most `parallelism` at once; and a job waits for its prerequisites,
//! failing with them.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test jobs -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use berth_harness::Lab;
use serde_json::Value;

/// `berth job describe NAME -o json`.
fn job(lab: &Lab, name: &str) -> Value {
    lab.berth("h1", &["job", "describe", name, "-o", "json"])
        .json()
}

/// Runs `berth job run NAME ARGS...`.
fn run(lab: &Lab, name: &str, args: &[&str]) {
    let mut argv = vec!["job", "run", name, "--image", "local/busybox"];
    argv.extend(args);
    lab.berth("h1", &argv).assert_success();
}

/// The job's pods that the master lists now.
fn job_pods(lab: &Lab, name: &str) -> Vec<Value> {
    lab.pods()
        .into_iter()
        .filter(|p| p["job"] == name)
        .collect()
}

/// A command that fails until its third run, counting runs in a file on a
/// host volume that every attempt on the host mounts.
const THIRD_TIME_LUCKY: &str =
    "n=$(cat /count/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /count/n; echo run $n; [ $n -ge 3 ]";

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn jobs_run_once_are_retried_and_leave_nothing_behind() {
    let lab = Lab::up("jobs-once", 1);
    run(&lab, "ok", &["--", "sh", "-c", "echo done"]);
    let waited = lab.berth("h1", &["job", "wait", "ok", "--timeout", "60s"]);
    assert_eq!(waited.code(), Some(0), "{}", waited.stderr());
    assert_eq!(waited.stdout(), "job ok: Succeeded (1 of 1 pods)\n");
    assert_eq!(job(&lab, "ok")["status"]["phase"], "Succeeded");
    lab.eventually(Duration::from_secs(20), "ok's output in its logs", || {
        let logs = lab.berth("h1", &["job", "logs", "ok"]);
        logs.stdout().contains("done").then_some(())
    });
    lab.eventually(Duration::from_secs(20), "nothing of ok left on h1", || {
        let units = lab
            .exec(
                "h1",
                &[
                    "systemctl",
                    "list-units",
                    "--all",
                    "--plain",
                    "--no-legend",
                    "berth-ok*",
                ],
            )
            .assert_success();
        let containers = lab
            .exec(
                "h1",
                &["docker", "ps", "-aq", "--filter", "label=berth.pod=ok-0"],
            )
            .assert_success();
        (units.trim().is_empty() && containers.trim().is_empty() && job_pods(&lab, "ok").is_empty())
            .then_some(())
    });

    // Fails twice, then succeeds: three attempts, retried after 10 s and
    // 20 s. The same with a backoff limit of 1 fails at the first.
    lab.configure_agent("h1", r#"host-path-allow = ["/srv/jobs"]"#);
    lab.sh("h1", "mkdir -p /srv/jobs/lucky /srv/jobs/unlucky")
        .assert_success();
    run(
        &lab,
        "lucky",
        &[
            "--backoff-limit",
            "3",
            "-v",
            "/srv/jobs/lucky:/count",
            "--",
            "sh",
            "-c",
            THIRD_TIME_LUCKY,
        ],
    );
    run(
        &lab,
        "unlucky",
        &[
            "--backoff-limit",
            "1",
            "-v",
            "/srv/jobs/unlucky:/count",
            "--",
            "sh",
            "-c",
            THIRD_TIME_LUCKY,
        ],
    );
    let failed = lab.berth("h1", &["job", "wait", "unlucky", "--timeout", "60s"]);
    assert_eq!(failed.code(), Some(1), "{}", failed.stdout());
    assert!(
        failed.stderr().contains(
            "job unlucky ended Failed: 1 of 1 attempts failed; the last with exit code 1"
        ),
        "{}",
        failed.stderr()
    );
    let waited = lab.berth("h1", &["job", "wait", "lucky", "--timeout", "90s"]);
    assert_eq!(
        waited.code(),
        Some(0),
        "{}\n{}\n{}",
        waited.stderr(),
        lab.berth("h1", &["job", "describe", "lucky"]).stdout(),
        lab.berth("h1", &["job", "logs", "lucky"]).stdout()
    );
    let lucky = job(&lab, "lucky");
    let codes: Vec<Value> = lucky["status"]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["exitCode"].clone())
        .collect();
    assert_eq!(
        codes,
        [1, 1, 0],
        "{lucky:#}\n{}\n{}",
        lab.berth("h1", &["job", "logs", "lucky"]).stdout(),
        lab.sh(
            "h1",
            "journalctl -o cat -u berth-agent -u 'berth-lucky*' | grep -i lucky"
        )
        .stdout()
    );
    assert_eq!(lucky["status"]["failed"], 2);
    let pods: Vec<&str> = lucky["status"]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["pod"].as_str())
        .collect();
    assert_eq!(
        pods,
        ["lucky-0", "lucky-1", "lucky-2"],
        "each attempt a new pod"
    );
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn jobs_end_on_deadline_or_cancel_and_run_in_parallel_and_in_order() {
    let lab = Lab::up("jobs-control", 2);
    // A deadline of 3 s on a minute's sleep fails the job within 5 s.
    run(&lab, "slow", &["--deadline", "3s", "--", "sleep", "60"]);
    let started = Instant::now();
    let failed = lab.berth("h1", &["job", "wait", "slow", "--timeout", "30s"]);
    assert_eq!(failed.code(), Some(1));
    assert!(
        failed.stderr().contains("its deadline of 3s passed"),
        "{}",
        failed.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    lab.eventually(Duration::from_secs(15), "slow's container gone", || {
        ["h1", "h2"]
            .iter()
            .all(|h| {
                lab.exec(
                    h,
                    &["docker", "ps", "-q", "--filter", "label=berth.pod=slow-0"],
                )
                .stdout()
                .trim()
                .is_empty()
            })
            .then_some(())
    });

    // Cancel ends a running job Cancelled within the stop grace.
    run(&lab, "stopped", &["--", "sleep", "60"]);
    lab.eventually(Duration::from_secs(20), "stopped running", || {
        (job(&lab, "stopped")["status"]["phase"] == "Running").then_some(())
    });
    lab.berth("h1", &["job", "cancel", "stopped"])
        .assert_success();
    let cancelled = lab.berth("h1", &["job", "wait", "stopped", "--timeout", "15s"]);
    assert!(
        cancelled.stderr().contains("ended Cancelled"),
        "{}",
        cancelled.stderr()
    );

    // Six completions, never more than two at once.
    run(
        &lab,
        "batch",
        &[
            "--completions",
            "6",
            "--parallelism",
            "2",
            "--",
            "sleep",
            "2",
        ],
    );
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        most = most.max(job_pods(&lab, "batch").len());
        let status = job(&lab, "batch")["status"].clone();
        if status["phase"] == "Succeeded" {
            assert_eq!(status["succeeded"], 6, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "batch did not finish: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(most <= 2, "{most} pods of batch at once");
    assert!(most >= 1);

    // After: second waits for first and runs once it succeeded; third
    // fails naming the prerequisite that failed.
    run(&lab, "first", &["--", "sleep", "3"]);
    run(&lab, "second", &["--after", "first", "--", "true"]);
    let waiting = job(&lab, "second");
    assert_eq!(waiting["status"]["phase"], "Pending", "{waiting}");
    lab.berth("h1", &["job", "wait", "second", "--timeout", "60s"])
        .assert_success();
    let first = job(&lab, "first");
    let second = job(&lab, "second");
    assert!(
        second["status"]["startMs"].as_u64() >= first["status"]["endMs"].as_u64(),
        "second started before first ended: {first} {second}"
    );
    run(&lab, "broken", &["--backoff-limit", "1", "--", "false"]);
    run(&lab, "third", &["--after", "broken", "--", "true"]);
    let failed = lab.berth("h1", &["job", "wait", "third", "--timeout", "60s"]);
    assert!(
        failed
            .stderr()
            .contains("its prerequisite job broken ended Failed"),
        "{}",
        failed.stderr()
    );
    // A cycle (only possible by making a job waited for again) is refused.
    lab.berth("h1", &["job", "rm", "first"]).assert_success();
    let refused = lab
        .berth(
            "h1",
            &[
                "job",
                "run",
                "first",
                "--image",
                "local/busybox",
                "--after",
                "second",
                "--",
                "true",
            ],
        )
        .assert_failure();
    assert!(refused.contains("a cycle"), "{refused}");
    lab.down();
}

/// h1's memory as the master counts it.
fn memory_of_h1(lab: &Lab) -> u64 {
    let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
    let h1 = &nodes[0];
    h1["node"]["capacity"]["memoryBytes"]
        .as_u64()
        .or(h1["capacity"]["memoryBytes"].as_u64())
        .expect("h1's memory")
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn jobs_wait_for_room_and_the_high_one_goes_first() {
    let lab = Lab::up("jobs-queue", 1);
    // Each pod asks for 55% of the node: one fits at a time.
    let share = format!("{}K", memory_of_h1(&lab) * 55 / 100 / 1024);
    lab.berth(
        "h1",
        &[
            "run",
            "hog",
            "--image",
            "local/busybox",
            "--memory",
            &share,
            "--",
            "sleep",
            "1d",
        ],
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "hog running", || {
        lab.pod("hog-0")
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|_| ())
    });
    for priority in ["low", "high"] {
        run(
            &lab,
            priority,
            &[
                "--priority",
                priority,
                "--memory",
                &share,
                "--",
                "sleep",
                "3",
            ],
        );
        // Queued in this order: low first.
        std::thread::sleep(Duration::from_millis(1500));
    }
    // Its pod is made, found no room for, and the job says so: a few
    // controller rounds.
    let reason = lab.eventually(Duration::from_secs(20), "low saying why it waits", || {
        let low = job(&lab, "low");
        assert_eq!(low["status"]["phase"], "Pending", "{low}");
        low["status"]["reason"].as_str().map(str::to_owned)
    });
    assert!(
        reason.contains("memory"),
        "a waiting job says why: {reason}"
    );

    lab.berth("h1", &["scale", "hog", "0"]).assert_success();
    let first = lab.eventually(Duration::from_secs(30), "a queued job to run", || {
        ["low", "high"]
            .into_iter()
            .find(|name| job(&lab, name)["status"]["phase"] == "Running")
    });
    assert_eq!(first, "high", "the low job, queued first, went first");
    assert_eq!(job(&lab, "low")["status"]["phase"], "Pending");
    for name in ["high", "low"] {
        lab.berth("h1", &["job", "wait", name, "--timeout", "60s"])
            .assert_success();
    }
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_failed_job_reaches_a_policy_webhook() {
    let lab = Lab::up("jobs-hook", 2);
    let hook = lab.serve_webhook("h2");
    lab.sh(
        "h1",
        &format!(
            "mkdir -p /etc/berth && printf '[[webhooks]]\\nevent = \"JobFailed\"\\nurl = \"{hook}\"\\n' \
             > /etc/berth/master.toml && systemctl restart berth-master"
        ),
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "the master to answer", || {
        lab.berth("h1", &["node", "ls"]).success().then_some(())
    });
    run(
        &lab,
        "doomed",
        &["--backoff-limit", "1", "--", "sh", "-c", "exit 7"],
    );
    let delivered = lab.eventually(Duration::from_secs(30), "the webhook to get it", || {
        lab.webhook_received("h2")
            .into_iter()
            .find(|e| e["kind"] == "JobFailed" && e["object"] == "job/doomed")
    });
    let reason = delivered["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("exit code 7"), "{delivered}");
    lab.down();
}

/// `berth cron describe NAME -o json`.
fn cron(lab: &Lab, name: &str) -> Value {
    lab.berth("h1", &["cron", "describe", name, "-o", "json"])
        .json()
}

/// The Unix second of the wall clock on h1.
fn unix_now(lab: &Lab) -> u64 {
    lab.exec("h1", &["date", "+%s"])
        .assert_success()
        .trim()
        .parse()
        .expect("a Unix time")
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn cron_jobs_run_each_slot_once_skip_overlaps_and_survive_a_killed_master() {
    let lab = Lab::up("jobs-cron", 1);
    let create = |name: &str, extra: &[&str], command: &[&str]| {
        let mut argv = vec![
            "cron",
            "create",
            name,
            "--schedule",
            "*/10 * * * * *",
            "--image",
            "local/busybox",
        ];
        argv.extend(extra);
        argv.push("--");
        argv.extend(command);
        lab.berth("h1", &argv).assert_success();
    };
    create("tick", &[], &["true"]);
    create("slow", &["--concurrency", "forbid"], &["sleep", "25"]);
    std::thread::sleep(Duration::from_secs(35));
    // A slot's run is counted in the controller round after it.
    let runs = lab.eventually(Duration::from_secs(3), "3 runs of tick", || {
        let runs = cron(&lab, "tick")["status"]["runs"].as_u64().unwrap_or(0);
        (runs >= 3).then_some(runs)
    });
    assert!(
        (3..=4).contains(&runs),
        "every 10 s for 35 s ran {runs} times"
    );
    let slow = cron(&lab, "slow");
    assert!(
        slow["status"]["skipped"].as_u64() >= Some(1),
        "an overlapping slot was not skipped: {slow}"
    );
    let skipped = lab.events("CronJobSkipped");
    assert!(
        skipped.iter().any(|e| e["object"] == "cronjob/slow"
            && e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("still runs")),
        "{skipped:#?}"
    );

    // The master dies hard 2 s before a slot and is away past it: the slot
    // runs once, late, when it is back.
    lab.berth("h1", &["cron", "rm", "slow"]).assert_success();
    let slot = (unix_now(&lab) / 10 + 1) * 10;
    let until_kill = slot.saturating_sub(2).saturating_sub(unix_now(&lab));
    std::thread::sleep(Duration::from_secs(until_kill));
    lab.sh(
        "h1",
        "systemctl kill -s KILL berth-master; systemctl stop berth-master",
    )
    .assert_success();
    std::thread::sleep(Duration::from_secs(5));
    lab.exec("h1", &["systemctl", "start", "berth-master"])
        .assert_success();
    let name = format!("tick-{slot}");
    let deadline = Instant::now() + Duration::from_secs(40);
    let ran = loop {
        let job = lab.berth("h1", &["job", "describe", &name, "-o", "json"]);
        let last = format!("{}{}", job.stdout(), job.stderr());
        if let Some(job) = job.success().then(|| job.json()) {
            if job["status"]["phase"] == "Succeeded" {
                break job;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 40 s waiting for {name} to succeed; last answer:\n{last}\n\
             cron:\n{}\njobs:\n{}\nevents:\n{}\nmaster:\n{}",
            lab.berth("h1", &["cron", "describe", "tick"]).stdout(),
            lab.berth("h1", &["job", "ls"]).stdout(),
            lab.berth("h1", &["events"]).stdout(),
            lab.sh("h1", "journalctl -o cat -u berth-master -n 60")
                .stdout()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        ran["status"]["attempts"].as_array().map(Vec::len),
        Some(1),
        "the slot's job ran more than once: {ran}"
    );
    let jobs = lab.berth("h1", &["job", "ls", "-o", "json"]).json();
    let of_slot = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter(|j| j["name"] == name.as_str())
        .count();
    assert_eq!(of_slot, 1);
    assert!(
        lab.events("CronJobMissed").is_empty(),
        "no deadline: nothing missed"
    );
    lab.down();
}
