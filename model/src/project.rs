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
}

impl Project {
    /// A project with nothing but its name.
    pub fn named(name: &str) -> Self {
        Project {
            name: name.to_owned(),
            description: String::new(),
            link_grants: Vec::new(),
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
        errors.into_result()
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

/// Checks a qualified name as nodes receive it: a DNS label, optionally
/// after a project's name and a `.`.
pub fn validate_qualified_name(qualified: &str) -> Result<(), NameError> {
    let (project, name) = split_qualified(qualified);
    if qualified.contains('.') {
        validate_dns_label(project)?;
    }
    validate_dns_label(name)
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
    fn a_project_grants_links_to_itself_and_whom_it_names() {
        let mut b = Project::named("b");
        assert!(b.grants_links_to("b"));
        assert!(!b.grants_links_to("a"));
        b.link_grants.push("a".into());
        assert!(b.grants_links_to("a"));
    }

    #[test]
    fn project_names_are_short_labels() {
        assert!(validate_project_name("team-a").is_ok());
        assert!(validate_project_name("Team").is_err());
        assert!(validate_project_name(&"x".repeat(31)).is_err());
    }
}
