//! The daemons' config files: TOML at a default path under `/etc/berth`,
//! where a missing default file means all defaults. Each daemon parses and
//! checks its own settings, once, before anything binds.

use std::path::Path;

/// The exit code of a daemon whose configuration is bad (`EX_USAGE`): a
/// mistake to fix, not a crash to restart from.
pub const BAD_CONFIG_EXIT_CODE: u8 = 64;

/// The text of the config file at `path`; empty (all defaults) when it is
/// missing and `path` is the daemon's `default` path. An explicitly named
/// file must exist.
pub fn read(path: &Path, default: &str) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(default) => {
            Ok(String::new())
        }
        read => read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_default_file_means_defaults() {
        let missing = "/nonexistent/berth/agent.toml";
        assert_eq!(read(Path::new(missing), missing).unwrap(), "");
        let error = read(Path::new(missing), "/etc/berth/agent.toml").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert!(read(Path::new(here), here)
            .unwrap()
            .contains("berth-daemon"));
    }
}
