//! Running code inside a pod's network namespace: a dedicated thread
//! enters it with `setns` and ends with the work, so no thread of the
//! agent's runtime ever changes namespace. Netlink sockets opened and
//! `/proc/sys/net` opened from that thread belong to the pod's namespace.
//! The namespace is held open ([`Namespace`]), so that work can go on in
//! the same one without asking Docker again for the process that owns it.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

/// Why work in a namespace did not run.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace of `pid` could not be opened (the process is gone).
    #[error("opening the network namespace of process {pid}: {source}")]
    Open {
        /// The process.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// `setns` refused.
    #[error("entering the network namespace of process {pid}: {source}")]
    Enter {
        /// The process.
        pid: u32,
        /// Why.
        source: nix::Error,
    },
    /// The thread could not be started or panicked.
    #[error("the namespace thread failed")]
    Thread,
}

/// A process's network namespace, held open: it is the same namespace for
/// as long as this is held, whatever becomes of the process and its PID.
#[derive(Debug)]
pub struct Namespace {
    pid: u32,
    file: File,
}

impl Namespace {
    /// The network namespace process `pid` is in now.
    pub fn of(pid: u32) -> Result<Self, NetnsError> {
        File::open(format!("/proc/{pid}/ns/net"))
            .map(|file| Self { pid, file })
            .map_err(|source| NetnsError::Open { pid, source })
    }

    /// The process it was opened from.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Runs `work` in `namespace`, on a thread of its own, and returns its
/// result.
pub async fn run_in<T: Send + 'static>(
    namespace: &Namespace,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let pid = namespace.pid;
    let ns = namespace
        .file
        .try_clone()
        .map_err(|source| NetnsError::Open { pid, source })?;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-{pid}"))
        .spawn(move || {
            let entered = setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetnsError::Enter { pid, source });
            let _ = done.send(entered.map(|()| work()));
        })
        .map_err(|_| NetnsError::Thread)?;
    result.await.map_err(|_| NetnsError::Thread)?
}

/// Sets `net.ipv4.conf.all.route_localnet` of the calling thread's
/// namespace: 127.0.0.1 may then leave through the pod's interface once
/// DNAT has rewritten the destination. Only ever called inside a pod's
/// namespace.
pub fn set_route_localnet(on: bool) -> std::io::Result<()> {
    std::fs::write(
        "/proc/sys/net/ipv4/conf/all/route_localnet",
        if on { "1" } else { "0" },
    )
}

/// The current `route_localnet` of the calling thread's namespace.
pub fn route_localnet() -> std::io::Result<bool> {
    Ok(std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet")?.trim() == "1")
}
