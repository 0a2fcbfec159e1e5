//! Users and robot accounts: cluster-wide. Their tokens' hashes live
//! apart (`objects::USER_CREDENTIALS`), so that reading a user never
//! reads a secret.

use berth_model::{User, ValidationErrors};

use super::{Resource, Settings};
use crate::objects::USERS;

impl Resource for User {
    const KIND: &'static str = "user";
    const PREFIX: &'static str = USERS;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        User::validate(self)
    }

    fn redacted(self) -> Self {
        self
    }
}
