//! What the agent does before a build pod's unit starts: the build's
//! directory (0700) with its sources (`input.tar`, from git through the
//! host's `git`, or the master's archive checked against its digest), the
//! commit built, and `spec.json` with a push token for the output's
//! repository (all 0600). A failure here is the pod's start failure.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_model::build::{BuildInput, BuildTask, TaskStrategy};
use berth_model::Resources;
use sha2::Digest;

use super::{boot_id, build_dir, BuildSpec, BOOT_ID_FILE, COMMIT_FILE, INPUT_FILE, SPEC_FILE};
use crate::cluster_registry::ClusterRegistry;
use crate::docker::PullAuth;

/// The longest a clone or checkout may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// One build pod to prepare.
#[derive(Debug, Clone, Copy)]
pub struct Preparation<'a> {
    /// The pod (qualified).
    pub pod: &'a str,
    /// Its build.
    pub task: &'a BuildTask,
    /// Its one container's limits.
    pub resources: &'a Resources,
}

/// Where this node keeps builds and reaches dockerd.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// The agent's state directory.
    pub state_dir: &'a Path,
    /// dockerd's socket.
    pub docker_socket: &'a Path,
    /// The cluster registry and master.
    pub registry: &'a ClusterRegistry,
}

/// Prepares `build`'s directory from scratch (what an earlier try left
/// goes first).
pub async fn prepare(build: Preparation<'_>, host: Host<'_>) -> anyhow::Result<()> {
    let dir = build_dir(host.state_dir, build.pod);
    remove(host.state_dir, build.pod)?;
    let builds = dir.parent().context("a build directory has a parent")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(builds)
        .with_context(|| format!("creating {}", builds.display()))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let task = build.task;
    match &task.input {
        BuildInput::Git {
            url,
            git_ref,
            commit,
            context_dir,
        } => {
            let checkout = dir.join("checkout");
            let built = clone(url, git_ref, commit.as_deref(), &checkout).await?;
            let dockerfile = match &task.strategy {
                TaskStrategy::Docker(docker) => Some(
                    docker
                        .dockerfile
                        .clone()
                        .unwrap_or_else(|| berth_client::build_context::DEFAULT_DOCKERFILE.into()),
                ),
                TaskStrategy::Source { .. } => None,
            };
            let context = context_of(&checkout, context_dir)?;
            let file = private_file(&dir.join(INPUT_FILE))?;
            let mut out = berth_client::build_context::pack_into(
                &context,
                dockerfile.as_deref(),
                std::io::BufWriter::new(file),
            )
            .with_context(|| format!("packing {}", context.display()))?;
            out.flush()?;
            std::fs::remove_dir_all(&checkout)
                .with_context(|| format!("removing {}", checkout.display()))?;
            write_private(&dir.join(COMMIT_FILE), format!("{built}\n").as_bytes())?;
        }
        BuildInput::Archive { digest } => {
            let bytes = download(host.registry, digest).await?;
            write_private(&dir.join(INPUT_FILE), &bytes)?;
        }
    }
    let push_token = host
        .registry
        .push_token(&task.output)
        .await
        .map_err(anyhow::Error::msg)?;
    let pull_token = match &task.strategy {
        TaskStrategy::Source { builder_image, .. } => {
            match host.registry.auth_for(builder_image).await {
                Some(PullAuth::Token(token)) => Some(token),
                _ => None,
            }
        }
        TaskStrategy::Docker(_) => None,
    };
    let spec = BuildSpec {
        pod: build.pod.to_owned(),
        task: task.clone(),
        push_token,
        pull_token,
        memory_bytes: build.resources.memory_bytes,
        cpu_millis: build.resources.cpu_millis,
        cgroup_parent: Some(crate::unit::container_cgroup_path(
            build.pod,
            berth_model::build::BUILD_CONTAINER,
        )),
        docker_socket: host.docker_socket.to_owned(),
    };
    if let Some(boot) = boot_id() {
        write_private(&dir.join(BOOT_ID_FILE), format!("{boot}\n").as_bytes())?;
    }
    // Last: the spec is what makes the directory prepared.
    crate::private_file::write(&dir.join(SPEC_FILE), &serde_json::to_vec_pretty(&spec)?)
}

/// Whether `pod`'s build was prepared in an earlier boot of this host.
pub fn prepared_before_this_boot(state_dir: &Path, pod: &str) -> bool {
    let recorded = std::fs::read_to_string(build_dir(state_dir, pod).join(BOOT_ID_FILE));
    match (recorded, boot_id()) {
        (Ok(recorded), Some(now)) => recorded.trim() != now,
        _ => false,
    }
}

/// Removes `pod`'s build directory, if any.
pub fn remove(state_dir: &Path, pod: &str) -> anyhow::Result<()> {
    let dir = build_dir(state_dir, pod);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Whether `pod` has a build directory, and whether it is prepared (the
/// runner's spec is written, last).
pub fn dir_state(state_dir: &Path, pod: &str) -> (bool, bool) {
    let dir = build_dir(state_dir, pod);
    (dir.exists(), dir.join(SPEC_FILE).exists())
}

/// Clones `url` into `into` at `commit`, else at the head of branch
/// `git_ref`; returns the commit checked out.
async fn clone(
    url: &str,
    git_ref: &str,
    commit: Option<&str>,
    into: &Path,
) -> anyhow::Result<String> {
    let target = into.to_string_lossy().into_owned();
    match commit {
        Some(commit) => {
            if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("commit {commit:?} is not a hexadecimal commit id");
            }
            git(
                &["clone", "--quiet", "--no-checkout", "--", url, &target],
                None,
            )
            .await
            .with_context(|| format!("cloning {url}"))?;
            // Asked first: git would take an unknown commit for a path.
            let object = format!("{commit}^{{commit}}");
            if git(&["rev-parse", "--quiet", "--verify", &object], Some(into))
                .await
                .is_err()
            {
                bail!("commit {commit} is not in {url}");
            }
            git(&["checkout", "--quiet", "--detach", commit], Some(into))
                .await
                .with_context(|| format!("checking out commit {commit} of {url}"))?;
        }
        None => {
            if git_ref.starts_with('-') {
                bail!("ref {git_ref:?} is not a branch name");
            }
            git(
                &[
                    "clone", "--quiet", "--depth", "1", "--branch", git_ref, "--", url, &target,
                ],
                None,
            )
            .await
            .with_context(|| format!("cloning branch {git_ref} of {url}"))?;
        }
    }
    let head = git(&["rev-parse", "HEAD"], Some(into)).await?;
    Ok(head.trim().to_owned())
}

/// Runs the host's git; its stderr is the error.
async fn git(args: &[&str], cwd: Option<&Path>) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::new("git");
    command
        .args(args)
        // Never ask for a password on a terminal that is not there.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("git {} took over {}s", args[0], GIT_TIMEOUT.as_secs()))?
        .context("running git")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("git {}: {} ({})", args[0], stderr.trim(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The context directory inside the checkout, which must stay inside it
/// (a symlink may not lead out).
fn context_of(checkout: &Path, context_dir: &str) -> anyhow::Result<PathBuf> {
    let root = checkout
        .canonicalize()
        .with_context(|| format!("resolving {}", checkout.display()))?;
    let context = root
        .join(context_dir)
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("context directory {context_dir:?}: {e}"))?;
    if !context.starts_with(&root) || !context.is_dir() {
        bail!("context directory {context_dir:?} is not a directory of the repository");
    }
    Ok(context)
}

/// `GET {master}/v1/buildinputs/{digest}` as this node, checked against
/// the digest.
async fn download(registry: &ClusterRegistry, digest: &str) -> anyhow::Result<Vec<u8>> {
    let master = registry
        .master()
        .await
        .context("no master to fetch the build's input from")?;
    let url = format!("{}/v1/buildinputs/{digest}", master.masters().current());
    let response = master
        .http()
        .get(&url)
        .bearer_auth(&master.joined().credential)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("fetching {url}: {status}: {}", body.trim());
    }
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("fetching {url}"))?;
    let got = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    if got != digest {
        bail!("the build input from {url} is {got}, not {digest}");
    }
    Ok(bytes.to_vec())
}

fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = private_file(path)?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_directory_stays_inside_the_checkout() {
        let dir = std::env::temp_dir().join(format!("berth-ctx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("app/web")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("app/out")).unwrap();
        assert!(context_of(&dir, "app/web").unwrap().ends_with("app/web"));
        assert!(context_of(&dir, "").is_ok());
        assert!(context_of(&dir, "app/out").is_err());
        assert!(context_of(&dir, "missing").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_build_prepared_in_another_boot_is_told_apart() {
        let state = std::env::temp_dir().join(format!("berth-boot-{}", std::process::id()));
        let dir = build_dir(&state, "p");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!prepared_before_this_boot(&state, "p"), "nothing recorded");
        let now = boot_id().expect("the kernel's boot id");
        std::fs::write(dir.join(BOOT_ID_FILE), format!("{now}\n")).unwrap();
        assert!(!prepared_before_this_boot(&state, "p"));
        std::fs::write(dir.join(BOOT_ID_FILE), "another-boot\n").unwrap();
        assert!(prepared_before_this_boot(&state, "p"));
        remove(&state, "p").unwrap();
        assert_eq!(dir_state(&state, "p"), (false, false));
        std::fs::remove_dir_all(&state).unwrap();
    }

    fn sh(dir: &Path, script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The host's git, on a repository of two commits.
    #[tokio::test]
    async fn a_branch_builds_its_head_and_a_named_commit_builds_that_commit() {
        let dir = std::env::temp_dir().join(format!("berth-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let first = sh(
            &repo,
            "git init -q -b main . && echo one > file && git add file && git commit -qm one && git rev-parse HEAD",
        );
        let second = sh(
            &repo,
            "echo two > file && git commit -qam two && git rev-parse HEAD",
        );
        let url = repo.to_str().unwrap();

        let head = clone(url, "main", None, &dir.join("head")).await.unwrap();
        assert_eq!(head, second);
        let pinned = clone(url, "main", Some(&first), &dir.join("pinned"))
            .await
            .unwrap();
        assert_eq!(pinned, first);
        assert_eq!(
            std::fs::read_to_string(dir.join("pinned/file")).unwrap(),
            "one\n"
        );
        let bad = clone(url, "main", Some("0123abc"), &dir.join("bad"))
            .await
            .unwrap_err();
        assert_eq!(bad.to_string(), format!("commit 0123abc is not in {url}"));
        let branch = clone(url, "nope", None, &dir.join("nope"))
            .await
            .unwrap_err();
        assert!(
            format!("{branch:#}").contains("cloning branch nope"),
            "{branch:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A master that runs a registry at h1:5000, grants push to `a/site`
    /// only, and answers every build input with `input`.
    async fn fake_master(input: Vec<u8>) -> berth_client::NodeClient {
        use axum::extract::RawQuery;
        use axum::routing::get;
        use base64::Engine as _;

        let token = |query: RawQuery| async move {
            let query = query.0.unwrap_or_default();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let actions = if query.contains("a/site:pull,push") {
                r#"["pull","push"]"#
            } else {
                r#"["pull"]"#
            };
            let name = query
                .split("repository:")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .unwrap_or_default()
                .to_owned();
            let claims = format!(
                r#"{{"access":[{{"type":"repository","name":"{name}","actions":{actions}}}]}}"#
            );
            let token = format!("{}.{}.sig", b64.encode("{}"), b64.encode(claims));
            axum::Json(serde_json::json!({"token": token, "expires_in": 300}))
        };
        let app = axum::Router::new()
            .route(
                "/v1/registry",
                get(|| async {
                    axum::Json(serde_json::json!({"address": "h1:5000", "caCertificate": "PEM"}))
                }),
            )
            .route("/v1/registry/token", get(token))
            // Whatever digest is asked, the same bytes: the node checks.
            .route(
                "/v1/buildinputs/{digest}",
                get(move || async move { input }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let joined = berth_client::Joined {
            url,
            urls: Vec::new(),
            node: "h2".into(),
            credential: "node-secret".into(),
            ca_pem: None,
        };
        let timeouts = berth_client::Timeouts {
            request: Duration::from_secs(5),
            long_poll: Duration::from_secs(1),
        };
        berth_client::NodeClient::new(joined, timeouts).unwrap()
    }

    fn archive_task(digest: &str, output: &str) -> BuildTask {
        serde_json::from_value(serde_json::json!({
            "build": "a.site-1",
            "strategy": {"docker": {}},
            "input": {"archive": {"digest": digest}},
            "output": output,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn an_archive_build_is_prepared_with_its_input_checked_and_a_push_token() {
        use std::os::unix::fs::PermissionsExt;

        let input = b"a tar, as far as this test cares".to_vec();
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&input));
        let registry = ClusterRegistry::new(None);
        registry.learn(&fake_master(input.clone()).await).await;
        let state = std::env::temp_dir().join(format!("berth-prepare-{}", std::process::id()));
        let host = Host {
            state_dir: &state,
            docker_socket: Path::new("/run/docker.sock"),
            registry: &registry,
        };
        let resources = Resources {
            memory_bytes: Some(1 << 30),
            cpu_millis: Some(500),
            pids_limit: None,
        };
        let task = archive_task(&digest, "h1:5000/a/site:latest");
        let build = Preparation {
            pod: "a.site-1-build-0",
            task: &task,
            resources: &resources,
        };
        prepare(build, host).await.expect("prepared");

        let dir = build_dir(&state, "a.site-1-build-0");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(INPUT_FILE)), 0o600);
        assert_eq!(mode(&dir.join(SPEC_FILE)), 0o600);
        assert_eq!(std::fs::read(dir.join(INPUT_FILE)).unwrap(), input);
        assert_eq!(dir_state(&state, "a.site-1-build-0"), (true, true));
        let spec: BuildSpec =
            serde_json::from_slice(&std::fs::read(dir.join(SPEC_FILE)).unwrap()).unwrap();
        assert_eq!(spec.task, task);
        assert!(crate::cluster_registry::grants_push(
            &spec.push_token,
            "a/site"
        ));
        assert_eq!(spec.pull_token, None);
        assert_eq!(
            (spec.memory_bytes, spec.cpu_millis),
            (Some(1 << 30), Some(500))
        );
        assert_eq!(
            spec.cgroup_parent.as_deref(),
            Some("/berth.slice/berth-a.site\\x2d1\\x2dbuild\\x2d0.slice/berth-a.site\\x2d1\\x2dbuild\\x2d0-build.service")
        );

        // No push grant for another repository: the build cannot start.
        let other = archive_task(&digest, "h1:5000/a/other:latest");
        let refused = prepare(
            Preparation {
                task: &other,
                ..build
            },
            host,
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the master grants this node no push to a/other"
        );
        // An input that is not what its digest says is refused.
        let wrong = format!("sha256:{}", "0".repeat(64));
        let tampered = archive_task(&wrong, "h1:5000/a/site:latest");
        let refused = prepare(
            Preparation {
                task: &tampered,
                ..build
            },
            host,
        )
        .await
        .unwrap_err();
        assert!(
            format!("{refused:#}").contains(&format!("is {digest}, not {wrong}")),
            "{refused:#}"
        );
        remove(&state, "a.site-1-build-0").unwrap();
        std::fs::remove_dir_all(&state).unwrap();
    }
}
