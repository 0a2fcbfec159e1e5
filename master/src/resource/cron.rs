//! Cron jobs: made and changed through the API (suspend and resume are
//! changes), advanced by the controller's cron planner, which alone
//! writes their status and makes their jobs.

use berth_model::{CronJob, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::CRONJOBS;

impl Resource for CronJob {
    const KIND: &'static str = "cron job";
    const PREFIX: &'static str = CRONJOBS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    /// A new cron job's slots count from when the master first sees it.
    fn complete(mut self, _settings: &Settings<'_>) -> Self {
        self.status = Default::default();
        self
    }

    fn qualified(self, project: &str) -> Self {
        CronJob::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        CronJob::unqualified(self)
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = CronJob::validate(self).err().unwrap_or_default();
        settings.check_template(&self.template, &mut errors);
        errors.into_result()
    }

    fn redacted(self) -> Self {
        CronJob::redacted(self)
    }

    async fn resolve(
        mut self,
        store: &dyn crate::store::Store,
    ) -> Result<Result<Self, ValidationErrors>, crate::store::StoreError> {
        let undefined = super::network_volume::fill_in_sources(&mut self.template, store).await?;
        Ok(undefined.into_result().map(|()| self))
    }

    fn with_secrets_from(self, stored: &Self) -> Self {
        CronJob::with_secrets_from(self, stored)
    }
}
