//! Opening a path without following a symlink anywhere on the way.
//!
//! `openat2(RESOLVE_NO_SYMLINKS)` does it in one call, but it is not always
//! there: kernels before 5.6 lack it, and systemd's `RestrictSUIDSGID=`
//! filters it out with `ENOSYS` (its seccomp filter cannot see the mode
//! inside `struct open_how`, so it blocks the call and lets programs fall
//! back to `openat`). The fallback walks the path one component at a time
//! with `O_PATH | O_NOFOLLOW` and refuses a component that is a symlink,
//! which gives the same answers.

use std::ffi::OsStr;
use std::os::fd::RawFd;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// An `O_PATH` descriptor, closed when dropped.
#[derive(Debug)]
pub struct PathFd(RawFd);

impl PathFd {
    /// The descriptor, still owned by `self`.
    pub fn raw(&self) -> RawFd {
        self.0
    }
}

impl Drop for PathFd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

const FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_CLOEXEC);

/// Opens `path` as an `O_PATH` descriptor following no symlink: from `/`
/// when it is absolute, else from `dir`, and never above where it starts.
/// A symlink anywhere gives `ELOOP`, a `..` component `EXDEV`, a missing
/// component `ENOENT`. Components are resolved left to right, so a
/// missing one means none before it was a symlink.
pub fn open(dir: RawFd, path: &Path) -> Result<PathFd, Errno> {
    let (start, relative) = match path.strip_prefix("/") {
        Ok(relative) => (
            PathFd(nix::fcntl::open(
                "/",
                FLAGS | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?),
            relative,
        ),
        Err(_) => (
            PathFd(nix::fcntl::fcntl(
                dir,
                nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0),
            )?),
            path,
        ),
    };
    if relative.as_os_str().is_empty() {
        return Ok(start);
    }
    let how = OpenHow::new()
        .flags(FLAGS)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
    match openat2(start.raw(), relative, how) {
        Ok(fd) => Ok(PathFd(fd)),
        Err(Errno::ENOSYS) => walk(start, relative),
        Err(errno) => Err(errno),
    }
}

/// The fallback: one `openat(O_NOFOLLOW)` per component.
fn walk(mut current: PathFd, relative: &Path) -> Result<PathFd, Errno> {
    for component in relative.components() {
        let name: &OsStr = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Errno::EXDEV)
            }
        };
        let next = PathFd(openat(
            Some(current.raw()),
            name,
            FLAGS | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?);
        // With O_PATH | O_NOFOLLOW a symlink is opened itself, not refused.
        let kind = SFlag::from_bits_truncate(fstat(next.raw())?.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            return Err(Errno::ELOOP);
        }
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-no-symlinks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/deeper")).expect("scratch directories");
        std::os::unix::fs::symlink("/etc", dir.join("link")).expect("a symlink");
        std::os::unix::fs::symlink(dir.join("real"), dir.join("real/deeper/up"))
            .expect("a symlink");
        dir
    }

    #[test]
    fn symlinks_anywhere_are_refused_by_openat2_and_by_the_walk_alike() {
        let dir = scratch("links");
        let start = || {
            PathFd(nix::fcntl::open(&dir, FLAGS | OFlag::O_DIRECTORY, Mode::empty()).expect("dir"))
        };
        for (path, want) in [
            ("real", Ok(())),
            ("real/deeper", Ok(())),
            ("real/missing/more", Err(Errno::ENOENT)),
            ("link", Err(Errno::ELOOP)),
            ("link/shadow", Err(Errno::ELOOP)),
            ("real/deeper/up", Err(Errno::ELOOP)),
            ("real/deeper/up/deeper", Err(Errno::ELOOP)),
            ("../escape", Err(Errno::EXDEV)),
        ] {
            let fast = open(start().raw(), Path::new(path)).map(drop);
            let slow = walk(start(), Path::new(path)).map(drop);
            assert_eq!((fast, slow), (want, want), "{path}");
        }
        assert!(open(-1, &dir.join("real/deeper")).is_ok());
        assert_eq!(open(-1, &dir.join("link/x")).map(drop), Err(Errno::ELOOP));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
