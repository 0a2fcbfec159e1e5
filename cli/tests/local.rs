//! `berth local ...` run as a process against a fake agent: a small hyper
//! server on a unix socket that answers with canned responses and records
//! what it was sent.

#[allow(dead_code)] // Each test file uses part of it.
mod fake;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::{Pod, PodStatus};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Notify;

use fake::{respond, socket_path, text, FakeServer, Handler};
use hyper::body::Frame;

fn berth(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("local")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("BERTH_AGENT_SOCKET")
        .output()
        .expect("run berth")
}

fn web_status(phase: &str) -> Value {
    json!({
        "name": "web",
        "phase": phase,
        "slice": "berth-web.slice",
        "containers": [{
            "name": "web",
            "unit": "berth-web-web.service",
            "containerId": "0123456789abcdef0123456789abcdef",
            "state": "active",
            "subState": "running",
            "pid": 4242,
            "exitCode": null,
            "reason": null,
            "restarts": 0,
            "hostPorts": [{"containerPort": 8080, "protocol": "tcp", "hostPort": 31001}]
        }],
        "spec": {
            "name": "web",
            "containers": [{
                "name": "web",
                "image": "local/busybox",
                "secretEnv": [{"name": "PW", "value": ""}],
                "ports": [{"containerPort": 8080, "hostPort": 0}]
            }]
        }
    })
}

fn db_status() -> Value {
    json!({
        "name": "db",
        "phase": "Failed",
        "slice": "berth-db.slice",
        "containers": [{
            "name": "db",
            "unit": "berth-db-db.service",
            "containerId": null,
            "state": "failed",
            "subState": "failed",
            "pid": null,
            "exitCode": 137,
            "reason": "OOMKilled",
            "restarts": 3,
            "hostPorts": []
        }],
        "spec": {"name": "db", "containers": [{"name": "db", "image": "local/busybox"}]}
    })
}

#[test]
fn ps_prints_the_agents_pods_as_json_and_as_a_table() {
    let agent = FakeServer::unix(
        "ps",
        Arc::new(|request| match request.uri.as_str() {
            "/v1/pods" => respond(StatusCode::OK, json!([web_status("Running")])),
            "/v1/pods?all=true" => {
                respond(StatusCode::OK, json!([web_status("Running"), db_status()]))
            }
            _ => respond(StatusCode::NOT_FOUND, json!({"error": "no such route"})),
        }),
    );

    let output = berth(&agent.socket, &["ps", "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Vec<PodStatus> = serde_json::from_slice(&output.stdout).unwrap();
    let expected: Vec<PodStatus> = serde_json::from_value(json!([web_status("Running")])).unwrap();
    assert_eq!(printed, expected);
    assert!(text(&output.stdout).starts_with("[\n  {\n"), "not pretty");

    let output = berth(&agent.socket, &["ps", "--all"]);
    assert!(output.status.success(), "{output:?}");
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    for expected in [
        "Running",
        "0123456789ab ",
        "31001->8080/tcp",
        "active/running",
    ] {
        assert!(lines[1].contains(expected), "{expected}: {table}");
    }
    for expected in ["Failed", "OOMKilled", "failed/failed"] {
        assert!(lines[2].contains(expected), "{expected}: {table}");
    }

    let uris: Vec<String> = agent.received().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/v1/pods", "/v1/pods?all=true"]);
}

#[test]
fn the_socket_can_come_from_the_environment() {
    let agent = FakeServer::unix(
        "env-socket",
        Arc::new(|_| respond(StatusCode::OK, json!([]))),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["local", "ps"])
        .env("BERTH_AGENT_SOCKET", &agent.socket)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).starts_with("NAME"));
}

#[test]
fn run_posts_the_pod_and_reports_the_agents_field_errors() {
    let agent = FakeServer::unix(
        "run-invalid",
        Arc::new(|_| {
            respond(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "invalid pod",
                    "fields": [
                        {"field": "volumes[0].hostPath", "message": "is not under an allowed host directory"},
                        {"field": "containers[0].image", "message": "is not available"}
                    ]
                }),
            )
        }),
    );
    let output = berth(
        &agent.socket,
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "-v",
            "/srv/data:/data",
            "--secret-env",
            "PW=hunter2",
            "-p",
            "8080",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "berth: invalid pod\n  volumes[0].hostPath: is not under an allowed host directory\n  \
         containers[0].image: is not available\n"
    );
    assert!(output.stdout.is_empty());

    let received = agent.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].uri, "/v1/pods");
    assert_eq!(
        received[0].content_type.as_deref(),
        Some("application/json")
    );
    let pod: Pod = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(pod.name, "web");
    assert_eq!(pod.containers[0].secret_env[0].value, "hunter2");
    assert_eq!(pod.volumes[0].host_path.as_deref(), Some("/srv/data"));
    assert_eq!(pod.containers[0].ports[0].host_port, Some(0));
}

#[test]
fn run_prints_a_summary_and_tells_created_from_unchanged() {
    let calls = Arc::new(Mutex::new(0));
    let agent = FakeServer::unix(
        "run-ok",
        Arc::new(move |_| {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let status = if *calls == 1 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            respond(status, web_status("Pending"))
        }),
    );
    let args = [
        "run",
        "web",
        "--image",
        "local/busybox",
        "--secret-env",
        "PW=hunter2",
        "--",
        "httpd",
        "-f",
    ];
    let first = berth(&agent.socket, &args);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        text(&first.stdout),
        "pod web: created\nphase: Pending\nunit: berth-web-web.service\n\
         container id: 0123456789ab\nports: 31001->8080/tcp\n"
    );
    let second = berth(&agent.socket, &args);
    assert!(second.status.success(), "{second:?}");
    assert!(text(&second.stdout).starts_with("pod web: unchanged\n"));
    for output in [&first, &second] {
        let everything = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(!everything.contains("hunter2"), "{everything}");
    }
    // The same flags make the same pod, which is what makes `run` idempotent.
    let bodies: Vec<Vec<u8>> = agent.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies[0], bodies[1]);
}

#[test]
fn invalid_flags_are_reported_without_asking_the_agent() {
    let socket = socket_path("run-local-invalid");
    let output = berth(
        &socket,
        &["run", "Web", "--image", "local/busybox", "--memory", "1K"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("berth: invalid pod\n"), "{stderr}");
    assert!(stderr.contains("\n  name: must consist of"), "{stderr}");
    assert!(
        stderr.contains("\n  containers[0].resources.memoryBytes: must be at least"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn actions_print_the_phase_and_errors_the_agents_message() {
    let agent = FakeServer::unix(
        "actions",
        Arc::new(
            |request| match (request.method.as_str(), request.uri.as_str()) {
                ("POST", "/v1/pods/web/stop") => respond(StatusCode::OK, web_status("Stopped")),
                ("POST", "/v1/pods/web/start") => respond(StatusCode::OK, web_status("Running")),
                ("POST", "/v1/pods/web/restart") => respond(StatusCode::OK, web_status("Running")),
                ("DELETE", "/v1/pods/web") => respond(StatusCode::OK, web_status("Stopped")),
                ("GET", "/v1/pods/web") => respond(StatusCode::OK, web_status("Running")),
                _ => respond(
                    StatusCode::NOT_FOUND,
                    json!({"error": "pod \"nope\" not found"}),
                ),
            },
        ),
    );
    for (command, expected) in [
        ("stop", "pod web: Stopped\n"),
        ("start", "pod web: Running\n"),
        ("restart", "pod web: Running\n"),
        ("rm", "pod web: removed (last phase Stopped)\n"),
    ] {
        let output = berth(&agent.socket, &[command, "web"]);
        assert!(output.status.success(), "{command}: {output:?}");
        assert_eq!(text(&output.stdout), expected, "{command}");
    }

    let output = berth(&agent.socket, &["inspect", "web"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["containers"][0]["unit"], "berth-web-web.service");

    let output = berth(&agent.socket, &["start", "nope"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(text(&output.stderr), "berth: pod \"nope\" not found\n");
}

#[test]
fn an_unreachable_agent_is_explained() {
    let socket = socket_path("unreachable");
    let output = berth(&socket, &["ps"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("berth: cannot connect"), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(stderr.contains("systemctl status berth-agent"), "{stderr}");
}

#[test]
fn usage_errors_exit_with_two() {
    let socket = socket_path("usage");
    let output = berth(&socket, &["run", "web", "--image", "i", "-e", "MODE"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("--env"));
}

#[test]
fn logs_are_printed_as_they_arrive() {
    let release = Arc::new(Notify::new());
    let released_by_test = Arc::new(AtomicBool::new(false));
    let handler: Handler = {
        let release = Arc::clone(&release);
        let released_by_test = Arc::clone(&released_by_test);
        Arc::new(move |_| {
            let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
            let release = Arc::clone(&release);
            let released_by_test = Arc::clone(&released_by_test);
            tokio::spawn(async move {
                let _ = sender.send(Frame::data(Bytes::from("line 1\n"))).await;
                // If berth held output back, the test could not see line 1
                // and would never release us: the timeout tells that apart.
                let released =
                    tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                released_by_test.store(released.is_ok(), Ordering::SeqCst);
                let _ = sender.send(Frame::data(Bytes::from("line 2\n"))).await;
            });
            Response::builder()
                .header("content-type", "text/plain")
                .body(body.boxed())
                .unwrap()
        })
    };
    let agent = FakeServer::unix("logs", handler);

    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("local")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["logs", "web", "-f", "--tail", "10", "--container", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "line 1\n");
    release.notify_one();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "line 2\n");
    assert!(child.wait().unwrap().success());
    assert!(released_by_test.load(Ordering::SeqCst));

    let uris: Vec<String> = agent.received().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        ["/v1/pods/web/logs?follow=true&tail=10&container=web"]
    );
}
