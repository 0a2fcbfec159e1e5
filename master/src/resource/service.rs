//! Services: the model's checks plus the master's host port policy; a new
//! service's links must name services that exist.

use berth_model::deployment::Cause;
use berth_model::{Deployment, Service, ValidationErrors};

use berth_model::project::{in_project, reference_from, split_qualified};
use berth_model::quota::{self, Unlimited, Usage};
use berth_model::Project;

use super::{Resource, Scope, Settings};
use crate::objects::{self, DEPLOYMENTS, ROUTES, SERVICES};
use crate::store::{Op, Store, StoreError};

impl Resource for Service {
    const KIND: &'static str = "service";
    const PREFIX: &'static str = SERVICES;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = Service::validate(self).err().unwrap_or_default();
        settings.check_template(&self.template, &mut errors);
        errors.into_result()
    }

    fn qualified(self, project: &str) -> Self {
        Service::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        Service::unqualified(self)
    }

    fn redacted(self) -> Self {
        Service::redacted(self)
    }

    fn with_secrets_from(self, stored: &Self) -> Self {
        Service::with_secrets_from(self, stored)
    }

    /// The network volumes its pods write: one service writes each.
    fn claims(&self) -> Vec<String> {
        super::network_volume::writer_claims(&self.template)
    }

    fn claim_taken(&self, claim: &str, holder: Option<&str>) -> berth_model::FieldError {
        berth_model::FieldError {
            field: "template.volumes".to_owned(),
            message: super::network_volume::writer_taken(&self.name, claim, holder),
        }
    }

    /// Linked-to services must exist when the links are made, as with
    /// `POST .../links` (they may go away later: a link then has no
    /// endpoints).
    async fn admit(&self, store: &dyn Store) -> Result<Option<super::Refusal>, StoreError> {
        let project_name = split_qualified(&self.name).0;
        let Some(project) = super::get::<Project>(store, project_name).await? else {
            return Ok(None);
        };
        let quota = project.object.quota;
        if quota.is_empty() {
            return Ok(None);
        }
        // What the project's other services ask for; this one replaces
        // whatever it asked before.
        let (services, _) = objects::list::<Service>(store, SERVICES).await?;
        let asked = Usage::of_service(self);
        // Asking for no more than before is always allowed: a project over
        // a lowered quota can still scale down.
        let before = services.iter().find(|s| s.object.name == self.name);
        if before.is_some_and(|b| {
            let was = Usage::of_service(&b.object);
            asked.pods <= was.pods
                && asked.cpu_millis <= was.cpu_millis
                && asked.memory_bytes <= was.memory_bytes
                && b.object.template == self.template
        }) {
            return Ok(None);
        }
        let used = services
            .iter()
            .map(|s| &s.object)
            .filter(|s| in_project(&s.name, project_name) && s.name != self.name)
            .fold(Usage::default(), |used, s| used.plus(Usage::of_service(s)));
        Ok(quota::check(
            project_name,
            &quota,
            used,
            asked,
            Unlimited::of(&self.template),
        )
        .err()
        .map(|over| over.to_string()))
    }

    /// A new service, or a changed template or set of variables, is a new
    /// revision: its deployment is made in the same commit, so no change
    /// goes unrecorded and none is recorded twice. Scaling is not one.
    async fn consequences(
        &self,
        before: Option<&Self>,
        store: &dyn Store,
        by: &str,
    ) -> Result<Vec<Op>, StoreError> {
        let unchanged = |b: &&Service| b.template == self.template && b.env == self.env;
        // Without the configChange trigger a change waits for `berth
        // rollout restart`.
        if before.is_some_and(|b| unchanged(&b) || !self.rolls_out_changes()) {
            return Ok(Vec::new());
        }
        let latest = super::deployment::of_service(store, &self.name)
            .await?
            .last()
            .map_or(0, |d| d.object.revision);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let deployment = Deployment::begin(self, latest + 1, Cause::ConfigChange, by, now);
        Ok(vec![objects::create(
            DEPLOYMENTS,
            &deployment.name,
            &deployment,
        )])
    }

    /// A port that a route or another service's link uses may not go: a
    /// rollout would break them.
    async fn check_replacement(
        &self,
        before: &Self,
        store: &dyn Store,
    ) -> Result<ValidationErrors, StoreError> {
        let mut problems = ValidationErrors::new();
        let kept: Vec<u16> = self.ports().collect();
        let dropped: Vec<u16> = before.ports().filter(|p| !kept.contains(p)).collect();
        if dropped.is_empty() {
            return Ok(problems);
        }
        let project = split_qualified(&self.name).0;
        let first = before.ports().next();
        let (routes, _) = objects::list::<berth_model::Route>(store, ROUTES).await?;
        for route in routes.iter().map(|r| &r.object) {
            let port = route.port.or(first);
            if route.service == self.name && port.is_some_and(|p| dropped.contains(&p)) {
                problems.push(
                    "template.containers",
                    format!(
                        "drops port {}, which route {} uses (forcing the change breaks the route)",
                        port.unwrap_or_default(),
                        reference_from(project, &route.name)
                    ),
                );
            }
        }
        let (services, _) = objects::list::<Service>(store, SERVICES).await?;
        for service in services.iter().map(|s| &s.object) {
            for link in service.links.iter().filter(|l| l.service == self.name) {
                if dropped.contains(&link.port) {
                    problems.push(
                        "template.containers",
                        format!(
                            "drops port {}, which the link from service {} uses (forcing the change breaks the link)",
                            link.port,
                            reference_from(project, &service.name)
                        ),
                    );
                }
            }
        }
        Ok(problems)
    }

    /// Each container an automatic image trigger follows runs the image
    /// its stream tag points at now (by digest, for the integrated
    /// registry's images): every revision, and so every replica, runs
    /// exactly one image. A tag that points at nothing yet leaves the
    /// image as given; the trigger takes the tag's first image.
    async fn resolve(
        mut self,
        store: &dyn Store,
    ) -> Result<Result<Self, ValidationErrors>, StoreError> {
        let undefined = super::network_volume::fill_in_sources(&mut self.template, store).await?;
        if !undefined.is_empty() {
            return Ok(Err(undefined));
        }
        let project = split_qualified(&self.name).0.to_owned();
        for trigger in &self.triggers {
            let berth_model::deployment::Trigger::ImageChange(image) = trigger else {
                continue;
            };
            if !image.automatic {
                continue;
            }
            let Ok((stream, tag)) = berth_model::image_stream::parse_stream_tag(&image.from) else {
                continue;
            };
            let qualified = berth_model::project::qualify(&project, stream);
            let Some(found) = super::get::<berth_model::ImageStream>(store, &qualified).await?
            else {
                continue;
            };
            let Some(now) = found.object.current(tag) else {
                continue;
            };
            if let Some(container) = self
                .template
                .containers
                .iter_mut()
                .find(|c| c.name == image.container)
            {
                container.image.clone_from(&now.image);
            }
        }
        Ok(Ok(self))
    }

    async fn check_references(&self, store: &dyn Store) -> Result<ValidationErrors, StoreError> {
        let mut problems = ValidationErrors::new();
        if super::get::<berth_model::Job>(store, &self.name)
            .await?
            .is_some()
        {
            problems.push(
                "name",
                format!(
                    "job {0} exists: its pods and the service's would both be {0}-N",
                    berth_model::project::unqualified(&self.name)
                ),
            );
        }
        for (i, link) in self.links.iter().enumerate() {
            if let Some(problem) = link_target_problem(store, &self.name, &link.service).await? {
                problems.push(format!("links[{i}].service"), problem);
            }
        }
        // Checked on create only: an update may send the values blank, as
        // the API shows them, to keep the stored ones.
        for (i, var) in self.generated_env.iter().enumerate() {
            if var.value.is_empty() {
                problems.push(
                    format!("generatedEnv[{i}].value"),
                    "must be generated by the client (berth run --generate-env) when the service is created",
                );
            }
        }
        Ok(problems)
    }
}

/// Why service `from` may not link to `target` (both qualified): the
/// target does not exist, or lives in a project that does not grant links
/// from `from`'s. Links stay inside a project unless the target's grants
/// them.
pub async fn link_target_problem(
    store: &dyn Store,
    from: &str,
    target: &str,
) -> Result<Option<String>, StoreError> {
    let (own, target_project) = (split_qualified(from).0, split_qualified(target).0);
    let shown = reference_from(own, target);
    if own != target_project {
        let grants = super::get::<Project>(store, target_project)
            .await?
            .is_some_and(|p| p.object.grants_links_to(own));
        if !grants {
            return Ok(Some(format!(
                "project {target_project} does not grant links from project {own} \
                 (berth project grant-link {target_project} --from {own})"
            )));
        }
    }
    if super::get::<Service>(store, target).await?.is_none() {
        return Ok(Some(super::not_found_message::<Service>(&shown)));
    }
    Ok(None)
}
