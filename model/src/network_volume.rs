//! Network volumes an admin defines once, by name (`berth volume create
//! shared --glusterfs h1:/v1`), so that pod templates say `-v
//! volume://shared:/data` instead of repeating a server they may not know.
//! The master copies the source into each template that names it when
//! the template's object is written; removing the definition is refused
//! while a template names it.

use serde::{Deserialize, Serialize};

use crate::pod::{check_network_source, NetworkKind, NetworkSource};
use crate::{validate_dns_label, ValidationErrors};

/// A named network file system: exactly one of `glusterfs` and `nfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkVolume {
    /// DNS-1123 label, unique in the cluster.
    pub name: String,
    /// A GlusterFS volume (`/VOLUME` or `/VOLUME/SUBDIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glusterfs: Option<NetworkSource>,
    /// An NFS export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NetworkSource>,
}

impl NetworkVolume {
    /// The file system it is and where it is served, once valid.
    pub fn source(&self) -> Option<(NetworkKind, &NetworkSource)> {
        match (&self.glusterfs, &self.nfs) {
            (Some(source), None) => Some((NetworkKind::Glusterfs, source)),
            (None, Some(source)) => Some((NetworkKind::Nfs, source)),
            _ => None,
        }
    }

    /// `glusterfs://h1/v1`, as `-v` spells a source.
    pub fn url(&self) -> Option<String> {
        self.source()
            .map(|(kind, source)| format!("{kind}://{}{}", source.server, source.path))
    }

    /// Every problem, each naming its field.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        for (kind, source) in [("glusterfs", &self.glusterfs), ("nfs", &self.nfs)] {
            if let Some(source) = source {
                check_network_source(&mut errors, kind, kind, source);
            }
        }
        if self.glusterfs.is_some() == self.nfs.is_some() {
            errors.push("glusterfs", "set exactly one of glusterfs and nfs");
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(json: serde_json::Value) -> NetworkVolume {
        serde_json::from_value(json).expect("a network volume")
    }

    #[test]
    fn a_network_volume_is_exactly_one_well_formed_source() {
        let shared = volume(serde_json::json!({
            "name": "shared", "glusterfs": {"server": "h1", "path": "/v1"}
        }));
        assert_eq!(shared.validate(), Ok(()));
        assert_eq!(shared.url().as_deref(), Some("glusterfs://h1/v1"));

        let neither = volume(serde_json::json!({"name": "shared"}));
        let fields = |v: &NetworkVolume| -> Vec<String> {
            v.validate()
                .expect_err("invalid")
                .errors()
                .iter()
                .map(|e| e.field.clone())
                .collect()
        };
        assert_eq!(fields(&neither), ["glusterfs"]);
        let both = volume(serde_json::json!({
            "name": "Shared",
            "glusterfs": {"server": "h1", "path": "/"},
            "nfs": {"server": "h1; rm", "path": "/x"}
        }));
        assert_eq!(
            fields(&both),
            ["name", "glusterfs.path", "nfs.server", "glusterfs"]
        );
    }
}
