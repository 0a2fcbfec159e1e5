//! Forks a host into its own namespaces and hands PID 1 to systemd.
//!
//! The lab process is single-threaded when it forks (threads only ever start
//! after the last fork of a command), so the children may allocate freely.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{dup2, execve, fork, pipe, setsid, ForkResult, Pid};

use crate::cgroup::{self, Hierarchy};
use crate::paths::HostPaths;
use crate::rootfs;

/// systemd's own way to know it runs in a container: it then skips units
/// that only make sense on hardware (udev, gettys on real terminals).
const CONTAINER_ENV: &str = "container=berth-lab";

/// A booted host's PID 1, as the machine sees it.
#[derive(Debug, Clone, Copy)]
pub struct HostInit {
    /// The PID.
    pub pid: i32,
    /// Its start time, from `/proc/PID/stat`.
    pub start_time: u64,
}

/// Boots a host: joins its cgroup subtree, unshares every namespace, and
/// `exec`s systemd as PID 1 on the overlay root. Returns as soon as systemd
/// has been started; [`crate::lab`] waits for it to finish booting.
pub fn boot_host(
    lab: &str,
    host: &str,
    paths: &HostPaths,
    hierarchies: &[Hierarchy],
) -> anyhow::Result<HostInit> {
    cgroup::create_host_subtree(hierarchies, lab, host)?;
    let console = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.console_log())
        .with_context(|| format!("opening {}", paths.console_log().display()))?;
    let (report_read, report_write) = pipe().context("pipe")?;

    // SAFETY: the lab is single-threaded here (see the module comment), so the
    // child may run ordinary Rust code before it execs or exits.
    #[allow(unsafe_code)]
    let forked = unsafe { fork() }.context("fork")?;
    match forked {
        ForkResult::Child => {
            drop(report_read);
            let code =
                match start_namespaces(lab, host, paths, hierarchies, &console, &report_write) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ =
                            File::from(report_write).write_all(format!("error: {e:#}").as_bytes());
                        1
                    }
                };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            let mut report = String::new();
            File::from(report_read)
                .read_to_string(&mut report)
                .context("reading boot report")?;
            waitpid(child, None).context("waiting for the boot helper")?;
            let pid: i32 = match report.strip_prefix("pid ") {
                Some(pid) => pid.trim().parse().context("parsing the host's PID")?,
                None => bail!("booting {host}: {}", report.trim()),
            };
            let start_time = process_start_time(pid).with_context(|| {
                format!("host {host} (PID {pid}) exited at once; see its console log")
            })?;
            Ok(HostInit { pid, start_time })
        }
    }
}

/// The intermediate child: leaves the terminal's session, joins the host's
/// cgroups, unshares, and forks the host's PID 1.
fn start_namespaces(
    lab: &str,
    host: &str,
    paths: &HostPaths,
    hierarchies: &[Hierarchy],
    console: &File,
    report: &OwnedFd,
) -> anyhow::Result<()> {
    setsid().context("setsid")?;
    for procs in cgroup::host_procs_files(hierarchies, lab, host) {
        fs::write(&procs, "0").with_context(|| format!("joining {}", procs.display()))?;
    }
    unshare(
        CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .context("unshare")?;
    // SAFETY: still single-threaded; see above.
    #[allow(unsafe_code)]
    let forked = unsafe { fork() }.context("fork")?;
    match forked {
        ForkResult::Child => {
            let error = become_host_init(host, paths, hierarchies, console);
            let _ = writeln!(&*console, "berth-lab: {host} failed to boot: {error:#}");
            std::process::exit(1);
        }
        ForkResult::Parent { child } => {
            let mut report = File::from(report.try_clone()?);
            report.write_all(format!("pid {}", child.as_raw()).as_bytes())?;
            Ok(())
        }
    }
}

/// PID 1 of the host: console to the log file, root, then systemd. Only
/// returns on failure.
fn become_host_init(
    host: &str,
    paths: &HostPaths,
    hierarchies: &[Hierarchy],
    console: &File,
) -> anyhow::Error {
    let result = (|| -> anyhow::Result<()> {
        let null = File::open("/dev/null")?;
        dup2(null.as_raw_fd(), 0)?;
        dup2(console.as_raw_fd(), 1)?;
        dup2(console.as_raw_fd(), 2)?;
        rootfs::enter_root(paths, hierarchies, host)?;
        let systemd = CString::new("/lib/systemd/systemd")?;
        let args = [systemd.clone(), CString::new("--system")?];
        let env = [
            CString::new(CONTAINER_ENV)?,
            CString::new("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")?,
        ];
        execve(&systemd, &args, &env).context("exec systemd")?;
        Ok(())
    })();
    match result {
        Ok(()) => anyhow::anyhow!("exec returned"),
        Err(e) => e,
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // `rest` starts at field 3 (state), so field 22 is index 19.
    fields.get(19)?.parse().ok()
}

/// Whether the host's PID 1 recorded as (`pid`, `start_time`) still runs.
pub fn is_running(pid: i32, start_time: u64) -> bool {
    process_start_time(pid) == Some(start_time)
}

/// Kills a host's PID 1; the kernel then kills everything in its PID
/// namespace.
pub fn kill_host(pid: i32, start_time: u64) {
    if is_running(pid, start_time) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}
