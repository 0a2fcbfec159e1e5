//! Projects: the seed's domains. Services, pods and routes live in a
//! project, and two projects may each have a `web`.
//!
//! Inside the cluster (the store, the controller, the nodes and routers)
//! an object of project `a` is known by its *qualified* name `a.web`, and
//! its pods by `a.web-1`. A name is a DNS label and holds no `.`, so the
//! first `.` separates the project. The `default` project qualifies
//! nothing: its objects keep the names they had before projects existed,
//! so an upgraded cluster's pods keep their units and containers.
//!
//! Users never see a qualified name: the master takes the project off
//! what it answers inside a project, and puts it on what it is sent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{validate_dns_label, NameError};
use crate::validation::ValidationErrors;

/// The project of every object made before projects, and of the API
/// paths that name none.
pub const DEFAULT_PROJECT: &str = "default";

/// Longest project name: it prefixes unit and container names.
pub const MAX_PROJECT_NAME_LEN: usize = 30;

/// A project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// Its name, a DNS label of at most [`MAX_PROJECT_NAME_LEN`].
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Projects whose services may link to this project's services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_grants: Vec<String>,
    /// Its limits.
    #[serde(default, skip_serializing_if = "crate::quota::Quota::is_empty")]
    pub quota: crate::quota::Quota,
    /// Its users and their roles in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Role>,
}

/// What a user may do in a project; each role may do what the ones before
/// it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read its objects and events, but not its logs.
    ViewNoLogs,
    /// Read everything in it, logs included.
    View,
    /// Create, change and remove its objects.
    Edit,
    /// Everything, its members and grants included.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::ViewNoLogs, Role::View, Role::Edit, Role::Admin];

    /// The role as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ViewNoLogs => "view-no-logs",
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("no role {s:?}: one of view-no-logs, view, edit, admin"))
    }
}

impl Project {
    /// A project with nothing but its name.
    pub fn named(name: &str) -> Self {
        Project {
            name: name.to_owned(),
            description: String::new(),
            link_grants: Vec::new(),
            quota: crate::quota::Quota::default(),
            members: BTreeMap::new(),
        }
    }

    /// Checks its name and its grants' names.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_project_name(&self.name) {
            errors.push("name", e);
        }
        for (i, grant) in self.link_grants.iter().enumerate() {
            if let Err(e) = validate_project_name(grant) {
                errors.push(format!("linkGrants[{i}]"), e);
            }
        }
        for (field, limit) in [
            ("quota.pods", self.quota.pods),
            ("quota.cpuMillis", self.quota.cpu_millis),
            ("quota.memoryBytes", self.quota.memory_bytes),
            ("quota.imageStreams", self.quota.image_streams),
            ("quota.imageBytes", self.quota.image_bytes),
        ] {
            if limit.is_some_and(|l| i64::try_from(l).is_err()) {
                errors.push(field, format!("must be at most {}", i64::MAX));
            }
        }
        for user in self.members.keys() {
            if let Err(e) = validate_dns_label(user) {
                errors.push(format!("members.{user}"), e.to_string());
            }
        }
        errors.into_result()
    }

    /// `user`'s role in it, if any.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.members.get(user).copied()
    }

    /// Whether services of `project` may link to this project's.
    pub fn grants_links_to(&self, project: &str) -> bool {
        project == self.name || self.link_grants.iter().any(|p| p == project)
    }
}

/// Checks a project's name: a DNS label of at most
/// [`MAX_PROJECT_NAME_LEN`] characters.
pub fn validate_project_name(name: &str) -> Result<(), String> {
    validate_dns_label(name).map_err(|e| e.to_string())?;
    if name.len() > MAX_PROJECT_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_PROJECT_NAME_LEN} characters, got {}",
            name.len()
        ));
    }
    Ok(())
}

/// The cluster's name of object `name` of `project`: `project.name`, or
/// `name` alone in the default project.
pub fn qualify(project: &str, name: &str) -> String {
    if project == DEFAULT_PROJECT {
        name.to_owned()
    } else {
        format!("{project}.{name}")
    }
}

/// A qualified name's project and name.
pub fn split_qualified(qualified: &str) -> (&str, &str) {
    qualified
        .split_once('.')
        .unwrap_or((DEFAULT_PROJECT, qualified))
}

/// The name inside its project of a qualified name.
pub fn unqualified(qualified: &str) -> &str {
    split_qualified(qualified).1
}

/// Whether the qualified name is one of `project`'s objects.
pub fn in_project(qualified: &str, project: &str) -> bool {
    split_qualified(qualified).0 == project
}

/// The qualified name of what an object of `project` calls `reference`:
/// a plain name is in the same project, `b.db` is project b's `db`.
pub fn qualify_reference(project: &str, reference: &str) -> String {
    match reference.split_once('.') {
        Some((other, name)) => qualify(other, name),
        None => qualify(project, reference),
    }
}

/// How an object of `project` calls the object `qualified`: by its plain
/// name in the same project, as `b.db` in another.
pub fn reference_from(project: &str, qualified: &str) -> String {
    let (other, name) = split_qualified(qualified);
    if other == project {
        name.to_owned()
    } else {
        format!("{other}.{name}")
    }
}

/// Checks a qualified name as nodes receive it: a DNS label, optionally
/// after a project's name and a `.`.
pub fn validate_qualified_name(qualified: &str) -> Result<(), NameError> {
    let (project, name) = split_qualified(qualified);
    if qualified.contains('.') {
        validate_dns_label(project)?;
    }
    validate_dns_label(name)
}

impl crate::Service {
    /// The service as the cluster knows it: its name and its links'
    /// targets qualified by `project`.
    pub fn qualified(mut self, project: &str) -> Self {
        for link in &mut self.links {
            link.service = qualify_reference(project, &link.service);
        }
        self.name = qualify(project, &self.name);
        self
    }

    /// The service as its project sees it.
    pub fn unqualified(mut self) -> Self {
        let project = split_qualified(&self.name).0.to_owned();
        for link in &mut self.links {
            link.service = reference_from(&project, &link.service);
        }
        self.name = unqualified(&self.name).to_owned();
        self
    }
}

impl crate::Route {
    /// The route as the cluster knows it: its name and service qualified
    /// by `project`.
    pub fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self.service = qualify(project, &self.service);
        self
    }

    /// The route as its project sees it.
    pub fn unqualified(mut self) -> Self {
        self.name = unqualified(&self.name).to_owned();
        self.service = unqualified(&self.service).to_owned();
        self
    }
}

impl crate::Job {
    /// The job as the cluster knows it: its name and its prerequisites
    /// qualified by `project`.
    pub fn qualified(mut self, project: &str) -> Self {
        for after in &mut self.after {
            *after = qualify_reference(project, after);
        }
        if let Some(cron) = &mut self.cron {
            *cron = qualify(project, cron);
        }
        self.name = qualify(project, &self.name);
        self
    }

    /// The job as its project sees it.
    pub fn unqualified(mut self) -> Self {
        let project = split_qualified(&self.name).0.to_owned();
        for after in &mut self.after {
            *after = reference_from(&project, after);
        }
        for attempt in &mut self.status.attempts {
            attempt.pod = unqualified(&attempt.pod).to_owned();
        }
        if let Some(cron) = &mut self.cron {
            *cron = unqualified(cron).to_owned();
        }
        self.name = unqualified(&self.name).to_owned();
        self
    }
}

impl crate::CronJob {
    /// The cron job as the cluster knows it.
    pub fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self
    }

    /// The cron job as its project sees it.
    pub fn unqualified(mut self) -> Self {
        self.name = unqualified(&self.name).to_owned();
        if let Some(job) = &mut self.status.last_job {
            *job = unqualified(job).to_owned();
        }
        self
    }
}

impl crate::ImageStream {
    /// The stream as the cluster knows it.
    pub fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self
    }

    /// The stream as its project sees it.
    pub fn unqualified(mut self) -> Self {
        self.name = unqualified(&self.name).to_owned();
        self
    }
}

impl crate::Deployment {
    /// The deployment as the cluster knows it.
    pub fn qualified(mut self, project: &str) -> Self {
        self.name = qualify(project, &self.name);
        self.service = qualify(project, &self.service);
        self
    }

    /// The deployment as its project sees it.
    pub fn unqualified(mut self) -> Self {
        self.name = unqualified(&self.name).to_owned();
        self.service = unqualified(&self.service).to_owned();
        self
    }
}

impl crate::ClusterPod {
    /// The pod as its project sees it (the controller makes pods, already
    /// qualified, so nothing qualifies one).
    pub fn unqualified(mut self) -> Self {
        let project = split_qualified(&self.spec.name).0.to_owned();
        self.spec.name = unqualified(&self.spec.name).to_owned();
        for owner in [&mut self.service, &mut self.job].into_iter().flatten() {
            *owner = unqualified(owner).to_owned();
        }
        for link in &mut self.links {
            link.service = reference_from(&project, &link.service);
        }
        if let Some(status) = &mut self.status {
            status.name = unqualified(&status.name).to_owned();
            status.spec.name = unqualified(&status.spec.name).to_owned();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_project_qualifies_nothing() {
        assert_eq!(qualify("default", "web"), "web");
        assert_eq!(split_qualified("web-1"), ("default", "web-1"));
    }

    #[test]
    fn another_project_prefixes_its_name() {
        let qualified = qualify("a", "web-1");
        assert_eq!(qualified, "a.web-1");
        assert_eq!(split_qualified(&qualified), ("a", "web-1"));
        assert!(in_project(&qualified, "a"));
        assert!(!in_project(&qualified, "default"));
        assert!(!in_project("web-1", "a"));
    }

    #[test]
    fn qualified_names_are_checked_in_both_parts() {
        assert!(validate_qualified_name("a.web-1").is_ok());
        assert!(validate_qualified_name("web-1").is_ok());
        assert!(validate_qualified_name("A.web").is_err());
        assert!(validate_qualified_name("a.web.x").is_err());
        assert!(validate_qualified_name(".web").is_err());
    }

    #[test]
    fn references_are_read_from_the_referring_project() {
        assert_eq!(qualify_reference("a", "db"), "a.db");
        assert_eq!(qualify_reference("a", "b.db"), "b.db");
        assert_eq!(qualify_reference("a", "default.db"), "db");
        assert_eq!(qualify_reference("default", "db"), "db");
        assert_eq!(reference_from("a", "a.db"), "db");
        assert_eq!(reference_from("a", "db"), "default.db");
        assert_eq!(reference_from("default", "b.db"), "b.db");
        assert_eq!(reference_from("default", "db"), "db");
    }

    #[test]
    fn a_project_grants_links_to_itself_and_whom_it_names() {
        let mut b = Project::named("b");
        assert!(b.grants_links_to("b"));
        assert!(!b.grants_links_to("a"));
        b.link_grants.push("a".into());
        assert!(b.grants_links_to("a"));
    }

    #[test]
    fn a_service_round_trips_through_its_project() {
        let service: crate::Service = serde_json::from_value(serde_json::json!({
            "name": "web", "replicas": 1,
            "template": {"name": "web", "containers": [{"name": "app", "image": "x"}]},
            "links": [{"service": "db", "port": 5432}, {"service": "b.cache", "port": 6379}],
        }))
        .expect("a service");
        let qualified = service.clone().qualified("a");
        assert_eq!(qualified.name, "a.web");
        assert_eq!(qualified.links[0].service, "a.db");
        assert_eq!(qualified.links[1].service, "b.cache");
        assert_eq!(qualified.unqualified(), service);
        assert_eq!(service.clone().qualified("default"), service);
    }

    #[test]
    fn roles_order_from_view_to_admin_and_parse_as_spelled() {
        assert!(Role::ViewNoLogs < Role::View && Role::View < Role::Edit);
        assert!(Role::Edit < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).expect("json"),
                serde_json::json!(role.as_str())
            );
        }
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn project_names_are_short_labels() {
        assert!(validate_project_name("team-a").is_ok());
        assert!(validate_project_name("Team").is_err());
        assert!(validate_project_name(&"x".repeat(31)).is_err());
    }
}
