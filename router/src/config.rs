//! The router's configuration: `/etc/berth/router.toml`, checked once at
//! start; every setting has a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the router looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/router.toml";

/// The router's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RouterConfig {
    /// The joined berth-agent's state directory: the router reads the
    /// master's URL, its CA and this node's credential from `master.json`
    /// there, so a host joins once for both roles.
    pub agent_state_dir: PathBuf,
    /// Port of plain HTTP routes.
    pub http_port: u16,
    /// Port of TLS routes (edge and passthrough, told apart by SNI).
    pub https_port: u16,
    /// The HAProxy binary (for `haproxy -c`).
    pub haproxy: PathBuf,
    /// The systemd unit running HAProxy; its `ExecStart=` reads
    /// `haproxy.cfg` in [`STATE_DIR`].
    pub haproxy_unit: String,
    /// `[master]`: the masters to follow, over the agent's list.
    pub master: MasterUrls,
}

/// `[master]` of the router's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MasterUrls {
    /// Every master's URL (HA masters), tried in turn when one is gone;
    /// empty for the masters the agent joined (`master.json`).
    pub urls: Vec<String>,
}

/// Where the router keeps HAProxy's configuration and the routes'
/// certificates (0700; certificates 0600). Fixed, because the HAProxy unit
/// names it too.
pub const STATE_DIR: &str = "/var/lib/berth/router";

/// HAProxy's runtime directory (the unit's `RuntimeDirectory=`): its admin
/// socket, its master CLI socket and the internal edge socket.
pub const RUNTIME_DIR: &str = "/run/berth-router-haproxy";

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            agent_state_dir: PathBuf::from("/var/lib/berth"),
            http_port: 80,
            https_port: 443,
            haproxy: PathBuf::from("/usr/sbin/haproxy"),
            haproxy_unit: "berth-router-haproxy.service".into(),
            master: MasterUrls::default(),
        }
    }
}

/// A configuration the router cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the setting.
    pub message: String,
}

impl RouterConfig {
    /// Reads and checks the configuration; a missing default file means
    /// all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            berth_daemon::config::read(path, DEFAULT_CONFIG_PATH).map_err(|e| ConfigError {
                path: path.into(),
                message: format!("reading: {e}"),
            })?;
        Self::parse(&text).map_err(|message| ConfigError {
            path: path.into(),
            message,
        })
    }

    /// Parses and checks the text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.http_port == 0 || config.https_port == 0 {
            return Err("http-port, https-port: must be 1 to 65535".into());
        }
        if config.http_port == config.https_port {
            return Err("https-port: must differ from http-port".into());
        }
        if !config.haproxy_unit.ends_with(".service")
            || config.haproxy_unit.contains(['/', ' ', '\n'])
        {
            return Err(format!(
                "haproxy-unit: must be a service unit name, got {:?}",
                config.haproxy_unit
            ));
        }
        if let Some(url) = config
            .master
            .urls
            .iter()
            .find(|url| !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(format!("master.urls: must be http(s) URLs, got {url:?}"));
        }
        for (setting, path) in [
            ("agent-state-dir", &config.agent_state_dir),
            ("haproxy", &config.haproxy),
        ] {
            if !path.is_absolute() {
                return Err(format!(
                    "{setting}: must be an absolute path, got {}",
                    path.display()
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_defaults_and_the_example_parses() {
        assert_eq!(RouterConfig::parse(""), Ok(RouterConfig::default()));
        let example = include_str!("../router.toml.example");
        assert_eq!(RouterConfig::parse(example), Ok(RouterConfig::default()));
    }

    #[test]
    fn master_urls_override_the_agents_list_and_must_be_urls() {
        let config = RouterConfig::parse("[master]\nurls = [\"https://m1:7443\"]\n").unwrap();
        assert_eq!(config.master.urls, ["https://m1:7443"]);
        let err = RouterConfig::parse("[master]\nurls = [\"m1\"]\n").unwrap_err();
        assert!(err.starts_with("master.urls"), "{err}");
    }

    #[test]
    fn errors_name_the_setting() {
        for (text, setting) in [
            ("http-port = 0", "http-port"),
            ("https-port = 80", "https-port"),
            ("haproxy-unit = \"x y\"", "haproxy-unit"),
            ("agent-state-dir = \"rel\"", "agent-state-dir"),
            ("http-prot = 80", "http-prot"),
        ] {
            let error = RouterConfig::parse(text).expect_err(text);
            assert!(error.contains(setting), "{text}: {error}");
        }
    }
}
