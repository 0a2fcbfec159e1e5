//! Builds on this node. A build pod's one unit runs `berth-agent build
//! DIR`, the runner: it reads what the agent prepared in `DIR` (see
//! [`prepare`]), builds through the node's dockerd, Docker style
//! ([`docker_build`]) or source-to-image style ([`source_build`]),
//! pushes the image to the integrated registry ([`push`]) and exits 0
//! only once that push is done. Its stdout and stderr are the build's log
//! (the journal ships them as the pod's).
//!
//! `DIR/spec.json` ([`BuildSpec`]) and `DIR/input.tar` (the sources, no
//! prefix) are 0600 in a 0700 directory: the spec holds registry tokens.

pub mod docker_build;
pub mod prepare;
pub mod push;
pub mod source_build;

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_model::build::BuildTask;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// The directory of the agent's state directory that holds one directory
/// per build pod on this node.
pub const BUILDS_DIR: &str = "builds";

/// What the runner reads.
pub const SPEC_FILE: &str = "spec.json";

/// The build's sources, a tar without prefix.
pub const INPUT_FILE: &str = "input.tar";

/// The git commit a build from git built, one line.
pub const COMMIT_FILE: &str = "commit";

/// The boot the build was prepared in (the kernel's boot ID): a build
/// prepared before the host restarted never ends, it was cut short.
pub const BOOT_ID_FILE: &str = "boot-id";

/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's ID, if the kernel says.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|id| id.trim().to_owned())
}

/// The label on every container a build makes: the build's name. The
/// runner removes what carries it on exit; it is not `berth.pod`, so the
/// agent never takes a builder for a pod's container.
pub const LABEL_BUILD: &str = "berth.build";

/// The exit status of a build stopped by SIGTERM or SIGINT.
pub const CANCELLED_EXIT_CODE: u8 = 143;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_one_status_line() {
        assert_eq!(
            status_line("build failed: The command '/bin/sh -c x'\nreturned 7\n"),
            "build failed: The command '/bin/sh -c x' returned 7"
        );
        assert_eq!(status_line(&"é".repeat(600)).len(), MAX_STATUS_LEN);
    }
}

/// Everything the runner needs besides the sources: `DIR/spec.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildSpec {
    /// The build pod (qualified), for names and messages.
    pub pod: String,
    /// What to build.
    pub task: BuildTask,
    /// The registry token that may push the output's repository (sent as
    /// `registrytoken` in `X-Registry-Auth`).
    pub push_token: String,
    /// A token that may pull the builder image, when it is in the
    /// integrated registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_token: Option<String>,
    /// Memory limit of the build, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU limit of the build, thousandths of a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// The cgroup the containers the build makes go under (the build
    /// unit's own, so its limits hold them too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// dockerd's API socket.
    pub docker_socket: PathBuf,
}

impl std::fmt::Debug for BuildSpec {
    // The tokens stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSpec")
            .field("pod", &self.pod)
            .field("task", &self.task)
            .field("memory_bytes", &self.memory_bytes)
            .field("cpu_millis", &self.cpu_millis)
            .field("cgroup_parent", &self.cgroup_parent)
            .field("docker_socket", &self.docker_socket)
            .finish_non_exhaustive()
    }
}

/// Where `pod`'s build directory is under the agent's state directory.
/// Pod names are DNS labels with at most one `.` (the project's), so they
/// are safe file names as they are.
pub fn build_dir(state_dir: &Path, pod: &str) -> PathBuf {
    state_dir.join(BUILDS_DIR).join(pod)
}

/// A build that did not push, with why: printed as the log's last line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildFailed(pub String);

/// Runs the build prepared in `dir` until it pushed, failed or was
/// stopped by a signal; returns the exit status. What it made is removed
/// whatever the outcome.
pub async fn run(dir: &Path) -> u8 {
    let spec = match read_spec(dir) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("build: {e:#}");
            return 1;
        }
    };
    let docker = match connect(&spec.docker_socket).await {
        Ok(docker) => docker,
        Err(e) => {
            eprintln!("build: {e:#}");
            return 1;
        }
    };
    let stopped = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        std::io::Result::Ok(())
    };
    let outcome = tokio::select! {
        // Dropping the build drops its requests: dockerd aborts a build
        // whose client went away.
        built = build_and_push(&docker, &spec, dir) => Some(built),
        _ = stopped => None,
    };
    remove_containers(&docker, &spec.task.build).await;
    let (line, code) = match outcome {
        Some(Ok(pushed)) => (format!("pushed {pushed}"), 0),
        Some(Err(e)) => (format!("build failed: {e:#}"), 1),
        None => ("build cancelled".to_owned(), CANCELLED_EXIT_CODE),
    };
    if code == 0 {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    // The outcome in a line, as the unit's status text: the agent reports
    // it as the build container's reason (the pushed digest, or why not).
    let _ = sd_notify::notify(
        false,
        &[sd_notify::NotifyState::Status(&status_line(&line))],
    );
    code
}

/// Longest status text the runner leaves.
const MAX_STATUS_LEN: usize = 1024;

/// `line` as one `STATUS=` line: newlines would end it early.
pub fn status_line(line: &str) -> String {
    let mut one: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > MAX_STATUS_LEN {
        let mut end = MAX_STATUS_LEN;
        while !one.is_char_boundary(end) {
            end -= 1;
        }
        one.truncate(end);
    }
    one
}

fn read_spec(dir: &Path) -> anyhow::Result<BuildSpec> {
    let path = dir.join(SPEC_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

async fn connect(socket: &Path) -> anyhow::Result<bollard::Docker> {
    let path = socket.to_string_lossy();
    // No client timeout: a build takes as long as it takes.
    let client =
        bollard::Docker::connect_with_unix(&path, u64::MAX / 4, bollard::API_DEFAULT_VERSION)
            .with_context(|| format!("connecting to dockerd at {path}"))?;
    client
        .negotiate_version()
        .await
        .with_context(|| format!("asking dockerd at {path} for its API version"))
}

/// Builds, then pushes; returns `REPOSITORY@DIGEST`.
async fn build_and_push(
    docker: &bollard::Docker,
    spec: &BuildSpec,
    dir: &Path,
) -> anyhow::Result<String> {
    let input_path = dir.join(INPUT_FILE);
    let input =
        std::fs::read(&input_path).with_context(|| format!("reading {}", input_path.display()))?;
    println!("building {} for {}", spec.task.build, spec.task.output);
    if let Ok(commit) = std::fs::read_to_string(dir.join(COMMIT_FILE)) {
        println!("commit: {}", commit.trim());
    }
    match &spec.task.strategy {
        berth_model::build::TaskStrategy::Docker(strategy) => {
            docker_build::build(docker, spec, strategy, input).await?;
        }
        berth_model::build::TaskStrategy::Source {
            builder_image,
            previous_image,
        } => {
            let images = source_build::Images {
                builder: builder_image,
                previous: previous_image.as_deref(),
            };
            source_build::build(docker, spec, images, input).await?;
        }
    }
    push::push(docker, &spec.task.output, &spec.push_token).await
}

/// Removes every container labelled as `build`'s (a crash or a signal may
/// have left one); what cannot be removed is said, not fatal.
pub async fn remove_containers(docker: &bollard::Docker, build: &str) {
    let mut filters = std::collections::HashMap::new();
    filters.insert("label".to_owned(), vec![format!("{LABEL_BUILD}={build}")]);
    let options = bollard::container::ListContainersOptions {
        all: true,
        filters,
        ..Default::default()
    };
    let found = match docker.list_containers(Some(options)).await {
        Ok(found) => found,
        Err(e) => {
            eprintln!("build: listing the build's containers: {e}");
            return;
        }
    };
    for container in found {
        let Some(id) = container.id else { continue };
        let options = bollard::container::RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        if let Err(e) = docker.remove_container(&id, Some(options)).await {
            eprintln!("build: removing container {id}: {e}");
        }
    }
}

/// Pulls `image` unless present, printing a line per layer done.
async fn ensure_image(
    docker: &bollard::Docker,
    image: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    println!("pulling {image}");
    let credentials = token.map(|token| bollard::auth::DockerCredentials {
        registrytoken: Some(token.to_owned()),
        serveraddress: crate::docker::registry_of(image).map(String::from),
        ..Default::default()
    });
    let (from_image, tag) = crate::docker::split_tag(image);
    let options = bollard::image::CreateImageOptions {
        from_image,
        tag,
        ..Default::default()
    };
    let mut pulled = docker.create_image(Some(options), None, credentials);
    while let Some(step) = pulled.next().await {
        let step = step.with_context(|| format!("pulling {image}"))?;
        if let Some(error) = step.error {
            return Err(BuildFailed(format!("pulling {image}: {error}")).into());
        }
        if let (Some(layer), Some("Pull complete")) = (&step.id, step.status.as_deref()) {
            println!("{layer}: pulled");
        }
    }
    Ok(())
}

/// A host config with the build's limits, in the build unit's cgroup:
/// what the containers a build makes run under.
fn limited(spec: &BuildSpec) -> bollard::models::HostConfig {
    bollard::models::HostConfig {
        memory: spec.memory_bytes.and_then(|m| i64::try_from(m).ok()),
        cpu_period: spec.cpu_millis.map(|_| 100_000),
        cpu_quota: cpu_quota(spec.cpu_millis),
        cgroup_parent: spec.cgroup_parent.clone(),
        ..Default::default()
    }
}

/// The limits of what the build runs, as Docker's host config takes them.
fn cpu_quota(cpu_millis: Option<u32>) -> Option<i64> {
    // Per period of 100 ms: a whole CPU is 100000 µs.
    cpu_millis.map(|m| i64::from(m) * 100)
}

/// The error a stream of dockerd's gave, as dockerd said it.
fn docker_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
