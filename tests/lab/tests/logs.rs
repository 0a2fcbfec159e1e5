//! Container logs on real hosts: journald to the master with no loss and no
//! duplicates across an agent crash and a master restart, and `berth logs`
//! merging and following a service's replicas.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test logs -- --ignored --nocapture logs_`.

use std::time::{Duration, Instant};

use berth_harness::Lab;

const LINES: u64 = 200_000;

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn logs_survive_an_agent_kill_and_a_master_restart_without_loss_or_duplicates() {
    let lab = Lab::up("logs-no-loss", 1);
    // 200,000 numbered lines in 100 bursts over about 15 s, then quiet (a
    // service restarts what exits, which would print them again).
    let script = format!(
        "i=1; while [ $i -le {LINES} ]; do seq $i $((i+1999)); i=$((i+2000)); sleep 0.15; done; \
         exec sleep 100000"
    );
    lab.berth(
        "h1",
        &[
            "run",
            "counter",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .assert_success();
    let started = Instant::now();
    lab.eventually(Duration::from_secs(30), "the first lines shipped", || {
        let out = lab.berth("h1", &["logs", "counter", "--tail", "1"]);
        if !out.success() {
            return None;
        }
        out.stdout().contains("counter-0@h1 | ").then_some(())
    });

    // Mid-stream: the agent dies hard (systemd starts it again), then the
    // master restarts.
    let before = lab.main_pid("h1", "berth-agent");
    lab.exec("h1", &["systemctl", "kill", "--signal=KILL", "berth-agent"])
        .assert_success();
    lab.eventually(Duration::from_secs(20), "the agent restarted", || {
        let now = lab.main_pid("h1", "berth-agent");
        (now != before && now != "0").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    lab.exec("h1", &["systemctl", "restart", "berth-master"])
        .assert_success();
    let disruptions_done = started.elapsed();

    let printed = lab.eventually(Duration::from_secs(120), "every line in berth logs", || {
        let out = lab.berth("h1", &["logs", "counter"]);
        if !out.success() {
            return None;
        }
        let text = out.stdout();
        (text.lines().count() as u64 >= LINES).then_some(text)
    });
    let shipped_in = started.elapsed();
    let numbers: Vec<u64> = printed
        .lines()
        .map(|line| {
            let (prefix, number) = line.split_once(" | ").expect("a `pod@host | ` prefix");
            assert_eq!(prefix, "counter-0@h1", "{line}");
            number
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"))
        })
        .collect();
    let expected: Vec<u64> = (1..=LINES).collect();
    if numbers != expected {
        let first_bad = numbers
            .iter()
            .zip(&expected)
            .position(|(got, want)| got != want)
            .unwrap_or(numbers.len().min(expected.len()));
        panic!(
            "{} lines, first difference at index {first_bad}: {:?} instead of {:?}",
            numbers.len(),
            numbers.get(first_bad),
            expected.get(first_bad)
        );
    }
    // The agent's checkpoint is root's only.
    let mode = lab
        .exec("h1", &["stat", "-c", "%a", "/var/lib/berth/journal.cursor"])
        .assert_success();
    assert_eq!(mode.trim(), "600");
    println!(
        "measured: {LINES} lines exactly once and in order; agent killed and master \
         restarted within {disruptions_done:?}; all shipped {shipped_in:?} after start"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn logs_follow_shows_new_lines_from_every_replica() {
    let lab = Lab::up("logs-follow", 3);
    lab.berth("h1",
        &[
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "3",
            "--",
            "sh",
            "-c",
            "n=0; while true; do n=$((n+1)); echo \"tick $n\"; printf 'bell\\a\\033[2J\\n'; sleep 0.5; done",
        ],)
    .assert_success();
    // Follow from now on only (--tail 0): whatever it prints is new.
    lab.sh(
        "h1",
        "nohup berth logs web -f --tail 0 > /run/follow.txt 2>/run/follow.err &",
    )
    .assert_success();
    let followed = lab.eventually(
        Duration::from_secs(60),
        "berth logs -f printing new lines from h1, h2 and h3",
        || {
            let text = lab.exec("h1", &["cat", "/run/follow.txt"]).stdout();
            ["@h1 | tick", "@h2 | tick", "@h3 | tick"]
                .iter()
                .all(|host| text.contains(host))
                .then_some(text)
        },
    );
    for line in followed.lines() {
        let (prefix, _) = line.split_once(" | ").expect("a `pod@host | ` prefix");
        let (pod, host) = prefix.split_once('@').expect("pod@host");
        assert!(pod.starts_with("web-"), "{line}");
        assert!(["h1", "h2", "h3"].contains(&host), "{line}");
        // Control characters arrive escaped, never raw.
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line:?}");
    }
    assert!(
        followed.contains("bell\\x07\\x1b[2J"),
        "control characters not escaped: {followed}"
    );
    let err = lab.exec("h1", &["cat", "/run/follow.err"]).stdout();
    assert!(err.is_empty(), "berth logs -f complained: {err}");

    // The history of all three merges in time order; --grep and --container
    // filter it.
    let all = lab
        .berth("h1", &["logs", "web", "--grep", "^tick", "-t"])
        .assert_success();
    let times: Vec<&str> = all.lines().map(|l| &l[..24]).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "not in time order:\n{all}");
    assert!(all.lines().all(|l| l.contains(" | tick ")), "{all}");
    let err = lab
        .berth("h1", &["logs", "web", "--grep", "("])
        .assert_failure();
    assert!(err.contains("grep"), "{err}");
}

/// Parses `berth top`'s memory column (`200M`, `1.5G`, `512K`) to bytes.
fn parse_size(cell: &str) -> Option<f64> {
    let (number, unit) = cell.split_at(cell.find(|c: char| c.is_ascii_alphabetic())?);
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * f64::from(1u32 << shift))
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn logs_top_shows_the_memory_a_container_allocates() {
    let lab = Lab::up("logs-top", 2);
    // dd holds a 200 MiB buffer it filled from /dev/zero while its write
    // to a pipe nobody reads blocks: 200 MiB resident, for good.
    lab.berth(
        "h1",
        &[
            "run",
            "mem",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero bs=200M count=1 | sleep 100000",
        ],
    )
    .assert_success();
    let allocated = 200.0 * 1024.0 * 1024.0;
    let (row, memory) = lab.eventually(
        Duration::from_secs(60),
        "berth top showing mem-0 at about 200 MiB",
        || {
            let out = lab.berth("h1", &["top"]);
            let row = out
                .stdout()
                .lines()
                .find(|l| l.starts_with("mem-0 "))?
                .to_owned();
            let memory = parse_size(row.split_whitespace().nth(4)?)?;
            ((memory - allocated).abs() / allocated <= 0.10).then_some((row, memory))
        },
    );
    println!(
        "measured: berth top shows {:.1} MiB for a 200 MiB allocation: {row}",
        memory / 1048576.0
    );
    // The node running it reports its memory and the pod's use.
    let node = row
        .split_whitespace()
        .nth(2)
        .expect("a NODE column")
        .to_owned();
    let nodes = lab.berth("h1", &["top", "node"]).assert_success();
    let node_row = nodes
        .lines()
        .find(|l| l.starts_with(&format!("{node} ")))
        .unwrap_or_else(|| panic!("no row for {node}:\n{nodes}"));
    let pods_memory =
        parse_size(node_row.split_whitespace().nth(5).expect("PODS MEMORY")).expect("a size");
    assert!(pods_memory >= allocated * 0.9, "{node_row}");

    // The agent of that node serves the same figures as Prometheus text on
    // its socket.
    let text = lab
        .exec(
            &node,
            &[
                "curl",
                "-sf",
                "--unix-socket",
                "/run/berth/agent.sock",
                "http://agent/metrics",
            ],
        )
        .assert_success();
    let series = text
        .lines()
        .find(|l| {
            l.starts_with(
                "berth_container_memory_working_set_bytes{pod=\"mem-0\",container=\"mem\"} ",
            )
        })
        .unwrap_or_else(|| panic!("no working-set series for mem-0:\n{text}"));
    let value: f64 = series
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("a number");
    assert!((value - allocated).abs() / allocated <= 0.10, "{series}");
    assert!(
        text.contains("# TYPE berth_container_cpu_seconds_total counter"),
        "{text}"
    );

    // The application metrics hook: an image whose labels declare an
    // endpoint gets it polled, and what it serves shows beside the cgroup
    // figures.
    for host in ["h1", "h2"] {
        lab.sh(
            host,
            "docker create --name appm local/busybox true >/dev/null \
             && docker commit --change 'LABEL io.berth.metrics.port=8080' \
                --change 'LABEL io.berth.metrics.path=/stats' appm local/appmetrics >/dev/null \
             && docker rm appm >/dev/null",
        )
        .assert_success();
    }
    lab.berth(
        "h1",
        &[
            "run",
            "app",
            "--image",
            "local/appmetrics",
            "--",
            "sh",
            "-c",
            "mkdir -p /www; printf '# TYPE requests_total counter\\nrequests_total 42\\n\
             queue_depth{queue=\"jobs\"} 7\\n' > /www/stats; exec httpd -f -p 8080 -h /www",
        ],
    )
    .assert_success();
    let top = lab.eventually(
        Duration::from_secs(60),
        "berth top showing the application's own metrics",
        || {
            let out = lab.berth("h1", &["top"]).stdout();
            (out.contains("app-0/app  requests_total 42")
                && out.contains("app-0/app  queue_depth{queue=\"jobs\"} 7"))
            .then_some(out)
        },
    );
    let app_node = top
        .lines()
        .find(|l| l.starts_with("app-0 "))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("a cgroup row for app-0")
        .to_owned();
    let text = lab
        .exec(
            &app_node,
            &[
                "curl",
                "-sf",
                "--unix-socket",
                "/run/berth/agent.sock",
                "http://agent/metrics",
            ],
        )
        .assert_success();
    assert!(
        text.contains("requests_total{pod=\"app-0\",container=\"app\"} 42"),
        "{text}"
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn logs_of_a_partitioned_node_wait_in_its_journal_and_catch_up() {
    let lab = Lab::up("logs-partition", 2);
    // The pod goes to h2, away from the master on h1, and being stateful
    // it stays there while h2 is cut off.
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.berth("h1",
        &[
            "run",
            "part",
            "--stateful",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            "i=1; while [ $i -le 300 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exec sleep 100000",
        ],)
    .assert_success();
    let count = || {
        let out = lab.berth("h1", &["logs", "part"]);
        out.success().then(|| out.stdout().lines().count())
    };
    lab.eventually(Duration::from_secs(30), "the first lines from h2", || {
        count().filter(|n| *n > 0)
    });
    lab.lab(&["partition", "h2"]).assert_success();
    let at_partition = count().expect("berth logs while h2 is cut off");
    std::thread::sleep(Duration::from_secs(6));
    let during = count().expect("berth logs while h2 is cut off");
    lab.lab(&["heal", "h2"]).assert_success();
    assert!(
        during < 300,
        "every line arrived while h2 was cut off ({at_partition} then {during}): the partition came too late"
    );
    let printed = lab.eventually(Duration::from_secs(60), "all 300 lines after heal", || {
        let out = lab.berth("h1", &["logs", "part"]);
        let text = out.stdout();
        (out.success() && text.lines().count() >= 300).then_some(text)
    });
    let numbers: Vec<String> = printed
        .lines()
        .map(|l| l.strip_prefix("part-0@h2 | ").unwrap_or(l).to_owned())
        .collect();
    let expected: Vec<String> = (1..=300).map(|n: u32| n.to_string()).collect();
    assert_eq!(numbers, expected, "lines lost, doubled or out of order");
    println!("measured: {during} of 300 lines at the master while h2 was cut off; all 300 once after heal");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn logs_keep_hostile_output_byte_for_byte_in_one_entry_per_line() {
    let lab = Lab::up("logs-bytes", 1);
    // A 1 MiB line with no newline until its end, a NUL, bytes that are not
    // UTF-8, a line separator, and a terminal escape.
    let script = "printf 'before\\n'; head -c 1048576 /dev/zero | tr '\\000' x; printf '\\n'; \
                  printf 'a\\000b\\n'; printf 'inv\\377\\376alid\\n'; printf 'sep\\342\\200\\250arator\\n'; \
                  printf 'esc\\033[2Jctl\\n'; printf 'after\\n'; exec sleep 100000";
    lab.berth(
        "h1",
        &[
            "run",
            "hostile",
            "--image",
            "local/busybox",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .assert_success();
    let raw = lab.eventually(Duration::from_secs(60), "every line shipped", || {
        let out = lab.berth("h1", &["logs", "hostile", "-o", "raw"]);
        (out.success() && out.output.stdout.ends_with(b"after\n")).then_some(out.output.stdout)
    });
    let lines: Vec<&[u8]> = raw
        .strip_suffix(b"\n")
        .unwrap_or(&raw)
        .split(|b| *b == b'\n')
        .collect();
    let expected: Vec<Vec<u8>> = vec![
        b"before".to_vec(),
        vec![b'x'; 1 << 20],
        b"a\0b".to_vec(),
        b"inv\xff\xfealid".to_vec(),
        "sep\u{2028}arator".as_bytes().to_vec(),
        b"esc\x1b[2Jctl".to_vec(),
        b"after".to_vec(),
    ];
    assert_eq!(
        lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
        expected.iter().map(Vec::len).collect::<Vec<_>>(),
        "one entry per line, the 1 MiB line included"
    );
    assert!(lines.iter().zip(&expected).all(|(got, want)| got == want));

    // The journal itself holds one entry per line: the unit's entries from
    // the container, counted by journald.
    let entries = lab
        .sh(
            "h1",
            "journalctl -u 'berth-hostile*' -o export --output-fields=BERTH_STREAM | grep -c '^BERTH_STREAM=stdout$'",
        )
        .assert_success();
    assert_eq!(
        entries.trim(),
        "7",
        "journal entries of the container's output"
    );

    // Escaped, reversibly, in both views; never journalctl's `[blob data]`.
    let text = lab.berth("h1", &["logs", "hostile"]).assert_success();
    for escaped in [
        "a\\x00b",
        "inv\\xff\\xfealid",
        "sep\\u{2028}arator",
        "esc\\x1b[2Jctl",
    ] {
        assert!(
            text.contains(&format!("hostile-0@h1 | {escaped}\n")),
            "{escaped} in\n{text}"
        );
    }
    let local = lab
        .berth("h1", &["local", "logs", "hostile-0"])
        .assert_success();
    assert!(!local.contains("blob data"), "{local}");
    for escaped in ["a\\x00b", "inv\\xff\\xfealid", "sep\\u{2028}arator"] {
        assert!(
            local.contains(&format!("hostile | {escaped}\n")),
            "{escaped} in\n{local}"
        );
    }

    // Docker keeps no second copy.
    let driver = lab
        .sh(
            "h1",
            "docker inspect -f '{{.HostConfig.LogConfig.Type}}' $(docker ps -q --filter label=berth.pod=hostile-0)",
        )
        .assert_success();
    assert!(
        driver.lines().all(|d| d == "none") && driver.lines().count() >= 1,
        "log drivers: {driver}"
    );
}
