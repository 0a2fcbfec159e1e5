//! Health probes, container events and policy webhooks on real hosts:
//! readiness holds a unit in `activating` and its endpoint out of traffic
//! until the probe passes, a failing liveness probe gets the container
//! restarted by systemd with `unhealthy` and `restarted` events that say
//! why, and an OOM kill reaches a webhook served inside the lab.
//!
//! Root only: run with `cargo test -p berth-lab-tests --test health -- --ignored`.

use std::time::Duration;

use berth_harness::Lab;
use serde_json::Value;

/// `GET /v1/...` on the master as the admin, from h1.
fn api(lab: &Lab, path: &str) -> Value {
    let script = format!(
        "curl -sf --cacert /var/lib/berth/master/ca.crt \
         -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" \
         'https://h1:7443{path}'"
    );
    lab.sh("h1", &script).json()
}

/// The pod of `berth ps -o json` named `name`, once it has a node.
fn placed_pod(lab: &Lab, name: &str) -> Value {
    lab.eventually(Duration::from_secs(30), "the pod to be placed", || {
        let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
        pods.as_array()?
            .iter()
            .find(|p| p["spec"]["name"] == name && p["node"].is_string())
            .cloned()
    })
}

/// The readiness of the endpoints of `service`, as the master serves them.
fn endpoints_ready(lab: &Lab, service: &str) -> Vec<bool> {
    let view = api(lab, &format!("/v1/endpoints?service={service}"));
    view["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["ready"].as_bool().unwrap_or(false))
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn health_readiness_gates_the_unit_and_the_endpoint_until_the_probe_passes() {
    let lab = Lab::up("health-ready", 2);
    // httpd answers / at once, but /ready only once the file exists.
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--readiness",
            "http:8080/ready",
            "--probe-period",
            "1",
            "--probe-failures",
            "1",
            "--",
            "sh",
            "-c",
            "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
    let pod = placed_pod(&lab, "web-0");
    let node = pod["node"].as_str().expect("node").to_owned();
    let unit = "berth-web\\x2d0-web.service";

    // The container runs and serves, but the probe fails: the unit stays
    // `activating` and the endpoint is not ready, for as long as we look.
    lab.eventually(Duration::from_secs(30), "the container to serve", || {
        lab.exec(
            &node,
            &[
                "docker",
                "exec",
                "berth.web-0.web",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/",
            ],
        )
        .success()
        .then_some(())
    });
    lab.eventually(Duration::from_secs(15), "the endpoint to be listed", || {
        (!endpoints_ready(&lab, "web").is_empty()).then_some(())
    });
    // A client linked to web, and a route to web on a router on h1.
    lab.berth(
        "h1",
        &[
            "run",
            "client",
            "--image",
            "local/busybox",
            "--link",
            "web:8080",
            "--",
            "sleep",
            "3600",
        ],
    )
    .assert_success();
    lab.berth("h1", &["route", "add", "web", "www.example.test"])
        .assert_success();
    lab.exec("h1", &["systemctl", "enable", "--now", "berth-router"])
        .assert_success();
    let client = placed_pod(&lab, "client-0");
    let client_node = client["node"].as_str().expect("node").to_owned();
    let through_link = || {
        lab.exec(
            &client_node,
            &[
                "docker",
                "exec",
                "berth.client-0.client",
                // busybox-static's wget crashes with -T: bound it this way.
                "timeout",
                "3",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/",
            ],
        )
    };
    let through_route = || {
        lab.exec(
            "h2",
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: www.example.test",
                "http://10.231.0.11/",
            ],
        )
        .stdout()
    };
    lab.eventually(Duration::from_secs(30), "the router to answer", || {
        (through_route() == "503").then_some(())
    });
    for _ in 0..5 {
        assert_eq!(
            lab.unit_property(&node, unit, "ActiveState"),
            "activating",
            "{unit} on {node}"
        );
        assert_eq!(endpoints_ready(&lab, "web"), [false]);
        assert!(
            !through_link().success(),
            "the link must not reach an unready container"
        );
        assert_eq!(through_route(), "503", "the route has no ready backend");
        std::thread::sleep(Duration::from_secs(1));
    }
    let status = lab.exec(
        &node,
        &["systemctl", "show", "-p", "StatusText", "--value", unit],
    );
    assert!(
        status.stdout().starts_with("not ready"),
        "StatusText: {}",
        status.stdout()
    );
    let ps = lab.berth("h1", &["ps"]).assert_success();
    assert!(
        ps.contains("0/1"),
        "berth ps shows the container not ready:\n{ps}"
    );

    // The probe passes: the unit becomes active, the endpoint ready.
    lab.exec(
        &node,
        &["docker", "exec", "berth.web-0.web", "touch", "/www/ready"],
    )
    .assert_success();
    lab.eventually(Duration::from_secs(15), "the unit to be active", || {
        (lab.unit_property(&node, unit, "ActiveState") == "active").then_some(())
    });
    lab.eventually(Duration::from_secs(15), "the endpoint to be ready", || {
        (endpoints_ready(&lab, "web") == [true]).then_some(())
    });
    lab.eventually(Duration::from_secs(15), "link traffic to reach web", || {
        (through_link().stdout().trim() == "hello").then_some(())
    });
    lab.eventually(
        Duration::from_secs(15),
        "route traffic to reach web",
        || (through_route() == "200").then_some(()),
    );
    let describe = lab.berth("h1", &["describe", "web"]).assert_success();
    assert!(
        describe.contains("readiness http GET :8080/ready every 1s"),
        "{describe}"
    );
    assert!(describe.contains("web-0/web: ready"), "{describe}");

    // Failing again takes the endpoint out of traffic; the unit stays up.
    lab.exec(
        &node,
        &["docker", "exec", "berth.web-0.web", "rm", "/www/ready"],
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(15),
        "the endpoint to be not ready",
        || (endpoints_ready(&lab, "web") == [false]).then_some(()),
    );
    assert_eq!(lab.unit_property(&node, unit, "ActiveState"), "active");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn health_a_failing_liveness_probe_restarts_the_container_and_says_why() {
    let lab = Lab::up("health-live", 1);
    // Healthy for 5 s, then the file goes and the probe fails.
    lab.berth(
        "h1",
        &[
            "run",
            "live",
            "--image",
            "local/busybox",
            "--liveness",
            "exec:cat /tmp/healthy",
            "--probe-period",
            "1",
            "--probe-failures",
            "2",
            "--stop-timeout",
            "1",
            "--",
            "sh",
            "-c",
            "touch /tmp/healthy; sleep 5; rm /tmp/healthy; exec sleep 3600",
        ],
    )
    .assert_success();
    placed_pod(&lab, "live-0");
    let unit = "berth-live\\x2d0-live.service";

    let restarted = lab.eventually(Duration::from_secs(60), "a restarted event", || {
        lab.events("ContainerRestarted")
            .into_iter()
            .find(|e| e["object"] == "pod/live-0")
    });
    let unhealthy = lab.events("ContainerUnhealthy");
    let unhealthy = unhealthy
        .iter()
        .find(|e| e["object"] == "pod/live-0")
        .expect("an unhealthy event before the restart");
    let reason = unhealthy["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("liveness probe exec cat /tmp/healthy failed 2 times"),
        "{unhealthy}"
    );
    assert_eq!(unhealthy["node"], "h1");
    assert!(unhealthy["timeMs"].as_u64() <= restarted["timeMs"].as_u64());
    let why = restarted["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("restart 1 by systemd") && why.contains("liveness probe"),
        "{restarted}"
    );

    // systemd did the restart, and the container runs again.
    let restarts = lab
        .exec(
            "h1",
            &["systemctl", "show", "-p", "NRestarts", "--value", unit],
        )
        .assert_success();
    assert!(
        restarts.trim().parse::<u32>().unwrap_or(0) >= 1,
        "{restarts}"
    );
    lab.eventually(Duration::from_secs(20), "the unit to run again", || {
        (lab.unit_property("h1", unit, "ActiveState") == "active").then_some(())
    });

    // The table shows the story too.
    let table = lab
        .berth("h1", &["events", "--type", "ContainerUnhealthy"])
        .assert_success();
    assert!(table.contains("liveness probe"), "{table}");

    // A startup probe that never passes ends the container the same way;
    // until then the unit is not active.
    lab.berth(
        "h1",
        &[
            "run",
            "slow",
            "--image",
            "local/busybox",
            "--startup",
            "tcp:9999",
            "--probe-period",
            "1",
            "--probe-failures",
            "3",
            "--stop-timeout",
            "1",
            "--",
            "sleep",
            "3600",
        ],
    )
    .assert_success();
    placed_pod(&lab, "slow-0");
    let unhealthy = lab.eventually(Duration::from_secs(30), "a startup failure", || {
        lab.events("ContainerUnhealthy")
            .into_iter()
            .find(|e| e["object"] == "pod/slow-0")
    });
    assert!(
        unhealthy["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("startup probe tcp :9999 failed 3 times"),
        "{unhealthy}"
    );
    let state = lab.unit_property("h1", "berth-slow\\x2d0-slow.service", "ActiveState");
    assert_ne!(
        state, "active",
        "a container that never started is not active"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn health_an_oom_kill_is_an_event_that_reaches_a_policy_webhook() {
    let lab = Lab::up("health-hook", 2);
    // The webhook on h2 keeps what is POSTed to it.
    let hook = lab.serve_webhook("h2");
    // One rule that works, one whose URL refuses connections.
    lab.sh(
        "h1",
        &format!(
            "mkdir -p /etc/berth && cat > /etc/berth/master.toml <<'EOF'
[[webhooks]]
event = \"ContainerOOMKilled\"
url = \"{hook}\"

[[webhooks]]
event = \"ContainerOOMKilled\"
url = \"http://10.231.0.12:9/nobody\"
attempts = 2
EOF
systemctl restart berth-master"
        ),
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "the master to answer", || {
        lab.berth("h1", &["node", "ls"]).success().then_some(())
    });

    lab.berth(
        "h1",
        &[
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
            "sleep 4; echo allocating; awk 'BEGIN { s = \"x\"; while (1) s = s s s }'",
        ],
    )
    .assert_success();
    let pod = placed_pod(&lab, "hog-0");
    let node = pod["node"].as_str().expect("node").to_owned();
    lab.eventually(Duration::from_secs(30), "a started event", || {
        lab.events("ContainerStarted")
            .into_iter()
            .find(|e| e["object"] == "pod/hog-0")
    });
    // The agent dies hard and forgets how far it got, while the container
    // goes on to be OOM-killed: the event must still arrive, once, and the
    // started event must not be doubled by the resend.
    lab.sh(
        &node,
        "systemctl kill -s KILL berth-agent; rm -f /var/lib/berth/events.cursor",
    )
    .assert_success();

    let oom = lab.eventually(Duration::from_secs(60), "an OOM event", || {
        lab.events("ContainerOOMKilled")
            .into_iter()
            .find(|e| e["object"] == "pod/hog-0")
    });
    assert_eq!(oom["node"], node.as_str());
    assert!(
        oom["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("out of memory"),
        "{oom}"
    );

    let delivered = lab.eventually(Duration::from_secs(30), "the webhook to get it", || {
        lab.webhook_received("h2")
            .into_iter()
            .find(|e| e["kind"] == "ContainerOOMKilled" && e["object"] == "pod/hog-0")
    });
    assert_eq!(
        delivered, oom,
        "the webhook got the event as the API shows it"
    );

    // The rule that cannot be delivered ends as an event of its own.
    let failed = lab.eventually(Duration::from_secs(30), "a WebhookFailed event", || {
        lab.events("WebhookFailed")
            .into_iter()
            .find(|e| e["object"] == "pod/hog-0")
    });
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("http://10.231.0.12:9/nobody") && reason.contains("failed 2 times"),
        "{failed}"
    );
    // Exactly once: the agent's resends after losing its cursor are not
    // doubled, and neither are the webhook's retries.
    lab.eventually(Duration::from_secs(30), "the agent to ship again", || {
        lab.exec(&node, &["test", "-s", "/var/lib/berth/events.cursor"])
            .success()
            .then_some(())
    });
    for kind in ["ContainerStarted", "ContainerOOMKilled"] {
        let count = lab
            .events(kind)
            .into_iter()
            .filter(|e| e["object"] == "pod/hog-0")
            .count();
        assert_eq!(count, 1, "{kind} events of pod/hog-0");
    }
}
