//! berth as users install it: from its .deb on bare lab hosts (the lab
//! copies no berth binary or unit in), enabled with systemctl, joined with
//! the command the master prints, upgraded without touching a container,
//! and removed and purged without a trace. The .rpm carries the same files
//! and metadata, and lintian has nothing to say that is not explained.
//!
//! Root only: run with `cargo test -p berth-lab-tests -- --ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_harness::{bin_dir, Lab};
use serde_json::Value;

const FIRST: &str = "0.1.0+lab1";
const UPGRADE: &str = "0.1.0+lab2";

/// The packages under test, built once per test run from the binaries the
/// lab tests use.
struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
    upgrade_deb: PathBuf,
}

fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = bin_dir().join("lab-packages");
        let build = |version: &str| {
            let out_dir = out.join(version);
            let run = Command::new(root.join("scripts/build-packages"))
                .args(["--fast", "--version", version, "--bin-dir"])
                .arg(bin_dir())
                .arg("--out")
                .arg(&out_dir)
                .output()
                .expect("running scripts/build-packages");
            assert!(
                run.status.success(),
                "scripts/build-packages failed:\n{}",
                String::from_utf8_lossy(&run.stderr)
            );
            (
                out_dir.join(format!("berth_{version}_amd64.deb")),
                out_dir.join(format!("berth-{version}-1.x86_64.rpm")),
            )
        };
        let (deb, rpm) = build(FIRST);
        let (upgrade_deb, _) = build(UPGRADE);
        Packages {
            deb,
            rpm,
            upgrade_deb,
        }
    })
}

/// What the host has that berth could leave behind: files outside the
/// container runtime's and the journal's own directories (and the labs'
/// own, which the host sees through its lower layer), units, and iptables
/// chains.
fn footprint(lab: &Lab, host: &str) -> BTreeSet<String> {
    let files = lab
        .sh(
            host,
            "find /etc /usr /opt /srv /var/lib /var/cache /var/log /run -xdev \
             \\( -path /var/lib/docker -o -path /var/lib/containerd -o -path /run/docker \
             -o -path /var/lib/berth-lab \
             -o -path /run/containerd -o -path /var/log/journal -o -path /run/log \
             -o -path /run/systemd -o -path /run/user -o -path /run/udev \\) -prune -o -print",
        )
        .assert_success();
    let units = lab
        .sh(
            host,
            "systemctl list-units --all --plain --no-legend 'berth*'; \
             systemctl list-unit-files --plain --no-legend 'berth*'; true",
        )
        .assert_success();
    let chains = lab
        .sh(host, "iptables-save | grep '^[:*]' | cut -d' ' -f1")
        .assert_success();
    let mut all = BTreeSet::new();
    all.extend(files.lines().map(|f| format!("file {f}")));
    all.extend(units.lines().map(|u| format!("unit {u}")));
    all.extend(chains.lines().map(|c| format!("chain {c}")));
    all
}

/// Changes dpkg makes to any host by installing and purging any package:
/// its database and log, and the note Debian's needrestart hook keeps of
/// what was unpacked.
fn is_package_manager_bookkeeping(entry: &str) -> bool {
    [
        "file /var/lib/dpkg/",
        "file /var/log/dpkg.log",
        "file /run/needrestart",
    ]
    .iter()
    .any(|prefix| entry.starts_with(prefix))
}

/// Container ID -> PID of every berth container on `host`.
fn containers(lab: &Lab, host: &str) -> BTreeMap<String, String> {
    lab.sh(
        host,
        "for id in $(docker ps -q --no-trunc --filter label=berth.pod); do \
         echo \"$id $(docker inspect -f '{{.State.Pid}}' $id)\"; done",
    )
    .assert_success()
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(id, pid)| (id.to_owned(), pid.to_owned()))
    .collect()
}

/// The `berth-agent join ...` command the master prints for a new host.
fn join_command(lab: &Lab) -> String {
    lab.exec("h1", &["berth", "node", "token"])
        .assert_success()
        .trim()
        .to_owned()
}

/// Pods of `service` that run, with their nodes.
fn running_pods(lab: &Lab, service: &str) -> BTreeMap<String, String> {
    lab.exec("h1", &["berth", "ps", "-o", "json"])
        .json()
        .as_array()
        .expect("ps -o json is a list")
        .iter()
        .filter(|p| p["service"] == service && p["status"]["phase"] == "Running")
        .map(|p| {
            (
                p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                p["node"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn packages_install_join_upgrade_and_purge_on_bare_hosts() {
    let packages = packages();
    let lab = Lab::up_with("packages", 3, &["--bare"]);
    let hosts = ["h1", "h2", "h3"];
    let mut before = BTreeMap::new();
    for host in hosts {
        lab.exec(host, &["sh", "-c", "command -v berth-agent"])
            .assert_failure();
        before.insert(host, footprint(&lab, host));
        lab.copy_in(host, &packages.deb, "/root/berth.deb");
        lab.copy_in(host, &packages.upgrade_deb, "/root/berth-upgrade.deb");
    }

    // h1: the master, as the README's real-host path runs it.
    lab.exec("h1", &["dpkg", "-i", "/root/berth.deb"])
        .assert_success();
    lab.exec("h1", &["systemctl", "enable", "--now", "berth-master"])
        .assert_success();
    let admin = lab.eventually(Duration::from_secs(15), "the admin token", || {
        let run = lab.exec("h1", &["cat", "/var/lib/berth/master/admin.token"]);
        run.success().then(|| run.stdout().trim().to_owned())
    });
    lab.eventually(Duration::from_secs(15), "berth login", || {
        lab.exec(
            "h1",
            &[
                "berth",
                "login",
                "https://h1:7443",
                "--token",
                &admin,
                "--ca-cert",
                "/var/lib/berth/master/ca.crt",
            ],
        )
        .success()
        .then_some(())
    });
    let join = join_command(&lab);
    assert!(join.starts_with("berth-agent join https://"), "{join}");
    lab.sh("h1", &join).assert_success();

    // h2 joins, then a 3-replica service, and a probe pod for a node
    // labelled disk=fresh, which only h3 will be.
    lab.exec("h2", &["dpkg", "-i", "/root/berth.deb"])
        .assert_success();
    lab.sh("h2", &join_command(&lab)).assert_success();
    lab.exec(
        "h1",
        &[
            "berth",
            "run",
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "3",
            "-p",
            "8080",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    )
    .assert_success();
    lab.exec(
        "h1",
        &[
            "berth",
            "run",
            "probe",
            "--image",
            "local/busybox",
            "--node-selector",
            "disk=fresh",
            "--",
            "sleep",
            "3600",
        ],
    )
    .assert_success();
    lab.eventually(Duration::from_secs(30), "3 replicas running", || {
        (running_pods(&lab, "web").len() == 3).then_some(())
    });

    // h3: from `dpkg -i` to its first pod running, with the join command
    // in hand as an operator would have it. Its label goes in the packaged
    // config file, which the join reads.
    let join = join_command(&lab);
    let started = Instant::now();
    lab.exec("h3", &["dpkg", "-i", "/root/berth.deb"])
        .assert_success();
    lab.sh(
        "h3",
        "printf '[labels]\\ndisk = \"fresh\"\\n' >> /etc/berth/agent.toml",
    )
    .assert_success();
    lab.sh("h3", &join).assert_success();
    lab.eventually(
        Duration::from_secs(60),
        "the probe pod running on h3",
        || (running_pods(&lab, "probe").values().collect::<Vec<_>>() == ["h3"]).then_some(()),
    );
    let install_to_pod = started.elapsed();
    println!("dpkg -i to first pod running on a fresh host: {install_to_pod:.1?}");
    assert!(
        install_to_pod <= Duration::from_secs(30),
        "install to pod took {install_to_pod:?} (target: 30 s)"
    );

    let nodes = lab
        .exec("h1", &["berth", "node", "ls", "-o", "json"])
        .json();
    let ready: Vec<&str> = nodes
        .as_array()
        .expect("node ls -o json is a list")
        .iter()
        .filter(|n| n["condition"] == "Ready")
        .filter_map(|n| n["node"]["name"].as_str())
        .collect();
    assert_eq!(ready, hosts, "{nodes}");
    assert_eq!(running_pods(&lab, "web").len(), 3);
    lab.eventually(Duration::from_secs(10), "web answering", || {
        let pods = lab.exec("h1", &["berth", "ps", "-o", "json"]).json();
        let web = pods.as_array()?.iter().find(|p| p["service"] == "web")?;
        let node = web["node"].as_str()?;
        let port = web["status"]["containers"][0]["hostPorts"][0]["hostPort"].as_u64()?;
        // Any HTTP answer is busybox httpd's.
        let code = lab
            .sh(
                "h2",
                &format!("curl -s -o /dev/null -w '%{{http_code}}' http://{node}:{port}/"),
            )
            .stdout();
        (code.len() == 3 && code != "000").then_some(())
    });

    // The agent logs to the journal with fields of their own.
    let journal = lab
        .exec(
            "h3",
            &[
                "journalctl",
                "-u",
                "berth-agent",
                "-o",
                "json",
                "--no-pager",
            ],
        )
        .assert_success();
    let entries: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let about_a_pod = entries
        .iter()
        .find(|e| e["SYSLOG_IDENTIFIER"] == "berth-agent" && e["POD"].is_string())
        .unwrap_or_else(|| panic!("no journal entry with a POD field:\n{journal}"));
    assert!(about_a_pod["MESSAGE"].is_string() && about_a_pod["PRIORITY"].is_string());

    // Upgrade every host: the daemons restart, no container does.
    let mut before_upgrade = BTreeMap::new();
    for host in hosts {
        let agent = lab.main_pid(host, "berth-agent");
        before_upgrade.insert(host, (agent, containers(&lab, host)));
    }
    let total: usize = before_upgrade.values().map(|(_, c)| c.len()).sum();
    assert_eq!(total, 4, "3 web replicas and the probe: {before_upgrade:?}");
    for host in hosts {
        lab.exec(host, &["dpkg", "-i", "/root/berth-upgrade.deb"])
            .assert_success();
        let version = lab
            .exec(host, &["dpkg-query", "-W", "-f", "${Version}", "berth"])
            .assert_success();
        assert_eq!(version, UPGRADE);
    }
    for host in hosts {
        let (agent, containers_before) = &before_upgrade[host];
        let agent_now = lab.eventually(Duration::from_secs(15), "the agent back", || {
            let run = lab.exec(host, &["systemctl", "is-active", "berth-agent"]);
            run.success().then(|| lab.main_pid(host, "berth-agent"))
        });
        assert_ne!(
            &agent_now, agent,
            "the upgrade restarts berth-agent on {host}"
        );
        assert_eq!(
            &containers(&lab, host),
            containers_before,
            "container IDs and PIDs on {host} after the upgrade"
        );
    }
    lab.exec("h1", &["systemctl", "is-active", "berth-master"])
        .assert_success();
    // The pods are the default project's, under the names they had: the
    // default project qualifies no name, so no unit or container is renamed.
    let in_default = lab
        .exec("h1", &["berth", "-p", "default", "ps", "-o", "json"])
        .json();
    let mut names: Vec<&str> = in_default
        .as_array()
        .expect("ps -o json is a list")
        .iter()
        .filter(|p| p["service"] == "web")
        .filter_map(|p| p["spec"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["web-0", "web-1", "web-2"], "{in_default}");
    for host in hosts {
        let units = lab
            .exec(
                host,
                &[
                    "systemctl",
                    "list-units",
                    "--plain",
                    "--no-legend",
                    "berth-*.service",
                ],
            )
            .assert_success();
        assert!(
            units.lines().all(|l| !l.starts_with("berth-default.")),
            "{host}: a unit renamed into the default project: {units}"
        );
    }
    lab.eventually(
        Duration::from_secs(15),
        "3 Ready nodes after the upgrade",
        || {
            let nodes = lab
                .exec("h1", &["berth", "node", "ls", "-o", "json"])
                .json();
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|n| n["condition"] == "Ready")
                .count();
            (ready == 3).then_some(())
        },
    );

    // Remove, then purge: nothing of berth is left, pods included.
    for host in ["h3", "h2", "h1"] {
        lab.exec(host, &["dpkg", "-r", "berth"]).assert_success();
        assert_eq!(
            containers(&lab, host),
            BTreeMap::new(),
            "removal takes the pods on {host} with it"
        );
        lab.exec(host, &["dpkg", "--purge", "berth"])
            .assert_success();
        // /run/systemd churns by itself and is left out of the footprint:
        // berth's one file there is checked by name.
        lab.exec(
            host,
            &[
                "test",
                "!",
                "-e",
                "/run/systemd/journald.conf.d/50-berth.conf",
            ],
        )
        .assert_success();
        let after = footprint(&lab, host);
        let left: Vec<_> = after
            .difference(&before[host])
            .filter(|e| !is_package_manager_bookkeeping(e))
            .collect();
        let gone: Vec<_> = before[host]
            .difference(&after)
            .filter(|e| !is_package_manager_bookkeeping(e))
            .collect();
        assert!(
            left.is_empty() && gone.is_empty(),
            "{host} after purge: left behind {left:#?}, gone {gone:#?}"
        );
    }
}

/// Files of a package, without directories, from a listing of paths.
fn files_only(listing: &str, stage: &Path) -> BTreeSet<String> {
    listing
        .lines()
        .map(|l| l.trim_start_matches('.').to_owned())
        .filter(|p| !p.is_empty() && !stage.join(p.trim_start_matches('/')).is_dir())
        .collect()
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "lab test: needs the packaging tools; run by scripts/test"]
fn packages_rpm_matches_the_deb_and_both_pass_their_checkers() {
    let packages = packages();
    let deb = packages.deb.to_str().expect("a UTF-8 path");
    let rpm = packages.rpm.to_str().expect("a UTF-8 path");
    let stage = packages.deb.parent().expect("out dir").join("stage");

    // Same files: the .deb's, less Debian's own bookkeeping (lintian's
    // overrides and the Debian changelog).
    let deb_files = files_only(
        &run(
            "sh",
            &["-c", &format!("dpkg-deb --fsys-tarfile '{deb}' | tar -t")],
        ),
        &stage,
    );
    let deb_files: BTreeSet<String> = deb_files
        .into_iter()
        .filter(|f| {
            !f.starts_with("/usr/share/lintian/") && f != "/usr/share/doc/berth/changelog.gz"
        })
        .collect();
    let rpm_files = files_only(&run("rpm", &["-qpl", rpm]), &stage);
    assert_eq!(deb_files, rpm_files);
    assert!(deb_files.contains("/usr/bin/berth-agent"));
    assert!(deb_files.contains("/usr/lib/systemd/system/berth-agent.service"));

    // Same metadata.
    let field = |name: &str| run("dpkg-deb", &["-f", deb, name]).trim().to_owned();
    let query = |tag: &str| run("rpm", &["-qp", "--qf", tag, rpm]).trim().to_owned();
    assert_eq!(query("%{NAME}"), field("Package"));
    assert_eq!(query("%{VERSION}"), field("Version"));
    assert_eq!(query("%{URL}"), field("Homepage"));
    assert_eq!(query("%{PACKAGER}"), field("Maintainer"));
    let description = field("Description");
    let (summary, body) = description.split_once('\n').expect("a long description");
    assert_eq!(query("%{SUMMARY}"), summary);
    let body: Vec<&str> = body.lines().map(str::trim).collect();
    assert_eq!(query("%{DESCRIPTION}"), body.join("\n"));
    let copyright = run(
        "sh",
        &[
            "-c",
            &format!("dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/share/doc/berth/copyright"),
        ],
    );
    let license = query("%{LICENSE}");
    assert!(
        copyright.contains(&format!("License: {license}")),
        "{copyright}"
    );
    let config_files = run("rpm", &["-qp", "--configfiles", rpm]);
    let conffiles = run("sh", &["-c", &format!("dpkg-deb -I '{deb}' conffiles")]);
    assert_eq!(config_files.trim(), conffiles.trim());

    // rpm -K: the digests hold.
    let checked = run("rpm", &["-K", rpm]);
    assert!(checked.contains("digests OK"), "{checked}");
    // lintian: no error or warning that is not overridden with a reason.
    let lint = Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--tag-display-limit",
            "0",
            deb,
        ])
        .output()
        .expect("running lintian");
    assert!(
        lint.status.success(),
        "lintian:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}
