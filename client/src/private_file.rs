//! Small state files only root may read (pod records, the node's
//! credential, journal cursors), written so that a crash leaves either the
//! old content or the new, never a mix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A private file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing, syncing or renaming a file failed.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Syncing the directory (making the rename durable) failed.
    #[error("syncing {}", path.display())]
    Sync {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Replaces `path` with `bytes`, mode 0600: write a temporary file, fsync
/// it, rename it over `path`, fsync the directory.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Write { path, source }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(failed(tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed(tmp))?;
    std::fs::rename(tmp, path).map_err(failed(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| WriteError::Sync {
                path: dir.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// A one-line file's content without surrounding whitespace; `None` when
/// it is missing or empty (a journal cursor never saved).
pub fn read_line(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_are_private_and_replace_the_old_content() {
        // Under the workspace's target/, never the machine's /tmp.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tmp")
            .join(format!("client-private-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.cursor");
        assert_eq!(read_line(&path), None);
        write(&path, b"s=1;i=2\n").unwrap();
        write(&path, b"s=1;i=3\n").unwrap();
        assert_eq!(read_line(&path).as_deref(), Some("s=1;i=3"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
