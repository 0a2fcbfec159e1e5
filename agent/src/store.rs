//! The agent's desired state: one record per pod, a JSON file under
//! `<state-dir>/pods`, written through a temporary file, fsync and rename, so
//! a crash leaves either the old record or the new one. Records hold secret
//! values, so the directory is 0700 and every file 0600.

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_model::{Pod, Protocol};
use serde::{Deserialize, Serialize};

/// Whether the pod should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Running, and started again at boot.
    Running,
    /// Stopped on request, and left stopped at boot.
    Stopped,
    /// Being deleted: a crash half-way is finished by the next resync.
    Deleting,
    /// Being deleted, its named volumes kept (their data is moving to
    /// another node): a crash half-way is finished likewise, keeping them.
    #[serde(rename = "deletingkeepingvolumes")]
    DeletingKeepingVolumes,
}

/// A host port given to one container port of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    /// The container that asked for it.
    pub container: String,
    /// The port inside the pod.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
    /// The port on the host.
    pub host_port: u16,
}

/// Who asked for the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The local API (`berth local`), like the kubelet's static pods.
    #[default]
    Local,
    /// The master assigned it; it goes when the master unassigns it.
    Master,
}

/// Everything the agent keeps about a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// The spec as accepted, secrets included.
    pub pod: Pod,
    /// Host ports allocated to it; they are the allocator's memory.
    pub host_ports: Vec<PortBinding>,
    /// Running or stopped.
    pub desired: Desired,
    /// Who asked for it.
    #[serde(default)]
    pub source: Source,
}

/// The records on disk.
#[derive(Debug, Clone)]
pub struct PodStore {
    dir: PathBuf,
}

impl PodStore {
    /// Opens (and creates) the store at `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        // A directory made by someone else keeps its mode: tighten it.
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every record, by pod name.
    pub fn load_all(&self) -> anyhow::Result<Vec<PodRecord>> {
        let mut records = Vec::new();
        for entry in
            fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let record: PodRecord = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            records.push(record);
        }
        records.sort_by(|a, b| a.pod.name.cmp(&b.pod.name));
        Ok(records)
    }

    /// Writes a record durably.
    pub fn save(&self, record: &PodRecord) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(record)?;
        crate::private_file::write(&self.path(&record.pod.name), &text)
    }

    /// Removes a record; removing one that is not there is fine.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => {
                File::open(&self.dir)?.sync_all()?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing the record of pod {name}")),
        }
    }
}
