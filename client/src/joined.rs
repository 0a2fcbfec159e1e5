//! What joining leaves on a node: where the master is and the node's
//! credential, in `master.json` (0600) in the agent's state directory. The
//! agent writes it; the agent and the router on the same host read it, so a
//! host joins once for both roles.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_file;

/// The node's joined credential. Its JSON form (camelCase, `caPem` left
/// out for a plain-HTTP master) is what installed hosts already have.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The master's URL (the one joined at).
    pub url: String,
    /// Every master's URL when there are several (HA masters), in the
    /// order to try them; empty for `url` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// This node's name in the cluster.
    pub node: String,
    /// This node's credential.
    pub credential: String,
    /// The master's CA certificate (PEM), pinned at join; `None` for a
    /// plain-HTTP master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Joined {
    // The credential stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("url", &self.url)
            .field("urls", &self.urls)
            .field("node", &self.node)
            .field("pinned_ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// The join state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JoinedError {
    /// The file exists but cannot be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a join state.
    #[error("parsing {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The state directory cannot be created.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be written.
    #[error(transparent)]
    Write(#[from] private_file::WriteError),
}

impl Joined {
    /// The masters to talk to: `urls`, or `url` alone.
    pub fn masters(&self) -> crate::Masters {
        if self.urls.is_empty() {
            crate::Masters::new([self.url.clone()])
        } else {
            crate::Masters::new(self.urls.iter().cloned())
        }
    }

    /// Where the join state lives in the agent's state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("master.json")
    }

    /// The join state in `state_dir`, or `None` when this node has not
    /// joined a master.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, JoinedError> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JoinedError::Read { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| JoinedError::Parse { path, source })
    }

    /// Saves the join state in `state_dir`, 0600, replacing any before it
    /// atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), JoinedError> {
        std::fs::create_dir_all(state_dir).map_err(|source| JoinedError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        // Serializing plain strings cannot fail.
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        private_file::write(&Self::path(state_dir), &text)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        // Under the workspace's target/, never the machine's /tmp.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tmp")
            .join(format!("client-joined-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn joined(ca_pem: Option<&str>) -> Joined {
        Joined {
            url: "https://h1:7443".into(),
            urls: Vec::new(),
            node: "h2".into(),
            credential: "secret".into(),
            ca_pem: ca_pem.map(str::to_owned),
        }
    }

    #[test]
    fn a_saved_credential_loads_back_private() {
        let dir = scratch("roundtrip");
        assert_eq!(Joined::load(&dir).unwrap(), None, "not joined yet");
        let first = joined(None);
        first.save(&dir).unwrap();
        let second = joined(Some("-----BEGIN CERTIFICATE-----\n"));
        second.save(&dir).unwrap();
        assert_eq!(Joined::load(&dir).unwrap(), Some(second));
        let mode = std::fs::metadata(Joined::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_format_is_the_one_installed_hosts_have() {
        // As agents before this crate wrote it.
        let installed = r#"{
  "url": "https://h1:7443",
  "node": "h2",
  "credential": "secret",
  "caPem": "PEM"
}"#;
        let read: Joined = serde_json::from_str(installed).unwrap();
        assert_eq!(read, joined(Some("PEM")));
        assert_eq!(serde_json::to_string_pretty(&read).unwrap(), installed);
        let plain = serde_json::to_value(joined(None)).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"url": "https://h1:7443", "node": "h2", "credential": "secret"})
        );
    }

    #[test]
    fn a_damaged_file_names_itself_and_debug_hides_the_credential() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Joined::path(&dir), "{").unwrap();
        let error = Joined::load(&dir).unwrap_err();
        assert!(error.to_string().contains("master.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!format!("{:?}", joined(None)).contains("secret"));
    }
}
