//! Running code inside a pod's network namespace. Long work (reading a
//! table back, a full comparison) goes to one dedicated thread, a call at
//! a time ([`run_in`]); work of microseconds (a link's elements) runs on
//! the calling thread ([`run_here`]). Either way the thread enters the
//! namespace with `setns`, does the work and goes back to the agent's own
//! namespace before anything else runs on it, so no pod's namespace is
//! held between calls and no other task ever runs in one. Netlink sockets
//! and `/proc/sys/net` opened meanwhile belong to the pod's namespace.
//! The namespace is held open ([`Namespace`]), so that work can go on in
//! the same one without asking Docker again for the process that owns it.
//!
//! One long-lived thread, not one per call: starting a thread cost
//! 55-110 us, more than the nf_tables transaction a link addition makes.
//! Short work stays on the caller's thread: handing it to that thread and
//! back costs two wake-ups of another CPU, tens of microseconds each in a
//! VM.

use std::fs::File;
use std::sync::{mpsc, Mutex};

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
    /// The namespace thread could not be started, or the work panicked.
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

/// Runs `work` in `namespace`, on the namespace thread, and returns its
/// result.
pub async fn run_in<T: Send + 'static>(
    namespace: &Namespace,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let pid = namespace.pid;
    // The job owns its own handle: the caller may give up waiting (and
    // close the namespace) while the job is still queued.
    let ns = namespace
        .file
        .try_clone()
        .map_err(|source| NetnsError::Open { pid, source })?;
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let entered = setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|source| NetnsError::Enter { pid, source });
        let _ = done.send(entered.map(|()| work()));
    });
    submit(job)?;
    result.await.map_err(|_| NetnsError::Thread)?
}

/// Runs short `work` in `namespace` on the calling thread: it enters the
/// namespace, works and goes back home before returning, with nothing
/// awaited in between, so no other task runs on the thread meanwhile. A
/// thread that could not go back would do everything after in the pod's
/// namespace: the agent aborts instead (systemd restarts it; the pods run
/// on).
pub fn run_here<T>(namespace: &Namespace, work: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let home = own_namespace()?;
    setns(&namespace.file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        pid: namespace.pid,
        source,
    })?;
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
        eprintln!(
            "berth-agent: cannot leave the network namespace of process {}: {e}",
            namespace.pid
        );
        std::process::abort();
    }
    done.map_err(|_| NetnsError::Thread)
}

/// The calling thread's own network namespace, to go back to.
fn own_namespace() -> Result<File, NetnsError> {
    File::open("/proc/thread-self/ns/net").map_err(|source| NetnsError::Open {
        pid: std::process::id(),
        source,
    })
}

/// Work for the namespace thread.
type Job = Box<dyn FnOnce() + Send>;

/// Queues `job` on the namespace thread, starting one if there is none
/// (the first call, or the last one ended).
fn submit(job: Job) -> Result<(), NetnsError> {
    static THREAD: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let mut thread = THREAD.lock().unwrap_or_else(|e| e.into_inner());
    let job = match thread.as_ref() {
        Some(queue) => match queue.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let queue = start_thread()?;
    queue.send(job).map_err(|_| NetnsError::Thread)?;
    *thread = Some(queue);
    Ok(())
}

fn start_thread() -> Result<mpsc::Sender<Job>, NetnsError> {
    let home = own_namespace()?;
    let (queue, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            for job in jobs {
                // A job that panics fails its own call only (its reply is
                // dropped with it).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                // Back home after every job, so that no pod's namespace is
                // held between calls. Should that ever fail, the thread
                // ends, and the next call starts a fresh one.
                if setns(&home, CloneFlags::CLONE_NEWNET).is_err() {
                    break;
                }
            }
        })
        .map_err(|_| NetnsError::Thread)?;
    Ok(queue)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace_here() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .expect("reading the thread's namespace")
            .display()
            .to_string()
    }

    /// Needs root (`setns`), as the agent does.
    #[tokio::test]
    async fn work_runs_in_the_namespace_asked_for_each_call() {
        let mut other = std::process::Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .expect("unshare");
        // unshare enters the new namespace before it execs sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let theirs = loop {
            let link = std::fs::read_link(format!("/proc/{}/ns/net", other.id()));
            let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
            match link {
                Ok(link) if link != mine => break link.display().to_string(),
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => panic!("unshare --net made no namespace (not root?)"),
            }
        };
        let mine = namespace_here();
        let in_theirs = Namespace::of(other.id()).unwrap();
        let in_mine = Namespace::of(std::process::id()).unwrap();
        for _ in 0..3 {
            assert_eq!(run_in(&in_theirs, namespace_here).await.unwrap(), theirs);
            assert_eq!(run_in(&in_mine, namespace_here).await.unwrap(), mine);
            assert_eq!(run_here(&in_theirs, namespace_here).unwrap(), theirs);
            assert_eq!(namespace_here(), mine, "back home after work here");
        }
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_job_fails_its_call_only() {
        let here = Namespace::of(std::process::id()).unwrap();
        let failed = run_in(&here, || -> u8 { panic!("a job that panics") }).await;
        assert!(matches!(failed, Err(NetnsError::Thread)), "{failed:?}");
        assert_eq!(run_in(&here, || 7).await.unwrap(), 7);
        assert!(matches!(
            run_here(&here, || -> u8 { panic!("work that panics") }),
            Err(NetnsError::Thread)
        ));
        assert_eq!(run_here(&here, || 8).unwrap(), 8);
    }
}
