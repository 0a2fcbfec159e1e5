//! Pushing the built image to the integrated registry with the build's
//! push token; the log gets one line per layer done, not dockerd's
//! progress bars.

use futures_util::StreamExt;

use super::{docker_message, BuildFailed};

/// Pushes `output` (`REGISTRY/PROJECT/STREAM:TAG`) with `token`; returns
/// `REGISTRY/PROJECT/STREAM@sha256:...`.
pub async fn push(docker: &bollard::Docker, output: &str, token: &str) -> anyhow::Result<String> {
    let (repository, tag) = crate::docker::split_tag(output);
    println!("pushing {output}");
    let credentials = bollard::auth::DockerCredentials {
        registrytoken: Some(token.to_owned()),
        serveraddress: crate::docker::registry_of(output).map(String::from),
        ..Default::default()
    };
    let options = bollard::image::PushImageOptions { tag };
    let mut pushed = docker.push_image(repository, Some(options), Some(credentials));
    let mut digest = None;
    while let Some(step) = pushed.next().await {
        let step =
            step.map_err(|e| BuildFailed(format!("pushing {output}: {}", docker_message(&e))))?;
        if let Some(error) = step.error {
            return Err(BuildFailed(format!("pushing {output}: {error}")).into());
        }
        let Some(status) = step.status.as_deref() else {
            continue;
        };
        if let Some(found) = digest_of(status) {
            digest = Some(found.to_owned());
        } else if let Some(line) = progress_line(status) {
            println!("{line}");
        }
    }
    let digest =
        digest.ok_or_else(|| BuildFailed(format!("pushing {output}: dockerd named no digest")))?;
    Ok(format!("{repository}@{digest}"))
}

/// The digest in dockerd's last push status (`latest: digest: sha256:...
/// size: 527`).
pub fn digest_of(status: &str) -> Option<&str> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then_some(digest)
}

/// Which statuses are worth a line: a layer done, not its progress.
fn progress_line(status: &str) -> Option<&str> {
    (matches!(status, "Pushed" | "Layer already exists") || status.starts_with("Mounted from"))
        .then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_read_from_the_last_status() {
        assert_eq!(
            digest_of("latest: digest: sha256:0123abcd size: 527"),
            Some("sha256:0123abcd")
        );
        assert_eq!(digest_of("Pushed"), None);
        assert_eq!(progress_line("Pushing"), None);
        assert_eq!(progress_line("Pushed"), Some("Pushed"));
    }
}
