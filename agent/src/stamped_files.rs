//! Files as last read, each kept with the stamp of the file it was read
//! from (device, inode, size, modification and change times), so that the
//! periodic resync of idle pods stats their unit files and records but
//! opens and parses none of them again.
//!
//! The agent replaces its files by rename, so a rewrite is a new inode. An
//! edit in place changes the size or the times; but the kernel's file times
//! are coarse (a clock tick), so a file changed within [`RACY`] of being
//! read is not kept: an edit right after the read could carry the same
//! stamp. Git calls such files "racily clean" and does the same.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How recent a change leaves a file's stamp in doubt.
pub const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed longer than [`RACY`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        let racy_ns = i128::try_from(RACY.as_nanos()).unwrap_or(i128::MAX);
        self.modified_ns.max(self.changed_ns) + racy_ns < now_ns
    }
}

/// Files parsed into `T`, by path, each with the stamp it was read at.
#[derive(Debug)]
pub struct StampedFiles<T> {
    files: Mutex<HashMap<PathBuf, (Stamp, T)>>,
}

impl<T> Default for StampedFiles<T> {
    fn default() -> Self {
        Self {
            files: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> StampedFiles<T> {
    fn files(&self) -> MutexGuard<'_, HashMap<PathBuf, (Stamp, T)>> {
        // Entries are whole values: a panic elsewhere leaves none half-made.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file at `path`, parsed by `parse` when it changed since it was
    /// last read (or was never read); `io` makes a read's error the
    /// caller's.
    pub fn read<E>(
        &self,
        path: &Path,
        parse: impl FnOnce(String) -> Result<T, E>,
        io: impl Fn(std::io::Error) -> E,
    ) -> Result<T, E> {
        self.read_as_of(SystemTime::now(), path, parse, io)
    }

    /// [`Self::read`], with the file kept only if its stamp is settled
    /// at `now`.
    fn read_as_of<E>(
        &self,
        now: SystemTime,
        path: &Path,
        parse: impl FnOnce(String) -> Result<T, E>,
        io: impl Fn(std::io::Error) -> E,
    ) -> Result<T, E> {
        // Stamped before the read: a change during it gives a newer
        // stamp next time, and the file is read again then.
        let stamp = Stamp::of(&std::fs::metadata(path).map_err(&io)?);
        if let Some((kept, value)) = self.files().get(path) {
            if *kept == stamp {
                return Ok(value.clone());
            }
        }
        let value = parse(std::fs::read_to_string(path).map_err(&io)?)?;
        let mut files = self.files();
        if stamp.settled(now) {
            files.insert(path.to_owned(), (stamp, value.clone()));
        } else {
            files.remove(path);
        }
        Ok(value)
    }

    /// Forgets the files of `dir` that are not in `present` (they went).
    pub fn keep_only(&self, dir: &Path, present: &HashSet<PathBuf>) {
        self.files()
            .retain(|path, _| path.parent() != Some(dir) || present.contains(path));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fs;

    use super::*;
    use crate::fakes::ScratchDir;

    /// A clock past the doubt of any file written in the test.
    fn later() -> SystemTime {
        SystemTime::now() + RACY + Duration::from_secs(1)
    }

    /// Reads `path` as of `now`, counting parses in `parsed`.
    fn read(
        files: &StampedFiles<String>,
        now: SystemTime,
        path: &Path,
        parsed: &Cell<u32>,
    ) -> String {
        let parse = |text| {
            parsed.set(parsed.get() + 1);
            Ok::<_, std::io::Error>(text)
        };
        files.read_as_of(now, path, parse, |e| e).unwrap()
    }

    #[test]
    fn a_file_changed_just_now_is_read_every_time() {
        let dir = ScratchDir::new("stamped-racy");
        let path = dir.path().join("a.service");
        fs::write(&path, "one").unwrap();
        let files = StampedFiles::default();
        let parsed = Cell::new(0);
        for _ in 0..2 {
            assert_eq!(read(&files, SystemTime::now(), &path, &parsed), "one");
        }
        assert_eq!(parsed.get(), 2, "its change is within RACY");
        assert!(files.files().is_empty());
    }

    #[test]
    fn a_settled_file_is_parsed_once_until_it_changes() {
        let dir = ScratchDir::new("stamped-settled");
        let path = dir.path().join("a.service");
        fs::write(&path, "one").unwrap();
        let files = StampedFiles::default();
        let parsed = Cell::new(0);
        assert_eq!(read(&files, later(), &path, &parsed), "one");
        assert_eq!(read(&files, later(), &path, &parsed), "one");
        assert_eq!(parsed.get(), 1, "unchanged: not read again");
        // Replaced by rename, as the agent writes: a new inode.
        let tmp = dir.path().join("a.service.tmp");
        fs::write(&tmp, "two").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(read(&files, later(), &path, &parsed), "two");
        // Edited in place.
        fs::write(&path, "three!").unwrap();
        assert_eq!(read(&files, later(), &path, &parsed), "three!");
        assert_eq!(parsed.get(), 3);
    }

    #[test]
    fn files_that_went_are_forgotten() {
        let dir = ScratchDir::new("stamped-gone");
        let files = StampedFiles::default();
        let parsed = Cell::new(0);
        let a = dir.path().join("a.service");
        let b = dir.path().join("b.service");
        for path in [&a, &b] {
            fs::write(path, "x").unwrap();
            read(&files, later(), path, &parsed);
        }
        assert_eq!(files.files().len(), 2);
        files.keep_only(dir.path(), &HashSet::from([a.clone()]));
        assert_eq!(files.files().len(), 1);
        assert!(files.files().contains_key(&a));
    }
}
