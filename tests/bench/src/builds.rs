//! Build benchmarks, each against a baseline run beside it in the same lab
//! (h1 runs the master, the registry, the git server and the router, and
//! takes no pods; h2 runs builds and services):
//!
//! - `push-to-serving`: from `git push` returning to the route serving the
//!   pushed page (a tiny static site through the example source-to-image
//!   builder), by stage (webhook, build and push, rollout), against the
//!   same change done by hand: `docker build` of the same image, `docker
//!   push`, `berth set image`, to its own route serving it; interleaved.
//! - `build-overhead`: a source build of a one-file site (`berth build
//!   start --from-dir -f`, push included) against a bare `docker build` on
//!   the build's node of the Dockerfile source-to-image would generate
//!   (`FROM builder`, `COPY src`, `RUN assemble`); interleaved.

use std::time::{Duration, Instant};

use berth_harness::{now_ms, Lab, REGISTRY};

use crate::quantile;

const ROUTER: &str = "10.231.0.11";

/// A lab with the builder image as `builder:latest`, the git server and
/// the router on h1.
fn lab(name: &str) -> Lab {
    let lab = Lab::up(name, 2);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.berth("h1", &["registry", "login"]).assert_success();
    lab.make_builder_image("h1");
    lab.push_image("local/s2i-httpd", "builder:latest");
    lab
}

fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn build_json(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    let run = lab.berth("h1", &["build", "describe", name, "-o", "json"]);
    run.success().then(|| run.json())
}

/// When `site:latest` moved to build `name`'s image (Unix ms).
fn tagged_ms(lab: &Lab, build: &str) -> Option<u64> {
    let run = lab.berth("h1", &["is", "describe", "site", "-o", "json"]);
    if !run.success() {
        return None;
    }
    run.json()["status"]["tags"]["latest"]
        .as_array()?
        .iter()
        .find(|e| e["build"] == build)?["createdMs"]
        .as_u64()
}

/// Runs a service following `stream` (or `image`) behind route `host`.
fn serve(lab: &Lab, name: &str, from: &[&str], host: &str) {
    let mut args = vec!["run", name];
    args.extend(from);
    args.extend(["-p", "8080", "--readiness", "tcp:8080"]);
    lab.berth("h1", &args).assert_success();
    lab.berth("h1", &["route", "add", name, host])
        .assert_success();
}

/// `berth-bench push-to-serving`: `pushes` of each side, interleaved.
pub fn push_to_serving(pushes: usize) {
    let lab = lab("bench-serve");
    lab.start_router("h1");
    lab.start_git_server("h1");
    lab.make_git_repository("h1", "site", None);
    lab.git_push("h1", "site", &[("index.html", "g0")]);
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
        ],
    )
    .assert_success();
    wait("build site-1", || {
        build_json(&lab, "site-1").filter(|b| b["phase"] == "Complete")
    });
    serve(
        &lab,
        "site",
        &["--image-stream", "site:latest"],
        "site.example.test",
    );
    // By hand: the same image made with docker build on h1 (the
    // developer's machine), pushed, and set on its own service.
    lab.sh(
        "h1",
        &format!(
            "set -e; mkdir -p /root/hand; cd /root/hand
             printf 'FROM {REGISTRY}/default/builder:latest\\nCOPY index.html /var/www/index.html\\nCMD [\"/usr/libexec/s2i/run\"]\\n' > Dockerfile
             echo h0 > index.html; docker build -q -t {REGISTRY}/default/hand:0 . >/dev/null
             docker push -q {REGISTRY}/default/hand:0 >/dev/null"
        ),
    )
    .assert_success();
    serve(
        &lab,
        "hand",
        &["--image", &format!("{REGISTRY}/default/hand:0")],
        "hand.example.test",
    );
    wait("both served", || {
        (lab.routed(ROUTER, "site.example.test").as_deref() == Some("g0")
            && lab.routed(ROUTER, "hand.example.test").as_deref() == Some("h0"))
        .then_some(())
    });
    lab.hook_webhook("h1", "site", &lab.build_webhook("site"));

    let (mut total, mut hand) = (Vec::new(), Vec::new());
    let (mut webhook_ms, mut build_ms, mut rollout_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=pushes {
        let page = format!("g{i}");
        let (_, said) = lab.git_push("h1", "site", &[("index.html", &page)]);
        let pushed = now_ms();
        let name = said
            .split("\"started\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no build started: {said}"))
            .to_owned();
        wait("the page served", || {
            (lab.routed(ROUTER, "site.example.test").as_deref() == Some(page.as_str()))
                .then_some(())
        });
        let serving = now_ms();
        let build = build_json(&lab, &name).expect("the build");
        let created = build["createdMs"].as_u64().unwrap_or(pushed);
        let moved = tagged_ms(&lab, &name).unwrap_or(serving);
        total.push(serving.saturating_sub(pushed) as f64);
        webhook_ms.push(created.saturating_sub(pushed) as f64);
        build_ms.push(moved.saturating_sub(created) as f64);
        rollout_ms.push(serving.saturating_sub(moved) as f64);

        let page = format!("h{i}");
        let started = now_ms();
        let digest = lab
            .sh(
                "h1",
                &format!(
                    "set -e; cd /root/hand; echo {page} > index.html
                     docker build -q -t {REGISTRY}/default/hand:{i} . >/dev/null
                     docker push {REGISTRY}/default/hand:{i} | sed -n 's/.*digest: \\(sha256:[0-9a-f]*\\).*/\\1/p'"
                ),
            )
            .assert_success()
            .trim()
            .to_owned();
        lab.berth(
            "h1",
            &[
                "set",
                "image",
                "hand",
                &format!("{REGISTRY}/default/hand@{digest}"),
            ],
        )
        .assert_success();
        wait("the hand-made page served", || {
            (lab.routed(ROUTER, "hand.example.test").as_deref() == Some(page.as_str()))
                .then_some(())
        });
        hand.push(now_ms().saturating_sub(started) as f64);
    }
    for list in [
        &mut total,
        &mut hand,
        &mut webhook_ms,
        &mut build_ms,
        &mut rollout_ms,
    ] {
        list.sort_by(f64::total_cmp);
    }
    let p50 = |v: &[f64]| quantile(v, 0.5);
    println!("push to serving, a one-page site, {pushes} each (ms, p50):");
    println!(
        "  git push returning -> served      {:7.0}  (webhook {:.0}, build and push {:.0}, rollout {:.0})",
        p50(&total),
        p50(&webhook_ms),
        p50(&build_ms),
        p50(&rollout_ms)
    );
    println!(
        "  by hand: docker build, docker push, berth set image -> served  {:7.0}",
        p50(&hand)
    );
    println!(
        "  ratio git push / by hand          {:7.2}x  (target <= 1.2x)",
        p50(&total) / p50(&hand).max(1.0)
    );
    lab.down();
}

/// `berth-bench build-overhead`: `runs` of each side, interleaved.
pub fn build_overhead(runs: usize) {
    let lab = lab("bench-build");
    lab.berth(
        "h1",
        &[
            "build",
            "create",
            "noop",
            "--strategy",
            "source",
            "--builder",
            "builder:latest",
            "--to",
            "noop:latest",
        ],
    )
    .assert_success();
    lab.sh(
        "h1",
        "mkdir -p /root/noop && echo noop > /root/noop/index.html",
    )
    .assert_success();
    // The baseline runs where builds run, from the same builder image,
    // pulled with the node's credential.
    let credential = lab.node_credential("h2");
    lab.exec(
        "h2",
        &["docker", "login", REGISTRY, "-u", "h2", "-p", &credential],
    )
    .assert_success();
    lab.sh(
        "h2",
        &format!(
            "set -e; mkdir -p /root/bare/src; echo noop > /root/bare/src/index.html
             printf 'FROM {REGISTRY}/default/builder:latest\\nCOPY src /tmp/src\\nRUN /usr/libexec/s2i/assemble\\nCMD [\"/usr/libexec/s2i/run\"]\\n' > /root/bare/Dockerfile
             docker pull -q {REGISTRY}/default/builder:latest >/dev/null"
        ),
    )
    .assert_success();
    let berth_side = || {
        let started = Instant::now();
        lab.berth(
            "h1",
            &["build", "start", "noop", "--from-dir", "/root/noop", "-f"],
        )
        .assert_success();
        started.elapsed().as_secs_f64() * 1000.0
    };
    let bare_side = |i: usize| {
        let started = Instant::now();
        lab.sh(
            "h2",
            &format!("docker build -q --no-cache -t bare:{i} /root/bare >/dev/null"),
        )
        .assert_success();
        started.elapsed().as_secs_f64() * 1000.0
    };
    let (mut berth, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            bare.push(bare_side(i));
            berth.push(berth_side());
        } else {
            berth.push(berth_side());
            bare.push(bare_side(i));
        }
    }
    berth.sort_by(f64::total_cmp);
    bare.sort_by(f64::total_cmp);
    let (b50, d50) = (quantile(&berth, 0.5), quantile(&bare, 0.5));
    println!("a no-op source build, {runs} each (ms, p50):");
    println!("  berth build start --from-dir -f (job, build, push)  {b50:7.0}");
    println!("  bare docker build of FROM builder, COPY src, RUN assemble  {d50:7.0}");
    println!("  ratio berth / bare  {:7.2}x", b50 / d50.max(1.0));
    lab.down();
}
