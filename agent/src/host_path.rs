//! Host paths a pod mounts, checked on disk. The allow-list is a list of
//! path prefixes, and a prefix says nothing about where a symlink below it
//! leads (`/srv/berth/link -> /etc`), so every component of the path is
//! resolved with `openat2(RESOLVE_NO_SYMLINKS)`: the allowed directory from
//! `/`, the rest beneath it (`RESOLVE_BENEATH`). A symlink anywhere is
//! refused. berth-shim checks the same again right before each start,
//! since a directory can be swapped for a symlink after this check.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

/// Why a host path may not be mounted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPathError {
    /// No allowed directory holds it.
    #[error("{path} is not in the agent's host-path-allow list ({allowed})")]
    NotAllowed {
        /// The host path.
        path: String,
        /// The allow-list, joined, or `empty`.
        allowed: String,
    },
    /// It is a symlink or passes through one.
    #[error("{path} is or passes through a symlink; host paths must not contain symlinks")]
    Symlink {
        /// The host path.
        path: String,
    },
    /// The allowed directory itself passes through a symlink.
    #[error("{path}: the allowed directory {allowed} passes through a symlink; name its real path in host-path-allow")]
    AllowedDirSymlink {
        /// The host path.
        path: String,
        /// The allowed directory.
        allowed: String,
    },
    /// The path could not be resolved for another reason.
    #[error("{path}: {errno}")]
    Unresolvable {
        /// The host path.
        path: String,
        /// What the kernel said.
        errno: Errno,
    },
}

/// Checks that `path` lies in one of the `allowed` directories and that
/// neither the directory nor anything below it on the way to `path` is a
/// symlink. A path that does not exist (yet) passes if what exists of it
/// does: Docker creates the rest as plain directories.
pub fn check(allowed: &[PathBuf], path: &str) -> Result<(), HostPathError> {
    let host_path = Path::new(path);
    let Some(root) = allowed
        .iter()
        .filter(|root| host_path.starts_with(root))
        .max_by_key(|root| root.as_os_str().len())
    else {
        let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
        return Err(HostPathError::NotAllowed {
            path: path.to_owned(),
            allowed: if list.is_empty() {
                "empty".to_owned()
            } else {
                list.join(", ")
            },
        });
    };
    // No O_NOFOLLOW: with O_PATH it would hand back a final symlink itself
    // instead of refusing it.
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let root_fd = match openat2(
        libc_at_fdcwd(),
        root.as_path(),
        OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(HostPathError::AllowedDirSymlink {
                path: path.to_owned(),
                allowed: root.display().to_string(),
            })
        }
        Err(errno) => {
            return Err(HostPathError::Unresolvable {
                path: path.to_owned(),
                errno,
            })
        }
    };
    let relative = host_path.strip_prefix(root).unwrap_or(Path::new(""));
    let result = if relative.as_os_str().is_empty() {
        Ok(())
    } else {
        let opened = openat2(
            root_fd,
            relative,
            OpenHow::new()
                .flags(flags)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
        );
        match opened {
            Ok(fd) => {
                let _ = nix::unistd::close(fd);
                Ok(())
            }
            // Components are resolved left to right: a missing one means
            // none before it was a symlink.
            Err(Errno::ENOENT) => Ok(()),
            // EXDEV: it would leave the allowed directory.
            Err(Errno::ELOOP | Errno::EXDEV) => Err(HostPathError::Symlink {
                path: path.to_owned(),
            }),
            Err(errno) => Err(HostPathError::Unresolvable {
                path: path.to_owned(),
                errno,
            }),
        }
    };
    let _ = nix::unistd::close(root_fd);
    result
}

/// `AT_FDCWD`; the root is absolute, so the directory does not matter.
fn libc_at_fdcwd() -> std::os::fd::RawFd {
    nix::libc::AT_FDCWD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-host-path-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("allowed/data")).unwrap();
        dir
    }

    #[test]
    fn plain_directories_pass_and_missing_ones_too() {
        let dir = scratch("plain");
        let allowed = vec![dir.join("allowed")];
        let at = |rest: &str| format!("{}/{rest}", dir.display());
        assert_eq!(check(&allowed, &at("allowed")), Ok(()));
        assert_eq!(check(&allowed, &at("allowed/data")), Ok(()));
        assert_eq!(check(&allowed, &at("allowed/data/not/yet")), Ok(()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn symlinks_anywhere_are_refused() {
        let dir = scratch("links");
        let allowed = vec![dir.join("allowed")];
        let at = |rest: &str| format!("{}/{rest}", dir.display());
        std::os::unix::fs::symlink("/etc", dir.join("allowed/link")).unwrap();
        std::os::unix::fs::symlink("data", dir.join("allowed/inside")).unwrap();
        for path in [
            at("allowed/link"),
            at("allowed/link/ssl"),
            at("allowed/inside"),
        ] {
            assert_eq!(
                check(&allowed, &path),
                Err(HostPathError::Symlink { path: path.clone() }),
                "{path}"
            );
        }
        std::os::unix::fs::symlink(dir.join("allowed"), dir.join("alias")).unwrap();
        let through_alias = vec![dir.join("alias")];
        assert!(matches!(
            check(&through_alias, &at("alias/data")),
            Err(HostPathError::AllowedDirSymlink { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn paths_outside_the_list_are_refused_by_prefix() {
        let allowed = vec![PathBuf::from("/srv/data")];
        assert_eq!(
            check(&allowed, "/srv/database").unwrap_err().to_string(),
            "/srv/database is not in the agent's host-path-allow list (/srv/data)"
        );
        assert!(matches!(
            check(&[], "/etc"),
            Err(HostPathError::NotAllowed { allowed, .. }) if allowed == "empty"
        ));
    }
}
