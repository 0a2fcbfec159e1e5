//! Services: the model's checks plus the master's host port policy; a new
//! service's links must name services that exist.

use berth_model::{Service, ValidationErrors};

use super::{Resource, Settings};
use crate::objects::SERVICES;
use crate::store::{Store, StoreError};

impl Resource for Service {
    const KIND: &'static str = "service";
    const PREFIX: &'static str = SERVICES;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = Service::validate(self).err().unwrap_or_default();
        settings
            .host_ports
            .check(&self.template, "template.", &mut errors);
        errors.into_result()
    }

    fn redacted(self) -> Self {
        Service::redacted(self)
    }

    /// Linked-to services must exist when the links are made, as with
    /// `POST .../links` (they may go away later: a link then has no
    /// endpoints).
    async fn check_references(&self, store: &dyn Store) -> Result<ValidationErrors, StoreError> {
        let mut missing = ValidationErrors::new();
        for (i, link) in self.links.iter().enumerate() {
            if super::get::<Service>(store, &link.service).await?.is_none() {
                missing.push(
                    format!("links[{i}].service"),
                    super::not_found_message::<Service>(&link.service),
                );
            }
        }
        Ok(missing)
    }
}
