//! Deployments on lab hosts: a new image rolled out behind a router and a
//! link under constant load without one failed request, and undone the
//! same way; a rollout that never gets ready failing within its deadline
//! and rolling back by itself; a failing pre hook aborting; a stateful pod
//! recreated in its place with its data; a canary waiting for promotion;
//! a change that drops a routed port refused.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test deployments -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_harness::{Lab, Run, SERVE_VERSION};

/// h1's address: the master and the router run there.
const ROUTER: &str = "10.231.0.11";

/// Boots a lab whose h1 runs the master and a router and takes no pods,
/// with images `local/web:v1` and `local/web:v2` on the other hosts: the
/// same server, each answering with its version.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    for host in (2..=hosts).map(|h| format!("h{h}")) {
        lab.make_web_images(&host);
    }
    lab
}

/// `berth run NAME` of `local/web:v1` with a readiness probe, and `extra`
/// flags.
fn run_web(lab: &Lab, name: &str, replicas: u32, extra: &[&str]) {
    let replicas = replicas.to_string();
    let mut args = vec![
        "run",
        name,
        "--image",
        "local/web:v1",
        "--replicas",
        &replicas,
        "-p",
        "8080",
        "--readiness",
        "tcp:8080",
    ];
    args.extend(extra);
    args.extend(["--", "sh", "-c", SERVE_VERSION]);
    lab.berth("h1", &args).assert_success();
}

/// The master's view of `service`'s pods: (name, node, revision, ready).
fn pods_of(lab: &Lab, service: &str) -> Vec<(String, String, u64, bool)> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service)
        .map(|p| {
            let ready = p["status"]["phase"] == "Running"
                && p["status"]["containers"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["ready"] == true))
                && p["drainingSinceMs"].is_null();
            (
                p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                p["node"].as_str().unwrap_or_default().to_owned(),
                p["revision"].as_u64().unwrap_or(1),
                ready,
            )
        })
        .collect()
}

/// How many of `service`'s pods of `revision` are ready and not draining.
fn ready(lab: &Lab, service: &str, revision: u64) -> usize {
    pods_of(lab, service)
        .iter()
        .filter(|(_, _, r, ready)| *r == revision && *ready)
        .count()
}

/// `berth rollout history SERVICE -o json`.
fn history(lab: &Lab, service: &str) -> Vec<serde_json::Value> {
    let out = lab
        .berth("h1", &["rollout", "history", service, "-o", "json"])
        .assert_success();
    let list: serde_json::Value = serde_json::from_str(&out).expect("history json");
    list.as_array().cloned().unwrap_or_default()
}

/// The phase of revision `revision` of `service`.
fn phase(lab: &Lab, service: &str, revision: u64) -> String {
    history(lab, service)
        .iter()
        .find(|d| d["revision"] == revision)
        .and_then(|d| d["status"]["phase"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The JSON summary line of a `berth-bench load` run.
fn summary(run: &Run) -> serde_json::Value {
    let out = run.assert_success();
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("load summary {last:?}: {e}"))
}

/// The bodies a load saw.
fn bodies(summary: &serde_json::Value) -> BTreeSet<String> {
    summary["bodies"]
        .as_object()
        .map(|b| b.keys().cloned().collect())
        .unwrap_or_default()
}

/// Where `pod` runs and its container's main PID there.
fn pod_pid(lab: &Lab, pod: &str) -> (String, String) {
    let node = pods_of(lab, pod.rsplit_once('-').map_or(pod, |(s, _)| s))
        .into_iter()
        .find(|(name, ..)| name == pod)
        .map(|(_, node, ..)| node)
        .expect("the pod has a node");
    let service = pod.rsplit_once('-').map_or(pod, |(s, _)| s);
    let pid = lab
        .exec(
            &node,
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.Pid}}",
                &format!("berth.{pod}.{service}"),
            ],
        )
        .assert_success()
        .trim()
        .to_owned();
    (node, pid)
}

/// Runs `change` while two loads of `rate` req/s for `seconds` run: one
/// through the router on h1, one through the client pod's link to web
/// (from inside its network namespace). Answers both summaries.
fn under_load(
    lab: &Lab,
    bench_router: &str,
    client: (&str, &str, &str),
    seconds: u32,
    change: impl FnOnce(),
) -> (serde_json::Value, serde_json::Value) {
    let (client_node, client_pid, bench_client) = client;
    let rate = "100";
    let seconds = seconds.to_string();
    std::thread::scope(|scope| {
        let routed = scope.spawn(|| {
            lab.exec(
                "h1",
                &[
                    bench_router,
                    "load",
                    "--target",
                    &format!("{ROUTER}:80"),
                    "--host",
                    "www.example.test",
                    "--rate",
                    rate,
                    "--seconds",
                    &seconds,
                ],
            )
        });
        let linked = scope.spawn(|| {
            lab.exec(
                client_node,
                &[
                    "nsenter",
                    "-t",
                    client_pid,
                    "-n",
                    bench_client,
                    "load",
                    "--target",
                    "127.0.0.1:8080",
                    "--host",
                    "web",
                    "--rate",
                    rate,
                    "--seconds",
                    &seconds,
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        change();
        (
            summary(&routed.join().expect("router load")),
            summary(&linked.join().expect("link load")),
        )
    })
}

/// What `n` requests through the router answer.
fn routed_answers(lab: &Lab, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| {
            let run = lab.exec(
                "h1",
                &[
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    "-H",
                    "Host: www.example.test",
                    &format!("http://{ROUTER}/"),
                ],
            );
            run.success().then(|| run.stdout().trim().to_owned())
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn deployments_roll_out_and_back_under_load_without_a_failed_request() {
    let lab = boot("deploy-load", 3);
    lab.start_router("h1");
    run_web(&lab, "web", 4, &[]);
    lab.berth("h1", &["route", "add", "web", "www.example.test"])
        .assert_success();
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
            "100000",
        ],
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(90),
        "4 web replicas and the client",
        || (ready(&lab, "web", 1) == 4 && ready(&lab, "client", 1) == 1).then_some(()),
    );
    lab.eventually(Duration::from_secs(30), "v1 routed", || {
        (routed_answers(&lab, 3) == BTreeSet::from(["v1".to_owned()])).then_some(())
    });
    let bench_router = lab.install_bench("h1");
    let (client_node, client_pid) = pod_pid(&lab, "client-0");
    let bench_client = lab.install_bench(&client_node);
    let client = (client_node.as_str(), client_pid.as_str(), bench_client);

    // An image trigger, so that the undo below has one to turn off.
    lab.berth(
        "h1",
        &[
            "set",
            "triggers",
            "web",
            "--auto",
            "--from-image",
            "web:latest",
        ],
    )
    .assert_success();

    // 1. A new image, rolled out under load through the router and the link.
    let (routed, linked) = under_load(&lab, bench_router, client, 40, || {
        let set = lab
            .berth("h1", &["set", "image", "web", "local/web:v2"])
            .assert_success();
        assert!(set.contains("revision 2"), "{set}");
        lab.berth(
            "h1",
            &["rollout", "status", "web", "-w", "--timeout", "60s"],
        )
        .assert_success();
    });
    eprintln!("rollout: routed {routed}\nlinked {linked}");
    for load in [&routed, &linked] {
        assert_eq!(load["failed"], 0, "requests failed: {load}");
        assert!(load["sent"].as_u64().unwrap_or_default() >= 3900, "{load}");
        let seen = bodies(load);
        assert!(
            seen.contains("v2"),
            "the new version never answered: {load}"
        );
        assert!(
            seen.is_subset(&BTreeSet::from(["v1".into(), "v2".into()])),
            "{load}"
        );
    }
    assert_eq!(routed_answers(&lab, 10), BTreeSet::from(["v2".to_owned()]));
    let pods = pods_of(&lab, "web");
    assert_eq!(pods.len(), 4, "{pods:?}");
    assert!(
        pods.iter().all(|(_, _, revision, _)| *revision == 2),
        "{pods:?}"
    );

    // 2. History with causes; undo to revision 1, under load again.
    let shown = lab
        .berth("h1", &["rollout", "history", "web"])
        .assert_success();
    eprintln!("{shown}");
    let revisions = history(&lab, "web");
    assert_eq!(revisions.len(), 2, "{shown}");
    assert_eq!(revisions[1]["cause"]["type"], "configChange", "{shown}");
    assert_eq!(revisions[1]["status"]["phase"], "Complete", "{shown}");
    let mut undo_out = String::new();
    let (routed, linked) = under_load(&lab, bench_router, client, 40, || {
        undo_out = lab
            .berth("h1", &["rollout", "undo", "web"])
            .assert_success();
        lab.berth(
            "h1",
            &["rollout", "status", "web", "-w", "--timeout", "60s"],
        )
        .assert_success();
    });
    eprintln!("undo: {undo_out}\nrouted {routed}\nlinked {linked}");
    assert!(
        undo_out.contains("revision 3 (rollback to 1)"),
        "{undo_out}"
    );
    assert!(undo_out.contains("image triggers turned off"), "{undo_out}");
    assert!(undo_out.contains("web:latest -> web"), "{undo_out}");
    for load in [&routed, &linked] {
        assert_eq!(load["failed"], 0, "requests failed: {load}");
    }
    assert_eq!(routed_answers(&lab, 10), BTreeSet::from(["v1".to_owned()]));
    let revisions = history(&lab, "web");
    assert_eq!(revisions[2]["cause"]["type"], "rollback");
    assert_eq!(revisions[2]["cause"]["toRevision"], 1);
    let service = lab
        .berth("h1", &["describe", "web", "-o", "json"])
        .assert_success();
    assert!(service.contains("\"automatic\": false"), "{service}");

    // 8. A change that drops the routed port is refused, naming the route.
    let refused = lab.sh(
        "h1",
        "set -e
         auth=\"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\"
         url=https://h1:7443/v1/services/web
         curl -sf --cacert /var/lib/berth/master/ca.crt -H \"$auth\" $url >/tmp/web.json
         python3 -c 'import json; s = json.load(open(\"/tmp/web.json\")); s[\"template\"][\"containers\"][0][\"ports\"] = []; json.dump(s, open(\"/tmp/web.json\", \"w\"))'
         curl -s -o /dev/stderr -w '%{http_code}' --cacert /var/lib/berth/master/ca.crt -H \"$auth\" \
           -H 'Content-Type: application/json' -X PUT --data @/tmp/web.json $url",
    );
    eprintln!("refused: {} {}", refused.stdout(), refused.stderr());
    assert_eq!(refused.stdout().trim(), "409", "{}", refused.stderr());
    assert!(
        refused
            .stderr()
            .contains("drops port 8080, which route web uses"),
        "{}",
        refused.stderr()
    );
    assert_eq!(history(&lab, "web").len(), 3, "nothing was recorded");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn deployments_that_never_get_ready_roll_back_by_themselves_and_a_failing_hook_aborts() {
    let lab = boot("deploy-fail", 3);
    run_web(
        &lab,
        "flaky",
        2,
        &["--progress-deadline", "20", "--auto-rollback"],
    );
    lab.eventually(Duration::from_secs(90), "2 replicas ready", || {
        (ready(&lab, "flaky", 1) == 2).then_some(())
    });

    // 3. A readiness probe that never passes.
    let set = Instant::now();
    lab.berth("h1", &["set", "probe", "flaky", "--readiness", "tcp:9999"])
        .assert_success();
    let watch = std::thread::scope(|scope| {
        let watch = scope.spawn(|| {
            lab.berth(
                "h1",
                &["rollout", "status", "flaky", "-w", "--timeout", "60s"],
            )
        });
        // The serving pods never drop below replicas - maxUnavailable
        // (2 - 0): those of revision 1, which the automatic rollback adopts
        // in place as revision 3 (same template, no restart), possibly a
        // moment before the watch sees the rollout failed.
        while !watch.is_finished() {
            let pods = pods_of(&lab, "flaky");
            let serving = pods
                .iter()
                .filter(|(_, _, revision, ready)| *revision != 2 && *ready)
                .count();
            assert!(serving >= 2, "only {serving} old pods ready: {pods:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
        watch.join().expect("rollout status")
    });
    let failed_after = set.elapsed();
    let message = watch.assert_failure();
    eprintln!("rollout status after {failed_after:?}: {message}");
    assert!(message.contains("failed"), "{message}");
    assert!(failed_after < Duration::from_secs(25), "{failed_after:?}");
    let revisions = history(&lab, "flaky");
    assert_eq!(revisions[1]["status"]["phase"], "Failed");
    let reason = revisions[1]["status"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("no progress for 20s"), "{reason}");
    assert!(reason.contains("rolled back to revision 1"), "{reason}");
    assert_eq!(revisions[2]["cause"]["type"], "rollback");
    assert_eq!(revisions[2]["cause"]["automatic"], true);
    lab.eventually(Duration::from_secs(30), "revision 3 complete", || {
        (phase(&lab, "flaky", 3) == "Complete").then_some(())
    });
    let pods = pods_of(&lab, "flaky");
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(!lab.events("RolloutFailed").is_empty());
    lab.berth("h1", &["rollout", "status", "flaky"])
        .assert_success();

    // 6. A pre hook that fails, with abort: the old revision serves on
    // (without autoRollback, so that nothing but the hook decides).
    lab.berth(
        "h1",
        &["set", "strategy", "flaky", "--auto-rollback", "false"],
    )
    .assert_success();
    lab.berth(
        "h1",
        &[
            "set",
            "hook",
            "flaky",
            "pre",
            "--image",
            "local/busybox",
            "--policy",
            "abort",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    )
    .assert_success();
    lab.berth("h1", &["set", "image", "flaky", "local/web:v2"])
        .assert_success();
    let message = lab
        .berth(
            "h1",
            &["rollout", "status", "flaky", "-w", "--timeout", "60s"],
        )
        .assert_failure();
    eprintln!("{message}");
    let revisions = history(&lab, "flaky");
    let last = revisions.last().expect("a revision");
    assert_eq!(last["revision"], 4);
    assert_eq!(last["status"]["phase"], "Failed");
    let reason = last["status"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("pre hook job flaky-4-pre failed"),
        "{reason}"
    );
    let pods = pods_of(&lab, "flaky");
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(
        pods.iter().all(|(_, _, r, ready)| *r == 3 && *ready),
        "{pods:?}"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn deployments_recreate_a_stateful_pod_in_place_and_a_canary_waits_for_promotion() {
    let lab = boot("deploy-place", 3);

    // 4. A stateful service with a named volume.
    run_web(&lab, "db", 1, &["--stateful", "-v", "data:/data"]);
    lab.eventually(Duration::from_secs(60), "db ready", || {
        (ready(&lab, "db", 1) == 1).then_some(())
    });
    let (node, _) = pod_pid(&lab, "db-0");
    lab.exec(
        &node,
        &[
            "docker",
            "exec",
            "berth.db-0.db",
            "sh",
            "-c",
            "echo kept > /data/file",
        ],
    )
    .assert_success();
    lab.berth("h1", &["set", "image", "db", "local/web:v2"])
        .assert_success();
    lab.berth("h1", &["rollout", "status", "db", "-w", "--timeout", "60s"])
        .assert_success();
    let pods = pods_of(&lab, "db");
    assert_eq!(pods, [("db-0".to_owned(), node.clone(), 2, true)]);
    let image = lab
        .exec(
            &node,
            &[
                "docker",
                "inspect",
                "-f",
                "{{.Config.Image}}",
                "berth.db-0.db",
            ],
        )
        .assert_success();
    assert_eq!(image.trim(), "local/web:v2");
    let kept = lab
        .exec(
            &node,
            &["docker", "exec", "berth.db-0.db", "cat", "/data/file"],
        )
        .assert_success();
    assert_eq!(kept.trim(), "kept", "the volume's file is still there");

    // 5. A canary: one new pod beside the old ones, until promoted.
    run_web(&lab, "shop", 3, &["--canary", "1"]);
    lab.eventually(Duration::from_secs(60), "shop ready", || {
        (ready(&lab, "shop", 1) == 3).then_some(())
    });
    lab.berth("h1", &["set", "image", "shop", "local/web:v2"])
        .assert_success();
    lab.eventually(Duration::from_secs(60), "the canary ready", || {
        (ready(&lab, "shop", 2) == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(ready(&lab, "shop", 1), 3, "{:?}", pods_of(&lab, "shop"));
    assert_eq!(
        pods_of(&lab, "shop").len(),
        4,
        "{:?}",
        pods_of(&lab, "shop")
    );
    let status = lab
        .berth("h1", &["rollout", "status", "shop"])
        .assert_success();
    assert!(
        status.contains("waiting for berth rollout promote"),
        "{status}"
    );
    lab.berth("h1", &["rollout", "promote", "shop"])
        .assert_success();
    lab.berth(
        "h1",
        &["rollout", "status", "shop", "-w", "--timeout", "90s"],
    )
    .assert_success();
    let pods = pods_of(&lab, "shop");
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(
        pods.iter().all(|(_, _, r, ready)| *r == 2 && *ready),
        "{pods:?}"
    );

    // Start order: api's new pods wait for db2 to have a ready endpoint,
    // placed nowhere (so nothing crash-loops), then start by themselves.
    run_web(&lab, "db2", 0, &[]);
    run_web(&lab, "api", 0, &[]);
    lab.berth(
        "h1",
        &["link", "api", "db2", "--port", "8080", "--wait-ready"],
    )
    .assert_success();
    lab.berth("h1", &["scale", "api", "1"]).assert_success();
    let waiting = lab.eventually(Duration::from_secs(20), "api-0 waiting", || {
        let pod = lab.pod("api-0")?;
        pod["waitingFor"].as_str().map(str::to_owned)
    });
    assert_eq!(
        waiting,
        "waiting for db2: no ready endpoint yet (a --wait-ready link)"
    );
    let ps = lab.berth("h1", &["ps", "api"]).assert_success();
    assert!(ps.contains("waiting for db2"), "{ps}");
    assert!(!lab.events("PodWaiting").is_empty());
    std::thread::sleep(Duration::from_secs(5));
    let pod = lab.pod("api-0").expect("api-0");
    assert!(pod["node"].is_null(), "placed while waiting: {pod}");
    lab.berth("h1", &["scale", "db2", "1"]).assert_success();
    lab.eventually(Duration::from_secs(60), "api-0 ready once db2 is", || {
        (ready(&lab, "api", 1) == 1).then_some(())
    });
    let restarts = lab
        .pod("api-0")
        .and_then(|p| p["status"]["containers"][0]["restarts"].as_u64());
    assert_eq!(restarts, Some(0), "it never crash-looped");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn deployments_follow_an_image_stream_tag_and_its_webhook() {
    let lab = boot("deploy-images", 3);
    lab.berth("h1", &["is", "create", "web"]).assert_success();
    let tagged = lab
        .berth("h1", &["tag", "local/web:v2", "web:v1"])
        .assert_success();
    assert_eq!(tagged, "web:v1 now points at local/web:v2\n");
    run_web(&lab, "api", 2, &[]);
    lab.eventually(Duration::from_secs(60), "api ready", || {
        (ready(&lab, "api", 1) == 2).then_some(())
    });

    // Following the tag: the service takes its image (v2) as a new
    // revision.
    lab.berth("h1", &["set", "triggers", "api", "--from-image", "web:v1"])
        .assert_success();
    lab.eventually(Duration::from_secs(10), "revision 2 from the tag", || {
        let revisions = history(&lab, "api");
        (revisions.len() == 2).then_some(())
    });
    lab.berth(
        "h1",
        &["rollout", "status", "api", "-w", "--timeout", "60s"],
    )
    .assert_success();

    // 2. The tag moves: a rollout starts by itself within 2 s.
    let moved = Instant::now();
    lab.berth("h1", &["tag", "local/web:v1", "web:v1"])
        .assert_success();
    let revision = lab.eventually(Duration::from_secs(5), "an image-change rollout", || {
        history(&lab, "api")
            .into_iter()
            .find(|d| d["revision"] == 3)
    });
    let started = moved.elapsed();
    eprintln!("rollout started {started:?} after the tag moved: {revision}");
    assert!(started < Duration::from_secs(2), "{started:?}");
    assert_eq!(revision["cause"]["type"], "imageChange");
    assert_eq!(revision["cause"]["image"], "web:v1 (local/web:v1)");
    lab.berth(
        "h1",
        &["rollout", "status", "api", "-w", "--timeout", "60s"],
    )
    .assert_success();
    for (pod, node, revision, _) in pods_of(&lab, "api") {
        assert_eq!(revision, 3);
        let image = lab
            .exec(
                &node,
                &[
                    "docker",
                    "inspect",
                    "-f",
                    "{{.Config.Image}}",
                    &format!("berth.{pod}.api"),
                ],
            )
            .assert_success();
        assert_eq!(image.trim(), "local/web:v1", "{pod}");
    }
    let shown = lab.berth("h1", &["is", "describe", "web"]).assert_success();
    assert!(shown.contains("tag v1: local/web:v1"), "{shown}");
    assert!(
        shown.contains("tag      local/web:v2"),
        "the history keeps v2: {shown}"
    );

    // 3. The webhook: the right secret registers an image, a wrong one
    // gets 403 and changes nothing.
    let url = lab
        .berth("h1", &["is", "webhook", "web"])
        .assert_success()
        .trim()
        .to_owned();
    let post = |url: &str| {
        lab.exec(
            "h1",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                "/var/lib/berth/master/ca.crt",
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"tag": "v3", "image": "registry.example/web@sha256:0123456789abcdef"}"#,
                url,
            ],
        )
        .assert_success()
    };
    let (base, _) = url.rsplit_once('/').expect("a secret in the path");
    let before = lab
        .berth("h1", &["is", "describe", "web", "-o", "json"])
        .json();
    assert_eq!(post(&format!("{base}/wrong")), "403");
    let after = lab
        .berth("h1", &["is", "describe", "web", "-o", "json"])
        .json();
    assert_eq!(before, after, "a wrong secret changed the stream");
    assert_eq!(post(&url), "200");
    let stream = lab
        .berth("h1", &["is", "describe", "web", "-o", "json"])
        .json();
    let v3 = &stream["status"]["tags"]["v3"][0];
    assert_eq!(v3["image"], "registry.example/web@sha256:0123456789abcdef");
    assert_eq!(v3["digest"], "sha256:0123456789abcdef");
    assert_eq!(v3["cause"], "webhook");
    assert!(!lab.events("ImageTagged").is_empty());
}
