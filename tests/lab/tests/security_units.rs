//! Hardening on real hosts: every berth unit is sandboxed to the exposure
//! `systemd-analyze security` is asked to stay under, while pods, probes,
//! the router and HAProxy keep working; and no application can break or
//! spoof the agent's Prometheus page.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test security_units -- --ignored --nocapture`.

use std::time::Duration;

use berth_harness::Lab;

/// The "Overall exposure level" `systemd-analyze security` gives a loaded
/// unit.
fn exposure(lab: &Lab, host: &str, unit: &str) -> f64 {
    let run = lab.exec(host, &["systemd-analyze", "security", "--no-pager", unit]);
    let out = run.stdout();
    out.lines()
        .find_map(|line| {
            let (_, level) = line.split_once("Overall exposure level for ")?;
            level
                .split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{out}\n{}", run.stderr()))
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn su_every_unit_is_sandboxed_within_its_exposure_target_and_still_works() {
    let lab = Lab::up("su-score", 1);
    // The router and its HAProxy, started the way an operator would.
    lab.exec("h1", &["systemctl", "enable", "--now", "berth-router"])
        .assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "berth-router-haproxy active",
        || lab.is_active("h1", "berth-router-haproxy").then_some(()),
    );
    // A pod without probes, and one whose HTTP readiness probe must pass
    // (from inside the container's network namespace) before its unit
    // is active.
    lab.berth(
        "h1",
        &[
            "run",
            "plain",
            "--image",
            "local/busybox",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    lab.berth(
        "h1",
        &[
            "run",
            "probed",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--readiness",
            "http:8080/",
            "--liveness",
            "tcp:8080",
            "--probe-period",
            "1",
            "--",
            "sh",
            "-c",
            "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
    let plain = "berth-plain\\x2d0-plain.service";
    let probed = "berth-probed\\x2d0-probed.service";
    for unit in [plain, probed] {
        lab.eventually(Duration::from_secs(90), &format!("{unit} active"), || {
            lab.is_active("h1", unit).then_some(())
        });
    }
    // The probes ran in the sandbox: the endpoint is ready, and no probe
    // failed for want of a permission.
    let journal = lab
        .exec("h1", &["journalctl", "-u", probed, "--no-pager"])
        .assert_success();
    assert!(!journal.contains("probes cannot run"), "{journal}");
    assert!(!journal.contains("Operation not permitted"), "{journal}");
    // Each shim runs in a root of its own: the sockets of /run are there,
    // Docker's data and the host's /etc are not.
    for unit in [plain, probed] {
        let pid = lab
            .exec("h1", &["systemctl", "show", "-P", "MainPID", unit])
            .assert_success();
        let root = format!("/proc/{}/root", pid.trim());
        let test = |flag: &str, path: &str| {
            lab.exec("h1", &["test", flag, &format!("{root}{path}")])
                .success()
        };
        assert!(test("-S", "/run/docker.sock"), "{unit}: no Docker socket");
        assert!(test("-x", "/usr/bin/berth-shim"), "{unit}: no shim");
        for hidden in ["/var/lib/docker", "/etc/passwd", "/var/lib/berth"] {
            assert!(!test("-e", hidden), "{unit} sees the host's {hidden}");
        }
        // Only network probes need a /proc (for the container's namespace).
        assert_eq!(test("-e", "/proc/self"), unit == probed, "{unit}'s /proc");
    }
    // Output still reaches the journal through the sandboxed shim.
    lab.berth(
        "h1",
        &[
            "run",
            "talker",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            "echo sandboxed-hello; exec sleep 100000",
        ],
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "the pod's output in the journal",
        || {
            lab.exec(
                "h1",
                &[
                    "journalctl",
                    "-u",
                    "berth-talker\\x2d0-talker.service",
                    "--no-pager",
                ],
            )
            .stdout()
            .contains("sandboxed-hello")
            .then_some(())
        },
    );

    let targets = [
        ("berth-agent.service", 6.0),
        ("berth-master.service", 3.0),
        ("berth-registry.service", 3.0),
        ("berth-router.service", 3.0),
        ("berth-router-haproxy.service", 3.0),
        (plain, 4.0),
        (probed, 4.0),
    ];
    let mut over = Vec::new();
    for (unit, target) in targets {
        assert!(lab.is_active("h1", unit), "{unit} is not active");
        let level = exposure(&lab, "h1", unit);
        println!("exposure {unit}: {level} (target <= {target})");
        if level > target {
            over.push(format!("{unit}: {level} > {target}"));
        }
    }
    assert!(over.is_empty(), "over target: {over:?}");

    // systemd finds nothing to object to in any of them.
    let mut files: Vec<String> = [
        "berth-agent.service",
        "berth-master.service",
        "berth-registry.service",
        "berth-router.service",
        "berth-router-haproxy.service",
    ]
    .iter()
    .map(|u| format!("/usr/lib/systemd/system/{u}"))
    .collect();
    files.extend(
        [plain, probed]
            .iter()
            .map(|u| format!("/var/lib/berth/units/{u}")),
    );
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(files.iter().map(String::as_str));
    let run = lab.exec("h1", &verify);
    assert!(
        run.success() && run.stderr().trim().is_empty(),
        "systemd-analyze verify:\n{}\n{}",
        run.stdout(),
        run.stderr()
    );
    lab.down();
}

/// What a hostile application serves: its own `pod` and `container` labels,
/// the agent's metric names, every series twice, HELP and TYPE.
const HOSTILE_METRICS: &str = "\
# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{pod=\"evil\",container=\"spoof\",code=\"200\"} 42
requests_total{code=\"200\",container=\"spoof\",pod=\"evil\"} 43
requests_total{code=\"500\"} 1
requests_total{code=\"500\"} 1
# HELP berth_container_memory_bytes Spoofed.
# TYPE berth_container_memory_bytes gauge
berth_container_memory_bytes{pod=\"victim-0\",container=\"victim\"} 1
berth_node_memory_available_bytes 0
# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le=\"0.5\"} 3
latency_seconds_bucket{le=\"+Inf\"} 4
latency_seconds_sum 1.5
latency_seconds_count 4
latency_seconds_count 4
queue_depth{queue=\"jobs\"} 7
";

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn su_promtool_finds_the_agents_page_clean_with_hostile_apps_exporting() {
    let lab = Lab::up("su-prom", 1);
    lab.sh(
        "h1",
        "docker create --name appm local/busybox true >/dev/null \
         && docker commit --change 'LABEL io.berth.metrics.port=8080' \
            --change 'LABEL io.berth.metrics.path=/stats' appm local/hostile >/dev/null \
         && docker rm appm >/dev/null",
    )
    .assert_success();
    // Two apps serve the same families: the page must still describe each
    // family once, with its samples together.
    for service in ["hostile-a", "hostile-b"] {
        lab.berth(
            "h1",
            &[
                "run",
                service,
                "--image",
                "local/hostile",
                "--",
                "sh",
                "-c",
                "mkdir -p /www && printf '%s' \"$1\" > /www/stats && exec httpd -f -p 8080 -h /www",
                "sh",
                HOSTILE_METRICS,
            ],
        )
        .assert_success();
    }
    let page = lab.eventually(
        Duration::from_secs(90),
        "both apps' samples on the agent's page",
        || {
            let page = lab
                .exec(
                    "h1",
                    &[
                        "curl",
                        "-sf",
                        "--unix-socket",
                        "/run/berth/agent.sock",
                        "http://agent/metrics",
                    ],
                )
                .stdout();
            (page.contains("queue_depth{pod=\"hostile-a-0\"")
                && page.contains("queue_depth{pod=\"hostile-b-0\""))
            .then_some(page)
        },
    );
    println!("{page}");

    // promtool, Prometheus' own checker, has nothing to say.
    let check = lab.sh(
        "h1",
        "curl -sf --unix-socket /run/berth/agent.sock http://agent/metrics | promtool check metrics",
    );
    assert!(
        check.success() && check.stdout().trim().is_empty() && check.stderr().trim().is_empty(),
        "promtool check metrics:\n{}\n{}\n{page}",
        check.stdout(),
        check.stderr()
    );

    // The app's own labels are kept under exported_ names (honor_labels:
    // false), its berth_ names cannot pass for the agent's, its HELP and
    // TYPE are kept once, and a series it serves twice is shown once.
    assert!(
        page.contains(
            "requests_total{pod=\"hostile-a-0\",container=\"hostile-a\",exported_pod=\"evil\",exported_container=\"spoof\",code=\"200\"} 42\n"
        ),
        "{page}"
    );
    assert!(
        !page.contains(" 43\n"),
        "the duplicate series is dropped:\n{page}"
    );
    assert_eq!(
        page.matches("requests_total{pod=\"hostile-a-0\",container=\"hostile-a\",code=\"500\"}")
            .count(),
        1,
        "{page}"
    );
    assert!(
        !page.contains("{pod=\"victim-0\""),
        "no series passes for another pod's:\n{page}"
    );
    assert!(
        page.contains(
            "exported_berth_container_memory_bytes{pod=\"hostile-a-0\",container=\"hostile-a\",exported_pod=\"victim-0\",exported_container=\"victim\"} 1\n"
        ),
        "{page}"
    );
    assert!(
        page.lines()
            .filter(|l| l.starts_with("berth_node_memory_available_bytes"))
            .count()
            == 1,
        "only the agent's own node figure:\n{page}"
    );
    for description in [
        "# HELP requests_total Requests served.\n# TYPE requests_total counter\n",
        "# HELP latency_seconds Request latency.\n# TYPE latency_seconds histogram\n",
        "# HELP exported_berth_container_memory_bytes Spoofed.\n# TYPE exported_berth_container_memory_bytes gauge\n",
    ] {
        assert_eq!(page.matches(description).count(), 1, "{description}\n{page}");
    }
    assert_eq!(page.matches("# TYPE requests_total ").count(), 1, "{page}");
    lab.down();
}
