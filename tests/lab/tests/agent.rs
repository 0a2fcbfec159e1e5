//! berth-agent on real hosts: pods become systemd units whose containers run
//! through Docker, survive the agent's death and the host's reboot, and bad
//! input leaves nothing behind.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::time::Duration;

use berth_harness::Lab;

/// `berth local inspect` as JSON.
fn inspect(lab: &Lab, host: &str, pod: &str) -> serde_json::Value {
    let out = lab.berth(host, &["local", "inspect", pod]).assert_success();
    serde_json::from_str(&out).expect("inspect prints JSON")
}

fn container(status: &serde_json::Value, i: usize) -> &serde_json::Value {
    &status["containers"][i]
}

const WEB: &[&str] = &[
    "local", "run", "web", "--image", "local/busybox", "-p", "8080", "--", "sh", "-c",
    "echo hello from web; mkdir -p /www; echo served by berth > /www/index.html; exec httpd -f -v -p 8080 -h /www",
];

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_pod_runs_as_a_unit_serves_its_port_and_logs_to_the_journal() {
    let lab = Lab::up_with_agents("agent-run", 2);
    lab.berth("h1", WEB).assert_success();
    let status = inspect(&lab, "h1", "web");
    assert_eq!(status["phase"], "Running", "{status:#}");
    let unit = container(&status, 0)["unit"]
        .as_str()
        .expect("unit")
        .to_owned();
    let host_port = container(&status, 0)["hostPorts"][0]["hostPort"]
        .as_u64()
        .expect("host port");

    // From another host, the allocated port on h1 serves the file.
    let url = format!("http://{}:{host_port}/", lab.host("h1").address);
    assert_eq!(
        lab.exec("h2", &["curl", "-sS", "--max-time", "5", &url])
            .assert_success()
            .trim(),
        "served by berth"
    );

    assert_eq!(
        lab.exec("h1", &["systemctl", "is-active", &unit])
            .assert_success()
            .trim(),
        "active"
    );
    assert_eq!(
        lab.exec("h1", &["systemctl", "is-enabled", &unit])
            .assert_success()
            .trim(),
        "enabled"
    );
    let journal = lab
        .exec("h1", &["journalctl", "-u", &unit, "--no-pager"])
        .assert_success();
    assert!(
        journal.contains("hello from web"),
        "journal of {unit}:\n{journal}"
    );
    let logs = lab.berth("h1", &["local", "logs", "web"]).assert_success();
    assert!(logs.contains("hello from web"), "berth local logs:\n{logs}");

    // The container's processes live in the unit's cgroup.
    let pid = container(&status, 0)["pid"].as_u64().expect("pid");
    let cgroup = lab
        .exec("h1", &["cat", &format!("/proc/{pid}/cgroup")])
        .assert_success();
    assert!(
        cgroup.contains(&format!("/berth.slice/berth-web.slice/{unit}/")),
        "{cgroup}"
    );

    // The unit file is sound for systemd itself.
    lab.exec(
        "h1",
        &[
            "systemd-analyze",
            "verify",
            &format!("/var/lib/berth/units/{unit}"),
        ],
    )
    .assert_success();

    // Repeating the request changes nothing.
    lab.berth("h1", WEB).assert_success();
    assert_eq!(
        inspect(&lab, "h1", "web")["containers"][0]["containerId"],
        container(&status, 0)["containerId"]
    );

    // `systemctl stop` stops the container within its stop timeout.
    lab.exec("h1", &["systemctl", "stop", &unit])
        .assert_success();
    let id = container(&status, 0)["containerId"]
        .as_str()
        .expect("id")
        .to_owned();
    let running = lab
        .exec(
            "h1",
            &["docker", "inspect", "-f", "{{.State.Running}}", &id],
        )
        .assert_success();
    assert_eq!(running.trim(), "false");
    let result = lab
        .exec(
            "h1",
            &["systemctl", "show", "-p", "Result", "--value", &unit],
        )
        .assert_success();
    assert_eq!(result.trim(), "success");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_container_over_its_memory_limit_is_killed_and_ps_says_why() {
    let lab = Lab::up_with_agents("agent-oom", 1);
    lab.berth(
        "h1",
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
    let status = lab.eventually(Duration::from_secs(30), "the hog to be OOM-killed", || {
        let status = inspect(&lab, "h1", "hog");
        (container(&status, 0)["reason"] == "OOMKilled" && status["phase"] == "Failed")
            .then_some(status)
    });
    assert_eq!(container(&status, 0)["exitCode"], 137);
    let unit = container(&status, 0)["unit"].as_str().expect("unit");
    let limit = lab
        .exec(
            "h1",
            &["systemctl", "show", "-p", "MemoryMax", "--value", unit],
        )
        .assert_success();
    let limit: u64 = limit.trim().parse().expect("MemoryMax is a number");
    assert!(limit <= 48 * 1024 * 1024, "MemoryMax={limit}");
    let ps = lab.berth("h1", &["local", "ps", "-a"]).assert_success();
    assert!(ps.contains("OOMKilled"), "berth local ps -a:\n{ps}");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn killing_the_agent_leaves_pods_running_and_a_restart_adopts_them() {
    let lab = Lab::up_with_agents("agent-kill", 1);
    lab.berth("h1", WEB).assert_success();
    let before = inspect(&lab, "h1", "web");
    let id = container(&before, 0)["containerId"]
        .as_str()
        .expect("id")
        .to_owned();
    let pid = container(&before, 0)["pid"].as_u64().expect("pid");
    let unit = container(&before, 0)["unit"]
        .as_str()
        .expect("unit")
        .to_owned();
    let shim = lab.main_pid("h1", &unit);

    lab.exec("h1", &["systemctl", "kill", "--signal=KILL", "berth-agent"])
        .assert_success();
    lab.eventually(Duration::from_secs(5), "the agent to be dead", || {
        let state = lab.exec(
            "h1",
            &[
                "systemctl",
                "show",
                "-p",
                "SubState",
                "--value",
                "berth-agent",
            ],
        );
        (state.stdout().trim() != "running").then_some(())
    });
    let running = lab
        .exec(
            "h1",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.Pid}}",
                &id,
            ],
        )
        .assert_success();
    assert_eq!(running.trim(), format!("true {pid}"));

    lab.exec("h1", &["systemctl", "restart", "berth-agent"])
        .assert_success();
    let after = inspect(&lab, "h1", "web");
    assert_eq!(container(&after, 0)["containerId"], id.as_str());
    assert_eq!(container(&after, 0)["pid"], pid);
    assert_eq!(container(&after, 0)["restarts"], 0);
    assert_eq!(
        lab.main_pid("h1", &unit),
        shim,
        "the unit's main process changed"
    );

    // Even with its state directory gone, the agent adopts the pod.
    lab.exec("h1", &["systemctl", "stop", "berth-agent"])
        .assert_success();
    lab.exec("h1", &["rm", "-rf", "/var/lib/berth"])
        .assert_success();
    lab.exec("h1", &["systemctl", "start", "berth-agent"])
        .assert_success();
    let adopted = inspect(&lab, "h1", "web");
    assert_eq!(container(&adopted, 0)["containerId"], id.as_str());
    assert_eq!(container(&adopted, 0)["pid"], pid);
    assert_eq!(lab.main_pid("h1", &unit), shim);
    assert!(
        lab.exec(
            "h1",
            &["test", "-f", &format!("/var/lib/berth/units/{unit}")]
        )
        .success(),
        "unit file not restored"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_pod_comes_back_after_the_host_reboots() {
    let lab = Lab::up_with_agents("agent-reboot", 2);
    lab.exec("h1", &["systemctl", "enable", "berth-agent"])
        .assert_success();
    lab.berth("h1", WEB).assert_success();
    let port = container(&inspect(&lab, "h1", "web"), 0)["hostPorts"][0]["hostPort"]
        .as_u64()
        .expect("port");
    // A container that is never restarted, and failed: it stays ended.
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "once",
            "--image",
            "local/busybox",
            "--restart",
            "no",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    )
    .assert_success();
    let ended_at = lab.eventually(Duration::from_secs(20), "once to fail", || {
        let status = inspect(&lab, "h1", "once");
        (status["phase"] == "Failed").then(|| {
            lab.exec(
                "h1",
                &[
                    "docker",
                    "inspect",
                    "-f",
                    "{{.State.StartedAt}}",
                    "berth.once.once",
                ],
            )
            .assert_success()
        })
    });

    // The host comes up degraded only if something failed at boot; the
    // never-restarted container is not run again, so it is not.
    let rebooted = lab.lab(&["reboot", "h1"]);
    rebooted.assert_success();
    assert!(
        !rebooted.stderr().contains("degraded"),
        "{}",
        rebooted.stderr()
    );
    assert_eq!(
        lab.exec(
            "h1",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.StartedAt}}",
                "berth.once.once"
            ],
        )
        .assert_success(),
        ended_at,
        "the ended container ran again at boot"
    );

    let url = format!("http://{}:{port}/", lab.host("h1").address);
    let body = lab.eventually(
        Duration::from_secs(30),
        "web to serve again after the reboot",
        || {
            let run = lab.exec("h2", &["curl", "-sS", "--max-time", "2", &url]);
            run.success().then(|| run.stdout())
        },
    );
    assert_eq!(body.trim(), "served by berth");
    let status = inspect(&lab, "h1", "web");
    assert_eq!(status["phase"], "Running", "{status:#}");
    let once = inspect(&lab, "h1", "once");
    assert_eq!(once["phase"], "Failed", "{once:#}");
    assert_eq!(container(&once, 0)["exitCode"], 3, "{once:#}");
}

/// Unit files, berth containers and the allocation of `port`.
fn leftovers(lab: &Lab) -> (String, String) {
    let units = lab
        .sh(
            "h1",
            "ls /var/lib/berth/units 2>/dev/null; ls /etc/systemd/system | grep '^berth-' || true",
        )
        .assert_success();
    let containers = lab
        .exec(
            "h1",
            &[
                "docker",
                "ps",
                "-a",
                "--filter",
                "label=berth.pod",
                "--format",
                "{{.Names}}",
            ],
        )
        .assert_success();
    (units, containers)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn bad_input_is_refused_naming_the_field_and_leaves_nothing_behind() {
    let lab = Lab::up_with_agents("agent-bad", 1);
    let clean = leftovers(&lab);
    let long = "a".repeat(300);
    for name in ["bad\nname", "../x", "%H", "$HOME", long.as_str(), ""] {
        let err = lab
            .berth("h1", &["local", "run", name, "--image", "local/busybox"])
            .assert_failure();
        assert!(err.contains("name"), "name {name:?}: {err}");
    }
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "envy",
                "--image",
                "local/busybox",
                "-e",
                "A=one\ntwo",
            ],
        )
        .assert_failure();
    assert!(err.contains("env[0].value"), "{err}");
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "paths",
                "--image",
                "local/busybox",
                "-v",
                "/etc:/host-etc",
            ],
        )
        .assert_failure();
    assert!(err.contains("hostPath") && err.contains("allow"), "{err}");
    assert_eq!(
        leftovers(&lab),
        clean,
        "a refused request left something behind"
    );

    // A port held by another pod, then by a process outside berth.
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "first",
            "--image",
            "local/busybox",
            "-p",
            "30081:80",
            "--",
            "httpd",
            "-f",
            "-p",
            "80",
        ],
    )
    .assert_success();
    let with_first = leftovers(&lab);
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "second",
                "--image",
                "local/busybox",
                "-p",
                "30081:80",
                "--",
                "httpd",
                "-f",
            ],
        )
        .assert_failure();
    assert!(err.contains("hostPort") && err.contains("30081"), "{err}");
    lab.exec(
        "h1",
        &[
            "systemd-run",
            "--unit=squatter",
            "busybox",
            "nc",
            "-l",
            "-p",
            "30082",
        ],
    )
    .assert_success();
    // systemd-run returns once the unit is started, not once nc listens.
    lab.eventually(
        Duration::from_secs(10),
        "the squatter to listen on 30082",
        || {
            let listening = lab.exec("h1", &["ss", "-Hltn", "sport = :30082"]);
            (!listening.stdout().trim().is_empty()).then_some(())
        },
    );
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "third",
                "--image",
                "local/busybox",
                "-p",
                "30082:80",
                "--",
                "httpd",
                "-f",
            ],
        )
        .assert_failure();
    assert!(err.contains("30082"), "{err}");
    assert_eq!(
        leftovers(&lab),
        with_first,
        "a refused request left something behind"
    );

    // Removing the pod frees its port for the next one.
    lab.berth("h1", &["local", "rm", "first"]).assert_success();
    assert_eq!(leftovers(&lab), clean);
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "second",
            "--image",
            "local/busybox",
            "-p",
            "30081:80",
            "--",
            "httpd",
            "-f",
            "-p",
            "80",
        ],
    )
    .assert_success();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_secret_is_in_no_world_readable_file_and_no_unit_property() {
    let lab = Lab::up_with_agents("agent-secret", 1);
    let secret = "berth-secret-7f3a9c";
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "vault",
            "--image",
            "local/busybox",
            "--secret-env",
            &format!("TOKEN={secret}"),
            "--",
            "sh",
            "-c",
            "test -n \"$TOKEN\" && echo token-present; exec sleep 3600",
        ],
    )
    .assert_success();
    let status = inspect(&lab, "h1", "vault");
    let unit = container(&status, 0)["unit"]
        .as_str()
        .expect("unit")
        .to_owned();
    let journal = lab
        .exec("h1", &["journalctl", "-u", &unit, "--no-pager"])
        .assert_success();
    assert!(
        journal.contains("token-present"),
        "the container did not get its secret:\n{journal}"
    );
    assert!(
        !status.to_string().contains(secret),
        "inspect shows the secret"
    );

    // Every property systemd shows over D-Bus, to anyone.
    let properties = lab
        .exec("h1", &["systemctl", "show", &unit])
        .assert_success();
    assert!(
        !properties.contains(secret),
        "the secret is in a unit property"
    );
    // Nothing an unprivileged user can read holds it.
    // The secret is put together inside the pipeline, so that no command
    // line (this script's included) holds it whole.
    let (head, tail) = secret.split_at(10);
    let found = lab.sh(
        "h1",
        &format!(
            "printf '%s%s' '{head}' '{tail}' | setpriv --reuid=65534 --regid=65534 --clear-groups \
             grep -rlsF -f /dev/stdin /etc /run /var /tmp /usr/lib/systemd /proc/[0-9]*/cmdline; true"
        ),
    );
    assert_eq!(
        found.assert_success().trim(),
        "",
        "world-readable files hold the secret"
    );
    // Root can (the record is 0600 in a 0700 directory).
    let mode = lab
        .exec(
            "h1",
            &[
                "stat",
                "-c",
                "%a",
                "/var/lib/berth/pods/vault.json",
                "/var/lib/berth/pods",
            ],
        )
        .assert_success();
    assert_eq!(mode.split_whitespace().collect::<Vec<_>>(), ["600", "700"]);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn containers_of_a_pod_share_its_network_and_volumes() {
    let lab = Lab::up_with_agents("agent-pod", 2);
    let pod = r#"{"name":"duo","volumes":[{"name":"shared"}],"containers":[
      {"name":"server","image":"local/busybox",
       "command":["sh","-c","echo shared-data > /data/file; mkdir -p /www; echo from-server > /www/index.html; exec httpd -f -p 8080 -h /www"],
       "volumeMounts":[{"volume":"shared","path":"/data"}],
       "ports":[{"containerPort":8080,"hostPort":0}]},
      {"name":"client","image":"local/busybox",
       "command":["sh","-c","for i in $(seq 1 50); do wget -qO- http://127.0.0.1:8080/ && break; sleep 0.2; done; cat /data/file; exec sleep 3600"],
       "volumeMounts":[{"volume":"shared","path":"/data"}]}]}"#;
    let created = lab.exec(
        "h1",
        &[
            "curl",
            "-sS",
            "--fail-with-body",
            "--unix-socket",
            "/run/berth/agent.sock",
            "-XPOST",
            "http://localhost/v1/pods",
            "-d",
            pod,
        ],
    );
    let status: serde_json::Value =
        serde_json::from_str(&created.assert_success()).expect("status JSON");
    assert_eq!(status["phase"], "Running", "{status:#}");
    // The pod's network namespace is held by berth-duo.service, so both
    // containers see one loopback and one set of published ports.
    assert_eq!(
        lab.exec("h1", &["systemctl", "is-active", "berth-duo.service"])
            .assert_success()
            .trim(),
        "active"
    );
    let journal = lab.eventually(
        Duration::from_secs(15),
        "the client to reach the server over loopback",
        || {
            let out = lab
                .exec(
                    "h1",
                    &["journalctl", "-u", "berth-duo-client.service", "--no-pager"],
                )
                .assert_success();
            (out.contains("from-server") && out.contains("shared-data")).then_some(out)
        },
    );
    assert!(journal.contains("from-server"), "{journal}");

    let port = container(&status, 0)["hostPorts"][0]["hostPort"]
        .as_u64()
        .expect("port");
    let url = format!("http://{}:{port}/", lab.host("h1").address);
    // Restarting the server container keeps the pod's network and port.
    lab.exec("h1", &["systemctl", "restart", "berth-duo-server.service"])
        .assert_success();
    let body = lab.eventually(Duration::from_secs(10), "the server to serve again", || {
        let run = lab.exec("h2", &["curl", "-sS", "--max-time", "2", &url]);
        run.success().then(|| run.stdout())
    });
    assert_eq!(body.trim(), "from-server");

    lab.berth("h1", &["local", "rm", "duo"]).assert_success();
    let left = lab
        .exec(
            "h1",
            &[
                "docker",
                "ps",
                "-a",
                "--filter",
                "label=berth.pod=duo",
                "-q",
            ],
        )
        .assert_success();
    assert_eq!(left.trim(), "");
    let volumes = lab
        .exec(
            "h1",
            &[
                "docker",
                "volume",
                "ls",
                "--filter",
                "label=berth.pod=duo",
                "-q",
            ],
        )
        .assert_success();
    assert_eq!(volumes.trim(), "", "the pod's named volume outlived it");
    lab.exec("h1", &["systemctl", "is-active", "berth-duo.service"])
        .assert_failure();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_container_removed_behind_berths_back_is_recreated() {
    let lab = Lab::up_with_agents("agent-heal", 1);
    lab.berth("h1", WEB).assert_success();
    let before = inspect(&lab, "h1", "web");
    let id = container(&before, 0)["containerId"]
        .as_str()
        .expect("id")
        .to_owned();
    lab.exec("h1", &["docker", "rm", "-f", &id])
        .assert_success();
    // Docker's destroy event wakes the agent; the periodic resync would too.
    let after = lab.eventually(
        Duration::from_secs(15),
        "the container to be recreated",
        || {
            let status = inspect(&lab, "h1", "web");
            let new_id = container(&status, 0)["containerId"]
                .as_str()
                .map(String::from);
            (status["phase"] == "Running" && new_id.is_some_and(|n| n != id)).then_some(status)
        },
    );
    let unit = container(&after, 0)["unit"].as_str().expect("unit");
    assert_eq!(
        lab.exec("h1", &["systemctl", "is-active", unit])
            .assert_success()
            .trim(),
        "active"
    );
}
