//! The master against hostile clients on real hosts: a join token cannot
//! take over a registered node (its name or its address), `berth node
//! rejoin` re-registers a node deliberately, and a 2,000-connection
//! slowloris neither slows `berth ps` down nor grows the master, because
//! the header timeout closes every slow connection.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_harness::{Lab, MASTER};
use serde_json::{json, Value};

/// One lab of this file at a time: the slowloris test times `berth ps`
/// to the second, and the other test's boot would eat into that.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The master's CA on h1, for curl.
const MASTER_CA: &str = "/var/lib/berth/master/ca.crt";

/// What `berth node ls` says of each node, without the heartbeat's age:
/// name -> (address, condition, cordoned, labels).
fn node_list(lab: &Lab) -> BTreeMap<String, (String, String, bool, Value)> {
    lab.berth("h1", &["node", "ls", "-o", "json"])
        .json()
        .as_array()
        .expect("node ls -o json is a list")
        .iter()
        .map(|n| {
            (
                n["node"]["name"].as_str().unwrap_or_default().to_owned(),
                (
                    n["node"]["address"].as_str().unwrap_or_default().to_owned(),
                    n["condition"].as_str().unwrap_or_default().to_owned(),
                    n["node"]["unschedulable"].as_bool().unwrap_or(false),
                    n["node"]["labels"].clone(),
                ),
            )
        })
        .collect()
}

/// POSTs `body` to the master's `/v1/join` from h1, as anyone may: the
/// status and the answer.
fn post_join(lab: &Lab, body: &Value) -> (u16, Value) {
    let url = format!("{MASTER}/v1/join");
    let body = body.to_string();
    let out = lab
        .exec(
            "h1",
            &[
                "curl",
                "-sS",
                "--cacert",
                MASTER_CA,
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
                "-w",
                "\n%{http_code}",
                &url,
            ],
        )
        .assert_success();
    let (answer, status) = out
        .trim()
        .rsplit_once('\n')
        .expect("an answer and a status");
    (
        status.parse().expect("an HTTP status"),
        serde_json::from_str(answer).unwrap_or(Value::String(answer.to_owned())),
    )
}

/// The HTTP status of h2 reading its assignments with `credential`.
fn credential_status(lab: &Lab, credential: &str) -> String {
    let url = format!("{MASTER}/v1/nodes/h2/assignments");
    let header = format!("Authorization: Bearer {credential}");
    lab.exec(
        "h1",
        &[
            "curl",
            "-s",
            "--cacert",
            MASTER_CA,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &header,
            &url,
        ],
    )
    .assert_success()
}

fn h2_credential(lab: &Lab) -> String {
    let joined = lab
        .exec("h2", &["cat", "/var/lib/berth/master.json"])
        .json();
    joined["credential"]
        .as_str()
        .expect("a credential")
        .to_owned()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_join_token_cannot_take_over_a_node_and_rejoin_re_registers_it() {
    let _turn = one_lab_at_a_time();
    let lab = Lab::up("sm-join", 2);
    let before = lab.eventually(Duration::from_secs(30), "h1 and h2 Ready", || {
        let nodes = node_list(&lab);
        (nodes.len() == 2 && nodes.values().all(|n| n.1 == "Ready")).then_some(nodes)
    });
    let h2_address = before["h2"].0.clone();
    let credential_before = h2_credential(&lab);

    // The issue's attack, and its variants, with one fresh token.
    let issued = lab.berth("h1", &["node", "token", "-o", "json"]).json();
    let token = issued["token"].as_str().expect("a token").to_owned();
    let capacity = json!({"memoryBytes": 1u64 << 30, "cpuMillis": 1000});
    let attempts = [
        ("h2", "__main__".to_owned(), 400, "node.address"),
        ("h2", "10.254.0.9".to_owned(), 409, "node.name"),
        ("h9", h2_address.clone(), 409, "node.address"),
    ];
    for (name, address, status, field) in attempts {
        let body = json!({"token": token, "node": {"name": name, "address": address, "capacity": capacity}});
        let (got, answer) = post_join(&lab, &body);
        assert_eq!(got, status, "join as {name} at {address}: {answer}");
        assert_eq!(answer["fields"][0]["field"], field, "{answer}");
    }
    // The real agent's way in, with the same token, is refused too.
    let command = issued["command"].as_str().expect("a command");
    let err = lab.sh("h2", command).assert_failure();
    assert!(
        err.contains("409") && err.contains("berth node rejoin h2"),
        "{err}"
    );

    // Past the 3 s grace: h2 still beats with its own credential, and the
    // node list is as it was.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(node_list(&lab), before, "a refused join changed the nodes");
    assert_eq!(h2_credential(&lab), credential_before);
    assert_eq!(credential_status(&lab, &credential_before), "200");
    let refused = lab
        .sh(
            "h2",
            "journalctl -u berth-agent --no-pager | grep -c 'heartbeat refused' || true",
        )
        .assert_success();
    assert_eq!(refused.trim(), "0", "h2's heartbeats were refused");
    // Nothing was half-applied: the token still registers a new node.
    let body = json!({"token": token, "node": {"name": "h9", "address": "10.254.0.9", "capacity": capacity}});
    let (status, answer) = post_join(&lab, &body);
    assert_eq!(status, 201, "the refused joins used the token up: {answer}");

    // `berth node rejoin h2`: h2 joins again with a new credential and
    // keeps its node and its pod.
    lab.berth(
        "h1",
        &[
            "run",
            "keep",
            "--image",
            "local/busybox",
            "--replicas",
            "2",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let on_h2 = lab.eventually(Duration::from_secs(60), "a keep pod running on h2", || {
        lab.berth("h1", &["ps", "-o", "json"])
            .json()
            .as_array()?
            .iter()
            .find(|p| p["node"] == "h2" && p["status"]["phase"] == "Running")
            .and_then(|p| p["spec"]["name"].as_str().map(String::from))
    });
    let command = lab.berth("h1", &["node", "rejoin", "h2"]).assert_success();
    let command = command.trim();
    assert!(
        command.starts_with("berth-agent join https://"),
        "{command}"
    );
    let joined = lab.sh("h2", command).assert_success();
    assert!(joined.contains("as node h2"), "{joined}");
    let credential_after = h2_credential(&lab);
    assert_ne!(credential_after, credential_before);
    assert_eq!(
        credential_status(&lab, &credential_before),
        "401",
        "the replaced credential still works"
    );
    lab.eventually(
        Duration::from_secs(30),
        "h2 Ready on its new credential",
        || {
            (credential_status(&lab, &credential_after) == "200"
                && node_list(&lab).get("h2").is_some_and(|n| n.1 == "Ready"))
            .then_some(())
        },
    );
    let pods = lab.berth("h1", &["ps", "-o", "json"]).json();
    let kept = pods
        .as_array()
        .expect("ps -o json is a list")
        .iter()
        .find(|p| p["spec"]["name"] == on_h2.as_str())
        .unwrap_or_else(|| panic!("pod {on_h2} is gone: {pods:#}"));
    assert_eq!(kept["node"], "h2", "{kept:#}");
    let after = node_list(&lab);
    assert_eq!(after["h2"].0, h2_address, "{after:?}");
    eprintln!("measured: 4 takeover attempts refused; h2 re-registered, pod {on_h2} kept");
}

/// Opens `connections` TLS connections to the master (`rate` a second)
/// that send request headers one byte a second, reopening each one the
/// master closes, for `seconds`; then writes a summary as JSON to stdout.
const SLOWLORIS: &str = r#"
import asyncio, json, ssl, sys, time

host, port, connections, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
header = b"GET /v1/pods HTTP/1.1\r\nHost: h1\r\nX-Slow: " + b"a" * 4000
start = time.monotonic()
stats = {"opened": 0, "failed": 0, "open": 0, "maxOpen": 0, "closedByMaster": [], "openAtEnd": 0}
connecting = asyncio.Semaphore(50)

async def one(index):
    # The first wave opens at `rate` connections a second; reopenings then
    # keep that spread.
    await asyncio.sleep(index / rate)
    while time.monotonic() - start < seconds:
        try:
            async with connecting:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=context), 30)
        except Exception:
            stats["failed"] += 1
            await asyncio.sleep(1)
            continue
        opened = time.monotonic()
        stats["opened"] += 1
        stats["open"] += 1
        stats["maxOpen"] = max(stats["maxOpen"], stats["open"])
        closed = asyncio.ensure_future(reader.read(1))
        sent = 0
        try:
            while time.monotonic() - start < seconds:
                done, _ = await asyncio.wait([closed], timeout=1.0)
                if done:
                    stats["closedByMaster"].append(time.monotonic() - opened)
                    break
                writer.write(header[sent:sent + 1])
                sent += 1
            else:
                stats["openAtEnd"] += 1
        except Exception:
            stats["closedByMaster"].append(time.monotonic() - opened)
        stats["open"] -= 1
        closed.cancel()
        writer.close()

async def main():
    await asyncio.gather(*(one(index) for index in range(connections)))

asyncio.run(main())
lifetimes = sorted(stats.pop("closedByMaster"))
stats["closed"] = len(lifetimes)
if lifetimes:
    stats["lifetimeMin"] = lifetimes[0]
    stats["lifetimeMedian"] = lifetimes[len(lifetimes) // 2]
    stats["lifetimeMax"] = lifetimes[-1]
print(json.dumps(stats))
"#;

/// Samples, once a second for `seconds`, how long `berth ps` takes (ms),
/// the master's RSS (KiB) and its established API connections.
const SAMPLER: &str = r#"
seconds=$1
master=$(systemctl show -p MainPID --value berth-master)
i=0
while [ $i -lt "$seconds" ]; do
  start=$(date +%s%N)
  if berth ps > /dev/null 2>&1; then ok=1; else ok=0; fi
  end=$(date +%s%N)
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$master/status)
  conns=$(ss -Htn state established '( sport = :7443 )' | wc -l)
  echo "$(( (end - start) / 1000000 )) $ok $rss $conns"
  sleep 1
  i=$((i + 1))
done
"#;

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_slowloris_of_2000_connections_is_timed_out_and_berth_ps_stays_fast() {
    const CONNECTIONS: usize = 2000;
    // New connections a second: a slowloris, not a handshake flood.
    const RATE: u32 = 100;
    // The header timeout the test sets. Holding 2,000 connections against
    // it takes 2,000 / HEADER_TIMEOUT_SECS handshakes a second; this keeps
    // that at what a loaded 2-core lab serves besides `berth ps`.
    const HEADER_TIMEOUT_SECS: u64 = 30;
    // Ramp up, then a full timeout, then some.
    const ATTACK_SECS: u32 = 2000 / RATE + HEADER_TIMEOUT_SECS as u32 + 15;
    let _turn = one_lab_at_a_time();
    let lab = Lab::up("sm-slow", 1);
    lab.sh(
        "h1",
        &format!(
            "mkdir -p /etc/berth && printf '[connections]\\nheader-read-timeout-secs = {HEADER_TIMEOUT_SECS}\\n' > /etc/berth/master.toml && systemctl restart berth-master"
        ),
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "berth ps answering", || {
        lab.berth("h1", &["ps"]).success().then_some(())
    });
    let open_files = lab
        .sh(
            "h1",
            "grep 'Max open files' /proc/$(systemctl show -p MainPID --value berth-master)/limits",
        )
        .assert_success();
    assert!(
        open_files.split_whitespace().nth(3) == Some("16384"),
        "the master's open-file limit: {open_files}"
    );
    lab.sh(
        "h1",
        &format!(
            "cat > /run/slowloris.py <<'EOF'\n{SLOWLORIS}EOF\ncat > /run/sampler.sh <<'EOF'\n{SAMPLER}EOF"
        ),
    )
    .assert_success();
    let baseline_rss: u64 = lab
        .sh(
            "h1",
            "awk '/^VmRSS/ {print $2}' /proc/$(systemctl show -p MainPID --value berth-master)/status",
        )
        .assert_success()
        .trim()
        .parse()
        .expect("the master's RSS");

    // The attacker runs as a unit of its own, with room for its sockets.
    lab.exec(
        "h1",
        &[
            "systemd-run",
            "--unit",
            "slowloris",
            "-p",
            "LimitNOFILE=65536",
            "--",
            "sh",
            "-c",
            &format!(
                "/usr/bin/python3 /run/slowloris.py 127.0.0.1 7443 {CONNECTIONS} {RATE} {ATTACK_SECS} > /run/slowloris.json"
            ),
        ],
    )
    .assert_success();
    let samples = lab
        .exec("h1", &["sh", "/run/sampler.sh", &ATTACK_SECS.to_string()])
        .assert_success();
    let samples: Vec<[u64; 4]> = samples
        .lines()
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .map(|f| f.parse().expect("a number"))
                .collect();
            fields.try_into().expect("four fields")
        })
        .collect();
    let summary = lab.eventually(Duration::from_secs(60), "the attacker's summary", || {
        let out = lab.exec("h1", &["cat", "/run/slowloris.json"]);
        serde_json::from_str::<Value>(out.stdout().trim()).ok()
    });
    eprintln!("measured: attacker {summary}");
    eprintln!("measured: baseline master RSS {baseline_rss} KiB; samples (ps ms, ok, rss KiB, connections):");
    for sample in &samples {
        eprintln!("  {sample:?}");
    }

    let worst_ps = samples.iter().map(|s| s[0]).max().unwrap_or(0);
    eprintln!(
        "measured: berth ps slowest {worst_ps} ms; master RSS max {} KiB (baseline {baseline_rss} KiB); established API connections max {}",
        samples.iter().map(|s| s[2]).max().unwrap_or(0),
        samples.iter().map(|s| s[3]).max().unwrap_or(0)
    );
    // The attack really held ~2,000 connections at once.
    let max_open = summary["maxOpen"].as_u64().expect("maxOpen");
    let max_seen = samples.iter().map(|s| s[3]).max().unwrap_or(0);
    assert!(
        max_open >= 1900,
        "the attack never held 1,900 connections: {summary}"
    );
    assert!(
        max_seen >= 1500,
        "the master never saw 1,500 connections: {samples:?}"
    );
    // `berth ps` answered, within 1 s, every time.
    for [ms, ok, _, _] in &samples {
        assert_eq!(*ok, 1, "berth ps failed during the attack: {samples:?}");
        assert!(
            *ms < 1000,
            "berth ps took {ms} ms during the attack: {samples:?}"
        );
    }
    assert!(samples.len() >= (ATTACK_SECS as usize) / 2, "{samples:?}");
    // The master's memory stayed bounded.
    let max_rss = samples.iter().map(|s| s[2]).max().unwrap_or(0);
    assert!(
        max_rss < 160 * 1024,
        "the master grew to {max_rss} KiB (baseline {baseline_rss} KiB)"
    );
    // Every slow connection was closed by the master's header timeout,
    // not before, and not much after.
    let closed = summary["closed"].as_u64().expect("closed");
    assert!(
        closed >= CONNECTIONS as u64,
        "the master closed only {closed} slow connections: {summary}"
    );
    let timeout = HEADER_TIMEOUT_SECS as f64;
    let earliest = summary["lifetimeMin"].as_f64().expect("lifetimeMin");
    let median = summary["lifetimeMedian"].as_f64().expect("lifetimeMedian");
    assert!(
        earliest >= timeout - 2.0,
        "a slow connection was closed after {earliest} s: {summary}"
    );
    assert!(
        (timeout - 1.0..timeout + 5.0).contains(&median),
        "slow connections were not closed by the {timeout} s timeout: {summary}"
    );
    // Once the attack is over, the master holds no connection of it.
    lab.eventually(
        Duration::from_secs(20),
        "the attack's connections gone",
        || {
            let conns = lab
                .sh(
                    "h1",
                    "ss -Htn state established '( sport = :7443 )' | wc -l",
                )
                .assert_success();
            (conns.trim().parse::<u64>().ok()? < 20).then_some(())
        },
    );
}
