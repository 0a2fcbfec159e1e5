//! Podman as the container engine: hosts booted with `berth-lab up
//! --engine podman` (dockerd masked, `podman.socket` serving Docker's API,
//! the agent's `[engine] socket` pointing at it) run pods the same way as
//! Docker hosts: one systemd unit per container with the container's
//! cgroup nested in the unit's, its output in the journal under the unit,
//! readiness gated by the probe, links to services on other hosts, and the
//! engine's events keeping the agent's view fresh.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test podman -- --ignored --nocapture`.

use std::time::Duration;

use berth_harness::Lab;

/// The unit of a pod's container: systemd escapes the `-` in `web-0`.
fn unit(pod: &str, container: &str) -> String {
    format!("berth-{}-{container}.service", pod.replace('-', "\\x2d"))
}

/// `podman inspect -f FORMAT` of a pod's container on `host`.
fn inspect(lab: &Lab, host: &str, pod: &str, container: &str, format: &str) -> String {
    let name = format!("berth.{pod}.{container}");
    lab.exec(host, &["podman", "inspect", "-f", format, &name])
        .assert_success()
        .trim()
        .to_owned()
}

/// The node `pod` runs on, once its node reports it running.
fn running_on(lab: &Lab, name: &str) -> Option<String> {
    let pod = lab.pod(name)?;
    (pod["status"]["phase"] == "Running").then(|| pod["node"].as_str().map(str::to_owned))?
}

/// Places `pod` on `node` (moving it if the scheduler put it elsewhere)
/// and waits until it runs there.
fn place(lab: &Lab, pod: &str, node: &str) {
    let first = lab.eventually(Duration::from_secs(30), &format!("{pod} running"), || {
        running_on(lab, pod)
    });
    if first != node {
        lab.berth("h1", &["move", pod, "--to", node])
            .assert_success();
    }
    lab.eventually(
        Duration::from_secs(30),
        &format!("{pod} running on {node}"),
        || (running_on(lab, pod)? == node).then_some(()),
    );
}

/// db's page as web on `host` gets it through its link, at
/// 127.0.0.1:3306 (busybox's `wget -T` crashes, so `nc`).
fn ask_db(lab: &Lab, host: &str) -> Option<String> {
    let script =
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 3306 | tail -n 1";
    let run = lab.exec(
        host,
        &["podman", "exec", "berth.web-0.web", "sh", "-c", script],
    );
    let page = run.stdout().trim().to_owned();
    (run.success() && !page.is_empty()).then_some(page)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn podman_hosts_run_pods_as_units_with_logs_probes_links_and_events() {
    let lab = Lab::up_with("podman", 2, &["--engine", "podman"]);
    for host in ["h1", "h2"] {
        assert!(
            lab.is_active(host, "podman.socket"),
            "{host}: podman.socket"
        );
        assert!(
            !lab.is_active(host, "docker.service"),
            "{host}: dockerd runs"
        );
    }

    // 1. A pod whose readiness probe passes only after 3 s: its unit stays
    // activating (and the pod not ready) until the probe passes.
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "-p",
            "3306",
            "--readiness",
            "http:3306/index.html",
            "--probe-period",
            "1",
            "--",
            "sh",
            "-c",
            "echo db-starting; sleep 3; mkdir -p /www; echo db-page > /www/index.html; \
             echo db-serving; exec httpd -f -p 3306 -h /www",
        ],
    )
    .assert_success();
    let node = lab.eventually(Duration::from_secs(30), "db-0 placed", || {
        lab.pod("db-0")?["node"].as_str().map(str::to_owned)
    });
    let db_unit = unit("db-0", "db");
    let gated = lab.eventually(Duration::from_secs(15), "db's unit started", || {
        let state = lab.unit_property(&node, &db_unit, "ActiveState");
        (state == "activating" || state == "active").then_some(state)
    });
    assert_eq!(gated, "activating", "db was active before its probe passed");
    place(&lab, "db-0", &node);
    assert!(lab.is_active(&node, &db_unit));
    let pod = lab.pod("db-0").expect("db-0 listed");
    assert_eq!(pod["status"]["containers"][0]["ready"], true, "{pod:#}");

    // 2. The container runs in the unit's cgroup, through Podman.
    let control_group = lab.unit_property(&node, &db_unit, "ControlGroup");
    let pid = inspect(&lab, &node, "db-0", "db", "{{.State.Pid}}");
    let cgroups = lab
        .exec(&node, &["cat", &format!("/proc/{pid}/cgroup")])
        .assert_success();
    for controller in ["memory", "pids", "cpu"] {
        let line = cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            })
            .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups}"));
        assert!(
            line.contains(&format!("{control_group}/libpod-")),
            "the container is not in {control_group}: {line}"
        );
    }

    // 3. Its output is in the journal under the unit, and `berth logs`.
    let journal = lab
        .exec(
            &node,
            &["journalctl", "-u", &db_unit, "-o", "cat", "--no-pager"],
        )
        .assert_success();
    assert!(
        journal.contains("db-starting") && journal.contains("db-serving"),
        "{journal}"
    );
    let logs = lab.eventually(Duration::from_secs(20), "db's output in berth logs", || {
        let out = lab.berth("h1", &["logs", "db"]).stdout();
        out.contains("db-serving").then_some(out)
    });
    assert!(logs.contains("db-starting"), "{logs}");

    // 4. A pod on the other host reaches db through a link, at
    // 127.0.0.1:3306 in its own network namespace.
    let other = if node == "h1" { "h2" } else { "h1" };
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--link",
            "db:3306",
            "--",
            "sleep",
            "1d",
        ],
    )
    .assert_success();
    place(&lab, "web-0", other);
    let env = inspect(
        &lab,
        other,
        "web-0",
        "web",
        "{{range .Config.Env}}{{println .}}{{end}}",
    );
    assert!(env.contains("DB_PORT=3306"), "{env}");
    let page = lab.eventually(Duration::from_secs(20), "web reaching db", || {
        ask_db(&lab, other)
    });
    assert_eq!(page, "db-page");

    // 5. Events: a container exit reaches the master, and one removed
    // behind the agent's back (Podman's `remove` event) is noticed and
    // replaced.
    lab.exec(&node, &["podman", "rm", "-f", "berth.db-0.db"])
        .assert_success();
    lab.eventually(Duration::from_secs(30), "db's exit reported", || {
        lab.events("ContainerExited")
            .into_iter()
            .find(|e| e["object"] == "pod/db-0")
    });
    lab.eventually(Duration::from_secs(60), "db running again", || {
        let run = lab.exec(
            &node,
            &[
                "podman",
                "inspect",
                "-f",
                "{{.State.Running}}",
                "berth.db-0.db",
            ],
        );
        (run.success() && run.stdout().trim() == "true").then_some(())
    });
    lab.eventually(Duration::from_secs(20), "web reaching db again", || {
        (ask_db(&lab, other)? == "db-page").then_some(())
    });

    // 6. The memory limit holds: the container's cgroup is inside the
    // unit's. (Podman does not say OOMKilled: see the README.)
    lab.berth(
        other,
        &[
            "local",
            "run",
            "hog",
            "--image",
            "local/busybox",
            "--memory",
            "32M",
            "--restart",
            "no",
            "--",
            "sh",
            "-c",
            "echo allocating; awk 'BEGIN { s = \"x\"; while (1) s = s s s }'",
        ],
    )
    .assert_success();
    let hog = lab.eventually(Duration::from_secs(30), "the hog killed", || {
        let status = lab.berth(other, &["local", "inspect", "hog"]).json();
        (status["phase"] == "Failed").then_some(status)
    });
    assert_eq!(hog["containers"][0]["exitCode"], 137, "{hog:#}");
    lab.berth(other, &["local", "rm", "hog"]).assert_success();

    // 7. A pod of two containers: the network holder (the pause image,
    // imported into Podman) gives them one loopback, and a named volume
    // is shared.
    let duo = r#"{"name":"duo","volumes":[{"name":"shared"}],"containers":[
      {"name":"server","image":"local/busybox",
       "command":["sh","-c","echo shared-data > /data/file; mkdir -p /www; echo from-server > /www/index.html; exec httpd -f -p 8080 -h /www"],
       "volumeMounts":[{"volume":"shared","path":"/data"}]},
      {"name":"client","image":"local/busybox",
       "command":["sh","-c","for i in $(seq 1 50); do wget -qO- http://127.0.0.1:8080/ && break; sleep 0.2; done; cat /data/file; exec sleep 3600"],
       "volumeMounts":[{"volume":"shared","path":"/data"}]}]}"#;
    let created = lab.exec(
        other,
        &[
            "curl",
            "-sS",
            "--fail-with-body",
            "--unix-socket",
            "/run/berth/agent.sock",
            "-XPOST",
            "http://localhost/v1/pods",
            "-d",
            duo,
        ],
    );
    let status: serde_json::Value =
        serde_json::from_str(&created.assert_success()).expect("status JSON");
    assert_eq!(status["phase"], "Running", "{status:#}");
    assert!(lab.is_active(other, "berth-duo.service"));
    lab.eventually(
        Duration::from_secs(15),
        "the client reaching the server",
        || {
            let out = lab
                .exec(
                    other,
                    &["journalctl", "-u", "berth-duo-client.service", "-o", "cat"],
                )
                .assert_success();
            (out.contains("from-server") && out.contains("shared-data")).then_some(())
        },
    );
    lab.berth(other, &["local", "rm", "duo"]).assert_success();

    // 8. Removing the services leaves no container behind in Podman.
    for service in ["web", "db"] {
        lab.berth("h1", &["rm", service]).assert_success();
    }
    for host in ["h1", "h2"] {
        lab.eventually(Duration::from_secs(30), "no berth containers left", || {
            let run = lab.exec(host, &["podman", "ps", "-a", "--format", "{{.Names}}"]);
            (run.success() && !run.stdout().contains("berth.")).then_some(())
        });
    }
}
