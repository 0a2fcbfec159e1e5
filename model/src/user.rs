//! Users: people and robot accounts (for CI) that call the API with a
//! token of their own. What a user may do is their role in each project
//! (`crate::project::Role`); the master keeps only a hash of the token.

use serde::{Deserialize, Serialize};

use crate::name::validate_dns_label;
use crate::validation::ValidationErrors;

/// A user as the API shows it; its token is never shown again after it
/// is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// Its name, a DNS label.
    pub name: String,
    /// A robot account: for CI, not a person.
    #[serde(default)]
    pub robot: bool,
    /// When its token stops working (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl User {
    /// Checks its name.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        if self.expires_ms.is_some_and(|ms| i64::try_from(ms).is_err()) {
            errors.push("expiresMs", format!("must be at most {}", i64::MAX));
        }
        errors.into_result()
    }
}

/// `POST /v1/users` and `POST /v1/users/{name}/token`: the user and a
/// token for it, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserToken {
    /// The user.
    pub user: User,
    /// Its bearer token.
    pub token: String,
}

/// `GET /v1/whoami`: who the token is, and what it may do where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// `admin` (the cluster's admin token), `user`, `robot` or `node`.
    pub kind: String,
    /// The user's or node's name; `admin` for the admin token.
    pub name: String,
    /// The user's role in each project it has one in (the admin may do
    /// everything everywhere).
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, crate::project::Role>,
}
