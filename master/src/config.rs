//! The master's configuration: `/etc/berth/master.toml`, checked once at
//! start; every setting has a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the master looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/master.toml";

/// The master's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MasterConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// The store, the admin token and (later) the CA.
    pub state_dir: PathBuf,
    /// The URL agents and users reach the API at (printed in join
    /// commands); defaults to `http://<hostname>:<port>`.
    pub public_url: Option<String>,
    /// Seconds without a heartbeat before a node is NotReady.
    pub node_grace_secs: u64,
    /// Milliseconds between two controller rounds.
    pub controller_interval_ms: u64,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            state_dir: PathBuf::from("/var/lib/berth/master"),
            public_url: None,
            node_grace_secs: 3,
            controller_interval_ms: 250,
        }
    }
}

/// A configuration the master cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the setting.
    pub message: String,
}

impl MasterConfig {
    /// Reads and checks the configuration; a missing default file means all
    /// defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                String::new()
            }
            Err(e) => {
                return Err(ConfigError {
                    path: path.into(),
                    message: format!("reading: {e}"),
                })
            }
        };
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError {
            path: path.into(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError {
            path: path.into(),
            message,
        };
        if !config.state_dir.is_absolute() {
            return Err(invalid(format!(
                "state-dir: must be an absolute path, got {}",
                config.state_dir.display()
            )));
        }
        if config.node_grace_secs == 0 {
            return Err(invalid("node-grace-secs: must be at least 1".into()));
        }
        if config.controller_interval_ms == 0 {
            return Err(invalid("controller-interval-ms: must be at least 1".into()));
        }
        Ok(config)
    }

    /// The URL in join commands.
    pub fn public_url(&self, scheme: &str) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("{scheme}://{host}:{}", self.listen.port())
        })
    }
}
