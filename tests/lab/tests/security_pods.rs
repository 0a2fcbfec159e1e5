//! What a pod may reach of its host: host paths never lead out of the
//! allowed directories through symlinks (not at creation, not after a swap
//! before a restart), every container runs with no-new-privileges and a PID
//! limit, fixed host ports stay in the admin's range, and `--user`,
//! `--read-only` and `--cap-drop` harden a container further.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::time::Duration;

use berth_harness::Lab;

/// `docker inspect -f FORMAT CONTAINER` on h1.
fn docker_inspect(lab: &Lab, container: &str, format: &str) -> String {
    lab.exec("h1", &["docker", "inspect", "-f", format, container])
        .assert_success()
        .trim()
        .to_owned()
}

/// The reason `berth local inspect` gives for the pod's first container.
fn local_reason(lab: &Lab, pod: &str) -> Option<String> {
    let status = lab.berth("h1", &["local", "inspect", pod]).json();
    status["containers"][0]["reason"].as_str().map(String::from)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn host_path_symlinks_never_give_a_container_the_hosts_etc() {
    let lab = Lab::up("sp-symlink", 1);
    lab.configure_agent("h1", r#"host-path-allow = ["/srv/berth"]"#);
    lab.sh(
        "h1",
        "mkdir -p /srv/berth/data && echo from-data > /srv/berth/data/file && ln -s /etc /srv/berth/link",
    )
    .assert_success();

    // A symlink in an allowed directory: refused at once, naming the field,
    // and nothing is left behind.
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "linked",
                "--image",
                "local/busybox",
                "-v",
                "/srv/berth/link:/x",
                "--",
                "sleep",
                "100000",
            ],
        )
        .assert_failure();
    assert!(
        err.contains("volumes[0].hostPath") && err.contains("symlink"),
        "{err}"
    );
    let leftovers = lab
        .exec("h1", &["docker", "ps", "-aq", "--filter", "name=linked"])
        .assert_success();
    assert_eq!(leftovers.trim(), "", "a refused pod left a container");

    // The same through the master: the node refuses it and `berth ps`
    // says why.
    lab.berth(
        "h1",
        &[
            "run",
            "linked",
            "--image",
            "local/busybox",
            "-v",
            "/srv/berth/link:/x",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let phase = lab.eventually(
        Duration::from_secs(60),
        "berth ps to report the refusal",
        || {
            let table = lab.berth("h1", &["ps"]).assert_success();
            let line = table.lines().find(|l| l.starts_with("linked-"))?.to_owned();
            line.contains("symlink").then_some(line)
        },
    );
    assert!(
        phase.contains("Failed") && phase.contains("hostPath"),
        "{phase}"
    );
    let describe = lab.berth("h1", &["describe", "linked"]).assert_success();
    assert!(describe.contains("symlink"), "{describe}");
    let mounts_of_etc = lab
        .sh(
            "h1",
            "docker ps -aq | xargs -r docker inspect -f '{{.Name}} {{range .Mounts}}{{.Source}} {{end}}'",
        )
        .assert_success();
    assert!(
        !mounts_of_etc.contains("/etc") && !mounts_of_etc.contains("/srv/berth/link"),
        "{mounts_of_etc}"
    );

    // A real directory passes; the container lists it at every start.
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "data",
            "--image",
            "local/busybox",
            "-v",
            "/srv/berth/data:/x",
            "--",
            "sh",
            "-c",
            "echo listing; ls /x; exec sleep 100000",
        ],
    )
    .assert_success();
    let unit = "berth-data-data.service";
    lab.eventually(Duration::from_secs(30), "the container to list /x", || {
        let journal = lab
            .exec("h1", &["journalctl", "-u", unit, "-o", "cat", "--no-pager"])
            .assert_success();
        journal.contains("file").then_some(())
    });

    // Swapped for a symlink to /etc after the check: the next start (a
    // crash, restarted by systemd) is refused, and says why.
    lab.sh(
        "h1",
        "mv /srv/berth/data /srv/berth/data.old && ln -s /etc /srv/berth/data && docker kill berth.data.data",
    )
    .assert_success();
    let reason = lab.eventually(
        Duration::from_secs(60),
        "ps to say the start was refused",
        || local_reason(&lab, "data").filter(|r| r.starts_with("refused: ")),
    );
    assert!(
        reason.contains("/srv/berth/data") && reason.contains("symlink"),
        "{reason}"
    );
    let table = lab.berth("h1", &["local", "ps", "--all"]).assert_success();
    assert!(table.contains("refused: host path"), "{table}");
    // Several restarts later the container still never saw /etc.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        docker_inspect(&lab, "berth.data.data", "{{.State.Running}}"),
        "false"
    );
    let journal = lab
        .exec("h1", &["journalctl", "-u", unit, "-o", "cat", "--no-pager"])
        .assert_success();
    assert!(
        !journal.contains("passwd") && !journal.contains("shadow"),
        "the container listed the host's /etc: {journal}"
    );
    assert!(journal.contains("refused: host path"), "{journal}");

    // Swapped back, the container starts again by itself.
    lab.sh(
        "h1",
        "rm /srv/berth/data && mv /srv/berth/data.old /srv/berth/data",
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "the container to run again",
        || (docker_inspect(&lab, "berth.data.data", "{{.State.Running}}") == "true").then_some(()),
    );
    assert_eq!(local_reason(&lab, "data"), None);
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn containers_get_no_new_privileges_a_pid_limit_and_opt_in_hardening() {
    let lab = Lab::up("sp-defaults", 1);

    // A plain container: NoNewPrivs and the default PID limit.
    lab.berth(
        "h1",
        &[
            "local",
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
    assert_eq!(
        docker_inspect(
            &lab,
            "berth.plain.plain",
            "{{.HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}}"
        ),
        "[no-new-privileges] 4096"
    );
    let status = lab
        .exec(
            "h1",
            &[
                "docker",
                "exec",
                "berth.plain.plain",
                "cat",
                "/proc/1/status",
            ],
        )
        .assert_success();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
        "{status}"
    );

    // A small limit is a real limit: forking past it fails.
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "small",
            "--image",
            "local/busybox",
            "--pids-limit",
            "16",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let forks = lab.exec(
        "h1",
        &[
            "docker",
            "exec",
            "berth.small.small",
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 1000 & done; echo started",
        ],
    );
    assert!(
        forks.stderr().contains("can't fork") || forks.stderr().contains("unavailable"),
        "40 processes started under a limit of 16: {} {}",
        forks.stdout(),
        forks.stderr()
    );

    // Opt-in hardening.
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "hard",
            "--image",
            "local/busybox",
            "--user",
            "1000",
            "--read-only",
            "--cap-drop",
            "NET_RAW",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    assert_eq!(
        lab.exec("h1", &["docker", "exec", "berth.hard.hard", "id", "-u"])
            .assert_success()
            .trim(),
        "1000"
    );
    let write = lab
        .exec("h1", &["docker", "exec", "berth.hard.hard", "touch", "/x"])
        .assert_failure();
    assert!(write.contains("Read-only file system"), "{write}");
    assert_eq!(
        docker_inspect(&lab, "berth.hard.hard", "{{.HostConfig.CapDrop}}"),
        "[NET_RAW]"
    );
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "bad",
                "--image",
                "local/busybox",
                "--cap-drop",
                "CAP_NET_RAW",
                "--user",
                "a b",
            ],
        )
        .assert_failure();
    assert!(
        err.contains("security.capDrop[0]") && err.contains("security.user"),
        "{err}"
    );

    // Fixed host ports outside the range: refused by the agent and, at
    // once, by the master, each naming the field. 80 is allowed.
    let err = lab
        .berth(
            "h1",
            &[
                "local",
                "run",
                "ssh",
                "--image",
                "local/busybox",
                "-p",
                "22:22",
                "--",
                "sleep",
                "100000",
            ],
        )
        .assert_failure();
    assert!(
        err.contains("containers[0].ports[0].hostPort") && err.contains("host-ports-allow"),
        "{err}"
    );
    let err = lab
        .berth(
            "h1",
            &[
                "run",
                "ssh",
                "--image",
                "local/busybox",
                "-p",
                "22:22",
                "--",
                "sleep",
                "100000",
            ],
        )
        .assert_failure();
    assert!(
        err.contains("template.containers[0].ports[0].hostPort") && err.contains("22"),
        "{err}"
    );
    let listening = lab
        .exec("h1", &["ss", "-Hltn", "sport = :22"])
        .assert_success();
    assert_eq!(listening.trim(), "", "port 22 was bound");
    lab.berth(
        "h1",
        &[
            "local",
            "run",
            "web",
            "--image",
            "local/busybox",
            "-p",
            "80:8080",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .assert_success();

    // Through the master, and `describe` shows what applies.
    lab.berth(
        "h1",
        &[
            "run",
            "hardened",
            "--image",
            "local/busybox",
            "--user",
            "1000:1000",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--pids-limit",
            "256",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let describe = lab.berth("h1", &["describe", "hardened"]).assert_success();
    assert!(
        describe.contains(
            "security: no-new-privileges, pids-limit 256, user 1000:1000, \
             root filesystem read-only, cap-drop ALL"
        ),
        "{describe}"
    );
    lab.eventually(Duration::from_secs(60), "hardened-0 to run", || {
        let id = lab
            .exec(
                "h1",
                &["docker", "ps", "-q", "--filter", "name=berth.hardened-0"],
            )
            .assert_success();
        (!id.trim().is_empty()).then_some(())
    });
    assert_eq!(
        docker_inspect(
            &lab,
            "berth.hardened-0.hardened",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.PidsLimit}} {{.HostConfig.SecurityOpt}}"
        ),
        "1000:1000 true 256 [no-new-privileges]"
    );
}
