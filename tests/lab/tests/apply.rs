//! `berth apply -f` and `berth diff -f` on a real cluster: a file of a
//! service, a link and a route creates all three; applied again, or
//! applied back from `berth describe service web -o yaml`, it changes
//! nothing (no write, no audit event, the same resourceVersion); edited,
//! `berth diff` shows the change, and for each node running a pod of
//! the service the unified diff of that pod's unit file, and applying it
//! replaces only the changed service; and a file with a bad document is refused, naming
//! the file, the document and the field, with nothing applied.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test apply -- --ignored --nocapture`.

use std::time::Duration;

use berth_harness::Lab;
use serde_json::Value;

/// A service, a link from it to `db`, and a route to it.
const SHOP: &str = "\
kind: Service
name: web
labels: {app: shop}
replicas: 2
template:
  name: web
  containers:
  - name: web
    image: local/busybox
    command: [sleep, '100000']
    env:
    - {name: MODE, value: one}
---
kind: Link
service: web
target: db
port: 5432
---
kind: Route
name: www
labels: {app: shop}
service: web
host: www.shop.test
";

/// Writes `text` to `path` on h1.
fn write(lab: &Lab, path: &str, text: &str) {
    lab.sh("h1", &format!("cat > {path} <<'EOF'\n{text}EOF\n"))
        .assert_success();
}

/// `berth describe service NAME -o json`.
fn described(lab: &Lab, name: &str) -> Value {
    lab.berth("h1", &["describe", "service", name, "-o", "json"])
        .json()
}

/// The service's resourceVersion, which every write of it changes.
/// How many revisions `service` has (`berth rollout history`).
fn revisions(lab: &Lab, service: &str) -> usize {
    let history = lab
        .berth("h1", &["rollout", "history", service, "-o", "json"])
        .json();
    history.as_array().map_or(0, Vec::len)
}

fn revision(lab: &Lab, name: &str) -> u64 {
    described(lab, name)["resourceVersion"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has no resourceVersion"))
}

/// Every change made through the API, as `berth events` shows it.
fn audits(lab: &Lab) -> Vec<String> {
    lab.events("Audit")
        .iter()
        .map(|e| format!("{} {}", e["object"], e["reason"]))
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn apply_creates_then_changes_only_what_the_files_change() {
    let lab = Lab::up("udiff-apply-shop", 2);
    // A second tag of the image, for the edit to roll out to.
    for host in ["h1", "h2"] {
        lab.sh(host, "docker tag local/busybox local/busybox:v2")
            .assert_success();
    }
    lab.berth(
        "h1",
        &[
            "run",
            "db",
            "--image",
            "local/busybox",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    write(&lab, "/tmp/shop.yaml", SHOP);

    let first = lab.berth("h1", &["apply", "-f", "/tmp/shop.yaml"]);
    assert_eq!(
        first.assert_success(),
        "service/web created\nlink/web->db:5432 created\nroute/www created\n"
    );
    let web = described(&lab, "web");
    assert_eq!(web["links"][0]["service"], "db", "{web}");
    assert_eq!(web["labels"]["app"], "shop", "{web}");
    let routes = lab.berth("h1", &["route", "ls"]).assert_success();
    assert!(routes.contains("www.shop.test"), "{routes}");
    lab.eventually(Duration::from_secs(60), "web-0 and web-1 running", || {
        ["web-0", "web-1"]
            .iter()
            .all(|p| {
                lab.pod(p)
                    .is_some_and(|p| p["status"]["phase"] == "Running")
            })
            .then_some(())
    });

    // Applied again, and applied back from describe: nothing is written.
    let (web_before, db_before, audits_before) =
        (revision(&lab, "web"), revision(&lab, "db"), audits(&lab));
    let again = lab.berth("h1", &["apply", "-f", "/tmp/shop.yaml"]);
    assert_eq!(
        again.assert_success(),
        "service/web unchanged\nlink/web->db:5432 unchanged\nroute/www unchanged\n"
    );
    let shown = lab
        .berth("h1", &["describe", "service", "web", "-o", "yaml"])
        .assert_success();
    write(&lab, "/tmp/web.yaml", &shown);
    let back = lab.berth("h1", &["apply", "-f", "/tmp/web.yaml"]);
    assert_eq!(back.assert_success(), "service/web unchanged\n");
    let unchanged = lab.berth("h1", &["diff", "-f", "/tmp/shop.yaml"]);
    assert_eq!(unchanged.code(), Some(0), "{}", unchanged.stderr());
    assert_eq!(unchanged.stdout(), "");
    assert_eq!(revision(&lab, "web"), web_before);
    assert_eq!(
        audits(&lab),
        audits_before,
        "apply of unchanged files wrote"
    );
    assert_eq!(revisions(&lab, "web"), 1, "no new revision");

    // Edited: diff shows the change, the object's and each pod's unit
    // file on its node; apply replaces web alone.
    write(
        &lab,
        "/tmp/shop.yaml",
        &SHOP
            .replace("value: one", "value: two")
            .replace("image: local/busybox\n", "image: local/busybox:v2\n"),
    );
    let diff = lab.berth("h1", &["diff", "-f", "/tmp/shop.yaml"]);
    assert_eq!(diff.code(), Some(1), "{}", diff.stderr());
    let shown = diff.stdout();
    println!("berth diff -f /tmp/shop.yaml:\n{shown}");
    assert!(
        shown.starts_with("--- service/web (cluster)\n+++ service/web (files)\n"),
        "{shown}"
    );
    let object = shown.split("\n# node ").next().unwrap_or_default();
    let changed: Vec<&str> = object
        .lines()
        .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
        .map(str::trim)
        .collect();
    assert_eq!(
        changed,
        [
            "-    image: local/busybox",
            "+    image: local/busybox:v2",
            "-      value: one",
            "+      value: two"
        ],
        "{shown}"
    );
    assert!(!shown.contains("route/www"), "{shown}");
    for (index, pod) in ["web-0", "web-1"].iter().enumerate() {
        let node = lab
            .pod(pod)
            .and_then(|p| p["node"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{pod} has no node"));
        let unit = format!("berth-web\\x2d{index}-web.service");
        let expected =
            format!("--- node {node}: {unit} (now)\n+++ node {node}: {unit} (after apply)\n");
        assert!(shown.contains(&expected), "no {expected:?} in\n{shown}");
        let description = format!("Description=berth pod {pod}, container web (local/busybox");
        assert!(
            shown.contains(&format!("\n-{description})\n+{description}:v2)\n")),
            "{pod}'s unit change on {node} not in\n{shown}"
        );
        // The "now" side is the file the node's agent wrote.
        let file = lab
            .sh(
                &node,
                &format!("cat \"$(systemctl show -P FragmentPath '{unit}')\""),
            )
            .assert_success();
        let now: String = shown
            .split(&expected)
            .nth(1)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with([' ', '-', '+']) && !l.starts_with("---"))
            .filter_map(|l| l.strip_prefix([' ', '-']))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            file.contains(&now),
            "{node}'s {unit}:\n{file}\nshown as:\n{now}"
        );
    }
    let edited = lab.berth("h1", &["apply", "-f", "/tmp/shop.yaml"]);
    assert_eq!(
        edited.assert_success(),
        "service/web configured\nlink/web->db:5432 unchanged\nroute/www unchanged\n"
    );
    assert!(revision(&lab, "web") > web_before);
    assert_eq!(revision(&lab, "db"), db_before);
    // Only the changed service rolls out.
    assert_eq!(revisions(&lab, "web"), 2);
    assert_eq!(revisions(&lab, "db"), 1);
    lab.berth(
        "h1",
        &["rollout", "status", "web", "-w", "--timeout", "90s"],
    )
    .assert_success();
    let web = described(&lab, "web");
    assert_eq!(
        web["template"]["containers"][0]["env"][0]["value"], "two",
        "{web}"
    );
    let new_audits: Vec<String> = audits(&lab)
        .into_iter()
        .filter(|a| !audits_before.contains(a))
        .collect();
    assert_eq!(new_audits.len(), 1, "{new_audits:?}");
    assert!(
        new_audits[0].contains("service/") && new_audits[0].contains("PUT"),
        "{new_audits:?}"
    );

    // A bad document anywhere: nothing at all is applied.
    let bad = format!(
        "{}---\n{}",
        SHOP.split("---")
            .next()
            .unwrap_or_default()
            .replace("name: web", "name: api"),
        SHOP.split("---")
            .next()
            .unwrap_or_default()
            .replace("local/busybox", "''"),
    );
    write(&lab, "/tmp/bad.yaml", &bad);
    let web_now = revision(&lab, "web");
    let refused = lab.berth("h1", &["apply", "-f", "/tmp/bad.yaml"]);
    assert!(!refused.success(), "{}", refused.stdout());
    assert!(
        refused
            .stderr()
            .contains("/tmp/bad.yaml: document 2: template.containers[0].image: must not be empty"),
        "{}",
        refused.stderr()
    );
    assert_eq!(refused.stdout(), "");
    assert!(!lab.berth("h1", &["describe", "service", "api"]).success());
    assert_eq!(revision(&lab, "web"), web_now);

    lab.down();
}
