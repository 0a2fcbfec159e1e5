//! Network volumes an admin defines (`berth volume create`): every user
//! reads them, pod templates name them, and the master fills each
//! template's copy of the source in when the template's object is
//! written. A definition is never changed in place (nodes mount what a
//! template copied), and removing it is refused while a template names it.

use berth_model::pod::{NetworkKind, Pod};
use berth_model::project::{reference_from, split_qualified};
use berth_model::{CronJob, Job, NetworkVolume, Role, Service, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::{self, NETWORK_VOLUMES, VOLUME_WRITERS};
use crate::store::{Store, StoreError};

impl Resource for NetworkVolume {
    const KIND: &'static str = "network volume";
    const PREFIX: &'static str = NETWORK_VOLUMES;
    const SCOPE: Scope = Scope::Cluster;
    const WRITE_ROLE: Role = Role::Admin;
    const CONFLICT_HINT: &'static str =
        " (templates hold copies of its source: remove it, then create it again)";

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = NetworkVolume::validate(self).err().unwrap_or_default();
        if let Some((kind, source)) = self.source() {
            let allowed = settings.network_volume_servers;
            if !allowed
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&source.server))
            {
                errors.push(
                    format!("{kind}.server"),
                    format!(
                        "server {:?} is not on the master's allow-list of network volume servers (network-volume-servers)",
                        source.server
                    ),
                );
            }
        }
        errors.into_result()
    }

    fn redacted(self) -> Self {
        self
    }

    /// Refused while a service, job or cron job names it: their pods
    /// would lose the definition they were made from.
    async fn check_removal(&self, store: &dyn Store) -> Result<ValidationErrors, StoreError> {
        let mut users = Vec::new();
        let names_it = |template: &Pod| {
            template
                .volumes
                .iter()
                .any(|v| v.network_volume.as_deref() == Some(self.name.as_str()))
        };
        for service in super::list::<Service>(store).await? {
            if names_it(&service.object.template) {
                users.push(format!("service {}", shown(&service.object.name)));
            }
        }
        for job in super::list::<Job>(store).await? {
            if names_it(&job.object.template) {
                users.push(format!("job {}", shown(&job.object.name)));
            }
        }
        for cron in super::list::<CronJob>(store).await? {
            if names_it(&cron.object.template) {
                users.push(format!("cron job {}", shown(&cron.object.name)));
            }
        }
        let mut problems = ValidationErrors::new();
        if !users.is_empty() {
            problems.push(
                "name",
                format!("is used by {}: remove them first", users.join(", ")),
            );
        }
        Ok(problems)
    }
}

/// `web`, or `shop.web` for a project's object.
fn shown(qualified: &str) -> String {
    reference_from(berth_model::DEFAULT_PROJECT, qualified)
}

/// Fills in the source of each network volume `template` names from its
/// definition, or says which ones are not defined, as
/// `template.volumes[i].networkVolume`.
pub async fn fill_in_sources(
    template: &mut Pod,
    store: &dyn Store,
) -> Result<ValidationErrors, StoreError> {
    let mut problems = ValidationErrors::new();
    for (i, volume) in template.volumes.iter_mut().enumerate() {
        let Some(name) = volume.network_volume.clone() else {
            continue;
        };
        let Some(defined) = super::get::<NetworkVolume>(store, &name).await? else {
            problems.push(
                format!("template.volumes[{i}].networkVolume"),
                format!("no network volume {name:?} (berth volume ls; an admin makes one with berth volume create)"),
            );
            continue;
        };
        volume.glusterfs = defined.object.glusterfs;
        volume.nfs = defined.object.nfs;
    }
    Ok(problems)
}

/// The claims of the network volumes `template` mounts writable: one
/// writer (service) per volume, wherever its pods run.
pub fn writer_claims(template: &Pod) -> Vec<String> {
    let mut claims: Vec<String> = template
        .containers
        .iter()
        .flat_map(|c| &c.volume_mounts)
        .filter(|m| !m.read_only)
        .filter_map(|m| template.volumes.iter().find(|v| v.name == m.volume))
        .filter_map(|v| v.network())
        .map(|(kind, source)| objects::key(VOLUME_WRITERS, &writer_key(kind, &source.what())))
        .collect();
    claims.sort();
    claims.dedup();
    claims
}

fn writer_key(kind: NetworkKind, what: &str) -> String {
    format!("{kind}/{what}")
}

/// What to say when `holder` (qualified) already writes the volume of
/// `claim`, to the object `name` (qualified).
pub fn writer_taken(name: &str, claim: &str, holder: Option<&str>) -> String {
    let volume = claim
        .strip_prefix(VOLUME_WRITERS)
        .and_then(|k| k.split_once('/'))
        .map_or_else(
            || claim.to_owned(),
            |(kind, what)| format!("{kind}://{}", what.replacen(':', "", 1)),
        );
    let holder = holder.map_or_else(
        || "another service".to_owned(),
        |h| format!("service {}", reference_from(split_qualified(name).0, h)),
    );
    format!(
        "{holder} already writes network volume {volume}: one service writes a network volume (mount it read-only with :ro)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    #[test]
    fn only_writable_mounts_of_network_volumes_are_claimed() {
        let pod = template(serde_json::json!({
            "name": "db",
            "containers": [
                {"name": "a", "image": "x", "volumeMounts": [
                    {"volume": "shared", "path": "/data"},
                    {"volume": "ro", "path": "/ro", "readOnly": true},
                    {"volume": "local", "path": "/local"}
                ]},
                {"name": "b", "image": "x", "volumeMounts": [
                    {"volume": "shared", "path": "/also"}
                ]}
            ],
            "volumes": [
                {"name": "shared", "glusterfs": {"server": "h1", "path": "/v1"}},
                {"name": "ro", "nfs": {"server": "nas", "path": "/x"}},
                {"name": "local"}
            ]
        }));
        let claims = writer_claims(&pod);
        assert_eq!(claims, ["/volume-writers/glusterfs/h1:/v1"]);
        assert_eq!(
            writer_taken("shop.b", &claims[0], Some("shop.a")),
            "service a already writes network volume glusterfs://h1/v1: one service writes a network volume (mount it read-only with :ro)"
        );
        assert!(writer_taken("b", &claims[0], Some("shop.a")).starts_with("service shop.a "));
    }
}
