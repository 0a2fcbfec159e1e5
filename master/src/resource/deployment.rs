//! Deployments: made in the commit that changes their service's template
//! (see the service's consequences) or by a rollback, and advanced by the
//! controller's rollout planner, which alone writes their status. Users
//! read them and act on them through the service's rollout verbs.

use berth_model::api::Versioned;
use berth_model::{Deployment, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::{self, DEPLOYMENTS};
use crate::store::{Store, StoreError};

impl Resource for Deployment {
    const KIND: &'static str = "deployment";
    const PREFIX: &'static str = DEPLOYMENTS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Ok(())
    }

    fn qualified(self, project: &str) -> Self {
        Deployment::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        Deployment::unqualified(self)
    }

    fn redacted(self) -> Self {
        Deployment::redacted(self)
    }
}

/// The deployments of `service` (qualified), oldest first.
pub async fn of_service(
    store: &dyn Store,
    service: &str,
) -> Result<Vec<Versioned<Deployment>>, StoreError> {
    let prefix = format!("{DEPLOYMENTS}{service}-");
    let (mut deployments, _) = objects::list::<Deployment>(store, &prefix).await?;
    deployments.retain(|d| d.object.service == service);
    deployments.sort_by_key(|d| d.object.revision);
    Ok(deployments)
}
