//! The integrated registry on lab hosts: `berth-lab up` runs it on h1
//! beside the master. A push with a berth token moves the stream's tag
//! within a second and rolls out the services that follow it; pulls and
//! pushes without the right credential are refused; an image the registry
//! does not have says so and recovers when the tag is fixed; prune frees
//! the disk and keeps what is used; the registry serves pulls while the
//! master is down, and tags survive its restart.
//!
//! Root only: run with
//! `cargo test -p berth-lab-tests --test registry -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use berth_harness::{now_ms, Lab, REGISTRY, SERVE_VERSION};

/// A lab whose h1 runs the master and the registry and takes no pods; the
/// `local/web:v1` and `v2` images are made on h1, the host that pushes.
fn boot(name: &str, hosts: usize) -> Lab {
    let lab = Lab::up(name, hosts);
    lab.berth("h1", &["node", "cordon", "h1"]).assert_success();
    lab.make_web_images("h1");
    lab
}

/// Where `stream`'s `tag` points now, as `berth is describe -o json` says.
fn tag_digest(lab: &Lab, stream: &str, tag: &str) -> Option<String> {
    let described = lab.berth("h1", &["is", "describe", stream, "-o", "json"]);
    if !described.success() {
        return None;
    }
    described.json()["status"]["tags"][tag][0]["digest"]
        .as_str()
        .map(String::from)
}

/// A token of the registry's realm for `scope`, asked with `credential`.
fn registry_token(lab: &Lab, credential: &str, scope: &str) -> String {
    let url = format!("https://h1:7443/v1/registry/token?service=berth-registry&scope={scope}");
    let answer = lab
        .exec(
            "h1",
            &[
                "curl",
                "-sSf",
                "--cacert",
                "/var/lib/berth/master/ca.crt",
                "-u",
                &format!("x:{credential}"),
                &url,
            ],
        )
        .json();
    answer["token"].as_str().expect("a token").to_owned()
}

/// The HTTP status of `GET /v2/default/REPO/manifests/REFERENCE` on the
/// registry, with `token` (or none).
fn manifest_status(
    lab: &Lab,
    host: &str,
    repo: &str,
    reference: &str,
    token: Option<&str>,
) -> String {
    let url = format!("https://{REGISTRY}/v2/default/{repo}/manifests/{reference}");
    let header = format!("Authorization: Bearer {}", token.unwrap_or(""));
    let mut argv = vec![
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
        "--cacert",
        "/etc/docker/certs.d/h1:5000/berth-ca.crt",
    ];
    if token.is_some() {
        argv.extend(["-H", &header]);
    }
    argv.push(&url);
    lab.exec(host, &argv).assert_success()
}

fn admin_token(lab: &Lab) -> String {
    lab.exec("h1", &["cat", "/var/lib/berth/master/admin.token"])
        .assert_success()
        .trim()
        .to_owned()
}

/// The latest revision of `service`, once its number is `revision`.
fn revision(lab: &Lab, service: &str, revision: u64) -> Option<serde_json::Value> {
    let listed = lab
        .berth("h1", &["rollout", "history", service, "-o", "json"])
        .json();
    listed
        .as_array()?
        .iter()
        .find(|d| d["revision"] == revision)
        .cloned()
}

/// The image (`Config.Image`) of each of `service`'s containers.
fn running_images(lab: &Lab, service: &str) -> Vec<String> {
    lab.pods()
        .into_iter()
        .filter(|p| p["service"] == service && p["status"]["phase"] == "Running")
        .map(|p| {
            let pod = p["spec"]["name"].as_str().unwrap_or_default().to_owned();
            let node = p["node"].as_str().unwrap_or_default().to_owned();
            lab.exec(
                &node,
                &[
                    "docker",
                    "inspect",
                    "-f",
                    "{{.Config.Image}}",
                    &format!("berth.{pod}.{service}"),
                ],
            )
            .assert_success()
            .trim()
            .to_owned()
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_push_moves_the_tag_within_a_second_and_rolls_out_the_services_that_follow_it() {
    let lab = boot("reg-push", 3);

    // No credential: the registry refuses, and so does docker push.
    assert_eq!(manifest_status(&lab, "h2", "web", "v1", None), "401");
    lab.exec(
        "h1",
        &["docker", "tag", "local/web:v1", "h1:5000/default/web:v1"],
    )
    .assert_success();
    let refused = lab
        .exec("h1", &["docker", "push", "h1:5000/default/web:v1"])
        .assert_failure();
    assert!(
        refused.contains("no basic auth credentials") || refused.contains("unauthorized"),
        "{refused}"
    );

    // A node's credential pulls but never pushes; a viewer's likewise.
    let node_credential = lab.node_credential("h2");
    let node_token = registry_token(&lab, &node_credential, "repository:default/web:pull,push");
    let viewer = lab
        .berth("h1", &["user", "create", "viewer"])
        .assert_success();
    let viewer = viewer.lines().last().expect("the token").trim().to_owned();
    lab.berth(
        "h1",
        &[
            "project",
            "add-member",
            "default",
            "viewer",
            "--role",
            "view",
        ],
    )
    .assert_success();
    for (who, credential) in [
        ("node h2", node_credential.as_str()),
        ("viewer", viewer.as_str()),
    ] {
        lab.exec(
            "h1",
            &[
                "docker",
                "login",
                REGISTRY,
                "-u",
                who.split(' ').next().unwrap_or(who),
                "-p",
                credential,
            ],
        )
        .assert_success();
        let push = lab.exec("h1", &["docker", "push", "h1:5000/default/web:v1"]);
        assert!(!push.success(), "{who} pushed: {}", push.stdout());
        let said = push.stderr() + &push.stdout();
        assert!(
            said.contains("denied") || said.contains("unauthorized"),
            "{who}: {said}"
        );
    }
    let claims = node_token.split('.').nth(1).expect("a JWT");
    let decoded = lab
        .sh(
            "h1",
            &format!("echo '{claims}' | tr '_-' '/+' | base64 -d 2>/dev/null; true"),
        )
        .stdout();
    assert!(
        decoded.contains(r#""actions":["pull"]"#),
        "a node's token grants pull only: {decoded}"
    );

    // `berth registry login` with the admin's berth token: the push moves
    // the tag within a second.
    let address = lab.berth("h1", &["registry", "info"]).assert_success();
    assert_eq!(address.trim(), REGISTRY);
    lab.berth("h1", &["registry", "login"]).assert_success();
    let v1 = lab.push_image("local/web:v1", "web:v1");
    let pushed_ms = now_ms();
    lab.eventually(Duration::from_secs(5), "the tag to move", || {
        (tag_digest(&lab, "web", "v1").as_deref() == Some(v1.as_str())).then_some(())
    });
    let described = lab
        .berth("h1", &["is", "describe", "web", "-o", "json"])
        .json();
    // When the master recorded the move, against when the push returned.
    let moved_ms = described["status"]["tags"]["v1"][0]["createdMs"]
        .as_u64()
        .expect("the move's time");
    eprintln!(
        "tag moved {} ms after docker push returned",
        moved_ms.saturating_sub(pushed_ms)
    );
    assert!(moved_ms < pushed_ms + 1_000, "{moved_ms} vs {pushed_ms}");
    assert_eq!(
        described["dockerImageRepository"], "h1:5000/default/web",
        "{described}"
    );
    assert_eq!(described["status"]["tags"]["v1"][0]["cause"], "push");
    let shown = lab.berth("h1", &["is", "describe", "web"]).assert_success();
    assert!(
        shown.contains(&format!("tag v1: h1:5000/default/web@{v1}")),
        "{shown}"
    );

    // `berth import-image` asks a registry (here the integrated one) where
    // a reference points: the tag takes that digest.
    lab.berth(
        "h1",
        &[
            "import-image",
            "copy:v1",
            "--from",
            "h1:5000/default/web:v1",
            "--scheduled",
        ],
    )
    .assert_success();
    let copy = lab
        .berth("h1", &["is", "describe", "copy", "-o", "json"])
        .json();
    assert_eq!(
        copy["status"]["tags"]["v1"][0]["digest"],
        v1.as_str(),
        "{copy}"
    );
    assert_eq!(copy["status"]["tags"]["v1"][0]["cause"], "import");
    assert_eq!(
        copy["scheduledImports"][0]["from"],
        "h1:5000/default/web:v1"
    );
    let missing = lab
        .berth(
            "h1",
            &[
                "import-image",
                "copy:v2",
                "--from",
                "h1:5000/default/nothing:v9",
            ],
        )
        .assert_failure();
    assert!(
        missing.contains("from") && missing.contains("not found"),
        "{missing}"
    );

    // Another project may not name default's images: nodes pull every
    // repository, so projects are kept apart where images are named.
    lab.berth("h1", &["project", "create", "other"])
        .assert_success();
    let theirs = format!("h1:5000/default/web@{v1}");
    let tagged = lab
        .berth("h1", &["-p", "other", "tag", &theirs, "stolen:v1"])
        .assert_failure();
    assert!(tagged.contains("an image of project default"), "{tagged}");
    let ran = lab
        .berth("h1", &["-p", "other", "run", "thief", "--image", &theirs])
        .assert_failure();
    assert!(ran.contains("an image of project default"), "{ran}");

    // A service following web:v1 runs it by digest, pulled by the nodes
    // with their own tokens (through the CA the agents installed).
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image-stream",
            "web:v1",
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
    let by_digest = format!("h1:5000/default/web@{v1}");
    lab.eventually(Duration::from_secs(90), "2 replicas of v1", || {
        let images = running_images(&lab, "web");
        (images.len() == 2 && images.iter().all(|i| *i == by_digest)).then_some(())
    });

    // A new image pushed as v1: a rollout starts by itself within 2 s,
    // caused by the image change, and completes with the new digest.
    let v2 = lab.push_image("local/web:v2", "web:v1");
    let pushed_ms = now_ms();
    assert_ne!(v1, v2);
    let started = lab.eventually(Duration::from_secs(10), "revision 2", || {
        revision(&lab, "web", 2)
    });
    let started_ms = started["createdMs"].as_u64().expect("its creation time");
    eprintln!(
        "rollout started {} ms after docker push returned: {started}",
        started_ms.saturating_sub(pushed_ms)
    );
    assert!(
        started_ms < pushed_ms + 2_000,
        "{started_ms} vs {pushed_ms}"
    );
    assert_eq!(started["cause"]["type"], "imageChange");
    assert_eq!(started["cause"]["image"], format!("web:v1@{v2}"));
    lab.berth(
        "h1",
        &["rollout", "status", "web", "-w", "--timeout", "90s"],
    )
    .assert_success();
    let by_digest = format!("h1:5000/default/web@{v2}");
    lab.eventually(
        Duration::from_secs(30),
        "both replicas on the new digest",
        || {
            let images = running_images(&lab, "web");
            (images.len() == 2 && images.iter().all(|i| *i == by_digest)).then_some(())
        },
    );
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn an_image_the_registry_lacks_says_not_found_backs_off_and_recovers_when_the_tag_is_fixed() {
    let lab = boot("reg-pull", 2);
    let ghost = format!("{REGISTRY}/default/ghost@sha256:{}", "0".repeat(64));
    lab.berth("h1", &["tag", &ghost, "ghost:v1"])
        .assert_success();
    // A command that keeps running: the fixed image's own (from `docker
    // commit` of a one-shot `sh -c`) exits at once, so the container would
    // be Running only between restarts.
    lab.berth(
        "h1",
        &[
            "run",
            "ghost",
            "--image-stream",
            "ghost:v1",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let asked = Instant::now();
    lab.eventually(Duration::from_secs(5), "berth ps says why", || {
        lab.berth("h1", &["ps"])
            .assert_success()
            .lines()
            .any(|l| l.starts_with("ghost-0 ") && l.contains("ImagePullFailed"))
            .then_some(())
    });
    let described = lab.berth("h1", &["describe", "ghost"]).assert_success();
    assert!(
        described.contains("ImagePullFailed") && described.contains("manifest unknown"),
        "the registry's own word: {described}"
    );

    std::thread::sleep(Duration::from_secs(60).saturating_sub(asked.elapsed()));
    let pulls = lab
        .sh(
            "h2",
            "journalctl -u berth-agent --no-pager -o verbose | grep -c 'ACTION=.*pull h1:5000/default/ghost'",
        )
        .assert_success();
    let pulls: u32 = pulls.trim().parse().expect("a count");
    assert!((1..10).contains(&pulls), "{pulls} pull attempts in 60 s");

    // Fixing the tag (a push) rolls the service onto an image that pulls.
    lab.berth("h1", &["registry", "login"]).assert_success();
    let fixed = lab.push_image("local/web:v1", "ghost:v1");
    let by_digest = format!("h1:5000/default/ghost@{fixed}");
    let pushed = std::time::Instant::now();
    loop {
        if running_images(&lab, "ghost") == vec![by_digest.clone()] {
            eprintln!(
                "measured: push of the fixed tag to ghost running it: {:.1?}",
                pushed.elapsed()
            );
            break;
        }
        if pushed.elapsed() > Duration::from_secs(90) {
            // What a user would look at, for whoever reads the failure.
            for args in [
                &["describe", "ghost"][..],
                &["rollout", "history", "ghost"],
                &["ps"],
                &["events"],
            ] {
                let out = lab.berth("h1", args);
                eprintln!(
                    "--- berth {}:\n{}{}",
                    args.join(" "),
                    out.stdout(),
                    out.stderr()
                );
            }
            panic!("ghost is not running {by_digest} 90 s after the push");
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // While a big image comes, `berth ps` says how far the pull is.
    lab.make_noise_image("h1", "big", 300_000_000);
    lab.push_image("local/big", "big:v1");
    lab.berth(
        "h1",
        &[
            "run",
            "big",
            "--image-stream",
            "big:v1",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    let mut progress = None;
    lab.eventually(Duration::from_secs(120), "big running", || {
        let listed = lab.berth("h1", &["ps", "big"]).assert_success();
        if let Some(row) = listed
            .lines()
            .find(|l| l.contains("ContainerCreating: pulling") && l.contains(" MB"))
        {
            progress.get_or_insert_with(|| row.to_owned());
        }
        listed
            .lines()
            .any(|l| l.starts_with("big-0 ") && l.contains("Running"))
            .then_some(())
    });
    let progress = progress.expect("berth ps showed the pull under way");
    eprintln!("{progress}");
    assert!(progress.contains(" MB"), "{progress}");
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn prune_frees_what_nothing_needs_and_pulls_go_on_while_the_master_is_down() {
    let lab = boot("reg-prune", 2);
    lab.berth("h1", &["registry", "login"]).assert_success();
    let used = lab.push_image("local/web:v1", "web:v1");
    lab.berth(
        "h1",
        &[
            "run",
            "web",
            "--image-stream",
            "web:v1",
            "--",
            "sleep",
            "100000",
        ],
    )
    .assert_success();
    // Two images of 8 MB of noise each, one after the other on one tag.
    lab.make_noise_image("h1", "noise:1", 8_000_000);
    let old = lab.push_image("local/noise:1", "scratch:v1");
    lab.make_noise_image("h1", "noise:2", 8_000_000);
    let new = lab.push_image("local/noise:2", "scratch:v1");
    lab.eventually(Duration::from_secs(5), "the second push noticed", || {
        (tag_digest(&lab, "scratch", "v1").as_deref() == Some(new.as_str())).then_some(())
    });
    lab.eventually(Duration::from_secs(60), "web running", || {
        (running_images(&lab, "web").len() == 1).then_some(())
    });
    let disk = || -> u64 {
        lab.sh("h1", "du -sb /var/lib/berth/registry | cut -f1")
            .assert_success()
            .trim()
            .parse()
            .expect("bytes")
    };
    let before = disk();

    // A dry run says what would go and deletes nothing.
    let dry = lab
        .berth("h1", &["image", "prune", "--keep-tag-revisions", "1"])
        .assert_success();
    assert!(
        dry.contains(&format!("would delete default/scratch@{old}")),
        "{dry}"
    );
    assert!(
        !dry.contains(&used) || dry.contains(&format!("kept default/web@{used}")),
        "{dry}"
    );
    let admin = admin_token(&lab);
    let token = registry_token(&lab, &admin, "repository:default/scratch:pull");
    assert_eq!(
        manifest_status(&lab, "h1", "scratch", &old, Some(&token)),
        "200"
    );

    let done = lab
        .berth(
            "h1",
            &["image", "prune", "--keep-tag-revisions", "1", "--confirm"],
        )
        .assert_success();
    eprintln!("{done}");
    assert!(
        done.contains(&format!("deleted default/scratch@{old}")),
        "{done}"
    );
    assert!(done.contains(&format!("kept default/web@{used}")), "{done}");
    let token = registry_token(&lab, &admin, "repository:default/scratch:pull");
    assert_eq!(
        manifest_status(&lab, "h1", "scratch", &old, Some(&token)),
        "404"
    );
    assert_eq!(
        manifest_status(&lab, "h1", "scratch", &new, Some(&token)),
        "200"
    );
    let web_token = registry_token(&lab, &admin, "repository:default/web:pull");
    assert_eq!(
        manifest_status(&lab, "h1", "web", &used, Some(&web_token)),
        "200"
    );
    let after = disk();
    eprintln!("registry storage: {before} bytes before, {after} after");
    assert!(before - after > 7_000_000, "{before} -> {after}");

    // The master goes down: the registry still serves pulls with a token
    // got before (as the agents keep theirs), dockerd's own included.
    let tags_before = lab
        .berth("h1", &["is", "describe", "web", "-o", "json"])
        .json()["status"]
        .clone();
    let node_credential = lab.node_credential("h2");
    let pull_token = registry_token(&lab, &node_credential, "repository:default/scratch:pull");
    lab.exec("h1", &["systemctl", "stop", "berth-master"])
        .assert_success();
    assert_eq!(
        manifest_status(&lab, "h2", "scratch", &new, Some(&pull_token)),
        "200"
    );
    let auth = lab
        .sh(
            "h2",
            &format!("printf '{{\"registrytoken\":\"%s\"}}' '{pull_token}' | base64 -w0"),
        )
        .assert_success();
    let pulled = lab
        .exec(
            "h2",
            &[
                "curl",
                "-sS",
                "--unix-socket",
                "/run/docker.sock",
                "-X",
                "POST",
                "-H",
                &format!("X-Registry-Auth: {}", auth.trim()),
                "http://docker/images/create?fromImage=h1:5000/default/scratch&tag=v1",
            ],
        )
        .assert_success();
    assert!(
        pulled.contains("Downloaded newer image") || pulled.contains("Image is up to date"),
        "dockerd pulled with the kept token while the master was down: {pulled}"
    );
    lab.exec("h1", &["systemctl", "start", "berth-master"])
        .assert_success();
    let tags_after = lab.eventually(Duration::from_secs(30), "the master back", || {
        let described = lab.berth("h1", &["is", "describe", "web", "-o", "json"]);
        described
            .success()
            .then(|| described.json()["status"].clone())
    });
    assert_eq!(
        tags_before, tags_after,
        "tags and histories survive a restart"
    );
}

/// `docker push REMOTE` on h1 after tagging `local` so; the pushed digest,
/// or the failure's output.
fn push_as_is(lab: &Lab, local: &str, remote: &str) -> Result<String, String> {
    lab.exec("h1", &["docker", "tag", local, remote])
        .assert_success();
    let push = lab.exec("h1", &["docker", "push", remote]);
    let said = push.stdout() + &push.stderr();
    match said.find("digest: sha256:") {
        Some(at) if push.success() => Ok(said[at + "digest: ".len()..][..71].to_owned()),
        _ => Err(said),
    }
}

/// `docker login` to the registry on h1 as `user` with `token`.
fn docker_login(lab: &Lab, user: &str, token: &str) {
    lab.exec(
        "h1",
        &["docker", "login", REGISTRY, "-u", user, "-p", token],
    )
    .assert_success();
}

/// Project b's `web` pod's container on h2, while it runs.
fn running_container(lab: &Lab) -> Option<String> {
    let listed = lab.berth("h1", &["-p", "b", "ps", "web"]).assert_success();
    let running = listed
        .lines()
        .any(|l| l.starts_with("web-0 ") && l.contains("Running"));
    let id = lab
        .exec("h2", &["docker", "ps", "-q", "--filter", "name=web"])
        .assert_success();
    (running && !id.trim().is_empty()).then(|| id.trim().to_owned())
}

#[test]
#[ignore = "lab test: needs root; run by scripts/test"]
fn a_shared_stream_runs_in_another_project_until_revoked_and_a_full_image_quota_refuses_pushes() {
    let lab = boot("reg-share", 2);
    for project in ["a", "b"] {
        lab.berth("h1", &["project", "create", project])
            .assert_success();
    }
    let bob = lab.berth("h1", &["user", "create", "bob"]).assert_success();
    let bob = bob.lines().last().expect("bob's token").trim().to_owned();
    lab.berth(
        "h1",
        &["project", "add-member", "b", "bob", "--role", "edit"],
    )
    .assert_success();
    lab.berth("h1", &["registry", "login"]).assert_success();
    let digest = push_as_is(&lab, "local/web:v1", "h1:5000/a/web:v1").expect("a's push");
    let image = format!("h1:5000/a/web@{digest}");
    let run_in_b = |name: &str| {
        lab.berth(
            "h1",
            &[
                "-p", "b", "run", name, "--image", &image, "--", "sleep", "100000",
            ],
        )
    };

    // Before a shares it, b may not name a's image, nor its members pull it.
    let refused = run_in_b("web").assert_failure();
    assert!(refused.contains("project a"), "{refused}");
    docker_login(&lab, "bob", &bob);
    let pull = lab.exec("h1", &["docker", "pull", &image]);
    assert!(!pull.success(), "bob pulled a's image unshared");

    // a's admin shares the stream: b's service runs it, bob pulls it.
    lab.berth("h1", &["-p", "a", "is", "grant-view", "web", "--to", "b"])
        .assert_success();
    let described = lab
        .berth("h1", &["-p", "a", "is", "describe", "web"])
        .assert_success();
    assert!(described.contains("shared with: b"), "{described}");
    lab.exec("h1", &["docker", "rmi", &image]);
    lab.exec("h1", &["docker", "pull", &image]).assert_success();
    run_in_b("web").assert_success();
    let container = lab.eventually(Duration::from_secs(60), "b's web running", || {
        running_container(&lab)
    });

    // Revoked: b's running pod keeps its image; a new service is refused.
    lab.berth("h1", &["-p", "a", "is", "revoke-view", "web", "--to", "b"])
        .assert_success();
    let refused = run_in_b("web2").assert_failure();
    assert!(refused.contains("project a"), "{refused}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(running_container(&lab), Some(container));

    // A quota a's images already fill: the registry's realm refuses the
    // next push, naming the quota; a larger one lets it in.
    lab.berth("h1", &["registry", "login"]).assert_success();
    lab.berth("h1", &["project", "quota", "a", "--image-bytes", "1M"])
        .assert_success();
    let said =
        push_as_is(&lab, "local/web:v2", "h1:5000/a/web:v2").expect_err("a push past the quota");
    assert!(said.contains("quota"), "{said}");
    lab.berth("h1", &["project", "quota", "a", "--image-bytes", "1G"])
        .assert_success();
    push_as_is(&lab, "local/web:v2", "h1:5000/a/web:v2").expect("a push within the quota");

    // A stream quota: a's one stream fills it; a push that would make a
    // second is refused, and so is a create; describe shows both uses.
    lab.berth("h1", &["project", "quota", "a", "--image-streams", "1"])
        .assert_success();
    let said = push_as_is(&lab, "local/web:v1", "h1:5000/a/api:v1").expect_err("a second stream");
    assert!(said.contains("quota of 1 image streams"), "{said}");
    let refused = lab
        .berth("h1", &["-p", "a", "is", "create", "api"])
        .assert_failure();
    assert!(refused.contains("quota of 1 image streams"), "{refused}");
    let described = lab
        .berth("h1", &["project", "describe", "a"])
        .assert_success();
    assert!(described.contains("streams:    1 of 1"), "{described}");
    assert!(
        described.contains("images:") && described.contains(" of 1G"),
        "{described}"
    );
    lab.down();
}
