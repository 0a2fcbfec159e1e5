//! The node's joined credential: where the master is and what this node
//! presents to it, saved at join and read at every start. Its own module so
//! that the shippers that use it need not import the master link (which
//! imports the runtime).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What joining leaves behind: where the master is and this node's
/// credential. Kept 0600 in the state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The master's URL.
    pub url: String,
    /// This node's name in the cluster.
    pub node: String,
    /// This node's credential.
    pub credential: String,
    /// The master's CA certificate (PEM), pinned at join; `None` for a
    /// plain-HTTP master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// Where the join state lives.
pub fn joined_path(state_dir: &Path) -> PathBuf {
    state_dir.join("master.json")
}

/// The join state, if this agent has joined a master.
pub fn load_joined(state_dir: &Path) -> anyhow::Result<Option<Joined>> {
    let path = joined_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Saves the join state, 0600.
pub fn save_joined(state_dir: &Path, joined: &Joined) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    crate::private_file::write(&joined_path(state_dir), &serde_json::to_vec_pretty(joined)?)
}
