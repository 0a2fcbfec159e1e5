//! The master's configuration: `/etc/berth/master.toml`, checked once at
//! start; every setting has a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::store::{StoreBackend, StoreConfig};

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
    /// When more than this share of the nodes (0 to 1, the master's own
    /// host counted like any other) goes silent within one grace period,
    /// no pod is evicted: the master is more likely cut off than they are
    /// down. Kubernetes' `--unhealthy-zone-threshold`, 0.55 by default (in
    /// a 3-node cluster, 2 silent nodes hold evictions back).
    pub unhealthy_node_threshold: f64,
    /// Milliseconds between two controller rounds.
    pub controller_interval_ms: u64,
    /// Where the cluster state lives: `[store]`.
    pub store: StoreConfig,
    /// DNS suffix of generated route hostnames:
    /// `<service>-<namespace>.<route-suffix>`.
    pub route_suffix: String,
    /// How much event history is kept: `[events]`.
    pub events: EventsConfig,
    /// Policy webhooks: `[[webhooks]]`, each an event type and a URL.
    pub webhooks: Vec<WebhookRule>,
    /// Retention of container logs: `[logs]`.
    pub logs: LogsConfig,
    /// Limits on API connections: `[connections]`.
    pub connections: ConnectionsConfig,
    /// Fixed host ports pods may publish: this range (`[host-ports]`,
    /// the agents' port range)...
    pub host_ports: berth_model::PortRange,
    /// ...and these ports outside it.
    pub host_ports_allow: Vec<u16>,
    /// Servers pods may mount network volumes (GlusterFS, NFS) from, by
    /// host name or address; none by default. Each node's agent has its
    /// own list too.
    pub network_volume_servers: Vec<String>,
    /// The integrated registry: `[registry]`.
    pub registry: RegistryConfig,
}

/// The `[connections]` table: how many API connections may be open and how
/// long a client may take to send a request (answers, such as watches and
/// long polls, are never timed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Open API connections at most; more are answered 503 and closed.
    /// The unit's `LimitNOFILE=` must leave room for them.
    pub max_connections: usize,
    /// Seconds a connection may take for its TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a request's headers may take to arrive, counted from when
    /// the connection is ready for them (after it opens, or after the last
    /// answer on a kept-alive connection, so this is also the idle timeout).
    pub header_read_timeout_secs: u64,
    /// Seconds a request's body may take to arrive after its headers.
    pub request_body_timeout_secs: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            tls_handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            request_body_timeout_secs: 30,
        }
    }
}

impl ConnectionsConfig {
    /// What is wrong with the settings, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("max-connections", self.max_connections as u64),
            (
                "tls-handshake-timeout-secs",
                self.tls_handshake_timeout_secs,
            ),
            ("header-read-timeout-secs", self.header_read_timeout_secs),
            ("request-body-timeout-secs", self.request_body_timeout_secs),
        ];
        for (setting, value) in at_least_one {
            if value == 0 {
                return Err(format!("connections.{setting}: must be at least 1"));
            }
        }
        // The semaphore that counts connections holds at most u32::MAX >> 3.
        if self.max_connections > 1 << 24 {
            return Err(format!(
                "connections.max-connections: must be at most {}, got {}",
                1 << 24,
                self.max_connections
            ));
        }
        Ok(())
    }
}

/// The `[registry]` table: where berth-registry.service listens and keeps
/// its images, and the address nodes and users reach it at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `HOST:PORT` of the registry as nodes and users reach it, in image
    /// references (`HOST:PORT/PROJECT/STREAM`); by default the host of the
    /// master's public URL, port 5000.
    pub address: Option<String>,
    /// Address the registry listens on.
    pub listen: SocketAddr,
    /// Its storage (images under `data/`). Another path than the default
    /// needs `ReadWritePaths=` in a drop-in of berth-registry.service.
    pub storage: PathBuf,
    /// Seconds between two checks of the tags imported with
    /// `berth import-image --scheduled`.
    pub import_interval_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            address: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            storage: PathBuf::from("/var/lib/berth/registry"),
            import_interval_secs: 900,
        }
    }
}

/// The `[events]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EventsConfig {
    /// At most this many events are kept; the oldest go first.
    pub max_count: usize,
    /// Events older than this many seconds go.
    pub max_age_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let retention = crate::controller::events::Retention::default();
        Self {
            max_count: retention.max_events,
            max_age_secs: retention.max_age.as_secs(),
        }
    }
}

/// One `[[webhooks]]` rule: events of type `event` (or every event, for
/// `"*"`) are POSTed as JSON to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebhookRule {
    /// An event type (`ContainerOOMKilled`, any case) or `*`.
    pub event: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Deliveries tried before the failure becomes a `WebhookFailed` event.
    #[serde(default = "default_webhook_attempts")]
    pub attempts: u32,
}

fn default_webhook_attempts() -> u32 {
    5
}

impl WebhookRule {
    /// What is wrong with the rule at `webhooks[index]`, naming the setting.
    pub fn check(&self, index: usize) -> Result<(), String> {
        if self.event != "*" {
            self.event
                .parse::<berth_model::EventKind>()
                .map_err(|e| format!("webhooks[{index}].event: {e}"))?;
        }
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .unwrap_or_default();
        if rest.is_empty()
            || self
                .url
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "webhooks[{index}].url: {:?} is not an http:// or https:// URL",
                self.url
            ));
        }
        if self.attempts == 0 || self.attempts > 20 {
            return Err(format!(
                "webhooks[{index}].attempts: must be between 1 and 20"
            ));
        }
        Ok(())
    }
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
            unhealthy_node_threshold: crate::controller::liveness::DEFAULT_UNHEALTHY_THRESHOLD,
            controller_interval_ms: 250,
            store: StoreConfig::default(),
            events: EventsConfig::default(),
            webhooks: Vec::new(),
            route_suffix: "apps.berth.test".into(),
            logs: LogsConfig::default(),
            connections: ConnectionsConfig::default(),
            host_ports: berth_model::PortRange::DEFAULT,
            host_ports_allow: berth_model::host_ports::DEFAULT_HOST_PORTS_ALLOW.to_vec(),
            network_volume_servers: Vec::new(),
            registry: RegistryConfig::default(),
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
        let text =
            berth_daemon::config::read(path, DEFAULT_CONFIG_PATH).map_err(|e| ConfigError {
                path: path.into(),
                message: format!("reading: {e}"),
            })?;
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
        if !(0.0..=1.0).contains(&config.unhealthy_node_threshold) {
            return Err(invalid(format!(
                "unhealthy-node-threshold: must be a share between 0 and 1 (0.55 is 55%), got {}",
                config.unhealthy_node_threshold
            )));
        }
        if config.controller_interval_ms == 0 {
            return Err(invalid("controller-interval-ms: must be at least 1".into()));
        }
        config.store.check().map_err(invalid)?;
        if config.events.max_count == 0 || config.events.max_age_secs == 0 {
            return Err(invalid(
                "events: max-count and max-age-secs must be at least 1".into(),
            ));
        }
        for (index, rule) in config.webhooks.iter().enumerate() {
            rule.check(index).map_err(invalid)?;
        }
        berth_model::route::validate_hostname(&config.route_suffix)
            .map_err(|e| invalid(format!("route-suffix: {e}")))?;
        if config.host_ports.first == 0 || config.host_ports.first > config.host_ports.last {
            return Err(invalid(format!(
                "host-ports: first ({}) must be at least 1 and at most last ({})",
                config.host_ports.first, config.host_ports.last
            )));
        }
        if config.host_ports_allow.contains(&0) {
            return Err(invalid(
                "host-ports-allow: 0 is not a port (0 in a pod asks for any free port)".into(),
            ));
        }
        if config.logs.max_age_hours == 0 {
            return Err(invalid("logs.max-age-hours: must be at least 1".into()));
        }
        if config.logs.max_megabytes == 0 {
            return Err(invalid("logs.max-megabytes: must be at least 1".into()));
        }
        config.connections.check().map_err(invalid)?;
        if let Some(address) = &config.registry.address {
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || address.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(invalid(format!(
                    "registry.address: must be HOST:PORT, got {address:?}"
                )));
            }
        }
        if config.registry.import_interval_secs == 0 {
            return Err(invalid(
                "registry.import-interval-secs: must be at least 1".into(),
            ));
        }
        if !config.registry.storage.is_absolute() {
            return Err(invalid(format!(
                "registry.storage: must be an absolute path, got {}",
                config.registry.storage.display()
            )));
        }
        Ok(config)
    }

    /// The fixed host ports pods may publish.
    pub fn host_port_policy(&self) -> berth_model::HostPortPolicy {
        berth_model::HostPortPolicy {
            range: self.host_ports,
            allow: self.host_ports_allow.clone(),
        }
    }

    /// The URL in join commands.
    /// The registry's `HOST:PORT` in image references.
    pub fn registry_address(&self) -> String {
        self.registry.address.clone().unwrap_or_else(|| {
            let url = self.public_url("https");
            let authority = url.split("://").nth(1).unwrap_or(&url);
            let authority = authority.split('/').next().unwrap_or(authority);
            let host = match authority.strip_prefix('[') {
                Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or(v6)),
                None => authority
                    .rsplit_once(':')
                    .map_or(authority, |(host, _)| host)
                    .to_owned(),
            };
            format!("{host}:{}", self.registry.listen.port())
        })
    }

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
    fn events_and_webhooks_parse_and_are_checked() {
        let config = parse(
            "[events]\nmax-count = 50\nmax-age-secs = 60\n\
             [[webhooks]]\nevent = \"containeroomkilled\"\nurl = \"http://h2:8080/hook\"\n",
        )
        .expect("config");
        assert_eq!(config.events.max_count, 50);
        assert_eq!(config.webhooks[0].attempts, 5);
        assert_eq!(config.webhooks[0].check(0), Ok(()));
        let bad = super::WebhookRule {
            event: "Exploded".into(),
            url: "ftp://x".into(),
            attempts: 1,
        };
        assert!(bad.check(2).unwrap_err().starts_with("webhooks[2].event"));
        let bad_url = super::WebhookRule {
            event: "*".into(),
            ..bad
        };
        assert!(bad_url.check(0).unwrap_err().starts_with("webhooks[0].url"));
    }

    #[test]
    fn the_packaged_example_gives_the_defaults_and_every_setting_in_it_is_valid() {
        let example = include_str!("../../packaging/etc/berth/master.toml");
        let commented = parse(example).unwrap();
        assert_eq!(commented.listen, MasterConfig::default().listen);
        // Settings are the lines that start with `#` and then a key or table.
        let uncommented: String = example
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all = parse(&uncommented).unwrap();
        assert_eq!(
            all.public_url.as_deref(),
            Some("https://master.example:7443")
        );
        assert_eq!(all.store.backend, StoreBackend::Embedded);
    }

    #[test]
    fn connection_limits_are_checked() {
        let config = parse("[connections]\nmax-connections = 100\n").expect("config");
        assert_eq!(config.connections.max_connections, 100);
        assert_eq!(config.connections.header_read_timeout_secs, 10);
        let zero: MasterConfig =
            toml::from_str("[connections]\nheader-read-timeout-secs = 0\n").expect("toml");
        assert_eq!(
            zero.connections.check(),
            Err("connections.header-read-timeout-secs: must be at least 1".into())
        );
        let huge: MasterConfig =
            toml::from_str("[connections]\nmax-connections = 100000000\n").expect("toml");
        assert!(huge.connections.check().is_err());
    }

    #[test]
    fn the_unhealthy_node_threshold_is_a_share_and_defaults_to_55_percent() {
        assert!((parse("").unwrap().unhealthy_node_threshold - 0.55).abs() < f64::EPSILON);
        let dir = std::env::temp_dir().join(format!("berth-threshold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.toml");
        std::fs::write(&path, "unhealthy-node-threshold = 55\n").unwrap();
        let error = MasterConfig::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("unhealthy-node-threshold: must be a share between 0 and 1"),
            "{error}"
        );
        std::fs::write(&path, "unhealthy-node-threshold = 0.7\n").unwrap();
        assert!(
            (MasterConfig::load(&path).unwrap().unhealthy_node_threshold - 0.7).abs()
                < f64::EPSILON
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
        assert_eq!(config.store.leader_lease_secs, 3);
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
            (
                "[store]\nleader-lease-secs = 1\n",
                "store.leader-lease-secs",
            ),
            (
                "[store]\nleader-lease-secs = 61\n",
                "store.leader-lease-secs",
            ),
        ];
        for (text, setting) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(setting), "{text}: {err}");
        }
    }
}
