//! Host paths a pod mounts, checked on disk. The allow-list is a list of
//! path prefixes, and a prefix says nothing about where a symlink below it
//! leads (`/srv/berth/link -> /etc`), so every component of the path is
//! resolved without following symlinks ([`berth_shim::no_symlinks`]): the
//! allowed directory from `/`, the rest beneath it. A symlink anywhere is
//! refused. berth-shim checks the same again right before each start,
//! since a directory can be swapped for a symlink after this check.

use std::path::{Path, PathBuf};

use berth_shim::no_symlinks;
use nix::errno::Errno;

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
    let root_fd = match no_symlinks::open(nix::libc::AT_FDCWD, root) {
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
    match no_symlinks::open(root_fd.raw(), relative) {
        Ok(_) => Ok(()),
        // Components are resolved left to right: a missing one means none
        // before it was a symlink.
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
