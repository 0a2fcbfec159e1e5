//! Links: a service's pods reach another service at 127.0.0.1:PORT inside
//! their own network namespace, wherever its ready pods run; moves and
//! scaling rewire them live; a flushed or deleted `ip berth` table comes
//! back; nothing outside the pod reaches its loopback; the links-only
//! policy blocks the rest; and unlinking and removing leave every host's
//! iptables as they were, with no nftables table of berth's anywhere.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test links -- --ignored --nocapture links_`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_harness::Lab;

/// db's command: an HTTP server on 3306 whose page is its container's
/// hostname, so an answer says which replica served it.
const DB: &str = "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 3306 -h /www";

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

/// The Docker container of a one-container pod.
fn container(pod: &str) -> String {
    let service = pod.rsplit_once('-').map_or(pod, |(s, _)| s);
    format!("berth.{pod}.{service}")
}

/// `docker inspect -f FORMAT` of a pod's container on `node`.
fn inspect(lab: &Lab, node: &str, pod: &str, format: &str) -> String {
    lab.exec(node, &["docker", "inspect", "-f", format, &container(pod)])
        .assert_success()
        .trim()
        .to_owned()
}

/// An HTTP GET of 127.0.0.1:`port` from inside `pod`'s container on
/// `node`: the page, or `None` if nothing answered.
fn ask(lab: &Lab, node: &str, pod: &str, address: &str, port: u64) -> Option<String> {
    let script =
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {port} | tail -n 1");
    let run = lab.exec(
        node,
        &["docker", "exec", &container(pod), "sh", "-c", &script],
    );
    let page = run.stdout().trim().to_owned();
    (run.success() && !page.is_empty()).then_some(page)
}

/// `nft list ruleset` inside a pod's network namespace: what an operator
/// sees of its links.
fn pod_nft(lab: &Lab, node: &str, pod: &str) -> String {
    let pid = inspect(lab, node, pod, "{{.State.Pid}}");
    lab.exec(
        node,
        &["nsenter", "-t", &pid, "-n", "nft", "list", "ruleset"],
    )
    .assert_success()
}

/// Runs `nft ARGS` inside a pod's network namespace.
fn nft_in_pod(lab: &Lab, node: &str, pod: &str, args: &[&str]) {
    let pid = inspect(lab, node, pod, "{{.State.Pid}}");
    let mut all = vec!["nsenter", "-t", &pid, "-n", "nft"];
    all.extend(args);
    lab.exec(node, &all).assert_success();
}

/// Whether berth's table holds web's link to db and its loopback guard.
fn wired(ruleset: &str) -> bool {
    ruleset.contains("dnat ip to ip daddr . tcp dport . numgen random mod 1 map @backends_1")
        && ruleset.contains(": 10.231.0.12 . ")
        && ruleset.contains("ip daddr 127.0.0.0/8 iifname != \"lo\"")
        && ruleset.contains("masquerade")
}

/// `iptables-save` of a host without its timestamp comments.
fn host_iptables(lab: &Lab, node: &str) -> String {
    lab.exec(node, &["iptables-save"])
        .assert_success()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run_db(lab: &Lab, replicas: &str) {
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "--replicas",
            replicas,
            "-p",
            "3306",
            "--",
            "sh",
            "-c",
            DB,
        ],
    )
    .assert_success();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn links_web_reaches_db_wherever_it_runs_without_a_restart() {
    let lab = Lab::up("links-move", 3);
    run_db(&lab, "1");
    place(&lab, "db-0", "h2");
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
    place(&lab, "web-0", "h1");
    let env = lab
        .exec("h1", &["docker", "exec", &container("web-0"), "env"])
        .assert_success();
    assert!(
        env.contains("DB_HOST=127.0.0.1") && env.contains("DB_PORT=3306"),
        "web has no link variables: {env}"
    );

    // 1. From inside web's container, 127.0.0.1:3306 reaches db on h2.
    let db_on_h2 = inspect(&lab, "h2", "db-0", "{{.Config.Hostname}}");
    lab.eventually(Duration::from_secs(15), "web reaching db on h2", || {
        (ask(&lab, "h1", "web-0", "127.0.0.1", 3306)? == db_on_h2).then_some(())
    });
    let web_id = inspect(&lab, "h1", "web-0", "{{.Id}}");
    // A second link on a stable address of its own, added live.
    lab.berth(
        "h1",
        &[
            "link",
            "web",
            "db",
            "--port",
            "3306",
            "--local-port",
            "3307",
            "--address",
            "169.254.10.1",
        ],
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(10),
        "web reaching db at 169.254.10.1",
        || (ask(&lab, "h1", "web-0", "169.254.10.1", 3307)? == db_on_h2).then_some(()),
    );

    // 2. db moves to h3: web reaches it there within 2 s of it running,
    // and web's container is the same one.
    lab.berth("h1", &["move", "db-0", "--to", "h3"])
        .assert_success();
    let started = lab.eventually(Duration::from_secs(30), "db running on h3", || {
        let run = lab.exec(
            "h3",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.Running}}",
                &container("db-0"),
            ],
        );
        (run.success() && run.stdout().trim() == "true").then(Instant::now)
    });
    let db_on_h3 = inspect(&lab, "h3", "db-0", "{{.Config.Hostname}}");
    lab.eventually(Duration::from_secs(10), "web reaching db on h3", || {
        (ask(&lab, "h1", "web-0", "127.0.0.1", 3306)? == db_on_h3).then_some(())
    });
    let rewired = started.elapsed();
    println!("db running on h3 -> web reaches it: {rewired:?}");
    assert!(
        rewired <= Duration::from_secs(2),
        "web reached the moved db only after {rewired:?}"
    );
    assert_eq!(
        inspect(&lab, "h1", "web-0", "{{.Id}}"),
        web_id,
        "web's container was replaced"
    );
    assert_eq!(inspect(&lab, "h1", "web-0", "{{.RestartCount}}"), "0");
    let events = lab.eventually(Duration::from_secs(10), "a LinkRewired event", || {
        let events = lab
            .berth("h1", &["events", "--type", "LinkRewired", "-o", "json"])
            .json();
        let events = events.as_array()?.clone();
        events
            .iter()
            .any(|e| {
                e["object"] == "service/web"
                    && e["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("now reaches 10.231.0.13:"))
            })
            .then_some(events)
    });
    println!("{events:?}");

    // 3. With two db replicas, web's connections reach both.
    lab.berth("h1", &["scale", "db", "2"]).assert_success();
    let db_1 = lab.eventually(Duration::from_secs(30), "db-1 running", || {
        let node = running_on(&lab, "db-1")?;
        Some(inspect(&lab, &node, "db-1", "{{.Config.Hostname}}"))
    });
    let want: BTreeSet<String> = [db_on_h3.clone(), db_1].into();
    lab.eventually(
        Duration::from_secs(20),
        "web reaching both db replicas",
        || {
            let seen: BTreeSet<String> = (0..16)
                .filter_map(|_| ask(&lab, "h1", "web-0", "127.0.0.1", 3306))
                .collect();
            (seen == want).then_some(())
        },
    );
    assert_eq!(inspect(&lab, "h1", "web-0", "{{.Id}}"), web_id);

    // web itself restarts (a new network namespace): its link is wired
    // into the new one at once, not at the next resync.
    let old_pid = inspect(&lab, "h1", "web-0", "{{.State.Pid}}");
    lab.exec(
        "h1",
        &["systemctl", "restart", r"berth-web\x2d0-web.service"],
    )
    .assert_success();
    let restarted = lab.eventually(Duration::from_secs(20), "web running again", || {
        let run = lab.exec(
            "h1",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.Pid}}",
                &container("web-0"),
            ],
        );
        let out = run.stdout();
        (run.success() && out.starts_with("true ") && out.trim() != format!("true {old_pid}"))
            .then(Instant::now)
    });
    lab.eventually(
        Duration::from_secs(10),
        "the restarted web reaching db",
        || ask(&lab, "h1", "web-0", "127.0.0.1", 3306),
    );
    let rewired = restarted.elapsed();
    println!("web restarted -> reaches db again: {rewired:?}");
    assert!(
        rewired <= Duration::from_secs(3),
        "a restarted web was rewired only after {rewired:?}"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn links_resync_isolation_egress_policy_and_cleanup() {
    let lab = Lab::up("links-rules", 3);
    let hosts = ["h1", "h2", "h3"];
    let before: Vec<String> = hosts.iter().map(|h| host_iptables(&lab, h)).collect();

    run_db(&lab, "1");
    place(&lab, "db-0", "h2");
    lab.berth(
        "h1",
        &[
            "run",
            "other",
            "--image",
            "local/busybox",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            "mkdir -p /www; echo other > /www/index.html; exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
    place(&lab, "other-0", "h3");
    // web serves "secret" on its loopback only, and "open" on every address.
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
            "sh",
            "-c",
            "mkdir -p /lo /all; echo secret > /lo/index.html; echo open > /all/index.html; \
             httpd -p 127.0.0.1:9000 -h /lo; exec httpd -f -p 8080 -h /all",
        ],
    )
    .assert_success();
    place(&lab, "web-0", "h1");
    lab.berth(
        "h1",
        &[
            "run",
            "guarded",
            "--image",
            "local/busybox",
            "--egress",
            "links-only",
            "--link",
            "db:3306",
            "--",
            "sleep",
            "1d",
        ],
    )
    .assert_success();
    place(&lab, "guarded-0", "h1");
    let db_name = inspect(&lab, "h2", "db-0", "{{.Config.Hostname}}");
    let db_port = lab.host_port("db-0").expect("db's host port");
    let other_port = lab.host_port("other-0").expect("other's host port");
    lab.eventually(Duration::from_secs(15), "web reaching db", || {
        (ask(&lab, "h1", "web-0", "127.0.0.1", 3306)? == db_name).then_some(())
    });

    // 5. Someone flushes berth's table in web's namespace (every rule)
    // and its map of links (every link): they come back within the resync
    // interval (10 s). So does the whole table, deleted.
    assert!(wired(&pod_nft(&lab, "h1", "web-0")));
    nft_in_pod(&lab, "h1", "web-0", &["flush", "table", "ip", "berth"]);
    nft_in_pod(
        &lab,
        "h1",
        "web-0",
        &["flush", "map", "ip", "berth", "backends_1"],
    );
    let flushed = Instant::now();
    let ruleset = pod_nft(&lab, "h1", "web-0");
    assert!(
        !ruleset.contains("dnat") && !ruleset.contains(": 10.231.0.12 . "),
        "{ruleset}"
    );
    lab.eventually(Duration::from_secs(12), "the flushed rules back", || {
        wired(&pod_nft(&lab, "h1", "web-0")).then_some(())
    });
    println!("flushed rules back after {:?}", flushed.elapsed());
    assert_eq!(
        ask(&lab, "h1", "web-0", "127.0.0.1", 3306),
        Some(db_name.clone())
    );
    nft_in_pod(&lab, "h1", "web-0", &["delete", "table", "ip", "berth"]);
    let deleted = Instant::now();
    assert!(!pod_nft(&lab, "h1", "web-0").contains("table ip berth"));
    lab.eventually(Duration::from_secs(12), "the deleted table back", || {
        wired(&pod_nft(&lab, "h1", "web-0")).then_some(())
    });
    println!("deleted table back after {:?}", deleted.elapsed());
    assert_eq!(
        ask(&lab, "h1", "web-0", "127.0.0.1", 3306),
        Some(db_name.clone())
    );

    // 6. Another namespace on the same host, on the same bridge, that
    // routes 127.0.0.1 to web (what route_localnet would let through)
    // reaches web's public port but not its loopback.
    let web_ip = inspect(&lab, "h1", "web-0", "{{.NetworkSettings.IPAddress}}");
    lab.sh(
        "h1",
        &format!(
            "set -e
             ip netns add probe
             ip link add probe-h type veth peer name probe-c
             ip link set probe-c netns probe
             ip link set probe-h master docker0 up
             ip netns exec probe ip addr add 172.17.0.250/16 dev probe-c
             ip netns exec probe ip link set probe-c up
             ip netns exec probe sysctl -qw net.ipv4.conf.all.route_localnet=1
             ip netns exec probe ip route add 127.0.0.1/32 via {web_ip} dev probe-c"
        ),
    )
    .assert_success();
    let probe = |url: &str| {
        lab.exec(
            "h1",
            &[
                "ip", "netns", "exec", "probe", "curl", "-sS", "-m", "2", url,
            ],
        )
    };
    assert_eq!(
        probe(&format!("http://{web_ip}:8080/"))
            .assert_success()
            .trim(),
        "open"
    );
    let secret = probe("http://127.0.0.1:9000/");
    assert!(
        !secret.success(),
        "another namespace reached web's loopback: {}",
        secret.stdout()
    );
    let link = probe(&format!("http://{web_ip}:3306/"));
    assert!(!link.success(), "another namespace used web's link");
    lab.sh(
        "h1",
        "ip netns del probe; ip link del probe-h 2>/dev/null; true",
    )
    .assert_success();

    // 7. The links-only pod reaches db through its link, and nothing
    // else: not other, not db directly. web, without the policy, can.
    assert_eq!(
        ask(&lab, "h1", "guarded-0", "127.0.0.1", 3306),
        Some(db_name.clone())
    );
    assert_eq!(
        ask(&lab, "h1", "web-0", "10.231.0.13", other_port).as_deref(),
        Some("other")
    );
    assert_eq!(
        ask(&lab, "h1", "guarded-0", "10.231.0.13", other_port),
        None
    );
    assert_eq!(ask(&lab, "h1", "guarded-0", "10.231.0.12", db_port), None);

    // 4. Unlinked, web's namespace holds no berth table and no
    // route_localnet; removed, every host's iptables are as before, and no
    // host has a berth table of its own.
    lab.berth("h1", &["unlink", "web", "db"]).assert_success();
    lab.eventually(Duration::from_secs(15), "web's table gone", || {
        (!pod_nft(&lab, "h1", "web-0").contains("table ip berth")).then_some(())
    });
    let pid = inspect(&lab, "h1", "web-0", "{{.State.Pid}}");
    let localnet = lab
        .exec(
            "h1",
            &[
                "nsenter",
                "-t",
                &pid,
                "-n",
                "sysctl",
                "-n",
                "net.ipv4.conf.all.route_localnet",
            ],
        )
        .assert_success();
    assert_eq!(localnet.trim(), "0");
    assert_eq!(ask(&lab, "h1", "web-0", "127.0.0.1", 3306), None);
    lab.berth("h1", &["unlink", "guarded", "db"])
        .assert_success();
    for service in ["web", "guarded", "db", "other"] {
        lab.berth("h1", &["rm", service]).assert_success();
    }
    for (host, before) in hosts.iter().zip(&before) {
        lab.eventually(
            Duration::from_secs(30),
            &format!("iptables-save on {host} as before"),
            || (host_iptables(&lab, host) == *before).then_some(()),
        );
        let tables = lab.exec(host, &["nft", "list", "tables"]).assert_success();
        assert!(!tables.contains("berth"), "{host}: {tables}");
    }
}
