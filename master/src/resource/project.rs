//! Projects: cluster-wide, each holding services, pods and routes under
//! qualified names. `default` always exists and cannot be removed; its
//! objects are the ones made before projects.

use berth_model::{Project, Role, ValidationErrors};

use super::{Resource, Settings};
use crate::objects::PROJECTS;

impl Resource for Project {
    const KIND: &'static str = "project";
    const PREFIX: &'static str = PROJECTS;
    const WRITE_ROLE: Role = Role::Admin;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Project::validate(self)
    }

    fn redacted(self) -> Self {
        self
    }
}
