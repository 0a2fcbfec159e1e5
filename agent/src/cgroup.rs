//! Resource figures from the kernel's cgroup files, v1 (one hierarchy per
//! controller, as on the lab hosts) and v2 (the unified hierarchy). The
//! parsers are pure; [`Cgroups`] only finds and reads the files.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use berth_model::metrics::{ContainerMetrics, Pressure};

/// Which cgroup layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2: every controller's files in one directory per cgroup.
    V2 {
        /// Where the unified hierarchy is mounted.
        root: PathBuf,
    },
    /// cgroup v1: one mount per controller under `root`.
    V1 {
        /// Usually `/sys/fs/cgroup`.
        root: PathBuf,
    },
}

impl Cgroups {
    /// Looks at `/sys/fs/cgroup`: v2 when it is the unified hierarchy
    /// itself, v1 otherwise (a hybrid host's `unified` mount has no
    /// controllers, so v1 is where the figures are).
    pub fn detect() -> Self {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// [`Cgroups::detect`] under another root.
    pub fn detect_at(root: &Path) -> Self {
        if root.join("cgroup.controllers").is_file() {
            Self::V2 { root: root.into() }
        } else {
            Self::V1 { root: root.into() }
        }
    }

    /// Removes what is left of a removed pod's slice (`path` relative to
    /// the hierarchies' root, e.g. `berth.slice/berth-web.slice`). On v1,
    /// Docker makes the slice's directory in the controllers systemd does
    /// not manage (cpuset, freezer, ...) and nobody removes it when the
    /// slice stops. Only an empty cgroup can be removed, deepest first, so
    /// anything still running keeps its cgroup.
    pub fn remove_leftovers(&self, path: &str) -> Leftovers {
        let relative = path.trim_start_matches('/');
        let dirs: Vec<PathBuf> = match self {
            Self::V2 { root } => vec![root.join(relative)],
            Self::V1 { root } => std::fs::read_dir(root)
                .map(|mounts| {
                    mounts
                        .flatten()
                        .map(|mount| mount.path().join(relative))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Leftovers {
            removed: dirs.iter().map(|dir| remove_cgroup_tree(dir)).sum(),
            kept: dirs.iter().filter(|dir| dir.is_dir()).count(),
        }
    }

    /// The figures of the cgroup at `path` (relative to the hierarchy's
    /// root, e.g. `/berth.slice/berth-web.slice/berth-web-web.service`),
    /// its files kept open in `files` for the next read; `None` when the
    /// cgroup does not exist (the unit is not running).
    pub fn read(&self, files: &mut OpenFiles, name: &str, path: &str) -> Option<ContainerMetrics> {
        let relative = path.trim_start_matches('/');
        let mut m = ContainerMetrics {
            name: name.to_owned(),
            ..ContainerMetrics::default()
        };
        match self {
            Self::V2 { root } => {
                let dir = root.join(relative);
                let mut read = |file: &str| files.text(dir.join(file));
                m.memory_bytes = number(&read("memory.current")?)?;
                let stat = read("memory.stat").unwrap_or_default();
                let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
                m.memory_working_set_bytes = m.memory_bytes.saturating_sub(inactive);
                m.memory_peak_bytes = read("memory.peak").and_then(|p| number(&p));
                m.oom_kills = read("memory.events")
                    .and_then(|e| keyed(&e, "oom_kill"))
                    .unwrap_or(0);
                m.cpu_usec = read("cpu.stat")
                    .and_then(|s| keyed(&s, "usage_usec"))
                    .unwrap_or(0);
                m.pids = read("pids.current").and_then(|p| number(&p)).unwrap_or(0);
                let (r, w) = read("io.stat").map_or((0, 0), |s| io_stat_v2(&s));
                (m.io_read_bytes, m.io_write_bytes) = (r, w);
                m.pressure = match (
                    read("cpu.pressure"),
                    read("memory.pressure"),
                    read("io.pressure"),
                ) {
                    (Some(cpu), Some(memory), Some(io)) => Some(Pressure {
                        cpu: some_avg10(&cpu).unwrap_or(0),
                        memory: some_avg10(&memory).unwrap_or(0),
                        io: some_avg10(&io).unwrap_or(0),
                    }),
                    _ => None,
                };
            }
            Self::V1 { root } => {
                let mut read = |controller: &str, file: &str| {
                    files.text(root.join(controller).join(relative).join(file))
                };
                m.memory_bytes = number(&read("memory", "memory.usage_in_bytes")?)?;
                let stat = read("memory", "memory.stat").unwrap_or_default();
                let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
                m.memory_working_set_bytes = m.memory_bytes.saturating_sub(inactive);
                m.memory_peak_bytes =
                    read("memory", "memory.max_usage_in_bytes").and_then(|p| number(&p));
                m.oom_kills = read("memory", "memory.oom_control")
                    .and_then(|o| keyed(&o, "oom_kill"))
                    .unwrap_or(0);
                m.cpu_usec = read("cpuacct", "cpuacct.usage")
                    .and_then(|u| number(&u))
                    .map_or(0, |ns| ns / 1000);
                m.pids = read("pids", "pids.current")
                    .and_then(|p| number(&p))
                    .unwrap_or(0);
                let (r, w) = read("blkio", "blkio.throttle.io_service_bytes_recursive")
                    .map_or((0, 0), |s| blkio_v1(&s));
                (m.io_read_bytes, m.io_write_bytes) = (r, w);
                // PSI is a cgroup v2 feature.
                m.pressure = None;
            }
        }
        Some(m)
    }
}

/// What [`Cgroups::remove_leftovers`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    /// Cgroups removed, at any depth.
    pub removed: usize,
    /// The slice's cgroups still there, one per hierarchy at most: a
    /// process in them had not yet gone.
    pub kept: usize,
}

/// Cgroup files kept open from one sample to the next. Read again from its
/// start, an open cgroup file gives the figures of that moment; opening it
/// walks sysfs each time, which with 100 pods sampled every 10 s was a
/// sixth of an idle agent's CPU. A file whose cgroup went away answers
/// ENODEV: it is closed and opened again once (the unit may have started
/// anew in a new cgroup). Files not read in a sample are closed by
/// [`OpenFiles::close_unread`].
#[derive(Debug)]
pub struct OpenFiles {
    /// Each open file, and whether it was read since the last sweep.
    open: HashMap<PathBuf, (File, bool)>,
    /// How many files may stay open: half the descriptors this process
    /// may have, so sockets and the rest never run short.
    budget: usize,
}

impl Default for OpenFiles {
    fn default() -> Self {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Self::with_budget(
            limit.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX)),
        )
    }
}

impl OpenFiles {
    /// At most `budget` files open at once; past it, files are opened and
    /// closed at each read, as before.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            open: HashMap::new(),
            budget,
        }
    }

    /// The text of the cgroup file at `path`; `None` if it cannot be read.
    fn text(&mut self, path: PathBuf) -> Option<String> {
        if let Some((file, read)) = self.open.get_mut(&path) {
            if let Some(text) = read_from_start(file) {
                *read = true;
                return Some(text);
            }
            self.open.remove(&path);
        }
        let file = File::open(&path).ok()?;
        let text = read_from_start(&file)?;
        if self.open.len() < self.budget {
            self.open.insert(path, (file, true));
        }
        Some(text)
    }

    /// Closes the files not read since the last call: those of pods gone
    /// or stopped.
    pub fn close_unread(&mut self) {
        self.open.retain(|_, (_, read)| std::mem::take(read));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

/// The whole text of `file`, read from its start whatever was read before.
fn read_from_start(file: &File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut text = Vec::with_capacity(256);
    let mut chunk = [0_u8; 4096];
    loop {
        match file.read_at(&mut chunk, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

/// Removes the cgroup at `dir` and the cgroups below it, deepest first
/// (`rmdir` is how a cgroup goes; its files go with it). A cgroup that is
/// still in use refuses and stays.
fn remove_cgroup_tree(dir: &Path) -> usize {
    let Ok(children) = std::fs::read_dir(dir) else {
        return 0;
    };
    let below: usize = children
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| remove_cgroup_tree(&entry.path()))
        .sum();
    below + usize::from(std::fs::remove_dir(dir).is_ok())
}

/// A file holding one number (`max` reads as absent).
pub fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (memory.stat,
/// cpu.stat, memory.events, memory.oom_control).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Bytes read and written, summed over devices, from v2 `io.stat`
/// (`8:0 rbytes=1 wbytes=2 rios=...`).
pub fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut read, mut written) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            written += v.parse::<u64>().unwrap_or(0);
        }
    }
    (read, written)
}

/// Bytes read and written, summed over devices, from v1
/// `blkio.throttle.io_service_bytes_recursive` (`8:0 Read 4096`).
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut read, mut written) = (0u64, 0u64);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(_device), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let value = value.parse::<u64>().unwrap_or(0);
        match op {
            "Read" => read += value,
            "Write" => written += value,
            _ => {}
        }
    }
    (read, written)
}

/// `avg10` of the `some` line of a PSI file, in hundredths of a percent.
pub fn some_avg10(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let value = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    let fraction = format!("{fraction:0<2}");
    Some(whole.parse::<u32>().ok()? * 100 + fraction[..2].parse::<u32>().ok()?)
}

/// `MemAvailable` of `/proc/meminfo`, bytes.
pub fn memory_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let kib = l
            .strip_prefix("MemAvailable:")?
            .trim()
            .trim_end_matches("kB");
        kib.trim().parse::<u64>().ok().map(|k| k * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_cgroups_of_a_slice_go_deepest_first_in_every_hierarchy() {
        let root = std::env::temp_dir().join(format!("berth-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for controller in ["cpuset", "freezer"] {
            std::fs::create_dir_all(
                root.join(controller)
                    .join("berth.slice/berth-web.slice/abc"),
            )
            .expect("scratch cgroups");
        }
        std::fs::create_dir_all(root.join("pids/berth.slice/berth-other.slice")).expect("scratch");
        let cgroups = Cgroups::V1 { root: root.clone() };
        let busy = root.join("freezer/berth.slice/berth-web.slice/abc");
        std::fs::write(busy.join("tasks"), "1").expect("a file keeps its directory");
        assert_eq!(
            cgroups.remove_leftovers("/berth.slice/berth-web.slice"),
            Leftovers {
                removed: 2,
                kept: 1
            }
        );
        std::fs::remove_file(busy.join("tasks")).expect("scratch");
        assert_eq!(
            cgroups.remove_leftovers("/berth.slice/berth-web.slice"),
            Leftovers {
                removed: 2,
                kept: 0
            }
        );
        assert!(!root.join("cpuset/berth.slice/berth-web.slice").exists());
        assert!(root.join("cpuset/berth.slice").is_dir(), "the parent stays");
        assert!(root.join("pids/berth.slice/berth-other.slice").is_dir());
        assert_eq!(
            cgroups.remove_leftovers("berth.slice/berth-web.slice"),
            Leftovers {
                removed: 0,
                kept: 0
            }
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn reads_keyed_files() {
        let stat = "cache 10\nrss 20\ntotal_inactive_file 4096\ntotal_rss 30\n";
        assert_eq!(keyed(stat, "total_inactive_file"), Some(4096));
        assert_eq!(keyed(stat, "rss"), Some(20));
        assert_eq!(keyed(stat, "missing"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(2));
        assert_eq!(number("max\n"), None);
        assert_eq!(number("123\n"), Some(123));
    }

    #[test]
    fn sums_io_over_devices() {
        let v2 = "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n\
                  8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(io_stat_v2(v2), (101, 202));
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n";
        assert_eq!(blkio_v1(v1), (4096, 8192));
    }

    #[test]
    fn reads_pressure() {
        let psi = "some avg10=1.53 avg60=0.20 avg300=0.00 total=1234\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_avg10(psi), Some(153));
        assert_eq!(some_avg10("some avg10=12.5 avg60=0 total=1"), Some(1250));
        assert_eq!(some_avg10("full avg10=1.00"), None);
    }

    #[test]
    fn reads_available_memory() {
        let meminfo = "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(memory_available(meminfo), Some(8_192_000_000));
    }

    #[test]
    fn detects_the_layout() {
        // The source tree has no cgroup.controllers: v1.
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(matches!(Cgroups::detect_at(here), Cgroups::V1 { .. }));
        let mut files = OpenFiles::default();
        assert!(Cgroups::detect_at(here)
            .read(&mut files, "x", "/nowhere")
            .is_none());
    }

    #[test]
    fn open_files_read_from_the_start_each_time_and_close_when_unread() {
        let dir = crate::fakes::ScratchDir::new("cgroup-files");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "1\n").expect("write a");
        std::fs::write(&b, "2\n").expect("write b");
        let mut files = OpenFiles::default();
        assert_eq!(files.text(a.clone()).as_deref(), Some("1\n"));
        assert_eq!(files.text(b.clone()).as_deref(), Some("2\n"));
        assert_eq!(files.len(), 2);
        // Rewritten in place, as the kernel does: the open file reads the
        // new text, from its start.
        std::fs::write(&a, "10\n").expect("rewrite a");
        assert_eq!(files.text(a.clone()).as_deref(), Some("10\n"));
        assert_eq!(files.len(), 2, "read through the file already open");
        files.close_unread();
        assert_eq!(files.len(), 2, "both were read since the start");
        assert_eq!(files.text(a.clone()).as_deref(), Some("10\n"));
        files.close_unread();
        assert_eq!(files.len(), 1, "b was not read since the last sweep");
        assert_eq!(files.text(dir.path().join("none")), None);
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn past_the_budget_files_are_read_and_closed() {
        let dir = crate::fakes::ScratchDir::new("cgroup-files");
        let mut files = OpenFiles::with_budget(1);
        for name in ["a", "b", "c"] {
            let path = dir.path().join(name);
            std::fs::write(&path, name).expect("write");
            assert_eq!(files.text(path).as_deref(), Some(name));
        }
        assert_eq!(files.len(), 1);
    }
}
