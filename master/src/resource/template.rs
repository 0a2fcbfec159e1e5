//! Templates stored on the master, so that `berth new-app NAME` works
//! from a project's library: the model's checks; nothing secret is held
//! (generated values are made when a template is instantiated).

use berth_model::{Template, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::TEMPLATES;

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
