//! Projects on real hosts: two projects each run a `web` on the same
//! hosts with units, containers and labels of their own; removing one
//! project's `web` leaves the other's running untouched; and a link into
//! another project is refused until that project grants it, then carries
//! traffic.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test projects -- --ignored --nocapture`.

use std::time::Duration;

use berth_harness::Lab;
use serde_json::Value;

/// An HTTP server on 8080 whose page is `page`.
fn serve(page: &str) -> String {
    format!("mkdir -p /www; echo {page} > /www/index.html; exec httpd -f -p 8080 -h /www")
}

/// `berth -p PROJECT ps -o json`.
fn pods_in(lab: &Lab, project: &str) -> Vec<Value> {
    match lab.berth("h1", &["-p", project, "ps", "-o", "json"]).json() {
        Value::Array(pods) => pods,
        other => panic!("berth -p {project} ps printed no list: {other}"),
    }
}

/// Waits until `count` pods of `project` run; their (name, node).
fn running(lab: &Lab, project: &str, count: usize) -> Vec<(String, String)> {
    lab.eventually(
        Duration::from_secs(60),
        &format!("{count} pods of {project} running"),
        || {
            let pods = pods_in(lab, project);
            let running: Vec<(String, String)> = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .map(|p| {
                    (
                        p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                        p["node"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (running.len() == count && pods.len() == count).then_some(running)
        },
    )
}

/// The names of berth's units of `project`'s pods on `host`.
fn units(lab: &Lab, host: &str, pattern: &str) -> Vec<String> {
    lab.exec(
        host,
        &[
            "systemctl",
            "list-units",
            "--plain",
            "--no-legend",
            "--state=active",
            pattern,
        ],
    )
    .assert_success()
    .lines()
    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
    .collect()
}

/// Docker names of the running containers labelled with `project`.
fn containers(lab: &Lab, host: &str, project: &str) -> Vec<String> {
    let filter = format!("label=berth.project={project}");
    lab.exec(
        host,
        &[
            "docker",
            "ps",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}",
        ],
    )
    .assert_success()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn projects_each_run_their_own_web_side_by_side() {
    let lab = Lab::up("projects", 2);
    for project in ["a", "b"] {
        lab.berth("h1", &["project", "create", project])
            .assert_success();
        let command = serve(project);
        lab.berth(
            "h1",
            &[
                "-p",
                project,
                "run",
                "web",
                "--image",
                "local/busybox",
                "--replicas",
                "2",
                "-p",
                "8080",
                "--",
                "sh",
                "-c",
                &command,
            ],
        )
        .assert_success();
    }
    let a = running(&lab, "a", 2);
    let b = running(&lab, "b", 2);
    let mut names: Vec<&str> = a.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["web-0", "web-1"], "a's pods by their names in a");
    let hosts = |pods: &[(String, String)]| {
        let mut hosts: Vec<String> = pods.iter().map(|(_, node)| node.clone()).collect();
        hosts.sort();
        hosts
    };
    assert_eq!(hosts(&a), ["h1", "h2"], "a spreads over both hosts");
    assert_eq!(hosts(&b), ["h1", "h2"], "b shares them");
    assert!(
        pods_in(&lab, "default").is_empty(),
        "the default project sees no pod of a or b"
    );

    // On each host: a unit and a container of each project's web.
    for host in ["h1", "h2"] {
        let a_units = units(&lab, host, "berth-a.web*.service");
        let b_units = units(&lab, host, "berth-b.web*.service");
        assert_eq!(a_units.len(), 1, "{host}: {a_units:?}");
        assert_eq!(b_units.len(), 1, "{host}: {b_units:?}");
        assert_ne!(a_units, b_units);
        let (a_containers, b_containers) =
            (containers(&lab, host, "a"), containers(&lab, host, "b"));
        assert_eq!(a_containers.len(), 1, "{host}: {a_containers:?}");
        assert!(
            a_containers[0].starts_with("berth.a_web-"),
            "{a_containers:?}"
        );
        assert_eq!(b_containers.len(), 1, "{host}: {b_containers:?}");
        assert!(
            b_containers[0].starts_with("berth.b_web-"),
            "{b_containers:?}"
        );
    }

    // Each serves its own page on its own host port.
    for (project, pods) in [("a", &a), ("b", &b)] {
        let (pod, node) = &pods[0];
        let address = lab.host(node).address;
        lab.eventually(
            Duration::from_secs(20),
            &format!("{project}'s {pod} serving on {node}"),
            || {
                let port = pods_in(&lab, project)
                    .iter()
                    .find(|p| p["spec"]["name"] == pod.as_str())?["status"]["containers"][0]
                    ["hostPorts"][0]["hostPort"]
                    .as_u64()?;
                let url = format!("http://{address}:{port}/");
                let page = lab.exec("h1", &["curl", "-sS", "--max-time", "5", &url]);
                (page.stdout().trim() == project).then_some(())
            },
        );
    }

    // Removing a's web leaves b's running, not even restarted.
    let b_pids: Vec<(String, String)> = ["h1", "h2"]
        .iter()
        .map(|host| {
            let unit = units(&lab, host, "berth-b.web*.service").remove(0);
            (host.to_string(), lab.main_pid(host, &unit))
        })
        .collect();
    lab.berth("h1", &["-p", "a", "rm", "web"]).assert_success();
    lab.eventually(Duration::from_secs(30), "a's units gone", || {
        ["h1", "h2"]
            .iter()
            .all(|host| {
                units(&lab, host, "berth-a.*").is_empty() && containers(&lab, host, "a").is_empty()
            })
            .then_some(())
    });
    running(&lab, "b", 2);
    for (host, pid) in b_pids {
        let unit = units(&lab, &host, "berth-b.web*.service").remove(0);
        assert_eq!(
            lab.main_pid(&host, &unit),
            pid,
            "b's web on {host} restarted"
        );
    }
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_link_into_another_project_waits_for_its_grant() {
    let lab = Lab::up("project-links", 2);
    for project in ["a", "b"] {
        lab.berth("h1", &["project", "create", project])
            .assert_success();
    }
    let command = serve("db-of-b");
    lab.berth(
        "h1",
        &[
            "-p",
            "b",
            "run",
            "db",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            &command,
        ],
    )
    .assert_success();
    running(&lab, "b", 1);

    let web = [
        "-p",
        "a",
        "run",
        "web",
        "--image",
        "local/busybox",
        "--link",
        "b.db:8080",
        "--",
        "sleep",
        "1d",
    ];
    let refused = lab.berth("h1", &web).assert_failure();
    assert!(
        refused.contains("project b does not grant links from project a"),
        "{refused}"
    );
    assert!(pods_in(&lab, "a").is_empty(), "a refused link made a pod");

    let granted = lab
        .berth("h1", &["project", "grant-link", "b", "--from", "a"])
        .assert_success();
    assert!(granted.contains("grants links from project a"), "{granted}");
    lab.berth("h1", &web).assert_success();
    let (pod, node) = running(&lab, "a", 1).remove(0);
    let container = format!("berth.a_{pod}.web");
    let script = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8080 | tail -n 1";
    lab.eventually(Duration::from_secs(20), "a's web reaching b's db", || {
        let run = lab.exec(&node, &["docker", "exec", &container, "sh", "-c", script]);
        (run.stdout().trim() == "db-of-b").then_some(())
    });
    let env = lab
        .exec(&node, &["docker", "exec", &container, "env"])
        .assert_success();
    assert!(env.contains("DB_PORT=8080"), "{env}");

    let described = lab
        .berth("h1", &["project", "describe", "b"])
        .assert_success();
    assert!(described.contains("Links from:   a"), "{described}");
    lab.down();
}

/// `berth ARGS` on h1 with `token` instead of the saved admin login.
fn berth_as(lab: &Lab, token: &str, args: &[&str]) -> berth_harness::Run {
    let variable = format!("BERTH_TOKEN={token}");
    let mut argv = vec!["env", variable.as_str(), "berth"];
    argv.extend(args);
    lab.exec("h1", &argv)
}

/// The token `berth user create|token` printed (its last line).
fn printed_token(output: &str) -> String {
    let token = output.lines().last().unwrap_or_default().trim().to_owned();
    assert!(token.starts_with("u:"), "no token in {output}");
    token
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_users_token_does_what_its_role_allows_and_stops_when_replaced() {
    let lab = Lab::up("project-users", 1);
    for project in ["a", "b"] {
        lab.berth("h1", &["project", "create", project])
            .assert_success();
    }
    let command = serve("b");
    lab.berth(
        "h1",
        &[
            "-p",
            "b",
            "run",
            "web",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            &command,
        ],
    )
    .assert_success();
    let alice = printed_token(
        &lab.berth("h1", &["user", "create", "alice"])
            .assert_success(),
    );
    lab.berth(
        "h1",
        &["project", "add-member", "a", "alice", "--role", "edit"],
    )
    .assert_success();

    // edit in a: she runs and lists a's web.
    let command = serve("a");
    berth_as(
        &lab,
        &alice,
        &[
            "-p",
            "a",
            "run",
            "web",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            &command,
        ],
    )
    .assert_success();
    // The controller makes the pod within a round of the service.
    lab.eventually(Duration::from_secs(20), "alice listing a's web-0", || {
        let listed = berth_as(&lab, &alice, &["-p", "a", "ps", "-o", "json"]).json();
        (listed[0]["spec"]["name"] == "web-0").then_some(())
    });
    // Nothing in b, not even that its web exists.
    let refused = berth_as(&lab, &alice, &["-p", "b", "ps"]).assert_failure();
    assert!(refused.contains("project b not found"), "{refused}");
    let refused = berth_as(&lab, &alice, &["-p", "b", "rm", "web"]).assert_failure();
    assert!(refused.contains("project b not found"), "{refused}");
    running(&lab, "b", 1);

    // view in a: a change is refused naming the role it needs.
    lab.berth(
        "h1",
        &["project", "add-member", "a", "alice", "--role", "view"],
    )
    .assert_success();
    let refused = berth_as(&lab, &alice, &["-p", "a", "scale", "web", "2"]).assert_failure();
    assert!(
        refused.contains("this needs the edit role in project a; alice has view"),
        "{refused}"
    );
    let no = berth_as(
        &lab,
        &alice,
        &["-p", "a", "auth", "can-i", "create", "services"],
    );
    assert_eq!(no.code(), Some(1));
    assert_eq!(no.stdout().trim(), "no: needs the edit role in project a");
    let whoami = berth_as(&lab, &alice, &["whoami"]).assert_success();
    assert_eq!(whoami, "alice (user)\n  a: view\n");

    // A new token: the old one is refused at once.
    let renewed = printed_token(
        &lab.berth("h1", &["user", "token", "alice"])
            .assert_success(),
    );
    let refused = berth_as(&lab, &alice, &["whoami"]).assert_failure();
    assert!(refused.contains("refused the token"), "{refused}");
    berth_as(&lab, &renewed, &["-p", "a", "ps"]).assert_success();
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_projects_quota_refuses_a_scale_past_it_naming_its_use() {
    let lab = Lab::up("project-quota", 1);
    lab.berth("h1", &["project", "create", "a"])
        .assert_success();
    let set = lab
        .berth(
            "h1",
            &["project", "quota", "a", "--pods", "2", "--memory", "256M"],
        )
        .assert_success();
    assert_eq!(
        set,
        "project a: quota pods 2, cpus (none), memory 256M, image streams (none), image bytes (none)\n"
    );
    let command = serve("a");
    lab.berth(
        "h1",
        &[
            "-p",
            "a",
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "2",
            "--memory",
            "64M",
            "--",
            "sh",
            "-c",
            &command,
        ],
    )
    .assert_success();
    running(&lab, "a", 2);
    let refused = lab
        .berth("h1", &["-p", "a", "scale", "web", "3"])
        .assert_failure();
    assert!(
        refused.contains("exceeds project a's quota of 2 pods: 0 in use, this asks for 3"),
        "{refused}"
    );
    running(&lab, "a", 2);
    let described = lab
        .berth("h1", &["project", "describe", "a"])
        .assert_success();
    assert!(described.contains("pods:       2 of 2"), "{described}");
    assert!(
        described.contains("memory:     128M of 256M"),
        "{described}"
    );

    // A rollout that would surge past the quota stays within it: one pod
    // at a time, and says so.
    lab.berth("h1", &["-p", "a", "set", "env", "web", "V=2"])
        .assert_success();
    std::thread::scope(|scope| {
        let watch = scope.spawn(|| {
            lab.berth(
                "h1",
                &[
                    "-p",
                    "a",
                    "rollout",
                    "status",
                    "web",
                    "-w",
                    "--timeout",
                    "90s",
                ],
            )
        });
        while !watch.is_finished() {
            let serving = pods_in(&lab, "a")
                .iter()
                .filter(|p| p["drainingSinceMs"].is_null())
                .count();
            assert!(
                serving <= 2,
                "the rollout went past the quota: {serving} pods"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        watch.join().expect("rollout status").assert_success();
    });
    let history = lab
        .berth("h1", &["-p", "a", "rollout", "history", "web"])
        .assert_success();
    assert!(
        history.contains("surging 0 instead of 1 within project a's pods quota"),
        "{history}"
    );
    lab.down();
}
