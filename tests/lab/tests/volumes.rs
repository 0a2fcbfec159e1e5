//! Volumes beyond a node's plain named volumes: volume classes (a class
//! name mapped to a directory per node, pods placed only where their
//! classes are), and network volumes (GlusterFS served from a lab host,
//! mounted by a systemd mount unit that the container's unit requires;
//! servers only from the admin's allow-list).
//!
//! Root only: run with `cargo test -p berth-lab-tests --test volumes -- --ignored`.

use std::time::Duration;

use berth_harness::Lab;
use serde_json::Value;

/// The pods of `service` as `berth ps -o json` lists them.
fn pods_of(lab: &Lab, service: &str) -> Vec<Value> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service)
        .collect()
}

/// The volume classes node `name` reported, as `berth node ls` lists them.
fn classes_of(lab: &Lab, name: &str) -> Option<Value> {
    let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
    nodes
        .as_array()?
        .iter()
        .find(|n| n["node"]["name"] == name)
        .map(|n| n["node"]["volumeClasses"].clone())
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_pod_asking_for_volume_classes_waits_for_a_node_with_all_of_them() {
    let lab = Lab::up("vol-classes", 3);
    lab.configure_agent("h3", "volume-classes = { fast = \"/srv/nvme/berth\" }");
    lab.configure_agent("h2", "volume-classes = { fast = \"/srv/fast\" }");
    lab.eventually(Duration::from_secs(30), "h2 and h3 to report fast", || {
        let reported = |node| classes_of(&lab, node).is_some_and(|c| c["fast"].is_string());
        (reported("h2") && reported("h3")).then_some(())
    });

    // No node has both: the pod waits, naming the class it misses.
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "-v",
            "data:/var/lib/db:class=fast",
            "-v",
            "log:/var/log/db:class=bulk",
            "--",
            "sh",
            "-c",
            "echo row > /var/lib/db/table; echo line > /var/log/db/log; exec sleep 100000",
        ],
    )
    .assert_success();
    let reason = lab.eventually(Duration::from_secs(20), "db to be unschedulable", || {
        let pods = pods_of(&lab, "db");
        let pod = pods.first()?;
        assert!(pod["node"].is_null(), "db was placed: {pod}");
        pod["unschedulableReason"].as_str().map(String::from)
    });
    assert!(reason.contains("3 missing volume class bulk"), "{reason}");
    let ps = lab.berth("h1", &["ps"]).assert_success();
    assert!(
        ps.contains("Unschedulable") && ps.contains("missing volume class bulk"),
        "{ps}"
    );

    // h2 gets bulk too: the pod goes there, and only there.
    lab.sh("h2", "sed -i '/^volume-classes/d' /etc/berth/agent.toml")
        .assert_success();
    lab.configure_agent(
        "h2",
        "volume-classes = { fast = \"/srv/fast\", bulk = \"/srv/bulk\" }",
    );
    let pod = lab.eventually(Duration::from_secs(40), "db to run on h2", || {
        let pods = pods_of(&lab, "db");
        let pod = pods.first()?;
        (pod["status"]["phase"] == "Running").then(|| pod.clone())
    });
    assert_eq!(pod["node"], "h2", "{pod}");
    // Its volumes live in the classes' directories, each its own 0700
    // directory.
    let files = lab
        .sh(
            "h2",
            "cat /srv/fast/*/table /srv/bulk/*/log && stat -c '%a %U' /srv/fast/* /srv/bulk/*",
        )
        .assert_success();
    assert_eq!(files, "row\nline\n700 root\n700 root\n", "{files}");

    // As volume objects: node, class, size, pod, and on the node.
    let name = pod["spec"]["name"].as_str().expect("a name").to_owned();
    let data = lab.eventually(Duration::from_secs(40), "db's volumes with sizes", || {
        let volumes = lab.berth("h1", &["volume", "ls", "-o", "json"]).json();
        volumes
            .as_array()?
            .iter()
            .find(|v| v["name"] == format!("{name}/data") && v["bytes"].as_u64() == Some(4))
            .cloned()
    });
    assert_eq!(data["node"], "h2", "{data}");
    assert_eq!(data["class"], "fast", "{data}");
    assert_eq!(data["network"], false, "{data}");
    assert_eq!(data["pods"], serde_json::json!([name]), "{data}");
    let described = lab
        .berth("h1", &["volume", "describe", &format!("{name}/log")])
        .assert_success();
    assert!(
        described.contains("class: bulk") && described.contains("node: h2"),
        "{described}"
    );

    // Removing the service removes its volumes' data with them.
    lab.berth("h1", &["rm", "db"]).assert_success();
    lab.eventually(
        Duration::from_secs(30),
        "the class directories to empty",
        || {
            let left = lab
                .sh(
                    "h2",
                    "ls -A /srv/fast /srv/bulk | grep -v : | grep . || true",
                )
                .assert_success();
            left.trim().is_empty().then_some(())
        },
    );
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_network_volume_server_off_the_allow_list_is_refused_naming_the_field() {
    let lab = Lab::up("vol-allow", 2);
    // The master allows no server by default.
    let refused = lab
        .berth(
            "h1",
            &[
                "run",
                "web",
                "--image",
                "local/busybox",
                "-v",
                "glusterfs://files.example/v1:/data",
                "--",
                "sleep",
                "1000",
            ],
        )
        .assert_failure();
    assert!(
        refused.contains("template.volumes[0].glusterfs.server")
            && refused.contains("files.example"),
        "{refused}"
    );
    assert!(pods_of(&lab, "web").is_empty(), "a pod was made anyway");

    // A node's own allow-list: the agent refuses what it was not given,
    // and leaves nothing behind.
    let refused = lab
        .berth(
            "h2",
            &[
                "local",
                "run",
                "web",
                "--image",
                "local/busybox",
                "-v",
                "nfs://nas.example/exports/web:/data",
                "--",
                "sleep",
                "1000",
            ],
        )
        .assert_failure();
    assert!(
        refused.contains("volumes[0].nfs.server") && refused.contains("nas.example"),
        "{refused}"
    );
    let units = lab
        .sh("h2", "ls /var/lib/berth/units 2>/dev/null || true")
        .assert_success();
    assert!(!units.contains("web"), "{units}");
    lab.down();
}

/// Serves GlusterFS volume `v1` from `host`'s brick `/srv/brick1/b`.
fn serve_glusterfs(lab: &Lab, host: &str) {
    lab.sh(
        host,
        &format!(
            "systemctl start glusterd && mkdir -p /srv/brick1 && \
             gluster --mode=script volume create v1 {host}:/srv/brick1/b force && \
             gluster --mode=script volume start v1"
        ),
    )
    .assert_success();
}

/// A lab of 3 hosts where h1 serves GlusterFS volume `v1`, the master and
/// the agents of h2 and h3 allow h1 as a network volume server, and h1
/// takes no pods: the data's server is never where the pod runs.
fn up_with_glusterfs(name: &str) -> Lab {
    let lab = Lab::up(name, 3);
    serve_glusterfs(&lab, "h1");
    lab.sh(
        "h1",
        "mkdir -p /etc/berth && printf 'network-volume-servers = [\"h1\"]\\n' \
         > /etc/berth/master.toml && systemctl restart berth-master",
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "the master to answer", || {
        lab.berth("h1", &["node", "ls"]).success().then_some(())
    });
    for host in ["h2", "h3"] {
        lab.configure_agent(host, "network-volume-servers = [\"h1\"]");
    }
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_glusterfs_volume_is_mounted_by_a_unit_the_container_requires() {
    let lab = up_with_glusterfs("vol-gluster");
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "-v",
            "glusterfs://h1/v1:/data",
            "--",
            "sh",
            "-c",
            "echo first > /data/written-by; exec sleep 100000",
        ],
    )
    .assert_success();
    let pod = lab.eventually(Duration::from_secs(60), "db to run", || {
        let pods = pods_of(&lab, "db");
        let pod = pods.first()?;
        (pod["status"]["phase"] == "Running").then(|| pod.clone())
    });
    let node = pod["node"].as_str().expect("a node").to_owned();
    let name = pod["spec"]["name"].as_str().expect("a name").to_owned();

    // The data landed in h1's brick, through the mount.
    lab.eventually(Duration::from_secs(20), "the file in h1's brick", || {
        let written = lab.sh("h1", "cat /srv/brick1/b/written-by");
        written.success().then_some(())
    });

    // A network volume object, with the pod that mounts it.
    let volumes = lab.berth("h1", &["volume", "ls"]).assert_success();
    assert!(
        volumes.lines().any(|l| l.starts_with("glusterfs://h1/v1")
            && l.contains("network")
            && l.contains(&name)),
        "{volumes}"
    );

    // systemd mounted it, by a unit of its own that the container's unit
    // requires.
    let mount_unit = format!(
        "run-berth-volumes-{}-vol0.mount",
        name.replace('-', "\\x2d")
    );
    let status = lab
        .exec(&node, &["systemctl", "status", "--no-pager", &mount_unit])
        .assert_success();
    assert!(
        status.contains("active (mounted)") && status.contains("h1:/v1"),
        "{status}"
    );
    let fstype = lab
        .exec(
            &node,
            &[
                "findmnt",
                "-n",
                "-o",
                "FSTYPE",
                &format!("/run/berth/volumes/{name}/vol0"),
            ],
        )
        .assert_success();
    assert_eq!(fstype.trim(), "fuse.glusterfs");
    let units = lab
        .sh(
            &node,
            "systemctl list-units --plain --no-legend 'berth-*-*.service' | cut -d' ' -f1",
        )
        .assert_success();
    let container_unit = units.lines().next().expect("the container's unit");
    let requires = lab.unit_property(&node, container_unit, "RequiresMountsFor");
    assert!(
        requires
            .split(' ')
            .any(|path| path == format!("/run/berth/volumes/{name}/vol0")),
        "{requires}"
    );

    // Removing the service stops the container, then unmounts.
    lab.berth("h1", &["rm", "db"]).assert_success();
    lab.eventually(
        Duration::from_secs(30),
        "the volume to be unmounted",
        || {
            let mounted = lab.exec(
                &node,
                &["findmnt", &format!("/run/berth/volumes/{name}/vol0")],
            );
            (!mounted.success()).then_some(())
        },
    );
    let written = lab
        .sh("h1", "cat /srv/brick1/b/written-by")
        .assert_success();
    assert_eq!(written.trim(), "first", "the data stays on its server");
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_defined_network_volume_is_mounted_by_name_written_by_one_service_and_kept_while_used() {
    let lab = up_with_glusterfs("vol-defined");
    let refused = lab
        .berth(
            "h1",
            &[
                "volume",
                "create",
                "far",
                "--glusterfs",
                "files.example:/v1",
            ],
        )
        .assert_failure();
    assert!(refused.contains("glusterfs.server"), "{refused}");
    let created = lab
        .berth(
            "h1",
            &["volume", "create", "shared", "--glusterfs", "h1:/v1"],
        )
        .assert_success();
    assert!(created.contains("glusterfs://h1/v1"), "{created}");

    let run = |name: &str, mount: &str, script: &str| {
        lab.berth(
            "h1",
            &[
                "run",
                name,
                "--image",
                "local/busybox",
                "--stateful",
                "-v",
                mount,
                "--",
                "sh",
                "-c",
                script,
            ],
        )
    };
    run(
        "writer",
        "volume://shared:/data",
        "echo from-writer > /data/by-name; exec sleep 100000",
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "the writer's file in h1's brick",
        || {
            let written = lab.sh("h1", "cat /srv/brick1/b/by-name");
            (written.stdout().trim() == "from-writer").then_some(())
        },
    );

    // A second writer is refused, naming the first; a reader is not.
    let refused = run(
        "other",
        "volume://shared:/data",
        "echo other > /data/by-name; exec sleep 100000",
    )
    .assert_failure();
    assert!(
        refused.contains("service writer already writes network volume glusterfs://h1/v1"),
        "{refused}"
    );
    assert!(
        lab.berth("h1", &["describe", "other"])
            .assert_failure()
            .contains("not found"),
        "the refused service was not made"
    );
    run(
        "reader",
        "volume://shared:/data:ro",
        "cat /data/by-name; exec sleep 100000",
    )
    .assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "the reader to read the writer's file",
        || {
            let logs = lab.berth("h1", &["logs", "reader"]);
            logs.stdout().contains("from-writer").then_some(())
        },
    );

    // The volume by name, with the pods of both.
    let volumes = lab.berth("h1", &["volume", "ls"]).assert_success();
    let line = volumes
        .lines()
        .find(|l| l.starts_with("shared "))
        .unwrap_or_else(|| panic!("no volume shared:\n{volumes}"));
    assert!(
        line.contains("glusterfs://h1/v1")
            && line.contains("writer-0")
            && line.contains("reader-0"),
        "{volumes}"
    );

    // In use, the definition stays; once unused, it goes, and the data
    // stays on its server.
    let refused = lab
        .berth("h1", &["volume", "rm", "shared"])
        .assert_failure();
    assert!(
        refused.contains("service writer") && refused.contains("service reader"),
        "{refused}"
    );
    for service in ["writer", "reader"] {
        lab.berth("h1", &["rm", service]).assert_success();
    }
    lab.berth("h1", &["volume", "rm", "shared"])
        .assert_success();
    // Its pods stop with their services, and then nothing shows it.
    lab.eventually(
        Duration::from_secs(60),
        "shared gone from volume ls",
        || {
            let volumes = lab.berth("h1", &["volume", "ls"]).assert_success();
            (!volumes.lines().any(|l| l.starts_with("shared "))).then_some(())
        },
    );
    let kept = lab.sh("h1", "cat /srv/brick1/b/by-name").assert_success();
    assert_eq!(kept.trim(), "from-writer");
    lab.down();
}

/// The monotonic time (µs) of the first line of `unit`'s journal on `host`
/// that matches `grep`.
fn journal_time(lab: &Lab, host: &str, unit: &str, grep: &str) -> Option<u64> {
    let out = lab
        .exec(
            host,
            &["journalctl", "-u", unit, "-o", "json", "--grep", grep],
        )
        .stdout();
    let line = out.lines().next()?;
    let entry: Value = serde_json::from_str(line).ok()?;
    entry["__MONOTONIC_TIMESTAMP"].as_str()?.parse().ok()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_stateful_pod_on_glusterfs_moves_off_a_partitioned_node_fenced_first() {
    let lab = up_with_glusterfs("vol-move");
    // Each start reads what the pod's earlier runs wrote, then adds a line.
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--stateful",
            "--stop-timeout",
            "2",
            "-v",
            "glusterfs://h1/v1:/data",
            "--",
            "sh",
            "-c",
            "cat /data/log > /data/seen 2>/dev/null; echo start >> /data/log; exec sleep 100000",
        ],
    )
    .assert_success();
    let pod = lab.eventually(Duration::from_secs(60), "db to run", || {
        let pods = pods_of(&lab, "db");
        let pod = pods.first()?;
        (pod["status"]["phase"] == "Running").then(|| pod.clone())
    });
    let old = pod["node"].as_str().expect("a node").to_owned();
    let name = pod["spec"]["name"].as_str().expect("a name").to_owned();
    lab.eventually(
        Duration::from_secs(20),
        "the first start in h1's brick",
        || {
            let log = lab.sh("h1", "cat /srv/brick1/b/log").stdout();
            (log == "start\n").then_some(())
        },
    );

    lab.lab(&["partition", &old]).assert_success();
    let moved = lab.eventually(
        Duration::from_secs(60),
        "db to run on the other node",
        || {
            let pods = pods_of(&lab, "db");
            let pod = pods.first()?;
            let elsewhere = pod["node"].as_str().is_some_and(|n| n != old);
            (elsewhere && pod["status"]["phase"] == "Running").then(|| pod.clone())
        },
    );
    let new = moved["node"].as_str().expect("a node").to_owned();
    // A new replica of the service, not the same pod.
    let new_name = moved["spec"]["name"].as_str().expect("a name").to_owned();
    assert_ne!(new_name, name, "the evicted pod is listed still");

    // The new pod saw the first one's data, and added to it.
    lab.eventually(
        Duration::from_secs(20),
        "the second start in h1's brick",
        || {
            let log = lab.sh("h1", "cat /srv/brick1/b/log").stdout();
            (log == "start\nstart\n").then_some(())
        },
    );
    let seen = lab.sh("h1", "cat /srv/brick1/b/seen").assert_success();
    assert_eq!(seen, "start\n");

    // The cut-off node stopped its pod before the new node mounted the
    // volume: one writer at a time.
    let left = lab
        .exec(&old, &["docker", "ps", "-q", "--filter", "label=berth.pod"])
        .assert_success();
    assert!(left.trim().is_empty(), "{old} still runs {left}");
    let fenced = journal_time(&lab, &old, "berth-agent", "fenced network-backed pods")
        .expect("the old node's agent logged the fence");
    let mount_unit = format!(
        "run-berth-volumes-{}-vol0.mount",
        new_name.replace('-', "\\x2d")
    );
    let mounted = journal_time(&lab, &new, &mount_unit, "Mounting")
        .expect("the new node's journal shows the mount");
    assert!(
        fenced < mounted,
        "{new} mounted at {mounted} µs, before {old} fenced at {fenced} µs"
    );
    let status = lab
        .exec(&new, &["systemctl", "status", "--no-pager", &mount_unit])
        .assert_success();
    assert!(status.contains("active (mounted)"), "{status}");

    // Healed, the old node keeps nothing of the pod.
    lab.lab(&["heal", &old]).assert_success();
    lab.eventually(
        Duration::from_secs(30),
        "the old node to report ready",
        || {
            let nodes = lab.berth("h1", &["node", "ls", "-o", "json"]).json();
            let ready = nodes
                .as_array()?
                .iter()
                .any(|n| n["node"]["name"] == old.as_str() && n["condition"] == "Ready");
            ready.then_some(())
        },
    );
    let pods = pods_of(&lab, "db");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0]["node"], new.as_str());
    lab.down();
}
