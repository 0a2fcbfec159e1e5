//! Templates stored on the master, so that `berth new-app NAME` works
//! from a project's library, or from the shared library every project
//! reads: the model's checks; nothing secret is held (generated values
//! are made when a template is instantiated).

use berth_model::{Role, Template, ValidationErrors};
use serde::{Deserialize, Serialize};

use super::{Resource, Scope, Settings};
use crate::objects::{SHARED_TEMPLATES, TEMPLATES};

/// A template of the shared library: cluster-scoped, read by every user
/// of every project, written by the cluster's admin only. The same
/// object as a project's template, under its own prefix, so a project's
/// template of the same name is another object (and wins in `new-app`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SharedTemplate(pub Template);

impl Resource for SharedTemplate {
    const KIND: &'static str = "shared template";
    const PREFIX: &'static str = SHARED_TEMPLATES;
    const SCOPE: Scope = Scope::Cluster;
    const WRITE_ROLE: Role = Role::Admin;

    fn name(&self) -> &str {
        &self.0.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Template::validate(&self.0)
    }

    fn redacted(self) -> Self {
        self
    }
}

impl Resource for Template {
    const KIND: &'static str = "template";
    const PREFIX: &'static str = TEMPLATES;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Template::validate(self)
    }

    fn qualified(self, project: &str) -> Self {
        Template::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        Template::unqualified(self)
    }

    fn redacted(self) -> Self {
        self
    }
}
