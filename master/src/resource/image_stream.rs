//! Image streams: made and removed through the API; their tags move by
//! `POST .../tags`, by their webhook, and by the controller for aliases.
//! The webhook secret is the master's to make, once, and is never shown
//! on reads.

use berth_model::project::{in_project, split_qualified};
use berth_model::{ImageStream, Project, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::IMAGESTREAMS;
use crate::store::{Store, StoreError};

impl Resource for ImageStream {
    const KIND: &'static str = "image stream";
    const PREFIX: &'static str = IMAGESTREAMS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    /// A new stream starts with no tags, a webhook secret of its own, and
    /// its repository in the integrated registry.
    fn complete(mut self, settings: &Settings<'_>) -> Self {
        self.status = Default::default();
        self.docker_image_repository = settings.registry.map_or_else(String::new, |address| {
            format!(
                "{address}/{}",
                crate::registry::repository(settings.project, &self.name)
            )
        });
        self.webhook_secret = crate::auth::new_secret().unwrap_or_default();
        self
    }

    /// A new stream must fit its project's `imageStreams` quota.
    async fn admit(&self, store: &dyn Store) -> Result<Option<super::Refusal>, StoreError> {
        let (project, _) = split_qualified(&self.name);
        let Some(limit) = super::get::<Project>(store, project)
            .await?
            .and_then(|p| p.object.quota.image_streams)
        else {
            return Ok(None);
        };
        let streams = super::list::<ImageStream>(store).await?;
        if streams.iter().any(|s| s.object.name == self.name) {
            return Ok(None);
        }
        let used = streams
            .iter()
            .filter(|s| in_project(&s.object.name, project))
            .count() as u64;
        Ok((used >= limit).then(|| {
            format!(
                "exceeds project {project}'s quota of {limit} image streams: {used} in use, this asks for 1"
            )
        }))
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        ImageStream::validate(self)
    }

    fn qualified(self, project: &str) -> Self {
        ImageStream::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        ImageStream::unqualified(self)
    }

    fn redacted(self) -> Self {
        ImageStream::redacted(self)
    }

    /// A replaced stream keeps its tags and its webhook secret: only the
    /// master moves tags, and the secret is made once.
    fn with_secrets_from(mut self, stored: &Self) -> Self {
        self.status = stored.status.clone();
        self.webhook_secret = stored.webhook_secret.clone();
        self.docker_image_repository = stored.docker_image_repository.clone();
        self
    }
}
