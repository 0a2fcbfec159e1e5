//! What a build pod does: the master sets [`BuildTask`] on the pod of a
//! build's job, and the node's build runner carries it out (see
//! `crate::build` for build configs and builds).

use serde::{Deserialize, Serialize};

use crate::pod::EnvVar;
use crate::validation::ValidationErrors;

/// A Docker build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerStrategy {
    /// Replaces the image of the Dockerfile's last `FROM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The Dockerfile's path in the context (`Dockerfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
}

/// What a build pod does, as its node runs it: the job's pod carries it,
/// and its one container (named [`BUILD_CONTAINER`]) is the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildTask {
    /// The build's name (qualified), which labels what it makes.
    pub build: String,
    /// How the image is made; for a source build the builder is an image
    /// reference the node pulls.
    pub strategy: TaskStrategy,
    /// Where the input comes from.
    pub input: BuildInput,
    /// Where the image is pushed: `REGISTRY/PROJECT/STREAM:TAG`.
    pub output: String,
    /// The build's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// The container name a build pod's one container has.
pub const BUILD_CONTAINER: &str = "build";

/// [`BuildStrategy`] with the builder resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TaskStrategy {
    /// `docker build`.
    Docker(DockerStrategy),
    /// Source-to-image with `builderImage`.
    #[serde(rename_all = "camelCase")]
    Source {
        /// The builder image, by digest when its stream knows one.
        builder_image: String,
        /// The image the last build pushed, for `save-artifacts`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_image: Option<String>,
    },
}

/// Where a build's input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum BuildInput {
    /// A git repository at a commit (or the branch's head, when the commit
    /// is not known yet).
    #[serde(rename_all = "camelCase")]
    Git {
        /// Clone URL.
        url: String,
        /// The branch.
        #[serde(rename = "ref")]
        git_ref: String,
        /// The commit, when a webhook named it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// The context directory inside the repository. Spelled
        /// `context_dir` before it followed the API's camel case: pods
        /// stored then still read.
        #[serde(
            default,
            skip_serializing_if = "String::is_empty",
            alias = "context_dir"
        )]
        context_dir: String,
    },
    /// A tar archive the master keeps, by its digest
    /// (`GET /v1/buildinputs/{digest}`).
    Archive {
        /// `sha256:...` of the tar.
        digest: String,
    },
}

impl BuildTask {
    /// Checks what the agent relies on.
    pub fn validate(&self, errors: &mut ValidationErrors, prefix: &str) {
        if self.output.is_empty() || !is_plain_reference(&self.output) {
            errors.push(format!("{prefix}output"), "must be an image reference");
        }
        match &self.input {
            BuildInput::Git {
                url, context_dir, ..
            } => {
                if !is_git_url(url) {
                    errors.push(format!("{prefix}input.git.url"), "must be a git URL");
                }
                if !context_dir.is_empty() && !is_relative_path(context_dir) {
                    errors.push(
                        format!("{prefix}input.git.contextDir"),
                        "must be a relative path",
                    );
                }
            }
            BuildInput::Archive { digest } => {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    errors.push(
                        format!("{prefix}input.archive.digest"),
                        "must be sha256:HEX",
                    );
                }
            }
        }
    }
}

/// Whether `url` is a git URL berth clones: https, http, git or ssh.
pub fn is_git_url(url: &str) -> bool {
    ["https://", "http://", "git://", "ssh://"]
        .iter()
        .any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        })
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn is_plain_reference(image: &str) -> bool {
    !image.is_empty()
        && !image.starts_with('-')
        && !image.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A relative path that stays inside its root.
pub fn is_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|part| part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_git_input_is_camel_case_as_the_api_says_and_reads_its_old_spelling() {
        let input = BuildInput::Git {
            url: "https://git.example/shop.git".to_owned(),
            git_ref: "main".to_owned(),
            commit: None,
            context_dir: "web".to_owned(),
        };
        let json = serde_json::to_value(&input).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"git": {"url": "https://git.example/shop.git", "ref": "main", "contextDir": "web"}})
        );
        let old = serde_json::json!({"git": {"url": "https://git.example/shop.git", "ref": "main", "context_dir": "web"}});
        assert_eq!(
            serde_json::from_value::<BuildInput>(old).expect("old"),
            input
        );
    }
}
