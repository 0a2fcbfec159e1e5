//! Faults around highly available masters (`berth-lab up --masters 3`):
//! etcd losing its leader member or having one paused, and a master
//! failover in the middle of cron slots, a rollout and a webhook delivery.
//!
//! Until agents take several master URLs, they talk to h1's master: the
//! master these tests kill is never h1's, and the CLI goes to a surviving
//! master with `BERTH_URL`.
//!
//! Root only: run with `cargo test -p berth-lab-tests --test ha_faults --
//! --ignored`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_harness::Lab;
use serde_json::Value;

fn up(name: &str) -> Lab {
    Lab::up_with(name, 3, &["--masters", "3"])
}

/// The master hosts.
const MASTERS: [&str; 3] = ["h1", "h2", "h3"];

/// `berth ARGS`, run on h1 against the master on `via`.
fn berth_via(lab: &Lab, via: &str, args: &str) -> berth_harness::Run {
    lab.sh("h1", &format!("BERTH_URL=https://{via}:7443 berth {args}"))
}

/// The berth leader as etcd's election key names it, and its term (the
/// key's create revision), read with etcdctl on `host`.
fn berth_leader(lab: &Lab, host: &str) -> Option<(String, u64)> {
    let run = lab.exec(
        host,
        &["etcdctl", "get", "/berth/masters/leader", "-w", "json"],
    );
    if !run.success() {
        return None;
    }
    let term = run.json()["kvs"].get(0)?["create_revision"].as_u64()?;
    let name = lab
        .exec(
            host,
            &[
                "etcdctl",
                "get",
                "/berth/masters/leader",
                "--print-value-only",
            ],
        )
        .stdout();
    let name = name.trim();
    (!name.is_empty()).then(|| (name.to_owned(), term))
}

/// Makes a master other than h1's lead (agents only reach h1's master, so
/// h1's must survive): a stopping master revokes its lease, so restarting
/// h1's hands the lead on. A master restarted in the last lease may still
/// be waiting before it claims, and then h1's, back at once, may win
/// again: it is restarted until another leads. The leader and its term.
fn lead_away_from_h1(lab: &Lab) -> (String, u64) {
    let mut current = lab.eventually(Duration::from_secs(15), "a leader", || {
        berth_leader(lab, "h2")
    });
    for _ in 0..5 {
        if current.0 != "h1" {
            return current;
        }
        let term = current.1;
        lab.exec("h1", &["systemctl", "restart", "berth-master"])
            .assert_success();
        current = lab.eventually(Duration::from_secs(15), "a new leader term", || {
            berth_leader(lab, "h2").filter(|(_, t)| *t != term)
        });
    }
    panic!("h1's master keeps the lead: {current:?}");
}

/// A surviving master host other than `leader` and h1 (the CLI's way in
/// while `leader` is killed).
fn survivor(leader: &str) -> &'static str {
    if leader == "h2" {
        "h3"
    } else {
        "h2"
    }
}

/// Kills the berth master on `leader` with SIGKILL and waits for another
/// master to lead; the new leader.
fn kill_leader(lab: &Lab, leader: &str, term: u64) -> String {
    let pid = lab.main_pid(leader, "berth-master");
    let killed = Instant::now();
    lab.exec(leader, &["kill", "-9", &pid]).assert_success();
    let (new_leader, _) = lab.eventually(Duration::from_secs(15), "a new leader", || {
        berth_leader(lab, survivor(leader)).filter(|(_, t)| *t != term)
    });
    eprintln!(
        "kill -9 of {leader}'s master: {new_leader} leads after {:?}",
        killed.elapsed()
    );
    new_leader
}

/// `etcdctl endpoint status` of the member on `host`, if it answers.
fn etcd_status(lab: &Lab, host: &str) -> Option<Value> {
    let run = lab.exec(
        host,
        &[
            "etcdctl",
            "--command-timeout=2s",
            "endpoint",
            "status",
            "-w",
            "json",
        ],
    );
    if !run.success() {
        return None;
    }
    run.json().get(0).map(|e| e["Status"].clone())
}

/// The host whose etcd member leads the raft group.
fn etcd_leader_host(lab: &Lab) -> String {
    lab.eventually(Duration::from_secs(15), "an etcd leader", || {
        MASTERS.iter().find_map(|host| {
            let status = etcd_status(lab, host)?;
            let me = status["header"]["member_id"].as_u64()?;
            (status["leader"].as_u64() == Some(me)).then(|| (*host).to_owned())
        })
    })
}

/// Creates services `<prefix>-1` to `<prefix>-<count>` with no replicas,
/// each through the next master in turn (curl, 5 s at most each), and
/// returns the names whose create was acknowledged (201) and those that
/// failed.
fn create_services(lab: &Lab, prefix: &str, count: usize) -> (Vec<String>, Vec<String>) {
    let script = format!(
        r#"
admin=$(cat /var/lib/berth/master/admin.token)
for i in $(seq 1 {count}); do
  body="{{\"name\":\"{prefix}-$i\",\"replicas\":0,\"template\":{{\"name\":\"t\",\"containers\":[{{\"name\":\"c\",\"image\":\"local/busybox\"}}]}}}}"
  code=$(curl -s --cacert /var/lib/berth/master/ca.crt -o /dev/null -w '%{{http_code}}' -m 5 \
    -H "Authorization: Bearer $admin" -d "$body" https://h$((i % 3 + 1)):7443/v1/services)
  if [ "$code" = 201 ]; then echo "ok {prefix}-$i"; else echo "failed {prefix}-$i $code"; fi
  sleep 0.1
done
"#
    );
    let out = lab.sh("h1", &script).assert_success();
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("ok", name)) => acked.push(name.to_owned()),
            Some(("failed", rest)) => failed.push(rest.to_owned()),
            _ => {}
        }
    }
    (acked, failed)
}

/// The names of every service, as the master on `via` lists them.
fn service_names(lab: &Lab, via: &str) -> Option<Vec<String>> {
    let run = lab.sh(
        "h1",
        &format!(
            "curl -sf -m 5 --cacert /var/lib/berth/master/ca.crt \
             -H \"Authorization: Bearer $(cat /var/lib/berth/master/admin.token)\" \
             https://{via}:7443/v1/services"
        ),
    );
    let list: Value = serde_json::from_str(&run.stdout()).ok()?;
    Some(
        list.as_array()?
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Asserts every acknowledged create is listed by the master on `via`.
#[track_caller]
fn assert_none_lost(lab: &Lab, via: &str, acked: &[String]) {
    let names = lab.eventually(Duration::from_secs(20), "the services listed", || {
        service_names(lab, via)
    });
    let lost: Vec<&String> = acked.iter().filter(|a| !names.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates are gone: {lost:?}",
        lost.len(),
        acked.len()
    );
}

/// How many of `service`'s pods the master on `via` has placed.
fn placed(lab: &Lab, via: &str, service: &str) -> usize {
    let run = berth_via(lab, via, "ps -o json");
    if !run.success() {
        return 0;
    }
    run.json()
        .as_array()
        .map(|pods| {
            pods.iter()
                .filter(|p| p["service"] == service && p["node"].is_string())
                .count()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn etcd_goes_on_without_its_leader_member_and_a_paused_member_loses_nothing() {
    let lab = up("ha-etcd");
    let (leader, _) = lead_away_from_h1(&lab);
    let via = survivor(&leader);
    berth_via(
        &lab,
        via,
        "run web --image local/busybox --replicas 1 -- sleep 100000",
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "web's first pod placed", || {
        (placed(&lab, via, "web") == 1).then_some(())
    });

    // 1. etcd's leader member dies hard in the middle of creates through
    // all three masters.
    let victim = etcd_leader_host(&lab);
    let (acked, failed) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| create_services(&lab, "a", 60));
        std::thread::sleep(Duration::from_secs(2));
        let pid = lab.main_pid(&victim, "etcd");
        eprintln!("kill -9 of the etcd leader member on {victim} (pid {pid})");
        lab.exec(&victim, &["kill", "-9", &pid]).assert_success();
        writer.join().expect("the writer")
    });
    eprintln!(
        "etcd leader killed: {} creates acknowledged, {} failed: {failed:?}",
        acked.len(),
        failed.len()
    );
    let new_etcd_leader = etcd_leader_host(&lab);
    eprintln!("etcd's leader member is now on {new_etcd_leader}");
    // The cluster goes on: the last creates, well after the kill, all went
    // through, and a scale is scheduled.
    let tail: Vec<&String> = failed
        .iter()
        .filter(|f| {
            let n: usize = f
                .split(' ')
                .next()
                .and_then(|n| n.strip_prefix("a-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            n > 50
        })
        .collect();
    assert!(tail.is_empty(), "creates still fail long after: {tail:?}");
    let via = MASTERS
        .into_iter()
        .find(|h| *h != victim && *h != leader)
        .unwrap_or(via);
    assert_none_lost(&lab, via, &acked);
    berth_via(&lab, via, "scale web 3").assert_success();
    lab.eventually(
        Duration::from_secs(30),
        "web scaled to 3 and placed",
        || (placed(&lab, via, "web") == 3).then_some(()),
    );

    // The killed member back (systemd may already have restarted it), so
    // that a pause below leaves a majority.
    lab.exec(&victim, &["systemctl", "start", "etcd"])
        .assert_success();
    lab.eventually(Duration::from_secs(30), "all three members healthy", || {
        MASTERS
            .iter()
            .all(|h| etcd_status(&lab, h).is_some())
            .then_some(())
    });

    // 2. A member is paused (SIGSTOP) for 5 s during creates: the leader
    // member, the harder case (the others must elect a new one, and the
    // paused one wakes as a stale leader).
    let paused = etcd_leader_host(&lab);
    let (acked, failed) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| create_services(&lab, "b", 60));
        std::thread::sleep(Duration::from_secs(2));
        let pid = lab.main_pid(&paused, "etcd");
        eprintln!("kill -STOP of the etcd leader member on {paused} (pid {pid})");
        lab.exec(&paused, &["kill", "-STOP", &pid]).assert_success();
        std::thread::sleep(Duration::from_secs(5));
        lab.exec(&paused, &["kill", "-CONT", &pid]).assert_success();
        writer.join().expect("the writer")
    });
    eprintln!(
        "etcd member paused: {} creates acknowledged, {} failed: {failed:?}",
        acked.len(),
        failed.len()
    );
    assert!(
        acked.len() >= 30,
        "too few creates went through: {failed:?}"
    );
    for via in MASTERS {
        assert_none_lost(&lab, via, &acked);
    }
    // The members converge: the paused one has every acknowledged create
    // in its own copy (a serializable read answers locally).
    let keys = |host: &str| {
        lab.exec(
            host,
            &[
                "etcdctl",
                "get",
                "/berth/services/",
                "--prefix",
                "--keys-only",
                "--consistency=s",
            ],
        )
        .stdout()
    };
    for host in MASTERS {
        lab.eventually(
            Duration::from_secs(20),
            "every member to hold every acknowledged create",
            || {
                let keys = keys(host);
                acked
                    .iter()
                    .all(|name| keys.lines().any(|k| k.ends_with(&format!("/{name}"))))
                    .then_some(())
            },
        );
    }
    lab.down();
}

/// The master config for a webhook on `event` to `url`, many attempts so
/// that it is still pending after a failover.
fn webhook_rule(event: &str, url: &str) -> String {
    format!("\n[[webhooks]]\nevent = \"{event}\"\nurl = \"{url}\"\nattempts = 20\n")
}

/// Serves a webhook on `host` at :8088 that logs each delivery as its
/// `X-Berth-Event-Id` header, a tab, and the body; its URL.
fn serve_counting_webhook(lab: &Lab, host: &str) -> String {
    lab.sh(
        host,
        "mkdir -p /run/hook/cgi-bin && cat > /run/hook/cgi-bin/hook <<'EOF'
#!/bin/sh
body=$(head -c \"$CONTENT_LENGTH\")
printf '%s\\t%s\\n' \"$HTTP_X_BERTH_EVENT_ID\" \"$body\" >> /run/hook.log
printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
EOF
chmod 755 /run/hook/cgi-bin/hook
systemd-run --unit hook busybox httpd -f -p 8088 -h /run/hook",
    )
    .assert_success();
    format!("http://{}:8088/cgi-bin/hook", lab.host(host).address)
}

/// The deliveries the webhook on `host` got: event id to the bodies.
fn deliveries(lab: &Lab, host: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in lab.exec(host, &["cat", "/run/hook.log"]).stdout().lines() {
        if let Some((id, body)) = line.split_once('\t') {
            let body = serde_json::from_str(body).unwrap_or(Value::Null);
            by_id.entry(id.to_owned()).or_default().push(body);
        }
    }
    by_id
}

/// The Unix second on h1's clock (the lab's hosts share the machine's).
fn unix_now(lab: &Lab) -> u64 {
    lab.exec("h1", &["date", "+%s"])
        .assert_success()
        .trim()
        .parse()
        .expect("a Unix time")
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn across_a_failover_cron_slots_run_once_a_rollout_completes_and_a_webhook_is_delivered_once() {
    let lab = up("ha-work");
    // The webhook's receiver is not up yet: a delivery is pending, retried
    // with backoff, when the leader dies.
    let url = format!("http://{}:8088/cgi-bin/hook", lab.host("h1").address);
    let rule = webhook_rule("ServiceScaled", &url);
    for host in ["h3", "h2", "h1"] {
        lab.sh(
            host,
            &format!(
                "cat >> /etc/berth/master.toml <<'EOF'\n{rule}EOF\nsystemctl restart berth-master"
            ),
        )
        .assert_success();
    }
    let (leader, term) = lead_away_from_h1(&lab);
    let via = survivor(&leader);
    lab.eventually(Duration::from_secs(30), "the masters to answer", || {
        MASTERS
            .iter()
            .all(|h| berth_via(&lab, h, "node ls").success())
            .then_some(())
    });

    // A rollout slow enough to be under way at the kill: one pod at a
    // time, each counted after 3 s of readiness.
    berth_via(
        &lab,
        via,
        "run web --image local/busybox --replicas 3 --max-surge 1 --min-ready 3 -- sleep 100000",
    )
    .assert_success();
    berth_via(
        &lab,
        via,
        "run ping --image local/busybox --replicas 0 -- sleep 100000",
    )
    .assert_success();
    berth_via(&lab, via, "rollout status web -w --timeout 90s").assert_success();
    berth_via(
        &lab,
        via,
        "cron create tick --schedule '*/4 * * * * *' --image local/busybox -- true",
    )
    .assert_success();
    let first_slot = (unix_now(&lab) / 4 + 1) * 4;

    berth_via(&lab, via, "set env web ROUND=2").assert_success();
    berth_via(&lab, via, "scale ping 1").assert_success();
    // The old leader placed the first new pod: the rollout is under way.
    std::thread::sleep(Duration::from_secs(3));
    let history = berth_via(&lab, via, "rollout history web -o json").json();
    let under_way = history
        .as_array()
        .and_then(|h| h.iter().find(|d| d["revision"] == 2))
        .map(|d| d["status"]["phase"].clone());
    assert_eq!(
        under_way,
        Some(Value::from("Running")),
        "the rollout is not under way at the kill: {history:#}"
    );
    let killed_at = unix_now(&lab);
    let new_leader = kill_leader(&lab, &leader, term);
    assert_ne!(new_leader, leader);
    let via = survivor(&leader);

    // The webhook's receiver comes up after the failover.
    std::thread::sleep(Duration::from_secs(2));
    let served = serve_counting_webhook(&lab, "h1");
    assert_eq!(served, url);

    // The rollout completes on the new leader.
    berth_via(&lab, via, "rollout status web -w --timeout 90s").assert_success();
    let history = berth_via(&lab, via, "rollout history web -o json").json();
    let second = history
        .as_array()
        .and_then(|h| h.iter().find(|d| d["revision"] == 2))
        .cloned()
        .unwrap_or_default();
    assert_eq!(second["status"]["phase"], "Complete", "{history:#}");

    // The scale's event is delivered exactly once.
    lab.eventually(Duration::from_secs(60), "the webhook delivered", || {
        deliveries(&lab, "h1")
            .values()
            .flatten()
            .any(|b| b["kind"] == "ServiceScaled" && b["object"] == "service/ping")
            .then_some(())
    });
    // Late duplicates would come within the retries' backoff.
    std::thread::sleep(Duration::from_secs(5));
    let delivered = deliveries(&lab, "h1");
    eprintln!("webhook deliveries by event id: {delivered:#?}");
    for (id, bodies) in &delivered {
        assert!(!id.is_empty(), "a delivery without an event id: {bodies:?}");
        assert_eq!(bodies.len(), 1, "event {id} delivered more than once");
    }

    // Every cron slot from the first on ran exactly once, the ones around
    // the failover included (late, but once). Finished jobs beyond the
    // cron's history are pruned, so the events, written with each change,
    // are the record: one job succeeded and one pod placed per slot.
    let last_slot = (unix_now(&lab) / 4 - 1) * 4;
    let slots: Vec<u64> = (first_slot..=last_slot).step_by(4).collect();
    assert!(
        last_slot > killed_at + 4,
        "no slot after the failover to check"
    );
    let count = |events: &[Value], object: &str| {
        events
            .iter()
            .filter(|e| e["object"].as_str() == Some(object))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (succeeded, scheduled) = loop {
        let succeeded = events(&lab, via, "JobSucceeded");
        let scheduled: Vec<Value> = events(&lab, via, "PodScheduled")
            .into_iter()
            .filter_map(|mut e| {
                // pod/tick-<slot>-<attempt> counts for job/tick-<slot>.
                let object = e["object"].as_str()?.strip_prefix("pod/tick-")?;
                let (slot, _) = object.rsplit_once('-')?;
                e["object"] = Value::from(format!("job/tick-{slot}"));
                Some(e)
            })
            .collect();
        let missing: Vec<u64> = slots
            .iter()
            .copied()
            .filter(|slot| count(&succeeded, &format!("job/tick-{slot}")) == 0)
            .collect();
        if missing.is_empty() {
            break (succeeded, scheduled);
        }
        assert!(
            Instant::now() < deadline,
            "cron slots {missing:?} of {first_slot}..={last_slot} never ran (killed at {killed_at})\n\
             cron:\n{}\njobs:\n{}\nevents:\n{}\nnew leader's log:\n{}",
            berth_via(&lab, via, "cron describe tick").stdout(),
            berth_via(&lab, via, "job ls").stdout(),
            berth_via(&lab, via, "events").stdout(),
            lab.sh(
                &new_leader,
                "journalctl -o short-precise -u berth-master -n 80 --no-pager"
            )
            .stdout()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "cron slots {first_slot}..={last_slot} (killed at {killed_at}): {} slots, each run once",
        slots.len()
    );
    for slot in slots {
        let job = format!("job/tick-{slot}");
        assert_eq!(count(&succeeded, &job), 1, "{job} succeeded more than once");
        assert_eq!(count(&scheduled, &job), 1, "{job} had more than one pod");
    }
    lab.down();
}

/// The events of `kind`, as the master on `via` lists them.
fn events(lab: &Lab, via: &str, kind: &str) -> Vec<Value> {
    let run = berth_via(lab, via, "events -o json");
    run.json()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// The names of the masters that `berth master ls` through `via` says
/// lead, if it answers.
fn leaders_listed(lab: &Lab, via: &str) -> Option<Vec<String>> {
    let run = berth_via(lab, via, "master ls -o json");
    if !run.success() {
        return None;
    }
    Some(
        run.json()
            .as_array()?
            .iter()
            .filter(|m| m["leader"] == true)
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_partitioned_leader_is_replaced_without_evicting_healthy_hosts_and_heals_to_one_leader() {
    let lab = up("ha-split");
    let (leader, term) = lead_away_from_h1(&lab);
    let via = survivor(&leader);
    berth_via(
        &lab,
        via,
        "run web --image local/busybox --replicas 3 -- sleep 100000",
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "web's 3 pods placed", || {
        (placed(&lab, via, "web") == 3).then_some(())
    });
    let evicted_before = events(&lab, via, "PodEvicted").len();

    let cut = Instant::now();
    lab.lab(&["partition", &leader]).assert_success();
    let (new_leader, _) = lab.eventually(Duration::from_secs(15), "a new leader", || {
        berth_leader(&lab, "h1").filter(|(_, t)| *t != term)
    });
    eprintln!(
        "partition of {leader}: {new_leader} leads after {:?}",
        cut.elapsed()
    );
    assert_ne!(new_leader, leader, "a cut-off master cannot keep the lead");
    // A lease (2 s in the lab), an etcd election if the cut-off member led
    // (which renews every lease), and the time the other masters take to
    // drop their connections to the silent member (1 s pings, 2 s
    // timeout). With 5 s pings this took 10 s.
    assert!(
        cut.elapsed() <= Duration::from_secs(8),
        "the lead changed hands {:?} after the partition",
        cut.elapsed()
    );
    // Long enough for the liveness verdicts of the healthy hosts to come
    // in, had the failover upset them.
    std::thread::sleep(Duration::from_secs(8));
    berth_via(&lab, via, "scale web 4").assert_success();
    lab.eventually(Duration::from_secs(30), "web scaled to 4", || {
        (placed(&lab, via, "web") >= 4).then_some(())
    });
    let evicted: Vec<Value> = events(&lab, via, "PodEvicted")
        .into_iter()
        .skip(evicted_before)
        .collect();
    let healthy: Vec<&Value> = evicted
        .iter()
        .filter(|e| e["node"] != leader.as_str())
        .collect();
    assert!(
        healthy.is_empty(),
        "pods on healthy hosts were evicted: {healthy:#?}"
    );
    let not_ready: Vec<Value> = events(&lab, via, "NodeNotReady")
        .into_iter()
        .filter(|e| {
            e["node"] != leader.as_str() && e["object"] != format!("node/{leader}").as_str()
        })
        .collect();
    assert!(
        not_ready.is_empty(),
        "healthy hosts went NotReady: {not_ready:#?}"
    );

    lab.lab(&["heal", &leader]).assert_success();
    let healed = Instant::now();
    lab.eventually(
        Duration::from_secs(30),
        "one leader, the same on every master",
        || {
            let all: Option<Vec<Vec<String>>> =
                MASTERS.iter().map(|h| leaders_listed(&lab, h)).collect();
            let all = all?;
            (all.iter().all(|l| l.len() == 1 && l[0] == all[0][0])).then_some(())
        },
    );
    eprintln!("after heal: one leader after {:?}", healed.elapsed());
    let (after_heal, _) = berth_leader(&lab, "h1").expect("a leader");
    assert_eq!(
        leaders_listed(&lab, &leader).unwrap_or_default(),
        [after_heal],
        "the healed master agrees on the leader"
    );
    lab.down();
}
