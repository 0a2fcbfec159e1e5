//! Image streams: made and removed through the API; their tags move by
//! `POST .../tags`, by their webhook, and by the controller for aliases.
//! The webhook secret is the master's to make, once, and is never shown
//! on reads.

use berth_model::{ImageStream, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::IMAGESTREAMS;

impl Resource for ImageStream {
    const KIND: &'static str = "image stream";
    const PREFIX: &'static str = IMAGESTREAMS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    /// A new stream starts with no tags and a webhook secret of its own.
    fn complete(mut self, _settings: &Settings<'_>) -> Self {
        self.status = Default::default();
        self.webhook_secret = crate::auth::new_secret().unwrap_or_default();
        self
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
        self
    }
}
