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
    /// Where the cluster state lives: `[store]`.
    pub store: StoreConfig,
    /// Retention of container logs: `[logs]`.
    pub logs: LogsConfig,
}

/// The `[logs]` table: how long and how much of the container logs the
/// master keeps (in `<state-dir>/logs.db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Lines older than this many hours are dropped.
    pub max_age_hours: u64,
    /// The oldest lines are dropped while the database is larger.
    pub max_megabytes: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            max_age_hours: 7 * 24,
            max_megabytes: 1024,
        }
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            state_dir: PathBuf::from("/var/lib/berth/master"),
            public_url: None,
            node_grace_secs: 3,
            controller_interval_ms: 250,
            store: StoreConfig::default(),
            logs: LogsConfig::default(),
        }
    }
}

/// The `[store]` table: which backend keeps the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (SQLite in `<state-dir>/store.db`) or `etcd`.
    pub backend: StoreBackend,
    /// etcd client URLs, such as `http://127.0.0.1:2379`; used by the etcd
    /// backend.
    pub etcd_endpoints: Vec<String>,
    /// The etcd key prefix every key of this cluster is stored under, so
    /// several clusters can share one etcd.
    pub etcd_prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_prefix: "/berth".into(),
        }
    }
}

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// One SQLite file in the state directory: nothing else to run.
    #[default]
    Embedded,
    /// An etcd v3 cluster.
    Etcd,
}

impl StoreConfig {
    /// What is wrong with the settings, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        // Checked whatever the backend, so a typo shows up before the day
        // someone switches to etcd.
        if !self.etcd_prefix.starts_with('/') {
            return Err(format!(
                "store.etcd-prefix: must be an absolute path, got {:?}",
                self.etcd_prefix
            ));
        }
        for endpoint in &self.etcd_endpoints {
            // TLS to etcd is not built in yet; an https URL would fail at
            // connect time with a less clear message.
            let host = endpoint.strip_prefix("http://").unwrap_or_default();
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!(
                    "store.etcd-endpoints: {endpoint:?} is not an http:// URL with a host"
                ));
            }
        }
        if self.backend == StoreBackend::Etcd && self.etcd_endpoints.is_empty() {
            return Err(
                "store.etcd-endpoints: the etcd backend needs at least one endpoint".into(),
            );
        }
        Ok(())
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
        config.store.check().map_err(invalid)?;
        if config.logs.max_age_hours == 0 {
            return Err(invalid("logs.max-age-hours: must be at least 1".into()));
        }
        if config.logs.max_megabytes == 0 {
            return Err(invalid("logs.max-megabytes: must be at least 1".into()));
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

#[cfg(test)]
mod tests {
    use super::{MasterConfig, StoreBackend, StoreConfig};

    fn parse(text: &str) -> Result<MasterConfig, String> {
        let config: MasterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.store.check()?;
        Ok(config)
    }

    #[test]
    fn store_defaults_to_embedded() {
        let config = parse("").expect("empty config");
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!(config.store.backend, StoreBackend::Embedded);
    }

    #[test]
    fn store_table_selects_etcd() {
        let config = parse(
            "[store]\nbackend = \"etcd\"\n\
             etcd-endpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n\
             etcd-prefix = \"/prod\"\n",
        )
        .expect("etcd config");
        assert_eq!(config.store.backend, StoreBackend::Etcd);
        assert_eq!(config.store.etcd_endpoints.len(), 2);
        assert_eq!(config.store.etcd_prefix, "/prod");
    }

    #[test]
    fn store_errors_name_the_setting() {
        let cases = [
            (
                "[store]\nbackend = \"etcd\"\netcd-endpoints = []\n",
                "store.etcd-endpoints",
            ),
            ("[store]\netcd-prefix = \"berth\"\n", "store.etcd-prefix"),
            (
                "[store]\netcd-endpoints = [\"https://e:2379\"]\n",
                "store.etcd-endpoints",
            ),
            ("[store]\nbackend = \"consul\"\n", "backend"),
            ("[store]\netcd-prefx = \"/b\"\n", "etcd-prefx"),
        ];
        for (text, setting) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(setting), "{text}: {err}");
        }
    }
}
