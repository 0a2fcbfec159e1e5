//! Templates on a real cluster: `berth new-app` of the web + database
//! example creates both services, the link and the route in one call; the
//! page served through the route shows that the web pod reached the
//! database with the generated password, which `berth process` marks as
//! generated and which no world-readable file and no `systemctl show`
//! holds; a second instance with another NAME, from the template stored
//! with `berth template create`, runs side by side; and a
//! template with one bad object (a bad port, or a route host another route
//! holds) creates nothing: no service, link, route or event; and a failing
//! script job makes `new-app --wait` fail naming it, the objects kept.
//!
//!
//! A second test covers what a template can do with what exists: a
//! template from the shared library, seen from another project, made
//! with `--link-to web` links the running `web` service to its database
//! (web reaches it at once, unrestarted) and its script job seeds that
//! database; `berth template export` of the pair makes a working copy
//! under another name with a password of its own; and `berth run
//! --generate-env` makes a secret once that `berth set env` overrides and
//! its removal brings back.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test templates -- --ignored --nocapture`.

use std::path::Path;
use std::time::Duration;

use berth_harness::Lab;

/// h1's address: the master and the router run there.
const ROUTER: &str = "10.231.0.11";

/// A template whose script job fails.
const SEEDED: &str = "\
kind: Template
name: seeded
parameters:
- name: NAME
  required: true
objects:
- kind: Service
  name: ${NAME}
  replicas: 1
  template:
    name: ${NAME}
    containers:
    - name: app
      image: local/busybox
      args: [sleep, '100000']
script:
  name: ${NAME}-seed
  backoffLimit: 1
  template:
    name: ${NAME}-seed
    containers:
    - name: seed
      image: local/busybox
      args: [sh, -c, 'echo seeding; exit 3']
";

/// Where the example is copied on h1.
const EXAMPLE: &str = "/root/web-db.yaml";

/// Where the seeded example is copied on h1.
const SEEDED_EXAMPLE: &str = "/root/web-db-seeded.yaml";

/// Boots a lab whose h1 runs the master and a router and takes no pods,
/// with the example template on h1.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.start_router("h1");
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/templates/web-db.yaml");
    lab.copy_in("h1", &example, EXAMPLE);
    let seeded =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/templates/web-db-seeded.yaml");
    lab.copy_in("h1", &seeded, SEEDED_EXAMPLE);
    lab
}

/// The page the router serves for `host`, if it answers 200.
fn page(lab: &Lab, host: &str) -> Option<String> {
    let run = lab.exec(
        "h2",
        &[
            "curl",
            "-sf",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{ROUTER}/"),
        ],
    );
    run.success().then(|| run.stdout().trim().to_owned())
}

/// The generated password `new-app` printed once: `  DB_PASSWORD=...`.
fn generated_password(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("DB_PASSWORD="))
        .unwrap_or_else(|| panic!("no generated DB_PASSWORD in:\n{output}"))
        .to_owned()
}

/// Whether service `name` exists (`berth describe service` finds it).
fn service_exists(lab: &Lab, name: &str) -> bool {
    lab.berth("h1", &["describe", "service", name]).success()
}

/// Every berth event's JSON text, to search for an object's name.
fn events_text(lab: &Lab) -> String {
    lab.berth("h1", &["events", "-o", "json"]).assert_success()
}

/// Where `secret` can be read on `host` by anyone but root: every file
/// that holds it, tried as user nobody (a file may be 0644 in a 0700
/// directory), and the properties of every berth unit.
fn leaks(lab: &Lab, host: &str, secret: &str) -> String {
    let files = lab.sh(
        host,
        &format!(
            "grep -rlsF '{secret}' /etc /run /var /tmp /root /srv /opt | while read -r f; do \
               runuser -u nobody -- cat \"$f\" >/dev/null 2>&1 && echo \"readable: $f\"; \
             done; true"
        ),
    );
    let units = lab.sh(
        host,
        &format!(
            "for u in $(systemctl list-units --all --plain --no-legend 'berth*' | awk '{{print $1}}'); do \
               systemctl show \"$u\" | grep -q -F '{secret}' && echo \"systemctl show $u\"; \
             done; true"
        ),
    );
    format!("{}{}", files.stdout(), units.stdout())
        .trim()
        .to_owned()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn templates_create_linked_services_with_a_generated_password_all_or_nothing() {
    let lab = boot("tpl-templates", 3);

    // The parameters, the generated one marked as such.
    let parameters = lab
        .berth("h1", &["process", EXAMPLE, "--parameters"])
        .assert_success();
    let password_row = parameters
        .lines()
        .find(|l| l.starts_with("DB_PASSWORD"))
        .unwrap_or_else(|| panic!("no DB_PASSWORD row:\n{parameters}"));
    assert!(
        password_row.contains("generated from [a-zA-Z0-9]{16}"),
        "{parameters}"
    );
    // A missing or unknown parameter is named.
    let missing = lab.berth("h1", &["process", EXAMPLE]).assert_failure();
    assert!(missing.contains("parameter NAME is required"), "{missing}");
    let unknown = lab
        .berth("h1", &["process", EXAMPLE, "-p", "NAME=a", "-p", "SIZE=2"])
        .assert_failure();
    assert!(unknown.contains("unknown parameter SIZE"), "{unknown}");

    // One call makes both services, the link and the route.
    let created = lab
        .berth("h1", &["new-app", EXAMPLE, "-p", "NAME=shop"])
        .assert_success();
    for object in [
        "service/shop-db created",
        "service/shop-web created",
        "route/shop created",
        "link/shop-web->shop-db:5432 created",
    ] {
        assert!(created.contains(object), "{object} missing in:\n{created}");
    }
    let password = generated_password(&created);
    assert_eq!(password.len(), 16, "{created}");

    // The page through the route says the database let the web pod in:
    // the password reached it through the link.
    let shown = lab.eventually(Duration::from_secs(90), "shop's page", || {
        page(&lab, "shop.example.test").filter(|p| p.contains("db: ok"))
    });
    assert_eq!(shown, "shop-web: db: ok");

    // The password is a secret: the API blanks it, and no world-readable
    // file or unit property on any host holds it.
    let db = lab
        .berth("h1", &["describe", "service", "shop-db", "-o", "json"])
        .assert_success();
    assert!(
        !db.contains(&password),
        "describe shows the password:\n{db}"
    );
    for host in ["h1", "h2", "h3"] {
        let found = leaks(&lab, host, &password);
        assert!(
            found.is_empty(),
            "the password is readable on {host}:\n{found}"
        );
    }

    // The same template again under another name, side by side, with a
    // password of its own.
    // This time from the template stored in the project.
    let stored = lab
        .berth("h1", &["template", "create", "-f", EXAMPLE])
        .assert_success();
    assert_eq!(stored, "template/web-db stored\n");
    let listed = lab.berth("h1", &["template", "ls"]).assert_success();
    assert!(listed.contains("web-db"), "{listed}");
    let second = lab
        .berth("h1", &["new-app", "web-db", "-p", "NAME=shop2"])
        .assert_success();
    assert_ne!(generated_password(&second), password);
    lab.eventually(Duration::from_secs(90), "shop2's page", || {
        page(&lab, "shop2.example.test").filter(|p| p == "shop2-web: db: ok")
    });
    assert_eq!(
        page(&lab, "shop.example.test").as_deref(),
        Some("shop-web: db: ok")
    );

    // One bad object refuses the whole template, naming the object and
    // field, before anything is sent.
    let bad_port = lab
        .exec(
            "h1",
            &[
                "sh",
                "-c",
                &format!(
                    "sed 's/containerPort: 8080/containerPort: 0/' {EXAMPLE} > /root/bad.yaml"
                ),
            ],
        )
        .assert_success();
    drop(bad_port);
    let refused = lab
        .berth("h1", &["new-app", "/root/bad.yaml", "-p", "NAME=bad"])
        .assert_failure();
    assert!(
        refused.contains("objects[1]: template.containers[0].ports[0].containerPort"),
        "{refused}"
    );

    // A conflict only the master sees (the route's host is shop's) refuses
    // the whole batch there: the services before it are not made either.
    let taken = lab
        .exec(
            "h1",
            &[
                "sh",
                "-c",
                &format!("sed 's/host: .*/host: shop.example.test/' {EXAMPLE} > /root/taken.yaml"),
            ],
        )
        .assert_success();
    drop(taken);
    let refused = lab
        .berth("h1", &["new-app", "/root/taken.yaml", "-p", "NAME=other"])
        .assert_failure();
    assert!(
        refused.contains("objects[3] (route other)") && refused.contains("shop.example.test"),
        "{refused}"
    );
    for never in ["bad-db", "bad-web", "other-db", "other-web"] {
        assert!(!service_exists(&lab, never), "service {never} exists");
    }
    let routes = lab.berth("h1", &["route", "ls"]).assert_success();
    assert!(!routes.contains("other"), "{routes}");
    let events = events_text(&lab);
    assert!(
        !events.contains("other-db") && !events.contains("bad-db"),
        "events of a refused template:\n{events}"
    );

    // The script job runs once the objects exist; when it fails,
    // `new-app --wait` exits non-zero naming it, and the objects stay.
    lab.sh(
        "h1",
        &format!("cat > /root/seeded.yaml <<'EOF'\n{SEEDED}EOF\n"),
    )
    .assert_success();
    let run = lab.berth(
        "h1",
        &[
            "new-app",
            "/root/seeded.yaml",
            "-p",
            "NAME=seeded",
            "--wait",
        ],
    );
    let failed = run.assert_failure();
    assert!(
        failed.contains("script job seeded-seed did not succeed"),
        "{failed}"
    );
    assert!(
        run.stdout().contains("job/seeded-seed created"),
        "{}",
        run.stdout()
    );
    assert!(service_exists(&lab, "seeded"), "the objects were removed");

    lab.down();
}

/// The value `name` that a command printed once: `  NAME=...`.
fn shown_once(output: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no generated {name} in:\n{output}"))
        .to_owned()
}

/// `berth ARGS` on h1 with `token` instead of the saved admin login.
fn berth_as(lab: &Lab, token: &str, args: &[&str]) -> berth_harness::Run {
    let variable = format!("BERTH_TOKEN={token}");
    let mut argv = vec!["env", variable.as_str(), "berth"];
    argv.extend(args);
    lab.exec("h1", &argv)
}

/// The running pods of `service`: each pod's name and node.
fn running_pods(lab: &Lab, service: &str) -> Vec<(String, String)> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service && p["status"]["phase"] == "Running")
        .filter_map(|p| {
            Some((
                p["spec"]["name"].as_str()?.to_owned(),
                p["node"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A shell command's output inside the container `container` of `pod`
/// on `node`, if it succeeded.
fn in_container(lab: &Lab, node: &str, pod: &str, container: &str, script: &str) -> Option<String> {
    let name = format!("berth.{pod}.{container}");
    let run = lab.exec(node, &["docker", "exec", &name, "sh", "-c", script]);
    run.success().then(|| run.stdout().trim().to_owned())
}

/// `TOKEN`'s value in every running pod of `web`, once there is one
/// and they all agree.
fn web_token(lab: &Lab) -> Option<String> {
    let pods = running_pods(lab, "web");
    let mut values = Vec::new();
    for (pod, node) in &pods {
        values.push(in_container(lab, node, pod, "web", "echo \"$TOKEN\"")?);
    }
    values.dedup();
    (values.len() == 1).then(|| values.remove(0))
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn templates_link_to_a_running_service_come_from_the_shared_library_and_export_copies() {
    let lab = boot("tpl-more", 3);

    // A running service with a secret generated once, shown once.
    let run = lab
        .berth(
            "h1",
            &[
                "run",
                "web",
                "--image",
                "local/busybox",
                "--generate-env",
                "TOKEN=[a-z]{12}",
                "--",
                "sleep",
                "1d",
            ],
        )
        .assert_success();
    let token = shown_once(&run, "TOKEN");
    assert_eq!(token.len(), 12, "{run}");
    assert!(token.chars().all(|c| c.is_ascii_lowercase()), "{run}");
    let shown = lab
        .berth("h1", &["describe", "service", "web", "-o", "json"])
        .assert_success();
    assert!(
        !shown.contains(&token),
        "describe shows the token:\n{shown}"
    );
    let (web_pod, web_node) = lab.eventually(Duration::from_secs(60), "web running", || {
        running_pods(&lab, "web").pop()
    });
    assert_eq!(
        lab.eventually(Duration::from_secs(30), "web's token", || web_token(&lab)),
        token
    );
    let found = leaks(&lab, &web_node, &token);
    assert!(
        found.is_empty(),
        "the token is readable on {web_node}:\n{found}"
    );
    let container = format!("berth.{web_pod}.web");
    let started = lab
        .exec(
            &web_node,
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.StartedAt}}",
                &container,
            ],
        )
        .assert_success();

    // The seeded template in the shared library, which another project
    // reads too.
    let stored = lab
        .berth(
            "h1",
            &["template", "create", "--shared", "-f", SEEDED_EXAMPLE],
        )
        .assert_success();
    assert_eq!(
        stored,
        "template/web-db-seeded stored in the shared library\n"
    );
    lab.berth("h1", &["project", "create", "team"])
        .assert_success();
    let created = lab.berth("h1", &["user", "create", "ana"]).assert_success();
    let ana = created.lines().last().unwrap_or_default().trim().to_owned();
    assert!(ana.starts_with("u:"), "no token in {created}");
    lab.berth(
        "h1",
        &["project", "add-member", "team", "ana", "--role", "edit"],
    )
    .assert_success();
    // ana, who has a role in team only, finds it from there.
    let listed = berth_as(&lab, &ana, &["-p", "team", "template", "ls"]).assert_success();
    let row = listed
        .lines()
        .find(|l| l.starts_with("web-db-seeded"))
        .unwrap_or_else(|| panic!("no shared template in team's list:\n{listed}"));
    assert!(row.contains("shared"), "{listed}");
    let parameters = berth_as(
        &lab,
        &ana,
        &["-p", "team", "process", "web-db-seeded", "--parameters"],
    )
    .assert_success();
    assert!(parameters.contains("ROUTER"), "{parameters}");
    // Only the cluster's admin writes the library.
    let refused =
        berth_as(&lab, &ana, &["template", "rm", "--shared", "web-db-seeded"]).assert_failure();
    assert!(!refused.is_empty());
    assert!(lab
        .berth("h1", &["template", "describe", "web-db-seeded"])
        .success());

    // new-app from the library: web is linked to the new database in the
    // same commit, and the script job seeds it; --wait sees it succeed.
    let created = lab
        .berth(
            "h1",
            &[
                "new-app",
                "web-db-seeded",
                "-p",
                "NAME=shop",
                "-p",
                &format!("ROUTER={ROUTER}"),
                "--link-to",
                "web",
                "--wait",
            ],
        )
        .assert_success();
    for object in [
        "service/shop-db created",
        "link/web->shop-db:5432 created",
        "job/shop-seed created",
    ] {
        assert!(created.contains(object), "{object} missing in:\n{created}");
    }
    let password = generated_password(&created);
    let seeded = lab.eventually(Duration::from_secs(90), "shop's seeded page", || {
        page(&lab, "shop.example.test").filter(|p| p.contains("rows"))
    });
    assert_eq!(seeded, "shop-web: db: ok, 3 rows");

    // web reaches the database through the new link, without a restart.
    let reached = lab.eventually(Duration::from_secs(60), "web reaching shop-db", || {
        in_container(
            &lab,
            &web_node,
            &web_pod,
            "web",
            &format!("timeout 5 wget -q -O - http://127.0.0.1:5432/{password}/"),
        )
    });
    assert_eq!(reached, "db: ok, 3 rows");
    let still = lab
        .exec(
            &web_node,
            &[
                "docker",
                "inspect",
                "-f",
                "{{.State.StartedAt}}",
                &container,
            ],
        )
        .assert_success();
    assert_eq!(still, started, "web was restarted");

    // A template with no linkable service refuses --link-to, creating
    // nothing.
    lab.sh(
        "h1",
        &format!("cat > /root/seeded.yaml <<'EOF'\n{SEEDED}EOF\n"),
    )
    .assert_success();
    let refused = lab
        .berth(
            "h1",
            &[
                "new-app",
                "/root/seeded.yaml",
                "-p",
                "NAME=x",
                "--link-to",
                "web",
            ],
        )
        .assert_failure();
    assert!(refused.contains("--link-to"), "{refused}");
    assert!(
        !service_exists(&lab, "x"),
        "a refused template made its service"
    );

    // Export the pair, and make a copy under another name: it works, with
    // a password of its own, and no secret is in the template.
    let exported = lab
        .berth("h1", &["template", "export", "shop-web", "shop-db"])
        .assert_success();
    assert!(
        !exported.contains(&password),
        "the password was exported:\n{exported}"
    );
    assert!(exported.contains("generate: expression"), "{exported}");
    lab.berth(
        "h1",
        &[
            "template",
            "export",
            "shop-web",
            "shop-db",
            "--as",
            "shop-copy",
        ],
    )
    .assert_success();
    let copy = lab
        .berth("h1", &["new-app", "shop-copy", "-p", "NAME=copy"])
        .assert_success();
    assert!(copy.contains("service/copy-db created"), "{copy}");
    let copy_password = generated_password(&copy);
    assert_ne!(copy_password, password);
    let copied = lab.eventually(Duration::from_secs(90), "copy's page", || {
        page(&lab, "copy.example.test").filter(|p| p.contains("db: ok"))
    });
    assert_eq!(copied, "copy-web: db: ok, empty");
    assert_eq!(
        page(&lab, "shop.example.test").as_deref(),
        Some("shop-web: db: ok, 3 rows")
    );

    // The generated token: a user's value overrides it, and removing
    // that brings the generated one back.
    lab.berth("h1", &["set", "env", "web", "TOKEN=mine"])
        .assert_success();
    lab.eventually(Duration::from_secs(90), "web's overridden token", || {
        web_token(&lab).filter(|t| t == "mine")
    });
    lab.berth("h1", &["set", "env", "web", "TOKEN-"])
        .assert_success();
    lab.eventually(
        Duration::from_secs(90),
        "web's generated token back",
        || web_token(&lab).filter(|t| *t == token),
    );

    lab.down();
}
