//! Build configs, made and changed through the API, and their builds,
//! which only the master makes: a start, a webhook, a config change (here,
//! in the same commit as the change) or a builder image's move (the
//! controller). The controller's build planner runs each build as a job.

use berth_model::build::{Build, BuildCause, BuildConfig, BuildStrategy, CauseKind};
use berth_model::image_stream::parse_stream_tag;
use berth_model::project::{qualify, unqualified};
use berth_model::{ImageStream, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::{self, BUILDCONFIGS, BUILDS};
use crate::store::{Op, Store, StoreError};

impl Resource for BuildConfig {
    const KIND: &'static str = "build config";
    const PREFIX: &'static str = BUILDCONFIGS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    /// A new config gets its webhook secret and its output; it is build 1
    /// at once when its git source builds on change.
    fn complete(mut self, settings: &Settings<'_>) -> Self {
        self.webhook_secret = crate::auth::new_secret().unwrap_or_default();
        self.output_image = match (settings.registry, parse_stream_tag(&self.to)) {
            (Some(registry), Ok((stream, tag))) => format!(
                "{registry}/{}:{tag}",
                crate::registry::repository(settings.project, stream)
            ),
            _ => String::new(),
        };
        self.last_version = u32::from(builds_on_change(&self, None));
        self
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = BuildConfig::validate(self).err().unwrap_or_default();
        if settings.registry.is_none() {
            errors.push(
                "to",
                "builds push to the integrated registry, and this master runs none",
            );
        }
        if let BuildStrategy::Docker(docker) = &self.strategy {
            if let Some(from) = &docker.from {
                if let Some(address) = settings.registry {
                    if let Some(problem) = crate::registry::foreign_image(
                        address,
                        settings.project,
                        settings.shared,
                        from,
                    ) {
                        errors.push("strategy.docker.from", problem);
                    }
                }
            }
        }
        errors.into_result()
    }

    fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self
    }

    fn unqualified(mut self) -> Self {
        self.name = unqualified(&self.name).to_owned();
        self
    }

    fn redacted(self) -> Self {
        BuildConfig::redacted(self)
    }

    /// A replaced config keeps its secret and its build count, counting
    /// the build its change starts.
    fn with_secrets_from(mut self, stored: &Self) -> Self {
        self.webhook_secret = stored.webhook_secret.clone();
        self.last_version = stored.last_version + u32::from(builds_on_change(&self, Some(stored)));
        self
    }

    /// The build a change starts, in the change's commit: when the builder
    /// has no image yet, none (the builder's first image starts one).
    async fn consequences(
        &self,
        before: Option<&Self>,
        store: &dyn Store,
        by: &str,
    ) -> Result<Vec<Op>, StoreError> {
        if !builds_on_change(self, before) {
            return Ok(Vec::new());
        }
        let cause = BuildCause {
            kind: CauseKind::ConfigChange,
            detail: String::new(),
        };
        let streams = objects::list::<ImageStream>(store, crate::objects::IMAGESTREAMS)
            .await?
            .0;
        let streams: Vec<ImageStream> = streams.into_iter().map(|s| s.object).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(
            match Build::begin(self, self.last_version, cause, by, None, &streams, now) {
                Ok(build) => vec![objects::create(BUILDS, &build.name, &build)],
                Err(_) => Vec::new(),
            },
        )
    }
}

/// Whether `config`, replacing `before` (or made), starts a build: a git
/// source whose config-change trigger is on, made or changed in what it
/// builds.
pub fn builds_on_change(config: &BuildConfig, before: Option<&BuildConfig>) -> bool {
    config.git.is_some()
        && config.triggers.config_change
        && before.is_none_or(|b| {
            (&b.strategy, &b.git, &b.to, &b.env, &b.resources)
                != (
                    &config.strategy,
                    &config.git,
                    &config.to,
                    &config.env,
                    &config.resources,
                )
        })
}

impl Resource for Build {
    const KIND: &'static str = "build";
    const PREFIX: &'static str = BUILDS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    /// Builds are the master's to make; the API only lists, reads and
    /// cancels them.
    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Ok(())
    }

    fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self.config = qualify(project, &self.config);
        self
    }

    fn unqualified(mut self) -> Self {
        for name in [&mut self.name, &mut self.config] {
            *name = unqualified(name).to_owned();
        }
        for name in [&mut self.job, &mut self.pod].into_iter().flatten() {
            *name = unqualified(name).to_owned();
        }
        self.task.build = unqualified(&self.task.build).to_owned();
        self
    }

    fn redacted(self) -> Self {
        self
    }
}
