//! The last check of a container's host paths, right before each start.
//! The agent refused symlinks when it accepted the pod, but a directory can
//! be swapped for a symlink afterwards (`mv data data.old; ln -s /etc
//! data`), and Docker would follow it on the next start. So every bind
//! source is resolved again without following symlinks (see
//! [`berth_shim::no_symlinks`]), and a symlink anywhere on the way refuses
//! the start.

use std::path::Path;

use berth_shim::no_symlinks;
use nix::errno::Errno;

/// Why a start is refused: `refused: ...`, which the unit's status and the
/// agent's `ps` show as the reason.
pub fn check(sources: &[String]) -> Result<(), String> {
    for source in sources {
        match no_symlinks::open(nix::libc::AT_FDCWD, Path::new(source)) {
            Ok(_) => {}
            // Left to right: nothing before the missing part was a link,
            // and Docker creates the rest as directories.
            Err(Errno::ENOENT) => {}
            Err(Errno::ELOOP | Errno::EXDEV) => {
                return Err(format!(
                    "refused: host path {source} is or passes through a symlink; host paths must not contain symlinks"
                ))
            }
            Err(errno) => return Err(format!("refused: host path {source}: {errno}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_directories_pass_symlinks_are_refused() {
        let dir = std::env::temp_dir().join(format!("berth-shim-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
        let at = |rest: &str| format!("{}/{rest}", dir.display());
        assert_eq!(check(&[at("data"), at("data/missing/too")]), Ok(()));
        let refused = check(&[at("data"), at("link")]).unwrap_err();
        assert!(refused.starts_with("refused: host path "), "{refused}");
        assert!(
            refused.contains("/link is or passes through a symlink"),
            "{refused}"
        );
        assert!(check(&[at("link/passwd")]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
