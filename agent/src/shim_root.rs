//! The root directory the shims' units run in: a skeleton of empty mount
//! points and the merged-`/usr` links, which systemd fills, in each unit's
//! own mount namespace, with `/usr` and `/run` of the host read-only (and
//! a `/proc` of its own for a shim with network probes; see the unit
//! renderer's `push_shim_sandbox`). Nothing of the host is copied in; the
//! agent makes it when it starts, before it writes any unit that names it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Under the agent's state directory.
pub const DIR: &str = "shim-root";

/// Mount points systemd mounts on (binds, API file systems, the
/// sandbox's tmpfs) and would otherwise make itself.
const MOUNT_POINTS: &[&str] = &[
    "usr", "run", "proc", "sys", "dev", "tmp", "var/tmp", "home", "root", "etc",
];

/// Links a merged-`/usr` system has at its root (a dynamically linked
/// shim finds its loader at `/lib64`), and `/var/run` for sockets named
/// under it.
const LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("var/run", "../run"),
];

/// Makes the skeleton under `state_dir` (idempotent) and returns its path,
/// or `None` when the engine's socket is not under `/run`, the one part of
/// the host's runtime state the root binds in (the shim then runs in the
/// host's root).
pub fn prepare(state_dir: &Path, engine_socket: &Path) -> io::Result<Option<PathBuf>> {
    if !(engine_socket.starts_with("/run") || engine_socket.starts_with("/var/run")) {
        return Ok(None);
    }
    let root = state_dir.join(DIR);
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true).mode(0o755);
    dirs.create(&root)?;
    // Only root may change what every shim sees as `/`.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
    for dir in MOUNT_POINTS {
        dirs.create(root.join(dir))?;
    }
    for (link, target) in LINKS {
        match std::os::unix::fs::symlink(target, root.join(link)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    Ok(Some(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skeleton_holds_mount_points_and_links_only_and_can_be_made_again() {
        let state = std::env::temp_dir().join(format!("berth-shim-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let root = prepare(&state, Path::new("/run/docker.sock"))
            .unwrap()
            .expect("a socket under /run");
        assert_eq!(root, state.join(DIR));
        prepare(&state, Path::new("/var/run/docker.sock")).expect("again, over itself");
        for dir in MOUNT_POINTS {
            let entries = std::fs::read_dir(root.join(dir)).unwrap().count();
            assert_eq!(entries, 0, "{dir} is an empty mount point");
        }
        assert_eq!(
            std::fs::read_link(root.join("lib64")).unwrap(),
            Path::new("usr/lib64")
        );
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn a_socket_outside_run_keeps_the_host_root() {
        let state = std::env::temp_dir().join(format!("berth-shim-root-x-{}", std::process::id()));
        assert_eq!(
            prepare(&state, Path::new("/srv/docker.sock")).unwrap(),
            None
        );
        assert!(!state.exists(), "nothing made");
    }
}
