//! The cluster commands run as a process against a fake master: a small
//! hyper server on 127.0.0.1 that answers with canned JSON and records what
//! it was sent. Each test has its own home directory under cargo's scratch
//! directory, so the login file of one never leaks into another.

#[allow(dead_code)] // Each test file uses part of it.
mod fake;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use berth_model::api::Versioned;
use berth_model::ClusterPod;
use hyper::StatusCode;
use serde_json::{json, Value};

use fake::{respond, text, FakeServer, Received};

/// A fake master answering with `handler`, but only to the token `good`,
/// as the real one does.
fn master(
    handler: impl Fn(&Received) -> (StatusCode, Value) + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::tcp(Arc::new(move |request| {
        let (status, body) = if request.authorization.as_deref() == Some("Bearer good") {
            handler(request)
        } else {
            (StatusCode::UNAUTHORIZED, json!({"error": "invalid token"}))
        };
        respond(status, body)
    }))
}

/// A fresh, empty home directory for one test.
fn home(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-cluster-{test}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn config_file(home: &Path) -> PathBuf {
    home.join("config").join("berth").join("config.json")
}

/// `berth ARGS` with `home` as its home and config directory, and nothing of
/// this process's environment that could point it elsewhere.
fn berth_with(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("BERTH_URL")
        .env_remove("BERTH_TOKEN");
    // reqwest honours proxy variables; the fake master is on loopback.
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        command.env_remove(proxy);
    }
    command.envs(env.iter().copied());
    command.output().expect("run berth")
}

/// `berth ARGS` logged in to `master` through the environment.
fn berth(master: &FakeServer, home: &Path, args: &[&str]) -> Output {
    berth_with(
        home,
        &[("BERTH_URL", &master.url), ("BERTH_TOKEN", "good")],
        args,
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn node_a() -> Value {
    json!({
        "node": {
            "name": "node-a",
            "address": "10.0.0.1",
            "labels": {"zone": "a"},
            "capacity": {"memoryBytes": 4294967296u64, "cpuMillis": 2000},
            "unschedulable": false
        },
        "condition": "Ready",
        "lastHeartbeatMsAgo": 1200,
        "pods": 1
    })
}

/// A pod spec in the form berth serializes it, every default spelled out.
fn web_spec(name: &str, secret: &str) -> Value {
    json!({
        "name": name,
        "containers": [{
            "name": "web",
            "image": "local/busybox",
            "secretEnv": [{"name": "PW", "value": secret}],
            "ports": [{"containerPort": 8080, "protocol": "tcp", "hostPort": 0}],
            "resources": {},
            "restart": "always",
            "stopTimeoutSecs": 10
        }]
    })
}

/// Pods as the master lists them: one running with its node's report, one
/// that fits nowhere, one not reported yet. The master keeps secret values;
/// berth must not print them.
fn pods() -> Value {
    json!([
        {
            "resourceVersion": 10,
            "spec": web_spec("web-0", "hunter2"),
            "service": "web",
            "node": "node-a",
            "status": {
                "name": "web-0",
                "phase": "Running",
                "slice": "berth-web-0.slice",
                "containers": [{
                    "name": "web",
                    "unit": "berth-web-0-web.service",
                    "containerId": "0123456789abcdef",
                    "state": "active",
                    "subState": "running",
                    "pid": 4242,
                    "exitCode": null,
                    "reason": null,
                    "restarts": 0,
                    "ready": true,
                    "hostPorts": [{"containerPort": 8080, "protocol": "tcp", "hostPort": 31001}]
                }],
                "spec": web_spec("web-0", "hunter2")
            }
        },
        {
            "resourceVersion": 11,
            "spec": web_spec("web-1", "hunter2"),
            "service": "web",
            "unschedulableReason": "0/1 nodes fit: 1 insufficient memory"
        },
        {
            "resourceVersion": 12,
            "spec": web_spec("other-0", ""),
            "service": "other",
            "node": "node-a"
        }
    ])
}

/// [`pods`] with every secret value blanked, as berth prints them.
fn pods_redacted() -> Value {
    let text = pods().to_string().replace("hunter2", "");
    serde_json::from_str(&text).expect("json")
}

fn web_service() -> Value {
    json!({
        "resourceVersion": 7,
        "name": "web",
        "replicas": 2,
        "stateful": false,
        "template": web_spec("web", "hunter2")
    })
}

#[test]
fn login_checks_the_token_then_saves_it_for_its_owner_only() {
    let master = master(
        |request| match (request.method.as_str(), request.uri.as_str()) {
            ("GET", "/v1/whoami") => (
                StatusCode::OK,
                json!({"kind": "admin", "name": "admin", "roles": {}}),
            ),
            ("GET", "/v1/nodes") => (StatusCode::OK, json!([node_a()])),
            _ => (StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
        },
    );
    let home = home("login");
    let file = config_file(&home);

    let refused = berth_with(&home, &[], &["login", &master.url, "--token", "bad"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.starts_with(&format!(
            "berth: cannot log in to {}: the berth master refused the token (invalid token)",
            master.url
        )),
        "{stderr}"
    );
    assert!(!file.exists(), "a refused token was saved");

    // A trailing slash is dropped: API paths are appended to the URL.
    let url_with_slash = format!("{}/", master.url);
    let output = berth_with(&home, &[], &["login", &url_with_slash, "--token", "good"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        format!(
            "logged in to {} (1 node); saved to {}\n",
            master.url,
            file.display()
        )
    );
    let saved: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved, json!({"url": master.url, "token": "good"}));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);

    // Looser modes left by someone else are tightened on the next login,
    // whose token may come from the environment.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(file.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    let output = berth_with(&home, &[("BERTH_TOKEN", "good")], &["login", &master.url]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);

    // The saved login is what the other commands use.
    let output = berth_with(&home, &[], &["node", "ls", "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, json!([node_a()]));

    // Each login asks who the token is (the admin), then counts the nodes.
    let received = master.received();
    let calls: Vec<(Option<&str>, &str)> = received
        .iter()
        .map(|r| (r.authorization.as_deref(), r.uri.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            (Some("Bearer bad"), "/v1/whoami"),
            (Some("Bearer good"), "/v1/whoami"),
            (Some("Bearer good"), "/v1/nodes"),
            (Some("Bearer good"), "/v1/whoami"),
            (Some("Bearer good"), "/v1/nodes"),
            (Some("Bearer good"), "/v1/nodes"),
        ]
    );
}

#[test]
fn a_user_logs_in_with_its_own_token_and_is_told_its_roles() {
    let master = master(
        |request| match (request.method.as_str(), request.uri.as_str()) {
            ("GET", "/v1/whoami") => (
                StatusCode::OK,
                json!({"kind": "user", "name": "alice", "roles": {"a": "edit", "b": "view"}}),
            ),
            _ => (
                StatusCode::FORBIDDEN,
                json!({"error": "this credential may not do that"}),
            ),
        },
    );
    let home = home("login-user");
    let output = berth_with(&home, &[], &["login", &master.url, "--token", "good"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        format!(
            "logged in to {} (as user alice (a: edit, b: view)); saved to {}\n",
            master.url,
            config_file(&home).display()
        )
    );
}

#[test]
fn commands_without_a_login_say_to_run_berth_login() {
    let home = home("no-login");
    for args in [&["ps"][..], &["node", "ls"], &["rm", "web"]] {
        let output = berth_with(&home, &[], args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(
            text(&output.stderr),
            "berth: not logged in to a berth master: run `berth login URL --token TOKEN` \
             (or set BERTH_URL and BERTH_TOKEN)\n",
            "{args:?}"
        );
    }
}

#[test]
fn the_environment_overrides_the_saved_login() {
    let master = master(|_| (StatusCode::OK, json!([])));
    let home = home("env-override");
    let file = config_file(&home);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        json!({"url": "http://127.0.0.1:9", "token": "stale"}).to_string(),
    )
    .unwrap();

    let output = berth_with(
        &home,
        &[("BERTH_URL", &master.url), ("BERTH_TOKEN", "good")],
        &["ps"],
    );
    assert!(output.status.success(), "{output:?}");
    // Only the URL from the environment: the token comes from the file.
    let output = berth_with(&home, &[("BERTH_URL", &master.url)], &["ps"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("refused the token"),
        "{output:?}"
    );
    let tokens: Vec<Option<String>> = master
        .received()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert_eq!(
        tokens,
        [
            Some("Bearer good".to_owned()),
            Some("Bearer stale".to_owned())
        ]
    );
}

#[test]
fn ps_prints_the_pods_as_json_yaml_and_a_table_without_secrets() {
    let master = master(|request| match request.uri.as_str() {
        "/v1/pods" => (StatusCode::OK, pods()),
        _ => (StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
    });
    let home = home("ps");

    let output = berth(&master, &home, &["ps", "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, pods_redacted());
    // And it is still the master's wire format.
    let _: Vec<Versioned<ClusterPod>> = serde_json::from_value(printed).unwrap();

    let output = berth(&master, &home, &["ps", "-o", "yaml"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_norway::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, pods_redacted());

    let output = berth(&master, &home, &["ps"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "\
NAME      SERVICE   NODE     PHASE                                                 READY   HOST PORTS
web-0     web       node-a   Running                                               1/1     31001->8080/tcp
web-1     web       -        Unschedulable: 0/1 nodes fit: 1 insufficient memory   -       -
other-0   other     node-a   Pending                                               -       -
"
    );

    for request in master.received() {
        assert_eq!(
            (request.method.as_str(), request.uri.as_str()),
            ("GET", "/v1/pods")
        );
    }
}

#[test]
fn run_sends_the_service_and_tells_created_from_unchanged() {
    let calls = Arc::new(Mutex::new(0));
    let master = master(move |request| {
        let mut calls = calls.lock().unwrap();
        *calls += 1;
        let status = if *calls == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut service = request.json();
        service["resourceVersion"] = json!(3);
        (status, service)
    });
    let home = home("run");
    let args = [
        "run",
        "web",
        "--image",
        "local/busybox",
        "--replicas",
        "3",
        "-p",
        "8080",
        "-p",
        "5353:53/udp",
        "-e",
        "MODE=prod",
        "--secret-env",
        "PW=hunter2",
        "--memory",
        "64M",
        "--cpus",
        "0.5",
        "--stateful",
        "--restart",
        "on-failure",
        "--",
        "httpd",
        "-f",
    ];
    let first = berth(&master, &home, &args);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        text(&first.stdout),
        "service web: created with 3 replicas; see `berth ps`\n"
    );
    let second = berth(&master, &home, &args);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(
        text(&second.stdout),
        "service web: unchanged (an identical service exists)\n"
    );

    let received = master.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/v1/services");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
    }
    assert_eq!(
        received[0].json(),
        json!({
            "name": "web",
            "replicas": 3,
            "stateful": true,
            "template": {
                "name": "web",
                "containers": [{
                    "name": "web",
                    "image": "local/busybox",
                    "command": ["httpd", "-f"],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "secretEnv": [{"name": "PW", "value": "hunter2"}],
                    "ports": [
                        {"containerPort": 8080, "protocol": "tcp", "hostPort": 0},
                        {"containerPort": 53, "protocol": "udp", "hostPort": 5353}
                    ],
                    "resources": {"memoryBytes": 67108864, "cpuMillis": 500},
                    "restart": "on-failure",
                    "stopTimeoutSecs": 10
                }]
            }
        })
    );
    // The same flags make the same service, which is what makes `run`
    // idempotent against the master's identical-service check.
    assert_eq!(received[0].body, received[1].body);
}

#[test]
fn master_errors_show_the_fields_at_fault() {
    let master = master(|_| {
        (
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid service",
                "fields": [
                    {"field": "name", "message": "must be at most 50 characters (pods add a suffix)"},
                    {"field": "replicas", "message": "must be at most 10000"}
                ]
            }),
        )
    });
    let home = home("field-errors");
    let output = berth(
        &master,
        &home,
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "2000",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "berth: invalid service\n  name: must be at most 50 characters (pods add a suffix)\n  \
         replicas: must be at most 10000\n"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn invalid_flags_are_reported_without_asking_the_master() {
    let master = master(|_| (StatusCode::OK, json!({})));
    let home = home("local-invalid");
    let output = berth(
        &master,
        &home,
        &["run", "Web", "--image", "local/busybox", "--memory", "1K"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("berth: invalid service\n"), "{stderr}");
    assert!(stderr.contains("\n  name: must consist of"), "{stderr}");
    assert!(
        stderr.contains("\n  template.containers[0].resources.memoryBytes: must be at least"),
        "{stderr}"
    );
    assert!(master.received().is_empty());
}

#[test]
fn service_pod_and_node_commands_use_their_routes() {
    let master = master(|request| {
        let node = json!({
            "name": "node-b",
            "address": "10.0.0.2",
            "capacity": {"memoryBytes": 1073741824, "cpuMillis": 1000},
            "unschedulable": true
        });
        match (request.method.as_str(), request.uri.as_str()) {
            ("POST", "/v1/services/web/scale") => {
                let mut service = web_service();
                service["replicas"] = request.json()["replicas"].clone();
                (StatusCode::OK, service)
            }
            ("DELETE", "/v1/services/web") => (StatusCode::OK, web_service()),
            ("GET", "/v1/services/web") => (StatusCode::OK, web_service()),
            ("GET", "/v1/pods") => (StatusCode::OK, pods()),
            ("POST", "/v1/pods/web-1/move") => {
                let mut pod = pods()[1].clone();
                pod["node"] = request.json()["to"].clone();
                (StatusCode::OK, pod)
            }
            ("POST", "/v1/nodes/node-b/cordon") => (StatusCode::OK, node),
            ("POST", "/v1/join-tokens") => (
                StatusCode::CREATED,
                json!({
                    "token": "join-secret",
                    "expiresAt": 1777637100,
                    "command": "berth-agent join http://master:7070 --token join-secret"
                }),
            ),
            ("GET", "/v1/services/nope") => (
                StatusCode::NOT_FOUND,
                json!({"error": "service nope not found"}),
            ),
            _ => (StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
        }
    });
    let home = home("routes");
    for (args, expected) in [
        (
            &["scale", "web", "5"][..],
            "service web: scaled to 5 replicas\n",
        ),
        (
            &["rm", "web"],
            "service web: removed; the master stops and removes its pods\n",
        ),
        (
            &["move", "web-1", "--to", "node-b"],
            "pod web-1: moving to node-b\n",
        ),
        (
            &["node", "cordon", "node-b"],
            "node node-b: cordoned; no new pods are placed on it\n",
        ),
        (
            &["node", "token"],
            "berth-agent join http://master:7070 --token join-secret\n",
        ),
    ] {
        let output = berth(&master, &home, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert_eq!(text(&output.stdout), expected, "{args:?}");
    }

    let output = berth(&master, &home, &["describe", "web", "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut service = web_service();
    service["template"] = web_spec("web", "");
    let web_pods = pods_redacted().as_array().unwrap()[..2].to_vec();
    // An apply document: kind, revision and fields, pods as status.
    let mut document = json!({"kind": "Service"});
    document
        .as_object_mut()
        .unwrap()
        .extend(service.as_object().unwrap().clone());
    document["status"] = json!({"pods": web_pods});
    assert_eq!(printed, document);

    let output = berth(&master, &home, &["describe", "web"]);
    assert!(output.status.success(), "{output:?}");
    let described = text(&output.stdout);
    assert!(
        described.starts_with("service: web\nreplicas: 2\n"),
        "{described}"
    );
    assert!(described.contains("  secret env: PW\n"), "{described}");
    assert!(!described.contains("hunter2"), "{described}");
    assert!(!described.contains("other-0"), "{described}");

    let output = berth(&master, &home, &["describe", "nope"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(text(&output.stderr), "berth: service nope not found\n");

    let bodies: Vec<(String, String, Vec<u8>)> = master
        .received()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| (r.method, r.uri, r.body))
        .collect();
    let body = |uri: &str| {
        let (_, _, body) = bodies.iter().find(|(_, u, _)| u == uri).expect(uri);
        serde_json::from_slice::<Value>(body).ok()
    };
    assert_eq!(body("/v1/services/web/scale"), Some(json!({"replicas": 5})));
    assert_eq!(body("/v1/pods/web-1/move"), Some(json!({"to": "node-b"})));
}

#[test]
fn an_unreachable_master_is_explained() {
    // A port held by a socket that never listens: connecting is refused,
    // and no other test can take the port meanwhile.
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let held = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("a socket");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&held),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .expect("binding a free port");
    let port = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&held))
        .expect("the bound address")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let home = home("unreachable");
    let output = berth_with(
        &home,
        &[("BERTH_URL", &url), ("BERTH_TOKEN", "good")],
        &["ps"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "berth: cannot reach the berth master at {url} (is berth-master running there?)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("good"), "{stderr}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let home = home("completions");
    for shell in ["bash", "zsh", "fish"] {
        let output = berth_with(&home, &[], &["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        assert!(text(&output.stdout).contains("describe"), "{shell}");
    }
}
