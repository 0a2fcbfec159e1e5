//! The web console in a real browser: Debian's headless Chromium, driven
//! through WebDriver by Python's selenium (`tests/lab/console/browser.py`),
//! against the master of a 3-host lab. The browser runs on the machine,
//! in h3's network namespace, so it reaches the master over the lab
//! network like a user's workstation on the cluster's LAN.
//!
//! It logs in with a token and sees the 3 nodes Ready; scales a service
//! from 2 to 4 with the page's form and sees the new pods appear without
//! a reload (and `berth ps` agrees); watches a rollout started with the
//! CLI complete on the page and rolls back with the button, authored by
//! the console's user; shows a `view` user no scale or rollback button
//! and has forged POSTs refused; shows in the service page's log tail a
//! line the container prints after the page was opened, and no log to a
//! `view-no-logs` user; finds no serious or critical accessibility
//! violation with axe-core (from npm) on the overview and service pages;
//! and saves screenshots under target/.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test console -- --ignored --nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use berth_harness::{repository_root, Lab, SERVE_VERSION};
use serde_json::{json, Value};

/// The master's console, as the browser reaches it (`h1` is mapped to
/// its lab address).
const CONSOLE: &str = "https://h1:7443/ui/";

/// The Python that has selenium: scripts/install-deps makes it.
fn python() -> String {
    std::env::var("BERTH_SELENIUM_PYTHON")
        .unwrap_or_else(|_| "/opt/berth-ci/venv/bin/python".to_owned())
}

/// Where the test keeps the browser's profile and its screenshots.
fn output_dir() -> PathBuf {
    let dir = repository_root().join("target/console-test");
    std::fs::create_dir_all(&dir).expect("creating target/console-test");
    std::fs::canonicalize(&dir).expect("target/console-test")
}

/// A headless Chromium behind `browser.py`.
struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Browser {
    /// Starts the browser in the network namespace of the process `pid`.
    fn start(pid: i32) -> Browser {
        let profile = output_dir().join("profile");
        let _ = std::fs::remove_dir_all(&profile);
        let script = repository_root().join("tests/lab/console/browser.py");
        let mut child = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "--", &python()])
            .arg(&script)
            .arg(&profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the browser (scripts/install-deps installs chromium and selenium)");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Browser {
            child,
            input,
            output,
        }
    }

    /// Sends one command; its answer, or a failure naming the command.
    fn try_call(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.input, "{command}").expect("writing to the browser");
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .expect("reading from the browser");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the browser answered {line:?} to {command}: {e}"));
        match answer.get("error") {
            Some(error) => Err(format!("{command}: {error}")),
            None => Ok(answer["ok"].clone()),
        }
    }

    #[track_caller]
    fn call(&mut self, command: Value) -> Value {
        self.try_call(command).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open(&mut self, path: &str) {
        let url = format!("{CONSOLE}{}", path.trim_start_matches('/'));
        self.call(json!({"op": "open", "url": url}));
    }

    fn js(&mut self, script: &str) -> Value {
        self.call(json!({"op": "js", "script": script}))
    }

    fn fill(&mut self, css: &str, value: &str) {
        self.call(json!({"op": "fill", "css": css, "value": value}));
    }

    fn click(&mut self, css: &str) {
        self.call(json!({"op": "click", "css": css}));
    }

    /// The text of the element `css`, or "".
    fn text(&mut self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        );
        self.js(&script).as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the page's heading is `heading` (after a navigation).
    #[track_caller]
    fn wait_for_page(&mut self, heading: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.text("h1") != heading {
            if std::time::Instant::now() > deadline {
                let page = self.js("return location.href + '\\n' + document.body.innerText;");
                panic!("waited 10 s for page {heading:?}; the browser shows {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Logs in with `token` through the form, as a person would.
    fn log_in(&mut self, token: &str) {
        self.open("login");
        self.fill("#token", token);
        self.click("form.login button");
    }

    /// Logs out with the page's button.
    fn log_out(&mut self) {
        self.click("header form button");
    }

    /// Posts `fields` to `path` from the page's own origin with its
    /// cookie, as a forged form would; the answer's status.
    fn post(&mut self, path: &str, fields: &Value) -> u64 {
        let script = format!(
            "const done = arguments[0];
             fetch({}, {{method: 'POST', body: new URLSearchParams({fields}),
                        headers: {{'x-berth-console': 'fetch'}}}})
               .then(r => done(r.status), e => done(String(e)));",
            json!(path)
        );
        let status = self.call(json!({"op": "async_js", "script": script}));
        status
            .as_u64()
            .unwrap_or_else(|| panic!("the POST to {path} failed: {status}"))
    }

    /// Saves a screenshot as `name` under target/console-test; its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let path = output_dir().join(name);
        self.call(json!({"op": "screenshot", "path": path}));
        println!("screenshot: {}", path.display());
        path
    }

    /// Marks the page: a reload or a navigation loses the mark.
    fn mark(&mut self) {
        self.js("window.berthTestMark = 'not reloaded';");
    }

    fn still_marked(&mut self) -> bool {
        self.js("return window.berthTestMark === 'not reloaded';") == json!(true)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_call(json!({"op": "quit"}));
        let _ = self.child.wait();
    }
}

/// Where axe-core's browser build is: scripts/install-deps installs it
/// from npm.
fn axe_script() -> String {
    let path = std::env::var("BERTH_AXE_JS")
        .unwrap_or_else(|_| "/opt/berth-ci/node_modules/axe-core/axe.min.js".to_owned());
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path} (scripts/install-deps installs axe-core): {e}"))
}

/// Runs axe-core on the open page (injected through WebDriver, which the
/// page's CSP does not govern) and fails on any violation of serious or
/// critical impact, printing each with the elements at fault.
#[track_caller]
fn assert_accessible(browser: &mut Browser, page: &str) {
    let started = std::time::Instant::now();
    browser.js(&format!("{}\nreturn typeof axe;", axe_script()));
    let violations = browser.call(json!({"op": "async_js", "script":
        "const done = arguments[0];
         axe.run(document).then(
           r => done(r.violations
             .filter(v => v.impact === 'serious' || v.impact === 'critical')
             .map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || ''))}))),
           e => done('axe failed: ' + e));"}));
    let Some(violations) = violations.as_array() else {
        panic!("axe-core on the {page} page: {violations}");
    };
    for v in violations {
        println!(
            "axe-core, {page} page: {} ({}): {}",
            v["id"], v["impact"], v["help"]
        );
        for node in v["nodes"].as_array().into_iter().flatten() {
            println!("    {}", node.as_str().unwrap_or_default());
        }
    }
    assert!(
        violations.is_empty(),
        "axe-core found {} serious or critical violations on the {page} page (printed above)",
        violations.len()
    );
    println!(
        "axe-core: no serious or critical violations on the {page} page ({:.1?})",
        started.elapsed()
    );
}

/// The status of a GET of `path` from the page's origin with its cookie
/// (the answer's body is not read: a stream would not end).
fn get_status(browser: &mut Browser, path: &str) -> u64 {
    let script = format!(
        "const done = arguments[0]; const stop = new AbortController();
         fetch({}, {{signal: stop.signal}})
           .then(r => {{ done(r.status); stop.abort(); }}, e => done(String(e)));",
        json!(path)
    );
    let status = browser.call(json!({"op": "async_js", "script": script}));
    status
        .as_u64()
        .unwrap_or_else(|| panic!("the GET of {path} failed: {status}"))
}

/// The rows of the table in `#id`, each as its cells' text.
fn rows(browser: &mut Browser, id: &str) -> Vec<Vec<String>> {
    let script = format!(
        "return Array.from(document.querySelectorAll('#{id} tbody tr')).map(
           r => Array.from(r.cells).map(c => c.innerText.trim()));"
    );
    serde_json::from_value(browser.js(&script)).unwrap_or_default()
}

/// The rollout progress bar: its revision, phase, value and maximum.
fn progress(browser: &mut Browser) -> Value {
    browser.js("const p = document.getElementById('rollout');
         return p && [p.dataset.revision, p.dataset.phase, p.value, p.max];")
}

/// `berth user create NAME` with `role` in the default project; the
/// token it prints.
fn user(lab: &Lab, name: &str, role: &str) -> String {
    let token = lab.berth("h1", &["user", "create", name]).assert_success();
    let token = token.lines().last().expect("a token").trim().to_owned();
    lab.berth(
        "h1",
        &["project", "add-member", "default", name, "--role", role],
    )
    .assert_success();
    token
}

/// The pods of `service` as `berth ps -o json` lists them: (name, ready).
fn berth_ps(lab: &Lab, service: &str) -> Vec<(String, bool)> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service)
        .map(|p| {
            let ready = p["status"]["containers"]
                .as_array()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true));
            (
                p["spec"]["name"].as_str().unwrap_or_default().to_owned(),
                ready,
            )
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root, chromium and selenium; run by scripts/test"]
fn the_console_shows_the_cluster_live_and_acts_with_the_users_role() {
    let lab = Lab::up("ui-console", 3);
    for host in ["h1", "h2", "h3"] {
        lab.make_web_images(host);
    }
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image",
            "local/web:v1",
            "--replicas",
            "2",
            "-p",
            "8080",
            "--readiness",
            "tcp:8080",
            "--",
            "sh",
            "-c",
            SERVE_VERSION,
        ],
    )
    .assert_success();
    let operator = user(&lab, "operator", "edit");
    let viewer = user(&lab, "viewer", "view");
    let auditor = user(&lab, "auditor", "view-no-logs");
    let admin = lab
        .exec("h1", &["cat", "/var/lib/berth/master/admin.token"])
        .assert_success()
        .trim()
        .to_owned();
    lab.eventually(Duration::from_secs(60), "web's 2 pods ready", || {
        let pods = berth_ps(&lab, "web");
        (pods.len() == 2 && pods.iter().all(|(_, ready)| *ready)).then_some(())
    });

    let h3 = lab.host("h3").pid.expect("h3 runs");
    let mut browser = Browser::start(h3);

    // (1) The admin logs in; the overview lists the 3 nodes, Ready.
    browser.log_in(&admin);
    browser.wait_for_page("Overview");
    let nodes = lab.eventually(Duration::from_secs(20), "3 nodes Ready", || {
        let nodes = rows(&mut browser, "nodes");
        (nodes.len() == 3 && nodes.iter().all(|n| n[1] == "Ready")).then_some(nodes)
    });
    let names: Vec<&str> = nodes.iter().map(|n| n[0].as_str()).collect();
    assert_eq!(names, ["h1", "h2", "h3"], "{nodes:?}");
    let overview = browser.screenshot("overview.png");
    // (6) axe-core finds nothing serious on the overview.
    assert_accessible(&mut browser, "overview");
    browser.log_out();
    browser.wait_for_page("Log in");

    // (2) An editor scales web from 2 to 4 with the form; the new pods
    // appear without a reload, and `berth ps` agrees.
    browser.log_in(&operator);
    browser.wait_for_page("Overview");
    browser.open("projects/default/services/web");
    browser.wait_for_page("Service web");
    assert_eq!(rows(&mut browser, "pods").len(), 2);
    browser.mark();
    browser.fill("#replicas", "4");
    browser.click("#scale");
    let shown = lab.eventually(Duration::from_secs(60), "4 ready pods on the page", || {
        let pods = rows(&mut browser, "pods");
        let ready = pods.iter().filter(|p| p[2] == "Running" && p[3] == "1/1");
        (pods.len() == 4 && ready.count() == 4).then_some(pods)
    });
    assert!(browser.still_marked(), "the page was reloaded");
    assert_eq!(browser.text("#status"), "web scaled to 4");
    let mut on_page: Vec<String> = shown.iter().map(|p| p[0].clone()).collect();
    on_page.sort();
    let mut listed: Vec<String> = berth_ps(&lab, "web").into_iter().map(|p| p.0).collect();
    listed.sort();
    assert_eq!(on_page, listed, "the page and berth ps list the same pods");
    assert_eq!(listed, ["web-0", "web-1", "web-2", "web-3"]);

    // (3) A rollout started with the CLI completes on the page's progress
    // bar, without a reload.
    lab.berth("h1", &["set", "image", "web", "local/web:v2"])
        .assert_success();
    lab.eventually(
        Duration::from_secs(120),
        "revision 2 complete on the page",
        || (progress(&mut browser) == json!(["2", "Complete", 4, 4])).then_some(()),
    );
    assert!(browser.still_marked(), "the page was reloaded");
    let service_page = browser.screenshot("service.png");

    // The rollback button returns to revision 1, authored by the
    // console's user.
    browser.click("tr[data-revision='1'] button.rollback");
    lab.eventually(Duration::from_secs(20), "revision 3 on the page", || {
        let history = rows(&mut browser, "history");
        history
            .first()
            .filter(|r| r[0] == "3" && r[1] == "rollback to 1")
            .map(|_| ())
    });
    let history = lab
        .berth("h1", &["rollout", "history", "web", "-o", "json"])
        .json();
    let rollback = history
        .as_array()
        .and_then(|h| h.iter().find(|d| d["revision"] == 3))
        .cloned()
        .unwrap_or_else(|| panic!("no revision 3 in {history}"));
    assert_eq!(rollback["cause"]["type"], "rollback", "{rollback}");
    assert_eq!(rollback["cause"]["toRevision"], 1, "{rollback}");
    assert_eq!(rollback["user"], "operator", "{rollback}");
    lab.eventually(
        Duration::from_secs(120),
        "the rollback complete on the page",
        || (progress(&mut browser) == json!(["3", "Complete", 4, 4])).then_some(()),
    );
    assert!(browser.still_marked(), "the page was reloaded");

    // (4) A line a pod of web prints now, after the page was opened,
    // appears in the page's log tail without a reload, escaped like
    // `berth logs`. (Which pods there are depends on the rollouts.)
    let pod = lab
        .pods()
        .into_iter()
        .find(|p| {
            let ready = p["status"]["containers"]
                .as_array()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true));
            p["service"] == "web" && p["node"].is_string() && ready
        })
        .expect("a ready pod of web in berth ps");
    let name = pod["spec"]["name"].as_str().expect("its name").to_owned();
    let node = pod["node"].as_str().expect("its node").to_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    let marker = format!("<b>console-marker-{nanos}</b> & done");
    assert!(
        !browser.text("#log").contains(&marker),
        "the marker is not printed yet"
    );
    let printed = std::time::Instant::now();
    lab.exec(
        &node,
        &[
            "docker",
            "exec",
            &format!("berth.{name}.web"),
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > /proc/1/fd/1",
            "sh",
            &marker,
        ],
    )
    .assert_success();
    let expected = format!("{name}@{node} | {marker}");
    lab.eventually(
        Duration::from_secs(30),
        "the marker in the log tail",
        || {
            browser
                .text("#log")
                .lines()
                .any(|l| l == expected)
                .then_some(())
        },
    );
    println!(
        "log tail: the marker showed {:.1?} after {name} printed it",
        printed.elapsed()
    );
    assert!(browser.still_marked(), "the page was reloaded");
    assert_eq!(
        browser.js("return document.querySelectorAll('#log b').length;"),
        json!(0),
        "the line's markup is shown as text, not applied"
    );

    // (6) axe-core finds nothing serious on the service page, with its
    // forms, buttons and log tail.
    assert_accessible(&mut browser, "service");

    // (5) Without the session's CSRF token, a POST is refused.
    assert_eq!(
        browser.post(
            "/ui/projects/default/services/web/scale",
            &json!({"replicas": "1"})
        ),
        403
    );
    browser.log_out();
    browser.wait_for_page("Log in");

    // A view user sees no scale or rollback button; a POST from its
    // session, with its own CSRF token, is refused by its role.
    browser.log_in(&viewer);
    browser.wait_for_page("Overview");
    browser.open("projects/default/services/web");
    browser.wait_for_page("Service web");
    assert_eq!(
        rows(&mut browser, "pods").len(),
        4,
        "the viewer sees the pods"
    );
    let buttons = browser.js(
        "return document.querySelectorAll('form[action$=\"/scale\"], form[action$=\"/rollback\"], #replicas').length;",
    );
    assert_eq!(
        buttons,
        json!(0),
        "a viewer gets no scale or rollback control"
    );
    let csrf = browser.js("return document.querySelector('input[name=csrf]').value;");
    let csrf = csrf.as_str().expect("the viewer's CSRF token").to_owned();
    assert_eq!(
        browser.post(
            "/ui/projects/default/services/web/scale",
            &json!({"replicas": "1", "csrf": csrf})
        ),
        403
    );
    assert_eq!(
        browser.post(
            "/ui/projects/default/services/web/rollback",
            &json!({"toRevision": "2", "csrf": csrf})
        ),
        403
    );
    assert!(
        browser.text("#log").contains(&expected),
        "a view user reads the logs"
    );
    browser.log_out();
    browser.wait_for_page("Log in");

    // A view-no-logs user sees the service but not its log, neither on
    // the page nor from the log stream.
    browser.log_in(&auditor);
    browser.wait_for_page("Overview");
    browser.open("projects/default/services/web");
    browser.wait_for_page("Service web");
    assert_eq!(
        rows(&mut browser, "pods").len(),
        4,
        "the auditor sees the pods"
    );
    assert_eq!(
        browser.js("return document.querySelectorAll('#log').length;"),
        json!(0),
        "a view-no-logs user gets no log tail"
    );
    let refusal = browser.text("#log-refused");
    assert!(!refusal.is_empty(), "the page says why there is no log");
    assert!(
        !browser
            .js("return document.body.innerText;")
            .to_string()
            .contains("console-marker"),
        "no log line reaches a view-no-logs user's page"
    );
    assert_eq!(
        get_status(
            &mut browser,
            "/ui/live/projects/default/services/web/logs?after=0"
        ),
        403
    );
    let web = lab.berth("h1", &["describe", "web"]).assert_success();
    assert!(
        web.lines().any(|l| l == "replicas: 4"),
        "web still wants 4 replicas: {web}"
    );

    // (7) The screenshots are there.
    for path in [overview, service_page] {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes", path.display());
    }
}
