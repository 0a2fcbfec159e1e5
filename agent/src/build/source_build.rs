//! The source strategy: source-to-image's mechanics without the s2i tool.
//! The builder image says where its scripts are
//! (`io.openshift.s2i.scripts-url`) and where sources go
//! (`io.openshift.s2i.destination`); a container of it runs `assemble`
//! over the sources uploaded into `<destination>/src`, and is committed
//! with `run` as the image's command.

use anyhow::Context;
use berth_model::build::{DEFAULT_DESTINATION, DEFAULT_SCRIPTS_URL};
use bollard::container::{Config, LogOutput, LogsOptions, StartContainerOptions};
use futures_util::StreamExt;

use super::{docker_message, ensure_image, limited, BuildFailed, BuildSpec, LABEL_BUILD};

/// The builder's label naming its scripts' location.
pub const SCRIPTS_URL_LABEL: &str = "io.openshift.s2i.scripts-url";

/// The builder's label naming where sources are unpacked.
pub const DESTINATION_LABEL: &str = "io.openshift.s2i.destination";

/// The directory inside the builder image that holds `assemble` and
/// `run`, from its scripts URL: only `image://` URLs (scripts inside the
/// image) are supported.
pub fn scripts_dir(url: &str) -> Result<String, BuildFailed> {
    let path = url.strip_prefix("image://").ok_or_else(|| {
        BuildFailed(format!(
            "the builder's scripts URL {url:?} is not supported: only image:// URLs are"
        ))
    })?;
    if !path.starts_with('/') || path.contains(['\0', '\n']) {
        return Err(BuildFailed(format!(
            "the builder's scripts URL {url:?} does not name an absolute path"
        )));
    }
    Ok(path.trim_end_matches('/').to_owned())
}

/// The images a source build uses.
#[derive(Debug, Clone, Copy)]
pub struct Images<'a> {
    /// The builder.
    pub builder: &'a str,
    /// The image the last build pushed, whose `save-artifacts` hands its
    /// artifacts to this build's `assemble` (an incremental build).
    pub previous: Option<&'a str>,
}

/// Builds the sources (`input`, a tar) with the builder into the output
/// tag.
pub async fn build(
    docker: &bollard::Docker,
    spec: &BuildSpec,
    images: Images<'_>,
    input: Vec<u8>,
) -> anyhow::Result<()> {
    let builder = images.builder;
    let same_registry = crate::docker::registry_of(builder).is_some()
        && crate::docker::registry_of(builder) == crate::docker::registry_of(&spec.task.output);
    let token = spec.pull_token.as_deref().filter(|_| same_registry);
    ensure_image(docker, builder, token).await?;
    let image = docker
        .inspect_image(builder)
        .await
        .with_context(|| format!("inspecting {builder}"))?;
    let labels = image
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let scripts = scripts_dir(
        labels
            .get(SCRIPTS_URL_LABEL)
            .map_or(DEFAULT_SCRIPTS_URL, String::as_str),
    )?;
    let destination = labels
        .get(DESTINATION_LABEL)
        .map_or(DEFAULT_DESTINATION, String::as_str)
        .trim_end_matches('/')
        .to_owned();
    let destination = if destination.is_empty() {
        "/".to_owned()
    } else {
        destination
    };
    let artifacts = match images.previous {
        Some(previous) => match save_artifacts(docker, spec, previous, &scripts).await {
            Ok(artifacts) => artifacts,
            Err(e) => {
                println!("not incremental: {e:#}");
                None
            }
        },
        None => None,
    };
    println!("assembling with {builder} (scripts in {scripts}, sources in {destination}/src)");

    let env: Vec<String> = spec
        .task
        .env
        .iter()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect();
    let config = Config {
        image: Some(builder.to_owned()),
        // An empty entrypoint clears the image's: the script runs as is.
        entrypoint: Some(Vec::new()),
        cmd: Some(vec![format!("{scripts}/assemble")]),
        env: Some(env.clone()),
        labels: Some([(LABEL_BUILD.to_owned(), spec.task.build.clone())].into()),
        host_config: Some(limited(spec)),
        ..Default::default()
    };
    let created = docker
        .create_container::<String, String>(None, config)
        .await
        .map_err(|e| {
            BuildFailed(format!(
                "creating the builder container: {}",
                docker_message(&e)
            ))
        })?;
    let id = created.id;

    upload(docker, &id, &destination, empty_dirs()?).await?;
    upload(docker, &id, &format!("{destination}/src"), input).await?;
    if let Some(artifacts) = artifacts {
        upload(docker, &id, &format!("{destination}/artifacts"), artifacts).await?;
    }
    docker
        .start_container(&id, None::<StartContainerOptions<String>>)
        .await
        .map_err(|e| BuildFailed(format!("starting assemble: {}", docker_message(&e))))?;
    relay_output(docker, &id).await;
    let code = exit_code(docker, &id).await?;
    if code != 0 {
        return Err(BuildFailed(format!("assemble failed with exit code {code}")).into());
    }

    let (repo, tag) = crate::docker::split_tag(&spec.task.output);
    let options = bollard::image::CommitContainerOptions {
        container: id.clone(),
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        comment: format!("berth build {}", spec.task.build),
        ..Default::default()
    };
    // `run` is the image's command; the empty entrypoint is kept, so
    // nothing of the builder's wraps it.
    let committed = Config {
        entrypoint: Some(Vec::new()),
        cmd: Some(vec![format!("{scripts}/run")]),
        env: Some(env),
        labels: Some([(LABEL_BUILD.to_owned(), spec.task.build.clone())].into()),
        ..Default::default()
    };
    docker
        .commit_container(options, committed)
        .await
        .map_err(|e| BuildFailed(format!("committing the image: {}", docker_message(&e))))?;
    println!("committed {}", spec.task.output);
    remove(docker, &id).await;
    Ok(())
}

/// A tar of empty `src/` and `artifacts/` directories, so that they
/// exist under the destination before the sources (and artifacts) go in.
fn empty_dirs() -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["src/", "artifacts/"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        // Builders often assemble as a user of their own, who moves the
        // sources about.
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(0);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    tar.into_inner()
}

/// Runs `save-artifacts` of the previous image: its stdout is a tar of
/// what the next `assemble` may reuse. `None` when the image has no such
/// script or it fails (the build goes on from scratch).
async fn save_artifacts(
    docker: &bollard::Docker,
    spec: &BuildSpec,
    previous: &str,
    scripts: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    // The previous image is the output's repository: the push token
    // pulls it too.
    ensure_image(docker, previous, Some(&spec.push_token)).await?;
    println!("saving the artifacts of {previous}");
    let config = Config {
        image: Some(previous.to_owned()),
        entrypoint: Some(Vec::new()),
        cmd: Some(vec![format!("{scripts}/save-artifacts")]),
        labels: Some([(LABEL_BUILD.to_owned(), spec.task.build.clone())].into()),
        host_config: Some(limited(spec)),
        ..Default::default()
    };
    let id = docker
        .create_container::<String, String>(None, config)
        .await
        .map_err(|e| {
            BuildFailed(format!(
                "creating the save-artifacts container: {}",
                docker_message(&e)
            ))
        })?
        .id;
    let saved = async {
        docker
            .start_container(&id, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| BuildFailed(format!("starting save-artifacts: {}", docker_message(&e))))?;
        let options = LogsOptions::<String> {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut tar = Vec::new();
        let mut logs = docker.logs(&id, Some(options));
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| {
                BuildFailed(format!("reading the artifacts: {}", docker_message(&e)))
            })? {
                LogOutput::StdOut { message } => tar.extend_from_slice(&message),
                other => eprint!("{other}"),
            }
        }
        let code = exit_code(docker, &id).await?;
        anyhow::Ok((code == 0).then_some(tar))
    }
    .await;
    remove(docker, &id).await;
    let saved = saved?;
    if saved.is_none() {
        println!("not incremental: save-artifacts of {previous} failed");
    }
    Ok(saved)
}

async fn remove(docker: &bollard::Docker, id: &str) {
    let options = bollard::container::RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    let _ = docker.remove_container(id, Some(options)).await;
}

async fn upload(
    docker: &bollard::Docker,
    id: &str,
    path: &str,
    tar: Vec<u8>,
) -> anyhow::Result<()> {
    let options = bollard::container::UploadToContainerOptions {
        path: path.to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(id, Some(options), tar.into())
        .await
        .map_err(|e| BuildFailed(format!("uploading into {path}: {}", docker_message(&e))).into())
}

/// Prints what the container writes, stdout to stdout and stderr to
/// stderr, until it ends.
async fn relay_output(docker: &bollard::Docker, id: &str) {
    let options = LogsOptions::<String> {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut logs = docker.logs(id, Some(options));
    while let Some(chunk) = logs.next().await {
        match chunk {
            Ok(LogOutput::StdErr { message }) => {
                eprint!("{}", String::from_utf8_lossy(&message));
            }
            Ok(output) => print!("{output}"),
            Err(e) => {
                eprintln!("build: reading assemble's output: {}", docker_message(&e));
                break;
            }
        }
    }
}

async fn exit_code(docker: &bollard::Docker, id: &str) -> anyhow::Result<i64> {
    let mut waited = docker.wait_container::<String>(id, None);
    match waited.next().await {
        Some(Ok(done)) => Ok(done.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => {
            Err(BuildFailed(format!("waiting for assemble: {}", docker_message(&e))).into())
        }
        None => Err(BuildFailed("waiting for assemble: dockerd said nothing".into()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_found_inside_the_image_only() {
        assert_eq!(
            scripts_dir(DEFAULT_SCRIPTS_URL).unwrap(),
            "/usr/libexec/s2i"
        );
        assert_eq!(scripts_dir("image:///opt/s2i/").unwrap(), "/opt/s2i");
        let remote = scripts_dir("https://example.com/s2i").unwrap_err();
        assert!(remote.0.contains("only image:// URLs"), "{remote}");
        assert!(scripts_dir("image://relative").is_err());
    }
}
