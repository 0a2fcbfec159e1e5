//! The agent's desired state: one record per pod, a JSON file under
//! `<state-dir>/pods`, written through a temporary file, fsync and rename, so
//! a crash leaves either the old record or the new one. Records hold secret
//! values, so the directory is 0700 and every file 0600.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use berth_model::{Pod, Protocol};
use serde::{Deserialize, Serialize};

use crate::stamped_files::StampedFiles;

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

/// The records on disk, and a copy in memory: the agent reads every
/// record each second (its pods' statuses), and parsing a hundred files
/// each time was most of an idle agent's work. The agent is the records'
/// only writer; a resync reads the disk again ([`PodStore::reread`]), so a
/// state directory changed behind its back is seen within one.
#[derive(Debug, Clone)]
pub struct PodStore {
    dir: PathBuf,
    /// The records as last read or written, by name; `None` until read.
    known: Arc<Mutex<Option<BTreeMap<String, PodRecord>>>>,
    /// The files as last read: [`PodStore::reread`] parses only those
    /// that changed.
    files: Arc<StampedFiles<PodRecord>>,
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
            known: Arc::default(),
            files: Arc::default(),
        })
    }

    fn known(&self) -> MutexGuard<'_, Option<BTreeMap<String, PodRecord>>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every record, by pod name.
    pub fn load_all(&self) -> anyhow::Result<Vec<PodRecord>> {
        if let Some(known) = self.known().as_ref() {
            return Ok(known.values().cloned().collect());
        }
        self.reread()
    }

    /// Every record, by pod name, read from the disk.
    pub fn reread(&self) -> anyhow::Result<Vec<PodRecord>> {
        // Held across the read: a save meanwhile lands after it, not
        // under it.
        let mut known = self.known();
        let records = self.read_dir()?;
        *known = Some(
            records
                .iter()
                .map(|r| (r.pod.name.clone(), r.clone()))
                .collect(),
        );
        Ok(records)
    }

    fn read_dir(&self) -> anyhow::Result<Vec<PodRecord>> {
        let mut records = Vec::new();
        let mut present = HashSet::new();
        for entry in
            fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parse = |text: String| {
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            };
            let io = |e| anyhow::Error::from(e).context(format!("reading {}", path.display()));
            records.push(self.files.read(&path, parse, io)?);
            present.insert(path);
        }
        self.files.keep_only(&self.dir, &present);
        records.sort_by(|a, b| a.pod.name.cmp(&b.pod.name));
        Ok(records)
    }

    /// Writes a record durably.
    pub fn save(&self, record: &PodRecord) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(record)?;
        let mut known = self.known();
        crate::private_file::write(&self.path(&record.pod.name), &text)?;
        if let Some(known) = known.as_mut() {
            known.insert(record.pod.name.clone(), record.clone());
        }
        Ok(())
    }

    /// Removes a record; removing one that is not there is fine.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let mut known = self.known();
        match fs::remove_file(self.path(name)) {
            Ok(()) => File::open(&self.dir)?.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing the record of pod {name}")),
        }
        if let Some(known) = known.as_mut() {
            known.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::ScratchDir;

    fn record(name: &str) -> PodRecord {
        PodRecord {
            pod: serde_json::from_value(serde_json::json!({
                "name": name,
                "containers": [{"name": "app", "image": "local/app:1"}],
            }))
            .expect("a pod"),
            host_ports: Vec::new(),
            desired: Desired::Running,
            source: Source::Master,
        }
    }

    fn names(records: &[PodRecord]) -> Vec<&str> {
        records.iter().map(|r| r.pod.name.as_str()).collect()
    }

    #[test]
    fn records_are_served_from_memory_and_a_reread_sees_the_disk() {
        let dir = ScratchDir::new("store");
        let store = PodStore::open(dir.path()).expect("a store");
        store.save(&record("b")).expect("saved");
        store.save(&record("a")).expect("saved");
        assert_eq!(names(&store.load_all().expect("loaded")), ["a", "b"]);

        // Another handle on the same directory (a restarted agent) reads
        // what was written durably.
        let other = PodStore::open(dir.path()).expect("a store");
        assert_eq!(names(&other.load_all().expect("loaded")), ["a", "b"]);

        store.remove("a").expect("removed");
        assert_eq!(names(&store.load_all().expect("loaded")), ["b"]);

        // Written behind the agent's back: seen at the next reread.
        fs::remove_file(dir.path().join("b.json")).expect("removed by hand");
        assert_eq!(names(&store.load_all().expect("loaded")), ["b"]);
        assert!(store.reread().expect("reread").is_empty());
        assert!(store.load_all().expect("loaded").is_empty());
    }
}
