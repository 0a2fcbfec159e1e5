//! Jobs: created and cancelled through the API, advanced by the
//! controller's job planner, which alone writes their status. A job is
//! never replaced: what it runs is fixed when it is made.

use berth_model::project::unqualified;
use berth_model::{Job, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::JOBS;
use crate::store::{Store, StoreError};

impl Resource for Job {
    const KIND: &'static str = "job";
    const PREFIX: &'static str = JOBS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    fn complete(self, _settings: &Settings<'_>) -> Self {
        self.completed()
    }

    fn qualified(self, project: &str) -> Self {
        Job::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        Job::unqualified(self)
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = Job::validate(self).err().unwrap_or_default();
        settings.check_template(&self.template, &mut errors);
        errors.into_result()
    }

    fn redacted(self) -> Self {
        Job::redacted(self)
    }

    async fn resolve(
        mut self,
        store: &dyn crate::store::Store,
    ) -> Result<Result<Self, ValidationErrors>, crate::store::StoreError> {
        let undefined = super::network_volume::fill_in_sources(&mut self.template, store).await?;
        Ok(undefined.into_result().map(|()| self))
    }

    async fn check_references(&self, store: &dyn Store) -> Result<ValidationErrors, StoreError> {
        let mut problems = ValidationErrors::new();
        if super::get::<berth_model::Service>(store, &self.name)
            .await?
            .is_some()
        {
            problems.push(
                "name",
                format!(
                    "service {0} exists: its pods and the job's would both be {0}-N",
                    unqualified(&self.name)
                ),
            );
        }
        for (i, after) in self.after.iter().enumerate() {
            if super::get::<Job>(store, after).await?.is_none() {
                problems.push(
                    format!("after[{i}]"),
                    super::not_found_message::<Job>(unqualified(after)),
                );
            } else if let Some(path) = waits_for(store, after, &self.name).await? {
                // Only possible when a job waited for was removed and made
                // again: a job can only wait for jobs that exist.
                problems.push(
                    format!("after[{i}]"),
                    format!(
                        "a cycle: {} waits for {}",
                        path.iter()
                            .map(|j| unqualified(j))
                            .collect::<Vec<_>>()
                            .join(" waits for "),
                        unqualified(&self.name)
                    ),
                );
            }
        }
        Ok(problems)
    }
}

/// The chain of prerequisites from job `from` to job `to`, if `from`
/// waits for `to`, directly or not.
async fn waits_for(
    store: &dyn Store,
    from: &str,
    to: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().cloned().unwrap_or_default();
        if !seen.insert(last.clone()) {
            continue;
        }
        let Some(job) = super::get::<Job>(store, &last).await? else {
            continue;
        };
        for next in job.object.after {
            let mut longer = path.clone();
            longer.push(next.clone());
            if next == to {
                return Ok(Some(longer[..longer.len() - 1].to_vec()));
            }
            stack.push(longer);
        }
    }
    Ok(None)
}
