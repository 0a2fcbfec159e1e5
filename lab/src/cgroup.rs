//! Each host gets its own subtree in every cgroup hierarchy before it
//! unshares its cgroup namespace; otherwise the hosts' systemd instances
//! would fight over one `system.slice`.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One mounted cgroup hierarchy of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the machine mounts it (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fs_type: String,
    /// Mount options that select the hierarchy (`memory`, `name=systemd`).
    pub options: String,
}

impl Hierarchy {
    /// The mount point relative to `/sys/fs/cgroup` (empty for a pure v2 host).
    pub fn relative(&self) -> &Path {
        self.mount_point
            .strip_prefix(CGROUP_ROOT)
            .unwrap_or(Path::new(""))
    }

    fn is_cpuset(&self) -> bool {
        self.fs_type == "cgroup" && self.options.split(',').any(|o| o == "cpuset")
    }
}

/// Lists the machine's cgroup hierarchies from `/proc/self/mountinfo`.
pub fn hierarchies() -> anyhow::Result<Vec<Hierarchy>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// Picks the cgroup mounts under `/sys/fs/cgroup` out of a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut right = right.split(' ');
        let fs_type = right.next().unwrap_or_default();
        let super_options = right.nth(1).unwrap_or_default();
        if !(fs_type == "cgroup" || fs_type == "cgroup2") || !mount_point.starts_with(CGROUP_ROOT) {
            continue;
        }
        let options = super_options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro"))
            .collect::<Vec<_>>()
            .join(",");
        let hierarchy = Hierarchy {
            mount_point: PathBuf::from(mount_point),
            fs_type: fs_type.to_owned(),
            options,
        };
        if !found.contains(&hierarchy) {
            found.push(hierarchy);
        }
    }
    found
}

/// The directory that holds all of one lab's hosts in a hierarchy.
pub fn lab_dir(hierarchy: &Hierarchy, lab: &str) -> PathBuf {
    hierarchy.mount_point.join(format!("berth-lab.{lab}"))
}

/// Creates the host's subtree in every hierarchy. cpuset needs its CPUs and
/// memory nodes filled in at each new level before a process may join.
pub fn create_host_subtree(hierarchies: &[Hierarchy], lab: &str, host: &str) -> anyhow::Result<()> {
    for h in hierarchies {
        let lab_dir = lab_dir(h, lab);
        for dir in [lab_dir.clone(), lab_dir.join(host)] {
            if !dir.exists() {
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            if h.is_cpuset() {
                let parent = dir.parent().context("cgroup dir without parent")?;
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = fs::read_to_string(parent.join(file))?;
                    fs::write(dir.join(file), value.trim())
                        .with_context(|| format!("writing {}", dir.join(file).display()))?;
                }
            }
        }
    }
    Ok(())
}

/// The `cgroup.procs` files the host's first process joins, one per hierarchy.
pub fn host_procs_files(hierarchies: &[Hierarchy], lab: &str, host: &str) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| lab_dir(h, lab).join(host).join("cgroup.procs"))
        .collect()
}

/// PIDs of live (non-zombie) processes anywhere in the lab's subtree of the
/// named-systemd or unified hierarchy.
pub fn live_pids(hierarchies: &[Hierarchy], lab: &str, host: Option<&str>) -> Vec<i32> {
    let mut pids = Vec::new();
    for h in hierarchies {
        let mut dir = lab_dir(h, lab);
        if let Some(host) = host {
            dir = dir.join(host);
        }
        collect_pids(&dir, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|pid| is_alive(*pid));
    pids
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Whether `pid` is a process that has not exited (zombies count as exited:
/// this machine's PID 1 does not always reap orphans).
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Removes a subtree bottom-up, waiting briefly for exiting tasks to leave.
fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc_ebusy()) => {
                sleep(Duration::from_millis(50));
            }
            Err(e) => bail!("removing cgroup {}: {e}", dir.display()),
        }
    }
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

/// Removes one host's subtree from every hierarchy.
pub fn remove_host_subtree(hierarchies: &[Hierarchy], lab: &str, host: &str) -> anyhow::Result<()> {
    for h in hierarchies {
        remove_tree(&lab_dir(h, lab).join(host))?;
    }
    Ok(())
}

/// Removes the lab's whole subtree from every hierarchy.
pub fn remove_lab(hierarchies: &[Hierarchy], lab: &str) -> anyhow::Result<()> {
    for h in hierarchies {
        remove_tree(&lab_dir(h, lab))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_hierarchies() {
        let text = "\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 29 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let found = parse_mountinfo(text);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].options, "cpu");
        assert_eq!(found[1].options, "name=systemd");
        assert_eq!(found[2].fs_type, "cgroup2");
        assert_eq!(found[2].relative(), Path::new("unified"));
    }

    #[test]
    fn finds_pure_v2() {
        let text = "30 29 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let found = parse_mountinfo(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].relative(), Path::new(""));
        assert_eq!(found[0].options, "nsdelegate");
    }
}
