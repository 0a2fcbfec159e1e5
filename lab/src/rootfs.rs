//! A host's root: an overlay of the machine's `/` with an upper layer on the
//! lab's tmpfs. [`prepare_upper`] writes the host's own files into the upper
//! layer before its first boot; [`enter_root`] runs in the host's new mount
//! namespace and builds the tree systemd boots on.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::cgroup::Hierarchy;
use crate::paths::HostPaths;

/// Machine services the hosts keep enabled; every other service the machine
/// enabled (databases, gettys, timers) is disabled in the host.
const KEPT_SERVICES: &[&str] = &["docker.service", "docker.socket", "containerd.service"];

/// Units that must never run in a host: they would open the machine's
/// terminals.
const MASKED_UNITS: &[&str] = &[
    "console-getty.service",
    "container-getty@.service",
    "getty@.service",
    "serial-getty@.service",
    "getty.target",
];

/// What goes into a host besides the machine's own files.
#[derive(Debug, Clone)]
pub struct HostFiles<'a> {
    /// The host's name, also its hostname.
    pub hostname: &'a str,
    /// `/etc/hosts` lines for every lab host.
    pub hosts_file: String,
    /// berth binaries to install into `/usr/bin` (empty for a bare host).
    pub binaries: Vec<PathBuf>,
    /// berth's unit files to install into `/usr/lib/systemd/system`.
    pub units: &'a [(&'a str, &'a str)],
    /// The container engine the host's agent runs pods with.
    pub engine: Engine,
}

/// The container engine of a lab host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// dockerd (Debian's docker.io), as on every host by default.
    #[default]
    Docker,
    /// Podman's Docker-compatible API (`podman.socket`); dockerd is masked.
    Podman,
}

/// Podman's storage in a lab host: overlay cannot stack on the host's
/// overlay root, nor make whiteouts on a tmpfs here, so vfs.
const PODMAN_STORAGE_CONF: &str = "# Written by berth-lab up --engine podman.\n[storage]\ndriver = \"vfs\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n";

/// Podman's engine settings in a lab host: cgroupfs, so that a container's
/// cgroup nests under its systemd unit's (`--cgroup-parent` is a path, not
/// a slice), as with dockerd's cgroupfs driver; events in the journal.
const PODMAN_CONTAINERS_CONF: &str = "# Written by berth-lab up --engine podman.\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"journald\"\n";

/// The agent's configuration in a Podman host.
const PODMAN_AGENT_CONF: &str =
    "# Written by berth-lab up --engine podman.\n[engine]\nsocket = \"unix:///run/podman/podman.sock\"\n";

/// Whether the host was prepared for Podman (its upper layer says so).
pub fn runs_podman(paths: &HostPaths) -> bool {
    paths.upper().join("etc/containers/storage.conf").exists()
}

/// Writes the host's own files into its (not yet mounted) upper layer.
pub fn prepare_upper(paths: &HostPaths, files: &HostFiles<'_>) -> anyhow::Result<()> {
    for dir in [
        paths.upper(),
        paths.work(),
        paths.rootfs(),
        paths.docker(),
        paths.containers(),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let upper = paths.upper();
    write(
        &upper.join("etc/hostname"),
        &format!("{}\n", files.hostname),
    )?;
    write(&upper.join("etc/hosts"), &files.hosts_file)?;
    write(
        &upper.join("etc/machine-id"),
        &format!("{}\n", new_machine_id()?),
    )?;
    write(
        &upper.join("etc/docker/daemon.json"),
        // cgroupfs lets a container's cgroup nest under its systemd unit
        // (--cgroup-parent); overlay2 runs on the tmpfs behind /var/lib/docker.
        "{\n  \"storage-driver\": \"overlay2\",\n  \"exec-opts\": [\"native.cgroupdriver=cgroupfs\"]\n}\n",
    )?;

    let systemd_etc = upper.join("etc/systemd/system");
    disable_machine_services(&systemd_etc)?;
    for unit in MASKED_UNITS {
        replace_symlink(Path::new("/dev/null"), &systemd_etc.join(unit))?;
    }
    let wants = systemd_etc.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    match files.engine {
        Engine::Docker => replace_symlink(
            Path::new("/lib/systemd/system/docker.service"),
            &wants.join("docker.service"),
        )?,
        Engine::Podman => {
            // dockerd masked: nothing of a Podman host may lean on it.
            for unit in ["docker.service", "docker.socket", "containerd.service"] {
                replace_symlink(Path::new("/dev/null"), &systemd_etc.join(unit))?;
            }
            replace_symlink(
                Path::new("/lib/systemd/system/podman.socket"),
                &systemd_etc.join("sockets.target.wants/podman.socket"),
            )?;
            write(
                &upper.join("etc/containers/storage.conf"),
                PODMAN_STORAGE_CONF,
            )?;
            write(
                &upper.join("etc/containers/containers.conf"),
                PODMAN_CONTAINERS_CONF,
            )?;
            write(&upper.join("etc/berth/agent.toml"), PODMAN_AGENT_CONF)?;
        }
    }

    // Debian's /bin and /lib are symlinks into /usr: write below usr/ so the
    // upper layer never shadows those links with real directories.
    let bin_dir = upper.join("usr/bin");
    fs::create_dir_all(&bin_dir)?;
    for binary in &files.binaries {
        let name = binary.file_name().context("binary without a file name")?;
        let target = bin_dir.join(name);
        fs::copy(binary, &target).with_context(|| format!("installing {}", binary.display()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    }
    // A bare host gets berth's units from its package, like its binaries.
    if files.binaries.is_empty() {
        return Ok(());
    }
    let unit_dir = upper.join("usr/lib/systemd/system");
    for (name, text) in files.units {
        write(&unit_dir.join(name), text)?;
    }
    Ok(())
}

/// Writes `/etc/berth/master.toml` into a host's upper layer (before boot).
pub fn write_master_config(paths: &HostPaths, text: &str) -> anyhow::Result<()> {
    write(&paths.upper().join("etc/berth/master.toml"), text)
}

/// Writes `/etc/default/etcd` into a host's upper layer (before boot).
pub fn write_etcd_config(paths: &HostPaths, text: &str) -> anyhow::Result<()> {
    write(&paths.upper().join("etc/default/etcd"), text)
}

/// Disables, in the upper layer, every unit the machine enabled except the
/// container runtime. A whiteout (a 0/0 character device) hides the lower
/// layer's `*.wants/` link, exactly as `systemctl disable` would remove it.
fn disable_machine_services(systemd_etc: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir("/etc/systemd/system") else {
        return Ok(());
    };
    for wants in entries.flatten() {
        let dir_name = wants.file_name();
        if !dir_name.to_string_lossy().ends_with(".wants") {
            continue;
        }
        for unit in fs::read_dir(wants.path())?.flatten() {
            let unit_name = unit.file_name();
            if KEPT_SERVICES.iter().any(|k| unit_name == *k) {
                continue;
            }
            let whiteout = systemd_etc.join(&dir_name).join(&unit_name);
            fs::create_dir_all(whiteout.parent().context("no parent")?)?;
            if whiteout.symlink_metadata().is_err() {
                mknod(&whiteout, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .with_context(|| format!("creating whiteout {}", whiteout.display()))?;
            }
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::create_dir_all(path.parent().context("path without parent")?)?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn replace_symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(link.parent().context("path without parent")?)?;
    let _ = fs::remove_file(link);
    symlink(target, link).with_context(|| format!("linking {}", link.display()))
}

fn new_machine_id() -> anyhow::Result<String> {
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    Ok(uuid.trim().replace('-', ""))
}

/// Builds the host's root and pivots into it. Runs as PID 1 of the host's
/// new PID and mount namespaces, before `exec`ing systemd.
pub fn enter_root(
    paths: &HostPaths,
    hierarchies: &[Hierarchy],
    hostname: &str,
) -> anyhow::Result<()> {
    let none: Option<&str> = None;
    // Nothing mounted from here on may leak back into the machine.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .context("making / private")?;

    let root = paths.rootfs();
    let overlay_options = format!(
        "lowerdir=/,upperdir={},workdir={}",
        paths.upper().display(),
        paths.work().display()
    );
    mount_overlay(&root, &overlay_options)?;

    mount_fs(
        "proc",
        &root.join("proc"),
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "",
    )?;
    mount_fs(
        "sysfs",
        &root.join("sys"),
        "sysfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "",
    )?;
    mount(
        Some("/dev"),
        &root.join("dev"),
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .context("binding /dev")?;
    // The machine's /dev/shm and ptys stay the machine's: fresh instances.
    mount_fs(
        "tmpfs",
        &root.join("dev/shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    mount_fs(
        "devpts",
        &root.join("dev/pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    mount(
        Some(&root.join("dev/pts/ptmx")),
        &root.join("dev/ptmx"),
        none,
        MsFlags::MS_BIND,
        none,
    )
    .context("binding /dev/ptmx")?;

    mount_cgroups(&root, hierarchies)?;
    mount_fs(
        "tmpfs",
        &root.join("run"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
    )?;
    mount_fs(
        "tmpfs",
        &root.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    let docker_dir = root.join("var/lib/docker");
    fs::create_dir_all(&docker_dir)?;
    mount(
        Some(&paths.docker()),
        &docker_dir,
        none,
        MsFlags::MS_BIND,
        none,
    )
    .context("binding /var/lib/docker")?;
    let containers_dir = root.join("var/lib/containers");
    fs::create_dir_all(&containers_dir)?;
    mount(
        Some(&paths.containers()),
        &containers_dir,
        none,
        MsFlags::MS_BIND,
        none,
    )
    .context("binding /var/lib/containers")?;

    nix::unistd::sethostname(hostname).context("setting hostname")?;

    let old_root = root.join(".oldroot");
    fs::create_dir_all(&old_root)?;
    nix::unistd::chdir(&root)?;
    nix::unistd::pivot_root(".", ".oldroot").context("pivot_root")?;
    nix::unistd::chdir("/")?;
    umount2("/.oldroot", MntFlags::MNT_DETACH).context("unmounting the old root")?;
    fs::remove_dir("/.oldroot")?;
    Ok(())
}

/// Mounts the overlay, retrying while the previous boot's mount namespace is
/// still being torn down (the kernel refuses a work dir that is in use).
fn mount_overlay(root: &Path, options: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match mount(
            Some("overlay"),
            root,
            Some("overlay"),
            MsFlags::empty(),
            Some(options),
        ) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                sleep(Duration::from_millis(50))
            }
            Err(e) => bail!("mounting overlay on {} ({options}): {e}", root.display()),
        }
    }
}

fn mount_fs(
    source: &str,
    target: &Path,
    fs_type: &str,
    flags: MsFlags,
    data: &str,
) -> anyhow::Result<()> {
    fs::create_dir_all(target).ok();
    let data = (!data.is_empty()).then_some(data);
    mount(Some(source), target, Some(fs_type), flags, data)
        .with_context(|| format!("mounting {fs_type} on {}", target.display()))
}

/// Mounts every hierarchy anew inside the host's cgroup namespace, where it
/// shows the host's own subtree as its root, and copies the machine's
/// convenience links (`cpu,cpuacct` -> `cpu`).
fn mount_cgroups(root: &Path, hierarchies: &[Hierarchy]) -> anyhow::Result<()> {
    let base = root.join("sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let pure_v2 = hierarchies
        .iter()
        .any(|h| h.relative().as_os_str().is_empty());
    if pure_v2 {
        return mount_fs("cgroup2", &base, "cgroup2", flags, "");
    }
    mount_fs("tmpfs", &base, "tmpfs", flags, "mode=0755")?;
    for h in hierarchies {
        mount_fs(
            &h.fs_type,
            &base.join(h.relative()),
            &h.fs_type,
            flags,
            &h.options,
        )?;
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                symlink(target, base.join(entry.file_name())).ok();
            }
        }
    }
    Ok(())
}
