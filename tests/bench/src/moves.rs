//! `move-throughput`: a stateful pod's named volume moved with its data
//! (`berth move`, agent to agent over TLS, SHA-256 on both ends), against
//! plain `tar | nc` of the same directory between the same two lab hosts,
//! in the same run, alternating direction each round (`tar -c` into
//! bash's `/dev/tcp` on the sender, `nc -l | tar -x` on the receiver). The move's rate is
//! the source agent's (the volume's tar stream over the copy's time, as
//! its `MoveCopied` event says); the baseline's is the same bytes over
//! the time from starting `tar | nc` to the receiving `tar -x` done.
//! After every move the data's checksum on the new node is checked.

use std::time::{Duration, Instant};

use berth_harness::Lab;

use crate::quantile;

const CONTAINER: &str = "berth.db-0.db";
const PORT: &str = "7600";

fn address(host: &str) -> &'static str {
    match host {
        "h2" => "10.231.0.12",
        _ => "10.231.0.13",
    }
}

fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn running_on(lab: &Lab, host: &str) -> bool {
    let out = lab.exec(
        host,
        &[
            "docker",
            "ps",
            "-q",
            "--filter",
            &format!("name={CONTAINER}"),
        ],
    );
    out.success() && !out.stdout().trim().is_empty()
}

fn checksum(lab: &Lab, host: &str) -> String {
    lab.exec(
        host,
        &["docker", "exec", CONTAINER, "sha256sum", "/data/blob"],
    )
    .assert_success()
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_owned()
}

/// The volume's directory on `host`.
fn mountpoint(lab: &Lab, host: &str) -> String {
    lab.exec(
        host,
        &[
            "docker",
            "volume",
            "inspect",
            "-f",
            "{{.Mountpoint}}",
            "berth.db-0.data",
        ],
    )
    .assert_success()
    .trim()
    .to_owned()
}

/// `tar | nc` of db-0's volume from `from` to `to`: seconds from the
/// sender's start to the receiving `tar -x` being done, both stamped in
/// the hosts themselves (they share the machine's clock), so that no
/// command's start-up or polling counts; berth's rate is its own agents'
/// measure of the same span.
fn baseline(lab: &Lab, from: &str, to: &str) -> f64 {
    let dir = mountpoint(lab, from);
    lab.exec(to, &["rm", "-rf", "/var/lib/docker/bench-recv"]);
    lab.exec(to, &["mkdir", "-p", "/var/lib/docker/bench-recv"])
        .assert_success();
    lab.exec(
        to,
        &[
            "systemd-run",
            "--unit=bench-recv",
            "sh",
            "-c",
            &format!(
                "busybox nc -l -p {PORT} | tar -x -C /var/lib/docker/bench-recv && \
                 date +%s%N > /var/lib/docker/bench-recv.done"
            ),
        ],
    )
    .assert_success();
    wait("the receiver listening", Duration::from_secs(10), || {
        let out = lab.exec(to, &["sh", "-c", &format!("ss -ltn | grep -q ':{PORT} '")]);
        out.success().then_some(())
    });
    let sent = lab
        .exec(
            from,
            &[
                "bash",
                "-c",
                // bash's /dev/tcp sends: busybox's nc closes the connection
                // early once its stdin ends.
                &format!(
                    "date +%s%N; tar -C {dir} -cf - . > /dev/tcp/{}/{PORT}",
                    address(to)
                ),
            ],
        )
        .assert_success();
    wait("the receiver done", Duration::from_secs(300), || {
        (!lab.is_active(to, "bench-recv")).then_some(())
    });
    let nanos = |text: &str| {
        text.trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{e}: {text:?}"))
    };
    let done = lab
        .exec(to, &["cat", "/var/lib/docker/bench-recv.done"])
        .assert_success();
    let secs = (nanos(&done) - nanos(&sent)) as f64 / 1e9;
    let copied = lab
        .exec(to, &["sha256sum", "/var/lib/docker/bench-recv/blob"])
        .assert_success();
    assert_eq!(
        copied.split_whitespace().next().unwrap_or_default(),
        checksum(lab, from),
        "tar | nc copied the blob intact"
    );
    lab.exec(
        to,
        &[
            "rm",
            "-rf",
            "/var/lib/docker/bench-recv",
            "/var/lib/docker/bench-recv.done",
        ],
    );
    lab.exec(to, &["systemctl", "reset-failed", "bench-recv"]);
    secs
}

/// `berth move` of db-0 to `to`: (bytes, bytes per second of the copy,
/// seconds from the command to the pod running there).
fn berth_move(lab: &Lab, to: &str, seen: usize) -> (u64, f64, f64) {
    let started = Instant::now();
    lab.berth("h1", &["move", "db-0", "--to", to])
        .assert_success();
    let event = wait("MoveCopied", Duration::from_secs(300), || {
        let events = lab.berth("h1", &["events", "-o", "json"]).json();
        events
            .as_array()?
            .iter()
            .filter(|e| e["kind"] == "MoveCopied")
            .nth(seen)
            .cloned()
    });
    wait("the moved pod running", Duration::from_secs(120), || {
        running_on(lab, to).then_some(())
    });
    let total = started.elapsed().as_secs_f64();
    wait("the move done", Duration::from_secs(60), || {
        let pod = lab.pod("db-0")?;
        (pod["moving"].is_null() && pod["node"] == to).then_some(())
    });
    // "N bytes copied from h2 at X MB/s, sha256:... verified ..."
    let reason = event["reason"].as_str().unwrap_or_default().to_owned();
    let words: Vec<&str> = reason.split_whitespace().collect();
    let bytes: u64 = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
    let rate = words
        .iter()
        .position(|w| *w == "at")
        .and_then(|i| words.get(i + 1))
        .and_then(|w| w.parse::<f64>().ok())
        .map(|mb| mb * 1e6)
        .unwrap_or(0.0);
    assert!(
        bytes > 0 && rate > 0.0,
        "cannot read the copy's rate: {reason}"
    );
    (bytes, rate, total)
}

/// `berth-bench move-throughput`.
pub fn throughput(megabytes: u32, rounds: usize) -> anyhow::Result<()> {
    let lab = Lab::up("mv-bench", 3);
    for host in ["h1", "h3"] {
        lab.berth("h1", &["node", "cordon", host]).assert_success();
    }
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "-v",
            "data:/data",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1; done",
        ],
    )
    .assert_success();
    wait("db-0 on h2", Duration::from_secs(90), || {
        running_on(&lab, "h2").then_some(())
    });
    lab.berth("h1", &["node", "uncordon", "h3"])
        .assert_success();
    let script = format!(
        "head -c {} /dev/urandom > /data/blob && sync && sha256sum /data/blob",
        u64::from(megabytes) * 1024 * 1024
    );
    let written = lab
        .exec("h2", &["docker", "exec", CONTAINER, "sh", "-c", &script])
        .assert_success()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();

    let (mut moved, mut plain, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut on = "h2";
    for round in 0..rounds {
        let to = if on == "h2" { "h3" } else { "h2" };
        let secs = baseline(&lab, on, to);
        let (bytes, rate, total) = berth_move(&lab, to, round);
        let plain_rate = bytes as f64 / secs;
        assert_eq!(checksum(&lab, to), written, "the moved data on {to}");
        println!(
            "round {}: {on} -> {to}: berth move {:.1} MB/s (whole move {total:.1} s), tar | nc {:.1} MB/s, {bytes} bytes, checksum verified",
            round + 1,
            rate / 1e6,
            plain_rate / 1e6
        );
        moved.push(rate);
        plain.push(plain_rate);
        totals.push(total);
        on = to;
    }
    moved.sort_by(f64::total_cmp);
    plain.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);
    let (m, p) = (quantile(&moved, 0.5), quantile(&plain, 0.5));
    println!(
        "move-throughput, {megabytes} MiB volume, {rounds} rounds (medians): berth move {:.1} MB/s, tar | nc {:.1} MB/s, ratio {:.2}x (target >= 0.8x); whole move (stop, copy, start) {:.1} s",
        m / 1e6,
        p / 1e6,
        m / p,
        quantile(&totals, 0.5)
    );
    Ok(())
}
