//! berth-router on lab hosts: routes served by real HAProxy to the ready
//! replicas of a service wherever they run, kept in step through HAProxy's
//! runtime API and reloads without failing a request; TLS edge with SNI
//! across certificates, passthrough, long-lived connections across route
//! changes, and bad routes refused while the others keep serving.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test router -- --ignored --nocapture router_`.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_harness::{Lab, Run};

/// h1's address: the master and the router run there.
const ROUTER: &str = "10.231.0.11";

fn berth(lab: &Lab, args: &[&str]) -> Run {
    let mut argv = vec!["berth"];
    argv.extend(args);
    lab.exec("h1", &argv)
}

/// Boots a lab whose h1 runs the master and a router and takes no pods.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    berth(&lab, &["node", "cordon", "h1"]).assert_success();
    start_router(&lab, "h1");
    lab
}

/// Starts berth-router on `host` the way an operator would, and waits
/// until its HAProxy runs.
fn start_router(lab: &Lab, host: &str) {
    lab.exec(host, &["systemctl", "enable", "--now", "berth-router"])
        .assert_success();
    lab.eventually(
        Duration::from_secs(30),
        "berth-router-haproxy active",
        || {
            lab.exec(host, &["systemctl", "is-active", "berth-router-haproxy"])
                .success()
                .then_some(())
        },
    );
}

/// `berth run web` with `replicas` busybox httpd replicas, each answering
/// with its own container's hostname.
fn run_web(lab: &Lab, replicas: u32) {
    berth(
        lab,
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            &replicas.to_string(),
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
}

/// `curl` from `from` to the router on h1 with `Host: host`: the body, if
/// the answer is a 200.
fn get(lab: &Lab, from: &str, router: &str, host: &str, path: &str) -> Option<String> {
    let run = lab.exec(
        from,
        &[
            "curl",
            "-sf",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{router}{path}"),
        ],
    );
    run.success().then(|| run.stdout().trim().to_owned())
}

/// The distinct bodies of `n` requests.
fn answers(lab: &Lab, from: &str, router: &str, host: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| get(lab, from, router, host, "/"))
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn router_serves_a_route_from_both_replicas_on_two_routers() {
    let lab = boot("router-basic", 3);
    run_web(&lab, 2);
    berth(&lab, &["route", "add", "web", "www.example.test"]).assert_success();
    // Several routers at once: h2 runs one too, following the same master.
    start_router(&lab, "h2");

    for router in [ROUTER, "10.231.0.12"] {
        let bodies = lab.eventually(
            Duration::from_secs(60),
            "both replicas answering through the router",
            || {
                let bodies = answers(&lab, "h3", router, "www.example.test", 10);
                (bodies.len() == 2).then_some(bodies)
            },
        );
        eprintln!("router {router}: answered by {bodies:?}");
    }
    // An unknown name is not routed anywhere.
    assert_eq!(get(&lab, "h3", ROUTER, "nobody.example.test", "/"), None);
    let ls = berth(&lab, &["route", "ls"]).assert_success();
    assert!(ls.contains("www.example.test"), "{ls}");
}
