//! Builds in the lab: a git push to the lab's git server (`git daemon` on
//! h1, with `examples/git/post-receive` as its hook) runs the whole chain
//! (webhook, source-to-image build with `examples/builders/busybox-httpd`,
//! push to the integrated registry, rollout, route) under load; Docker
//! builds of a directory honour `.dockerignore`; failures, run policies,
//! builder-image triggers, cancel and the webhooks' refusals.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test builds -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_harness::{Lab, REGISTRY};

const ROUTER: &str = "10.231.0.11";

/// A lab whose h1 runs the master, the registry, the git server and the
/// router and takes no pods; the builder image is `builder:latest`.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.berth("h1", &["registry", "login"]).assert_success();
    lab.make_builder_image("h1");
    lab.push_image("local/s2i-httpd", "builder:latest");
    lab.start_git_server("h1");
    lab
}

/// Build NAME as `berth build describe -o json` shows it.
fn build(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    let run = lab.berth("h1", &["build", "describe", name, "-o", "json"]);
    run.success().then(|| run.json())
}

fn phase(lab: &Lab, name: &str) -> String {
    build(lab, name)
        .and_then(|b| b["phase"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until build NAME ended; its record.
fn ended(lab: &Lab, name: &str, within: Duration) -> serde_json::Value {
    lab.eventually(within, &format!("build {name} to end"), || {
        build(lab, name).filter(|b| {
            matches!(
                b["phase"].as_str(),
                Some("Complete" | "Failed" | "Cancelled")
            )
        })
    })
}

/// The builds of config NAME, by number.
fn builds_of(lab: &Lab, config: &str) -> Vec<serde_json::Value> {
    let out = lab
        .berth("h1", &["build", "ls", config, "-o", "json"])
        .assert_success();
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("builds");
    list
}

/// Where stream tag `site:latest` points.
fn site_digest(lab: &Lab) -> Option<String> {
    let run = lab.berth("h1", &["is", "describe", "site", "-o", "json"]);
    if !run.success() {
        return None;
    }
    run.json()["status"]["tags"]["latest"][0]["digest"]
        .as_str()
        .map(str::to_owned)
}

/// What `site.example.test` answers through the router, `n` times.
fn routed_answers(lab: &Lab, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| lab.routed(ROUTER, "site.example.test"))
        .collect()
}

fn page(text: &str) -> Vec<(&'static str, String)> {
    vec![("index.html", text.to_owned())]
}

fn push(lab: &Lab, files: &[(&'static str, String)]) -> (String, String) {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    lab.git_push("h1", "site", &files)
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_git_push_builds_pushes_and_rolls_out_the_site_without_a_failed_request() {
    let lab = boot("build-push", 3);
    lab.start_router("h1");
    // The repository holds a first site before the config exists: the
    // config's creation builds it (cause: config change).
    lab.make_git_repository("h1", "site", None);
    push(&lab, &page("v1"));
    lab.berth(
        "h1",
        &[
            "build",
            "create",
            "site",
            "--strategy",
            "source",
            "--builder",
            "builder:latest",
            "--to",
            "site:latest",
            "--git",
            "git://h1/site.git",
            "--run-policy",
            "serial-latest-only",
        ],
    )
    .assert_success();
    let first = ended(&lab, "site-1", Duration::from_secs(120));
    assert_eq!(first["phase"], "Complete", "{first}");
    assert_eq!(first["cause"]["kind"], "config-change", "{first}");
    let logs = lab
        .berth("h1", &["build", "logs", "site-1"])
        .assert_success();
    assert!(logs.contains("Installing the site"), "{logs}");
    let v1 = site_digest(&lab).expect("site:latest after build 1");
    let described = lab
        .berth("h1", &["is", "describe", "site"])
        .assert_success();
    assert!(described.contains("build site-1"), "{described}");

    // A service follows site:latest behind a route.
    lab.berth(
        "h1",
        &[
            "run",
            "site",
            "--image-stream",
            "site:latest",
            "--replicas",
            "2",
            "-p",
            "8080",
            "--readiness",
            "tcp:8080",
        ],
    )
    .assert_success();
    lab.berth("h1", &["route", "add", "site", "site.example.test"])
        .assert_success();
    lab.eventually(Duration::from_secs(90), "v1 routed", || {
        (routed_answers(&lab, 3) == BTreeSet::from(["v1".to_owned()])).then_some(())
    });
    let webhook = lab.build_webhook("site");
    lab.hook_webhook("h1", "site", &webhook);

    // A push runs the chain: the webhook starts build 2 of that commit,
    // its image moves site:latest, the service rolls out, the route serves
    // the new page; under load, no request fails.
    let bench = lab.install_bench("h1");
    let pushed = Instant::now();
    let (load, commit) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            lab.exec(
                "h1",
                &[
                    bench,
                    "load",
                    "--target",
                    &format!("{ROUTER}:80"),
                    "--host",
                    "site.example.test",
                    "--rate",
                    "50",
                    "--seconds",
                    "60",
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        let (commit, said) = push(&lab, &page("v2"));
        assert!(said.contains("\"started\":\"site-2\""), "{said}");
        let second = ended(&lab, "site-2", Duration::from_secs(120));
        assert_eq!(second["phase"], "Complete", "{second}");
        assert_eq!(second["cause"]["kind"], "git-webhook", "{second}");
        assert_eq!(second["cause"]["detail"], commit.as_str(), "{second}");
        lab.eventually(Duration::from_secs(60), "v2 routed", || {
            (routed_answers(&lab, 3) == BTreeSet::from(["v2".to_owned()])).then_some(())
        });
        (load.join().expect("the load"), commit)
    });
    eprintln!(
        "push {commit} to v2 served in {:?}",
        pushed.elapsed() // includes the rest of the load's minute
    );
    let out = load.assert_success();
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("load summary");
    eprintln!("load during the switch: {summary}");
    assert_eq!(summary["failed"], 0, "requests failed: {summary}");
    let seen: BTreeSet<String> = summary["bodies"]
        .as_object()
        .map(|b| b.keys().cloned().collect())
        .unwrap_or_default();
    assert!(seen.contains("v2"), "{summary}");
    let v2 = site_digest(&lab).expect("site:latest after build 2");
    assert_ne!(v1, v2);

    // A site assemble refuses (no index.html): Failed, the tag stays, and
    // nothing rolls out.
    let revisions = lab
        .berth("h1", &["rollout", "history", "site", "-o", "json"])
        .assert_success();
    let (_, said) = push(&lab, &[("about.html", "no index".to_owned())]);
    assert!(said.contains("\"started\":\"site-3\""), "{said}");
    let third = ended(&lab, "site-3", Duration::from_secs(120));
    assert_eq!(third["phase"], "Failed", "{third}");
    let logs = lab
        .berth("h1", &["build", "logs", "site-3"])
        .assert_success();
    assert!(logs.contains("no index.html"), "{logs}");
    assert_eq!(site_digest(&lab).as_deref(), Some(v2.as_str()));
    std::thread::sleep(Duration::from_secs(3));
    let after = lab
        .berth("h1", &["rollout", "history", "site", "-o", "json"])
        .assert_success();
    assert_eq!(revisions, after, "a failed build rolled something out");
    assert_eq!(routed_answers(&lab, 3), BTreeSet::from(["v2".to_owned()]));

    // serial-latest-only: three quick pushes run the first and the last;
    // the middle one is cancelled as superseded.
    for text in ["v3", "v4", "v5"] {
        push(&lab, &page(text));
    }
    for name in ["site-4", "site-6"] {
        let done = ended(&lab, name, Duration::from_secs(180));
        assert_eq!(done["phase"], "Complete", "{done}");
    }
    let middle = build(&lab, "site-5").expect("site-5");
    assert_eq!(middle["phase"], "Cancelled", "{middle}");
    assert_eq!(middle["reason"], "superseded by site-6", "{middle}");
    lab.eventually(Duration::from_secs(60), "v5 routed", || {
        (routed_answers(&lab, 3) == BTreeSet::from(["v5".to_owned()])).then_some(())
    });

    // Moving the builder's tag rebuilds (cause: image change).
    lab.sh(
        "h1",
        "printf 'FROM local/s2i-httpd\\nLABEL rebuilt=yes\\n' | docker build -q -t local/s2i-httpd:2 -",
    )
    .assert_success();
    lab.push_image("local/s2i-httpd:2", "builder:latest");
    let rebuilt = lab.eventually(Duration::from_secs(30), "a rebuild", || {
        builds_of(&lab, "site")
            .into_iter()
            .find(|b| b["cause"]["kind"] == "image-change")
    });
    let name = rebuilt["name"].as_str().expect("its name").to_owned();
    let done = ended(&lab, &name, Duration::from_secs(120));
    assert_eq!(done["phase"], "Complete", "{done}");
    lab.down();
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn docker_builds_honour_dockerignore_cancel_cleanly_and_webhooks_refuse_what_they_should() {
    let lab = boot("build-docker", 2);
    lab.berth(
        "h1",
        &[
            "build",
            "create",
            "api",
            "--strategy",
            "docker",
            "--to",
            "api:latest",
        ],
    )
    .assert_success();
    lab.sh(
        "h1",
        "set -e; mkdir -p /root/ctx; cd /root/ctx
         printf 'FROM local/busybox\\nCOPY . /ctx/\\nRUN echo built from $(ls /ctx | wc -l) files\\nCMD [\"ls\", \"/ctx\"]\\n' > Dockerfile
         printf 'secret.txt\\n*.log\\n' > .dockerignore
         echo keep > keep.txt; echo hidden > secret.txt; echo noise > debug.log",
    )
    .assert_success();
    let started = lab
        .berth(
            "h1",
            &["build", "start", "api", "--from-dir", "/root/ctx", "-f"],
        )
        .assert_success();
    assert!(started.contains("built from"), "{started}");
    let done = ended(&lab, "api-1", Duration::from_secs(60));
    assert_eq!(done["phase"], "Complete", "{done}");
    assert_eq!(done["cause"]["kind"], "binary", "{done}");
    let logs = lab
        .berth("h1", &["build", "logs", "api-1"])
        .assert_success();
    assert!(logs.contains("COPY . /ctx/"), "{logs}");
    let listed = lab
        .exec(
            "h1",
            &[
                "docker",
                "run",
                "--rm",
                &format!("{REGISTRY}/default/api:latest"),
            ],
        )
        .assert_success();
    assert!(listed.contains("keep.txt"), "{listed}");
    assert!(!listed.contains("secret.txt"), "{listed}");
    assert!(!listed.contains("debug.log"), "{listed}");

    // A failing step fails the build, saying so.
    lab.sh(
        "h1",
        "mkdir -p /root/bad && printf 'FROM local/busybox\\nRUN exit 3\\n' > /root/bad/Dockerfile",
    )
    .assert_success();
    let failed = lab
        .berth(
            "h1",
            &["build", "start", "api", "--from-dir", "/root/bad", "-f"],
        )
        .assert_failure();
    assert!(failed.contains("api-2 Failed"), "{failed}");

    // Cancel: a long build stops within its grace and leaves no container.
    lab.sh(
        "h1",
        "mkdir -p /root/slow && printf 'FROM local/busybox\\nRUN sleep 600\\n' > /root/slow/Dockerfile",
    )
    .assert_success();
    lab.berth("h1", &["build", "start", "api", "--from-dir", "/root/slow"])
        .assert_success();
    lab.eventually(Duration::from_secs(60), "api-3 running", || {
        (phase(&lab, "api-3") == "Running").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    lab.berth("h1", &["build", "cancel", "api-3"])
        .assert_success();
    let cancelled = ended(&lab, "api-3", Duration::from_secs(40));
    assert_eq!(cancelled["phase"], "Cancelled", "{cancelled}");
    eprintln!("cancelled in {:?}", asked.elapsed());
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    lab.eventually(Duration::from_secs(20), "no build container left", || {
        let left = lab
            .exec("h2", &["docker", "ps", "-aq", "--filter", "label=berth.build"])
            .assert_success();
        let sleeping = lab
            .sh("h2", "docker ps -q | xargs -r docker inspect -f '{{.Path}} {{.Args}}' | grep -c 'sleep 600' || true")
            .stdout();
        (left.trim().is_empty() && sleeping.trim() == "0").then_some(())
    });

    // Webhooks: a wrong signature is a 403; another branch and another
    // event are a 200 that says they were ignored.
    // (A config from a file, as berth apply takes it.)
    lab.sh(
        "h1",
        "cat > /root/hooked.yaml <<'EOF'
kind: BuildConfig
name: hooked
strategy: {docker: {}}
git: {url: 'git://h1/nothing.git'}
to: 'hooked:latest'
triggers: {configChange: false}
EOF",
    )
    .assert_success();
    let applied = lab
        .berth("h1", &["apply", "-f", "/root/hooked.yaml"])
        .assert_success();
    assert!(applied.contains("buildconfig/hooked created"), "{applied}");
    let again = lab
        .berth("h1", &["apply", "-f", "/root/hooked.yaml"])
        .assert_success();
    assert!(again.contains("buildconfig/hooked unchanged"), "{again}");
    let url = lab.build_webhook("hooked");
    let secret = url
        .trim_end_matches("/github")
        .rsplit('/')
        .next()
        .expect("the secret")
        .to_owned();
    let post = |event: &str, body: &str, key: &str| {
        lab.sh(
            "h1",
            &format!(
                "sig=$(printf '%s' '{body}' | openssl dgst -sha256 -hmac '{key}' | sed 's/^.*= *//')
                 curl -s -o /dev/stderr -w '%{{http_code}}' --cacert /var/lib/berth/master/ca.crt \\
                   -H 'X-GitHub-Event: {event}' -H \"X-Hub-Signature-256: sha256=$sig\" \\
                   -H 'Content-Type: application/json' --data-binary '{body}' '{url}'"
            ),
        )
    };
    let push_main =
        r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;
    let forged = post("push", push_main, "not-the-secret");
    assert_eq!(forged.stdout().trim(), "403", "{}", forged.stderr());
    let other = post(
        "push",
        r#"{"ref":"refs/heads/topic","after":"0123456789abcdef0123456789abcdef01234567"}"#,
        &secret,
    );
    assert_eq!(other.stdout().trim(), "200", "{}", other.stderr());
    assert!(other.stderr().contains("topic"), "{}", other.stderr());
    let ping = post("ping", r#"{"zen":"hi"}"#, &secret);
    assert_eq!(ping.stdout().trim(), "200", "{}", ping.stderr());
    assert!(
        ping.stderr().contains("only push events"),
        "{}",
        ping.stderr()
    );
    assert!(builds_of(&lab, "hooked").is_empty());
    lab.down();
}
