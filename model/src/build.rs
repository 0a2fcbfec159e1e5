//! Builds: a build config says how to turn source into an image of a
//! stream's tag; each run of it is a numbered build (`site-3`) that runs
//! as a one-attempt job on the cluster. Its pod carries a [`BuildTask`]
//! instead of a container command: the agent fetches the input, and its
//! build runner (a systemd unit like any pod's) builds through the node's
//! dockerd, Docker or source-to-image style, and pushes to the integrated
//! registry, whose push event moves the tag.

use serde::{Deserialize, Serialize};

use crate::image_stream::{parse_stream_tag, ImageStream};
use crate::name::validate_dns_label;
pub use crate::pod::build_task::{
    is_git_url, is_plain_reference, is_relative_path, BuildInput, BuildTask, DockerStrategy,
    TaskStrategy, BUILD_CONTAINER,
};
use crate::pod::{EnvVar, Resources};
use crate::project::{qualify, split_qualified};
use crate::validation::ValidationErrors;

/// Longest build config name: its builds are `<name>-<n>`, their jobs
/// `<name>-<n>-build` and those jobs' pods one more suffix.
pub const MAX_BUILD_CONFIG_NAME_LEN: usize = 36;

/// Where source-to-image looks for `assemble` and `run` when the builder
/// image has no `io.openshift.s2i.scripts-url` label.
pub const DEFAULT_SCRIPTS_URL: &str = "image:///usr/libexec/s2i";

/// Where source-to-image unpacks the sources (under `src/`) when the
/// builder image has no `io.openshift.s2i.destination` label.
pub const DEFAULT_DESTINATION: &str = "/tmp";

/// The branch a git source builds when none is named.
pub const DEFAULT_GIT_REF: &str = "main";

/// Most builds of one config kept; older finished ones go.
pub const BUILD_HISTORY_LIMIT: usize = 10;

fn default_ref() -> String {
    DEFAULT_GIT_REF.to_owned()
}

fn yes() -> bool {
    true
}

/// How a build makes its image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum BuildStrategy {
    /// `docker build` of the source's Dockerfile, through the node's
    /// dockerd.
    Docker(DockerStrategy),
    /// Source-to-image: the builder image's `assemble` script runs over
    /// the sources, and the result is committed with `run` as its command.
    Source(SourceStrategy),
}

/// A source-to-image build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceStrategy {
    /// The builder image, as a tag of one of the project's streams
    /// (`STREAM:TAG`).
    pub builder: String,
    /// Reuse the previous image's artifacts (its `save-artifacts`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incremental: bool,
}

/// A git repository to build from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    /// Where to clone from (`https://`, `http://`, `git://`, `ssh://`).
    pub url: String,
    /// The branch to build.
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// The directory in the repository that is the build's context.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_dir: String,
}

/// Which builds of one config may run at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunPolicy {
    /// One at a time, in order.
    #[default]
    Serial,
    /// One at a time; a waiting build is cancelled when a newer one comes.
    SerialLatestOnly,
    /// All at once.
    Parallel,
}

impl RunPolicy {
    /// Its name, as `--run-policy` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunPolicy::Serial => "serial",
            RunPolicy::SerialLatestOnly => "serial-latest-only",
            RunPolicy::Parallel => "parallel",
        }
    }
}

/// What starts a build by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildTriggers {
    /// A change of the config (a git source only).
    #[serde(default = "yes")]
    pub config_change: bool,
    /// A move of the source strategy's builder tag.
    #[serde(default = "yes")]
    pub image_change: bool,
}

impl Default for BuildTriggers {
    fn default() -> Self {
        BuildTriggers {
            config_change: true,
            image_change: true,
        }
    }
}

impl BuildTriggers {
    fn is_default(&self) -> bool {
        *self == BuildTriggers::default()
    }
}

/// A build config: how source becomes an image of a stream's tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildConfig {
    /// Its name, a DNS label; its builds are `<name>-<n>`.
    pub name: String,
    /// Free `key: value` pairs, e.g. for `berth apply --prune -l KEY=VALUE`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// How the image is made.
    pub strategy: BuildStrategy,
    /// The git repository; none for a binary build, whose input comes with
    /// each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// The stream tag the image is pushed to (`STREAM:TAG`).
    pub to: String,
    /// Environment of the build (the `assemble` script's, or the
    /// Dockerfile's build arguments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Memory and CPU limits of the build.
    #[serde(default)]
    pub resources: Resources,
    /// Which builds may run at once.
    #[serde(default, skip_serializing_if = "is_serial")]
    pub run_policy: RunPolicy,
    /// What starts builds by themselves.
    #[serde(default, skip_serializing_if = "BuildTriggers::is_default")]
    pub triggers: BuildTriggers,
    /// The secret in its webhooks' paths and their signatures' key, made
    /// by the master; shown blank on reads.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook_secret: String,
    /// Where its builds push (`REGISTRY/PROJECT/STREAM:TAG`), as the
    /// master sets it from `to`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_image: String,
    /// The number of its latest build, as the master records it; ignored
    /// when sent.
    #[serde(default)]
    pub last_version: u32,
}

fn is_serial(policy: &RunPolicy) -> bool {
    *policy == RunPolicy::Serial
}

impl BuildConfig {
    /// Checks everything that needs no other object.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        } else if self.name.len() > MAX_BUILD_CONFIG_NAME_LEN {
            errors.push(
                "name",
                format!(
                    "must be at most {MAX_BUILD_CONFIG_NAME_LEN} characters (builds add a suffix)"
                ),
            );
        }
        if let Err(e) = parse_stream_tag(&self.to) {
            errors.push("to", e);
        }
        match &self.strategy {
            BuildStrategy::Source(source) => {
                if let Err(e) = parse_stream_tag(&source.builder) {
                    errors.push("strategy.source.builder", e);
                }
            }
            BuildStrategy::Docker(docker) => {
                if let Some(from) = &docker.from {
                    if !is_plain_reference(from) {
                        errors.push("strategy.docker.from", "must be an image reference");
                    }
                }
                if let Some(path) = &docker.dockerfile {
                    if !is_relative_path(path) {
                        errors.push(
                            "strategy.docker.dockerfile",
                            "must be a relative path inside the context, without ..",
                        );
                    }
                }
            }
        }
        if let Some(git) = &self.git {
            if !is_git_url(&git.url) {
                errors.push(
                    "git.url",
                    "must be an https://, http://, git:// or ssh:// URL",
                );
            }
            if git.git_ref.is_empty()
                || git.git_ref.starts_with('-')
                || !git.git_ref.chars().all(is_ref_char)
            {
                errors.push("git.ref", "must be a branch name");
            }
            if !git.context_dir.is_empty() && !is_relative_path(&git.context_dir) {
                errors.push(
                    "git.contextDir",
                    "must be a relative path inside the repository, without ..",
                );
            }
        }
        for (i, var) in self.env.iter().enumerate() {
            if let Err(e) = crate::validate_env_name(&var.name) {
                errors.push(format!("env[{i}].name"), e.to_string());
            }
            if var.value.contains('\0') {
                errors.push(format!("env[{i}].value"), "must not contain NUL");
            }
        }
        errors.into_result()
    }

    /// The config as users see it: the webhook secret blanked.
    pub fn redacted(mut self) -> Self {
        self.webhook_secret.clear();
        self
    }

    /// The stream of its output, and the tag.
    pub fn output(&self) -> (&str, &str) {
        parse_stream_tag(&self.to).unwrap_or((&self.to, "latest"))
    }

    /// The builder's `STREAM:TAG`, for a source build.
    pub fn builder(&self) -> Option<&str> {
        match &self.strategy {
            BuildStrategy::Source(source) => Some(&source.builder),
            BuildStrategy::Docker(_) => None,
        }
    }
}

fn is_ref_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Why a build was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildCause {
    /// `manual`, `git-webhook`, `generic-webhook`, `image-change`,
    /// `config-change` or `binary`.
    pub kind: CauseKind,
    /// The commit a webhook named, the builder image a change moved to,
    /// or who started it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The kinds of [`BuildCause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseKind {
    /// `berth build start` of a git build.
    Manual,
    /// A GitHub-style push webhook.
    GitWebhook,
    /// The generic webhook.
    GenericWebhook,
    /// The builder image's tag moved.
    ImageChange,
    /// The config changed.
    ConfigChange,
    /// `berth build start --from-dir|--from-archive|--from-file`.
    Binary,
}

impl std::fmt::Display for BuildCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            CauseKind::Manual => "manual",
            CauseKind::GitWebhook => "git webhook",
            CauseKind::GenericWebhook => "generic webhook",
            CauseKind::ImageChange => "image change",
            CauseKind::ConfigChange => "config change",
            CauseKind::Binary => "binary",
        };
        if self.detail.is_empty() {
            f.write_str(kind)
        } else {
            write!(f, "{kind} {}", self.detail)
        }
    }
}

/// Where a build stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildPhase {
    /// Made; waiting for its run policy.
    #[default]
    New,
    /// Its job is queued for a place.
    Pending,
    /// Its pod runs.
    Running,
    /// Its image was pushed.
    Complete,
    /// It, or its push, failed.
    Failed,
    /// Cancelled on request, or superseded by a newer build.
    Cancelled,
}

impl BuildPhase {
    /// Whether the build is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BuildPhase::Complete | BuildPhase::Failed | BuildPhase::Cancelled
        )
    }
}

/// One run of a build config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// `<config>-<number>`.
    pub name: String,
    /// Its build config.
    pub config: String,
    /// Its number among the config's builds.
    pub number: u32,
    /// Why it was started.
    pub cause: BuildCause,
    /// Who started it (`admin`, `user alice`, `webhook`, `master`).
    pub by: String,
    /// What it runs: the config's settings when it was made, with the
    /// builder resolved to an image and the input pinned.
    pub task: BuildTask,
    /// Where it stands.
    #[serde(default)]
    pub phase: BuildPhase,
    /// Why, when it waits or ended other than by completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its job, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The pod that ran (or runs) it, and its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Where its pod ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The image it pushed: `REGISTRY/PROJECT/STREAM@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_image: Option<String>,
    /// The digest it pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_digest: Option<String>,
    /// Set by `berth build cancel`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
    /// When its pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

impl Build {
    /// Build `number` of `config` (qualified), caused by `cause`: its task
    /// pinned now (the builder tag's image, the input), or why it cannot be
    /// made, naming the field.
    pub fn begin(
        config: &BuildConfig,
        number: u32,
        cause: BuildCause,
        by: &str,
        input: Option<BuildInput>,
        streams: &[ImageStream],
        now_ms: u64,
    ) -> Result<Build, (String, String)> {
        let (project, config_name) = split_qualified(&config.name);
        let current = |stream_tag: &str| -> Option<String> {
            let (stream, tag) = parse_stream_tag(stream_tag).ok()?;
            let name = qualify(project, stream);
            streams
                .iter()
                .find(|s| s.name == name)?
                .current(tag)
                .map(|event| event.image.clone())
        };
        let strategy = match &config.strategy {
            BuildStrategy::Docker(docker) => TaskStrategy::Docker(docker.clone()),
            BuildStrategy::Source(source) => {
                let builder_image = current(&source.builder).ok_or_else(|| {
                    (
                        "strategy.source.builder".to_owned(),
                        format!(
                            "{} points at no image yet: push the builder image to it first",
                            source.builder
                        ),
                    )
                })?;
                TaskStrategy::Source {
                    builder_image,
                    previous_image: source.incremental.then(|| current(&config.to)).flatten(),
                }
            }
        };
        let input = match (input, &config.git) {
            (Some(input), _) => input,
            (None, Some(git)) => BuildInput::Git {
                url: git.url.clone(),
                git_ref: git.git_ref.clone(),
                commit: None,
                context_dir: git.context_dir.clone(),
            },
            (None, None) => {
                return Err((
                    "input".to_owned(),
                    format!(
                        "build config {config_name} has no git source: start it with its input \
                         (berth build start {config_name} --from-dir DIR)"
                    ),
                ))
            }
        };
        if config.output_image.is_empty() {
            return Err((
                "to".to_owned(),
                "builds push to the integrated registry, and this master runs none".to_owned(),
            ));
        }
        let name = Build::name_of(&config.name, number);
        Ok(Build {
            task: BuildTask {
                build: name.clone(),
                strategy,
                input,
                output: config.output_image.clone(),
                env: config.env.clone(),
            },
            name,
            config: config.name.clone(),
            number,
            cause,
            by: by.to_owned(),
            phase: BuildPhase::New,
            reason: None,
            job: None,
            pod: None,
            node: None,
            output_image: None,
            output_digest: None,
            cancelled: false,
            created_ms: now_ms,
            start_ms: None,
            end_ms: None,
        })
    }

    /// The name of build `number` of `config`.
    pub fn name_of(config: &str, number: u32) -> String {
        format!("{config}-{number}")
    }

    /// The name of the job that runs build `name`.
    pub fn job_name(name: &str) -> String {
        format!("{name}-build")
    }

    /// How long it ran, once it ended.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(
            self.end_ms?
                .saturating_sub(self.start_ms.unwrap_or(self.created_ms)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> BuildConfig {
        serde_json::from_str(json).expect("a build config")
    }

    #[test]
    fn a_source_build_from_git_reads_with_its_defaults() {
        let c = config(
            r#"{"name":"site","strategy":{"source":{"builder":"builder:latest"}},
                "git":{"url":"git://h1/site.git"},"to":"site:latest"}"#,
        );
        c.validate().expect("valid");
        assert_eq!(c.git.as_ref().unwrap().git_ref, "main");
        assert_eq!(c.run_policy, RunPolicy::Serial);
        assert!(c.triggers.config_change && c.triggers.image_change);
        assert_eq!(c.builder(), Some("builder:latest"));
        assert_eq!(c.output(), ("site", "latest"));
    }

    #[test]
    fn bad_fields_are_named() {
        let c = config(
            r#"{"name":"Site","strategy":{"docker":{"dockerfile":"../Dockerfile"}},
                "git":{"url":"file:///etc","ref":"-x","contextDir":"/abs"},"to":"nope",
                "env":[{"name":"1X","value":"v"}]}"#,
        );
        let errors = c.validate().expect_err("invalid");
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        for field in [
            "name",
            "to",
            "strategy.docker.dockerfile",
            "git.url",
            "git.ref",
            "git.contextDir",
            "env[0].name",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn causes_read_as_people_say_them() {
        let cause = BuildCause {
            kind: CauseKind::GitWebhook,
            detail: "3f2a9c1".into(),
        };
        assert_eq!(cause.to_string(), "git webhook 3f2a9c1");
        let policy: RunPolicy = serde_json::from_str(r#""serial-latest-only""#).unwrap();
        assert_eq!(policy, RunPolicy::SerialLatestOnly);
    }
}
