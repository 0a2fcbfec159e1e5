//! Where a lab keeps its state: one directory per lab under the state root,
//! with a tmpfs mounted on it so that `down` can drop everything at once.

use std::path::{Path, PathBuf};

/// Default root for all labs' state (the one place on the machine's own
/// filesystem that the lab writes to).
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/berth-lab";

/// The paths of one lab.
#[derive(Debug, Clone)]
pub struct LabPaths {
    /// Root of every lab's state (`/var/lib/berth-lab`).
    pub state_root: PathBuf,
    /// This lab's name.
    pub name: String,
}

impl LabPaths {
    /// Paths for the lab `name` under `state_root`.
    pub fn new(state_root: impl Into<PathBuf>, name: &str) -> Self {
        Self {
            state_root: state_root.into(),
            name: name.to_owned(),
        }
    }

    /// The lab's directory; a tmpfs is mounted here while the lab is up.
    pub fn root(&self) -> PathBuf {
        self.state_root.join(&self.name)
    }

    /// The lab's description: hosts, PIDs, addresses.
    pub fn state_file(&self) -> PathBuf {
        self.root().join("lab.json")
    }

    /// Bind mount that keeps the switch network namespace alive.
    pub fn switch_netns(&self) -> PathBuf {
        self.root().join("switch.netns")
    }

    /// The tarball `local/busybox` is imported from.
    pub fn busybox_tar(&self) -> PathBuf {
        self.root().join("busybox.tar")
    }

    /// Everything that belongs to one host.
    pub fn host(&self, host: &str) -> HostPaths {
        HostPaths {
            dir: self.root().join("hosts").join(host),
        }
    }
}

/// The paths of one host of a lab.
#[derive(Debug, Clone)]
pub struct HostPaths {
    dir: PathBuf,
}

impl HostPaths {
    /// The host's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The overlay's upper layer: the host's "disk", kept across reboots.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// The overlay's work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Where the overlay root is mounted before `pivot_root`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// `/var/lib/docker` of the host: overlay2 cannot use an overlayfs upper
    /// layer, so Docker's storage lives beside the overlay, on the tmpfs.
    pub fn docker(&self) -> PathBuf {
        self.dir.join("docker")
    }
    /// `/var/lib/containers` of the host (Podman's storage), on the tmpfs
    /// for the same reason as [`HostPaths::docker`].
    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }
    /// What the host's systemd prints on its console.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}
