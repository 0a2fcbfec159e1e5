//! The integrated registry: Debian's `docker-registry` (distribution 2.8),
//! run by `berth-registry.service` beside the master. The master is its
//! token realm ([`token`]), writes its configuration ([`setup`]), takes its
//! push events (which move image stream tags), and prunes it
//! ([`prune`]). Repositories are `PROJECT/STREAM`.

pub mod prune;
pub mod remote;
pub mod setup;
pub mod token;
pub mod usage;

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::config::MasterConfig;

/// The master's side of the registry.
#[derive(Debug)]
pub struct Registry {
    /// `HOST:PORT`, as image references name it.
    pub address: String,
    /// Signs tokens.
    pub signer: token::Signer,
    /// Hash of the secret the registry sends with its events.
    notify_secret_hash: String,
    /// The registry's configuration, for its garbage collection.
    pub config_path: PathBuf,
    /// The CA (PEM), which the registry's certificate chains to.
    pub ca_pem: String,
    /// The registry as the master reaches it: on this host.
    pub local_url: String,
    /// The registry's storage root on this host, for quota use.
    pub storage: PathBuf,
}

impl Registry {
    /// Loads (or makes) the registry's keys from the master's state.
    pub fn open(config: &MasterConfig, ca_pem: &str) -> anyhow::Result<Registry> {
        let keys = setup::ensure_keys(&config.state_dir)?;
        Ok(Registry {
            address: config.registry_address(),
            signer: token::Signer::new(&keys.token_key, &keys.token_certificate)?,
            notify_secret_hash: crate::auth::hash(&keys.notify_secret),
            config_path: PathBuf::from(setup::DEFAULT_OUT_DIR).join("config.yml"),
            ca_pem: ca_pem.to_owned(),
            local_url: format!("https://127.0.0.1:{}", config.registry.listen.port()),
            storage: setup::storage_root(config),
        })
    }

    /// Whether `secret` is the one the registry sends with its events.
    pub fn is_registry(&self, secret: &str) -> bool {
        crate::auth::same_secret(&crate::auth::hash(secret), &self.notify_secret_hash)
    }

    /// A minute's token of the master's own for `action` on `repository`
    /// (pruning deletes, imports pull).
    pub fn own_token(&self, repository: &str, action: &str) -> anyhow::Result<String> {
        let access = token::Access {
            kind: "repository".to_owned(),
            name: repository.to_owned(),
            actions: vec![action.to_owned()],
        };
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.signer.sign("berth-master", vec![access], now_secs, 60)
    }

    /// `HOST:PORT/PROJECT/STREAM`: where a stream's images are pushed.
    pub fn repository_of(&self, project: &str, stream: &str) -> String {
        format!("{}/{}", self.address, repository(project, stream))
    }
}

/// Why `image`, named by an object of `project`, may not be used: it is
/// another project's repository in the integrated registry at `address`,
/// and not one `shared` with `project`. Nodes may pull every repository,
/// so projects are kept apart where images are named: a project runs and
/// tags only its own images and those shared with it.
pub fn foreign_image(
    address: &str,
    project: &str,
    shared: &BTreeSet<String>,
    image: &str,
) -> Option<String> {
    let repository = repository_in(address, image)?;
    let owner = repository.split('/').next().unwrap_or_default();
    (owner != project && !shared.contains(repository)).then(|| {
        format!(
            "{image} is an image of project {owner}: project {project} may name only its own images of the integrated registry and those shared with it (berth image-stream grant-view)"
        )
    })
}

/// The repository (`PROJECT/STREAM`) `image` names in the registry at
/// `address`, if it names one there.
pub fn repository_in<'i>(address: &str, image: &'i str) -> Option<&'i str> {
    let rest = image.trim().strip_prefix(address)?.strip_prefix('/')?;
    let end = rest.find(['@', ':']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Checks that `pod`'s containers name no other project's images of the
/// integrated registry but those shared with it (fields
/// `{prefix}containers[i].image`).
pub fn check_images(
    registry: Option<&str>,
    project: &str,
    shared: &BTreeSet<String>,
    pod: &berth_model::Pod,
    prefix: &str,
    errors: &mut berth_model::ValidationErrors,
) {
    let Some(address) = registry else {
        return;
    };
    for (i, container) in pod.containers.iter().enumerate() {
        if let Some(problem) = foreign_image(address, project, shared, &container.image) {
            errors.push(format!("{prefix}containers[{i}].image"), problem);
        }
    }
}

/// A stream's repository in the registry: `PROJECT/STREAM`.
pub fn repository(project: &str, stream: &str) -> String {
    format!("{project}/{stream}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_names_only_its_own_registry_images_and_those_shared_with_it() {
        let none = BTreeSet::new();
        assert_eq!(
            foreign_image("h1:5000", "shop", &none, "h1:5000/shop/web@sha256:a"),
            None
        );
        assert_eq!(
            foreign_image("h1:5000", "shop", &none, "docker.io/web:1"),
            None
        );
        let problem = foreign_image("h1:5000", "shop", &none, "h1:5000/bank/vault:1").unwrap();
        assert!(problem.contains("project bank"), "{problem}");
        let shared = BTreeSet::from(["bank/vault".to_owned()]);
        assert_eq!(
            foreign_image("h1:5000", "shop", &shared, "h1:5000/bank/vault@sha256:b"),
            None
        );
        assert!(foreign_image("h1:5000", "shop", &shared, "h1:5000/bank/vaults:1").is_some());
    }
}
