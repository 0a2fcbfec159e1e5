//! Small state files only root may read (pod records, journal cursors),
//! written so that a crash leaves either the old content or the new. The
//! one implementation lives in berth-client, next to the node's credential
//! it also keeps.

use std::path::Path;

pub use berth_client::private_file::read_line;

/// Replaces `path` with `bytes`, mode 0600, atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(berth_client::private_file::write(path, bytes)?)
}
