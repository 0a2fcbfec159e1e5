//! The lab's description on disk, rewritten atomically after every change so
//! that `down` can clean up even after a failed `up`.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A lab as `status --json` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// The lab network, in CIDR notation.
    pub subnet: String,
    /// The hosts, in order.
    pub hosts: Vec<HostState>,
}

/// One host of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    /// `h1`, `h2`, ...
    pub name: String,
    /// Address on the lab network.
    pub address: Ipv4Addr,
    /// PID of the host's systemd, as the machine sees it; `None` when stopped.
    pub pid: Option<i32>,
    /// Start time of that PID (from `/proc/PID/stat`), so a reused PID is
    /// never mistaken for the host.
    pub start_time: Option<u64>,
    /// Whether the host is cut off the lab network.
    pub partitioned: bool,
}

impl LabState {
    /// Reads the state of a lab that is up.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the state through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&HostState> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| self.no_such_host(name))
    }

    /// The host named `name`, to change it.
    pub fn host_mut(&mut self, name: &str) -> anyhow::Result<&mut HostState> {
        let message = self.no_such_host(name);
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .context(message)
    }

    fn no_such_host(&self, name: &str) -> String {
        let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        format!(
            "lab {:?} has no host {name:?} (hosts: {})",
            self.name,
            known.join(", ")
        )
    }
}
