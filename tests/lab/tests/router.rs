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

use berth_harness::{Lab, Run, SERVE_HOSTNAME};

/// h1's address: the master and the router run there.
const ROUTER: &str = "10.231.0.11";

/// Boots a lab whose h1 runs the master and a router and takes no pods.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.start_router("h1");
    lab
}

/// `berth run web` with `replicas` busybox httpd replicas, each answering
/// with its own container's hostname.
fn run_web(lab: &Lab, replicas: u32) {
    lab.berth(
        "h1",
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
            SERVE_HOSTNAME,
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
    lab.berth("h1", &["route", "add", "web", "www.example.test"])
        .assert_success();
    // Several routers at once: h2 runs one too, following the same master.
    lab.start_router("h2");

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
    let ls = lab.berth("h1", &["route", "ls"]).assert_success();
    assert!(ls.contains("www.example.test"), "{ls}");
}

/// The JSON summary of a `berth-bench load` run.
fn load_summary(run: &Run) -> serde_json::Value {
    let out = run.assert_success();
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("load summary {last:?}: {e}"))
}

/// How many ready endpoints `web` has, as the master reports them.
fn ready_endpoints(lab: &Lab) -> usize {
    let out = lab.sh(
        "h1",
        "curl -sf --cacert /var/lib/berth/master/ca.crt \
         -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" \
         'https://h1:7443/v1/endpoints?service=web'",
    );
    let view: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_default();
    view["services"][0]["endpoints"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["ready"] == true).count())
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn router_fails_no_request_under_load_while_scaling_losing_a_host_and_changing_the_route() {
    let lab = boot("router-load", 3);
    run_web(&lab, 2);
    lab.berth("h1", &["route", "add", "web", "www.example.test"])
        .assert_success();
    lab.eventually(Duration::from_secs(60), "both replicas routed", || {
        (answers(&lab, "h2", ROUTER, "www.example.test", 10).len() == 2).then_some(())
    });

    let bench = lab.install_bench("h2");
    let seconds = 45;
    let rate = 200;
    let summary = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            lab.exec(
                "h2",
                &[
                    bench,
                    "load",
                    "--target",
                    &format!("{ROUTER}:80"),
                    "--host",
                    "www.example.test",
                    "--rate",
                    &rate.to_string(),
                    "--seconds",
                    &seconds.to_string(),
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        lab.berth("h1", &["scale", "web", "4"]).assert_success();
        lab.eventually(Duration::from_secs(30), "4 ready endpoints", || {
            (ready_endpoints(&lab) == 4).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        // h3 runs two of the replicas; the load comes from h2.
        lab.lab(&["partition", "h3"]).assert_success();
        lab.eventually(Duration::from_secs(20), "h3's replicas replaced", || {
            (ready_endpoints(&lab) == 4).then_some(())
        });
        // A route change HAProxy needs a reload for (a new timeout).
        lab.berth(
            "h1",
            &[
                "route",
                "add",
                "web",
                "www.example.test",
                "--websocket",
                "--replace",
            ],
        )
        .assert_success();
        load.join().expect("load thread")
    });
    let summary = load_summary(&summary);
    eprintln!("load: {summary}");
    assert_eq!(summary["failed"], 0, "requests failed: {summary}");
    assert_eq!(summary["sent"], rate * seconds);
    assert!(
        summary["ratePerSec"].as_f64().unwrap_or_default() >= 195.0,
        "the load fell below 200 req/s: {summary}"
    );
    let bodies = summary["bodies"].as_object().map_or(0, |b| b.len());
    assert!(bodies >= 4, "not every replica answered: {summary}");
    // The change went through a reload, not only the runtime API.
    let journal = lab
        .exec(
            "h1",
            &[
                "journalctl",
                "-u",
                "berth-router",
                "-o",
                "cat",
                "--no-pager",
            ],
        )
        .assert_success();
    assert!(
        journal.matches("haproxy reloaded").count() >= 2,
        "{journal}"
    );
}

/// Makes a self-signed certificate for `host` in /run/certs on h1.
fn certificate(lab: &Lab, host: &str) {
    lab.sh(
        "h1",
        &format!(
            "mkdir -p /run/certs && cd /run/certs && openssl req -x509 -newkey ec \
             -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN={host} \
             -addext subjectAltName=DNS:{host} -keyout {host}.key -out {host}.crt 2>/dev/null"
        ),
    )
    .assert_success();
}

/// Imports `local/openssl` on `host`: the machine's openssl binary and its
/// libraries (and a static busybox as `/bin/sh`), so a container can make
/// a certificate and run a TLS server.
fn import_openssl_image(lab: &Lab, host: &str) {
    lab.sh(
        host,
        "set -e; rm -rf /tmp/img; mkdir -p /tmp/img/etc/ssl; cd /tmp/img
         for f in /usr/bin/openssl $(ldd /usr/bin/openssl | grep -o '/[^ ]*'); do
           mkdir -p .$(dirname $f); cp -L $f .$f
         done
         cp -L /etc/ssl/openssl.cnf etc/ssl/
         mkdir -p bin && cp -L /bin/busybox bin/sh
         tar -C /tmp/img -c . | docker import - local/openssl >/dev/null",
    )
    .assert_success();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn router_serves_two_edge_certificates_by_sni_and_passes_tls_through_to_a_container() {
    let lab = boot("router-tls", 2);
    run_web(&lab, 1);
    certificate(&lab, "a.example.test");
    certificate(&lab, "b.example.test");
    for name in ["a", "b"] {
        let host = format!("{name}.example.test");
        lab.berth(
            "h1",
            &[
                "route",
                "add",
                "web",
                &host,
                "--name",
                name,
                "--tls",
                "edge",
                "--cert",
                &format!("/run/certs/{host}.crt"),
                "--key",
                &format!("/run/certs/{host}.key"),
            ],
        )
        .assert_success();
    }
    // The TLS server: openssl s_server in a container, with its own
    // certificate; the router only reads the SNI name.
    import_openssl_image(&lab, "h2");
    lab.berth(
        "h1",
        &[
            "run",
            "tls",
            "--image",
            "local/openssl",
            "-p",
            "8443",
            "--",
            "/bin/sh",
            "-c",
            "OPENSSL_CONF=/etc/ssl/openssl.cnf /usr/bin/openssl req -x509 -newkey ec \
             -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=inside.example.test \
             -keyout /key.pem -out /cert.pem && exec /usr/bin/openssl s_server -accept 8443 \
             -www -cert /cert.pem -key /key.pem",
        ],
    )
    .assert_success();
    lab.berth(
        "h1",
        &[
            "route",
            "add",
            "tls",
            "pt.example.test",
            "--name",
            "pt",
            "--tls",
            "passthrough",
        ],
    )
    .assert_success();

    // Each name gets its own certificate on the same port, verified
    // against that certificate alone.
    for host in ["a.example.test", "b.example.test"] {
        let body = lab.eventually(Duration::from_secs(60), "edge route serving", || {
            // From h1, where the certificates were made.
            let run = lab.exec(
                "h1",
                &[
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    "--cacert",
                    &format!("/run/certs/{host}.crt"),
                    "--resolve",
                    &format!("{host}:443:{ROUTER}"),
                    &format!("https://{host}/"),
                ],
            );
            run.success().then(|| run.stdout())
        });
        assert!(!body.trim().is_empty(), "{host}: empty answer");
    }
    // The certificates sit in 0600 files.
    let modes = lab
        .sh("h1", "stat -c '%a %n' /var/lib/berth/router/certs/*.pem")
        .assert_success();
    assert_eq!(
        modes.lines().filter(|l| l.starts_with("600 ")).count(),
        2,
        "{modes}"
    );

    // Passthrough: the TLS session ends in the container, with its own
    // certificate.
    let answer = lab.eventually(Duration::from_secs(90), "passthrough to s_server", || {
        let run = lab.sh(
            "h2",
            &format!(
                "echo | timeout 5 openssl s_client -connect {ROUTER}:443 \
                 -servername pt.example.test 2>/dev/null | grep -m1 'subject='"
            ),
        );
        let line = run.stdout();
        line.contains("inside.example.test").then_some(line)
    });
    eprintln!("passthrough certificate: {answer}");
}

/// How often the router on h1 has reloaded HAProxy.
fn reloads(lab: &Lab) -> usize {
    lab.exec(
        "h1",
        &[
            "journalctl",
            "-u",
            "berth-router",
            "-o",
            "cat",
            "--no-pager",
        ],
    )
    .assert_success()
    .matches("haproxy reloaded")
    .count()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn router_keeps_a_long_lived_connection_open_across_an_unrelated_route_change() {
    let lab = boot("router-longlived", 2);
    run_web(&lab, 1);
    // A replica that answers slowly: one line a second for 12 seconds.
    lab.berth(
        "h1",
        &[
            "run",
            "stream",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            "mkdir -p /www/cgi-bin; printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n\
             for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo tick $i; sleep 1; done\\n' \
             > /www/cgi-bin/tick; chmod +x /www/cgi-bin/tick; exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
    lab.berth(
        "h1",
        &[
            "route",
            "add",
            "stream",
            "stream.example.test",
            "--websocket",
        ],
    )
    .assert_success();
    let stream = || {
        lab.exec(
            "h2",
            &[
                "curl",
                "-sfN",
                "--max-time",
                "30",
                "-H",
                "Host: stream.example.test",
                &format!("http://{ROUTER}/cgi-bin/tick"),
            ],
        )
    };
    lab.eventually(Duration::from_secs(90), "the stream route serving", || {
        let run = stream();
        (run.success() && run.stdout().contains("tick 12")).then_some(())
    });

    let before = reloads(&lab);
    std::thread::scope(|scope| {
        let stream = scope.spawn(stream);
        std::thread::sleep(Duration::from_secs(2));
        lab.berth(
            "h1",
            &[
                "route",
                "add",
                "web",
                "other.example.test",
                "--name",
                "other",
            ],
        )
        .assert_success();
        lab.eventually(
            Duration::from_secs(8),
            "HAProxy reloaded for the new route",
            || (reloads(&lab) > before).then_some(()),
        );
        assert!(
            !stream.is_finished(),
            "the connection must still be open when HAProxy reloads"
        );
        let run = stream.join().expect("stream thread");
        let body = run.assert_success();
        assert!(
            body.contains("tick 1\n") && body.contains("tick 12"),
            "{body}"
        );
    });
    // The new route serves too.
    assert!(get(&lab, "h2", ROUTER, "other.example.test", "/").is_some());
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn router_refuses_bad_routes_with_clear_errors_and_keeps_serving_the_others() {
    let lab = boot("router-refuse", 2);
    run_web(&lab, 1);
    lab.berth("h1", &["route", "add", "web", "www.example.test"])
        .assert_success();
    lab.eventually(Duration::from_secs(60), "the route serving", || {
        get(&lab, "h2", ROUTER, "www.example.test", "/")
    });
    certificate(&lab, "a.example.test");
    certificate(&lab, "b.example.test");

    let refused = |args: &[&str], field: &str, words: &str| {
        let mut all = vec!["route", "add", "web"];
        all.extend(args);
        let error = lab.berth("h1", &all).assert_failure();
        assert!(
            error.contains(field) && error.contains(words),
            "{args:?}: expected {field}: {words}, got: {error}"
        );
    };
    refused(
        &["bad\nhost.example.test", "--name", "bad"],
        "host",
        "DNS subdomain",
    );
    refused(
        &["bad\"host.example.test", "--name", "bad"],
        "host",
        "DNS subdomain",
    );
    refused(
        &["x.example.test", "--name", "bad", "--path", "/a b"],
        "path",
        "spaces",
    );
    refused(
        &["x.example.test", "--name", "bad", "--path", "/a#b"],
        "path",
        "'#'",
    );
    refused(
        &[
            "a.example.test",
            "--name",
            "bad",
            "--tls",
            "edge",
            "--cert",
            "/run/certs/a.example.test.crt",
            "--key",
            "/run/certs/b.example.test.key",
        ],
        "tls.key",
        "does not match the certificate",
    );
    // The master refuses them itself, whatever the client checked.
    let status = lab.sh(
        "h1",
        "curl -s -o /dev/null -w '%{http_code}' --cacert /var/lib/berth/master/ca.crt \
         -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" \
         -d '{\"name\":\"bad\",\"service\":\"web\",\"host\":\"a\\nb.example.test\"}' \
         https://h1:7443/v1/routes",
    );
    assert_eq!(status.stdout(), "400");

    // Nothing of them was stored, and the route already there serves on.
    let ls = lab.berth("h1", &["route", "ls"]).assert_success();
    assert_eq!(ls.lines().count(), 2, "{ls}");
    for _ in 0..5 {
        assert!(get(&lab, "h2", ROUTER, "www.example.test", "/").is_some());
    }

    // A route only HAProxy can judge: its key matches, but the
    // certificate is signed with SHA-1, which HAProxy's OpenSSL refuses.
    // The router skips it with an event and applies the routes after it.
    lab.sh(
        "h1",
        "cd /run/certs && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=weak-ca \
         -keyout ca.key -out ca.crt 2>/dev/null && openssl req -newkey rsa:2048 -nodes \
         -subj /CN=weak.example.test -keyout weak.key -out weak.csr 2>/dev/null && \
         echo subjectAltName=DNS:weak.example.test > weak.ext && \
         openssl x509 -req -sha1 -in weak.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
         -extfile weak.ext -days 2 -out weak.crt 2>/dev/null",
    )
    .assert_success();
    lab.berth(
        "h1",
        &[
            "route",
            "add",
            "web",
            "weak.example.test",
            "--name",
            "weak",
            "--tls",
            "edge",
            "--cert",
            "/run/certs/weak.crt",
            "--key",
            "/run/certs/weak.key",
        ],
    )
    .assert_success();
    let event = lab.eventually(Duration::from_secs(30), "a RouteRejected event", || {
        let run = lab.berth("h1", &["events", "--type", "RouteRejected"]);
        let out = run.stdout();
        out.contains("route/weak").then_some(out)
    });
    eprintln!("{event}");
    lab.berth(
        "h1",
        &[
            "route",
            "add",
            "web",
            "later.example.test",
            "--name",
            "later",
        ],
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "the route added after it", || {
        get(&lab, "h2", ROUTER, "later.example.test", "/")
    });
    assert!(get(&lab, "h2", ROUTER, "www.example.test", "/").is_some());
}
