//! The agent's configuration: `/etc/berth/agent.toml`, parsed and checked
//! once before anything binds. Every setting has a default, so an empty file
//! (or none) gives a working agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_unitfiles::is_plain_absolute_path;
use serde::Deserialize;

/// Where the agent looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/agent.toml";

/// The agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Pod records, unit files and the agent's own state.
    pub state_dir: PathBuf,
    /// The local API's unix socket (root only).
    pub socket: PathBuf,
    /// The container engine's API socket (Docker's, or Podman's
    /// Docker-compatible one); `[engine] socket` sets it too.
    pub docker_socket: PathBuf,
    /// `[engine]`: which container engine runs the pods.
    pub engine: EngineConfig,
    /// The per-container helper the units run.
    pub shim_path: PathBuf,
    /// This berth-agent, as build pods' units run it (`build DIR`).
    pub agent_path: PathBuf,
    /// Host ports handed out to pods that ask for one without naming it;
    /// fixed host ports must lie in it too, or in `host_ports_allow`.
    pub host_ports: PortRange,
    /// Fixed host ports outside `host_ports` that pods may still publish.
    pub host_ports_allow: Vec<u16>,
    /// Host directories pods may mount (each with everything below it).
    pub host_path_allow: Vec<PathBuf>,
    /// Volume classes: `[volume-classes]`, a class name to the directory
    /// (on a device of that class) where pods' volumes of the class live.
    pub volume_classes: BTreeMap<String, PathBuf>,
    /// Servers pods may mount network volumes (GlusterFS, NFS) from, by
    /// host name or address; none by default.
    pub network_volume_servers: Vec<String>,
    /// Seconds between two full reconciliations.
    pub resync_interval_secs: u64,
    /// Registry credentials by registry host (`registry.example:5000`).
    pub registries: BTreeMap<String, RegistryCredentials>,
    /// Labels this node registers with (pods select nodes by them).
    pub labels: BTreeMap<String, String>,
    /// Seconds between two samples of the containers' cgroup figures.
    pub metrics_interval_secs: u64,
    /// Also serve `/metrics` (Prometheus text) over TCP at this address,
    /// e.g. `0.0.0.0:9110`; the unix socket always serves it.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Join a master at start, if not joined yet (the config-file way of
    /// `berth-agent join`).
    pub master: Option<MasterJoin>,
}

/// `[engine]`: the container engine the pods run on, by its API socket.
/// Docker's by default; Podman's (`unix:///run/podman/podman.sock`, from
/// `podman.socket`) serves the same API. The agent asks the engine which
/// it is when it connects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EngineConfig {
    /// `unix:///PATH` of the engine's API socket.
    pub socket: Option<String>,
}

/// Docker's API socket, where the agent looks by default.
pub const DEFAULT_DOCKER_SOCKET: &str = "/run/docker.sock";

/// `[master]`: the master to join at start.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MasterJoin {
    /// The master's URL (one master).
    #[serde(default)]
    pub url: String,
    /// Every master's URL (HA masters): the agent joins at the first that
    /// answers and fails over between them from then on.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A one-time join token.
    pub token: String,
    /// The master's CA hash (`sha256:...`), required for https.
    pub ca_hash: Option<String>,
}

impl std::fmt::Debug for MasterJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterJoin")
            .field("url", &self.url)
            .field("urls", &self.urls)
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl MasterJoin {
    /// The masters to join: `url` first when given, then `urls`.
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(&self.url)
            .chain(&self.urls)
            .filter(|url| !url.is_empty())
            .cloned()
            .collect()
    }
}

pub use berth_model::host_ports::PortRange;

/// A user name and password for one registry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// The user.
    pub username: String,
    /// The password; never logged.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/berth"),
            socket: PathBuf::from("/run/berth/agent.sock"),
            docker_socket: PathBuf::from(DEFAULT_DOCKER_SOCKET),
            engine: EngineConfig::default(),
            shim_path: PathBuf::from("/usr/bin/berth-shim"),
            agent_path: PathBuf::from("/usr/bin/berth-agent"),
            host_ports: PortRange::DEFAULT,
            host_ports_allow: berth_model::host_ports::DEFAULT_HOST_PORTS_ALLOW.to_vec(),
            host_path_allow: Vec::new(),
            volume_classes: BTreeMap::new(),
            network_volume_servers: Vec::new(),
            resync_interval_secs: 10,
            registries: BTreeMap::new(),
            labels: BTreeMap::new(),
            metrics_interval_secs: 10,
            metrics_listen: None,
            master: None,
        }
    }
}

/// A configuration that cannot be used, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A setting has a value the agent cannot work with.
    #[error("{path}: {setting}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl AgentConfig {
    /// Reads and checks the configuration at `path`; a missing file at the
    /// default path means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = berth_daemon::config::read(path, DEFAULT_CONFIG_PATH).map_err(|source| {
            ConfigError::Read {
                path: path.into(),
                source,
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a configuration text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        config.resolve_engine_socket(path)?;
        config.check(path)?;
        Ok(config)
    }

    /// `[engine] socket` becomes the socket the agent uses; a
    /// `docker-socket` that says otherwise is an error, not a silent pick.
    fn resolve_engine_socket(&mut self, path: &Path) -> Result<(), ConfigError> {
        let Some(url) = &self.engine.socket else {
            return Ok(());
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            setting: "engine.socket",
            message,
        };
        let socket = url
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .filter(|socket| socket.is_absolute())
            .ok_or_else(|| invalid(format!("must be unix:///PATH, got {url:?}")))?;
        if self.docker_socket != Path::new(DEFAULT_DOCKER_SOCKET) && self.docker_socket != socket {
            return Err(invalid(format!(
                "{url:?} and docker-socket {} disagree: set one",
                self.docker_socket.display()
            )));
        }
        self.docker_socket = socket;
        Ok(())
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid {
            path: path.into(),
            setting,
            message,
        };
        for (setting, value) in [
            ("state-dir", &self.state_dir),
            ("socket", &self.socket),
            ("docker-socket", &self.docker_socket),
            ("shim-path", &self.shim_path),
            ("agent-path", &self.agent_path),
        ] {
            if !value.is_absolute() {
                return Err(invalid(
                    setting,
                    format!("must be an absolute path, got {}", value.display()),
                ));
            }
        }
        // Written bare into every pod's unit (ExecStart=, RootDirectory=,
        // the build units' paths): refused here, not unit by unit later.
        for (setting, value) in [
            ("state-dir", &self.state_dir),
            ("shim-path", &self.shim_path),
            ("agent-path", &self.agent_path),
        ] {
            if !value.to_str().is_some_and(is_plain_absolute_path) {
                return Err(invalid(
                    setting,
                    format!(
                        "must be a normalized path of [A-Za-z0-9/._+-] (it is written into unit files), got {}",
                        value.display()
                    ),
                ));
            }
        }
        if self.host_ports.first == 0 || self.host_ports.first > self.host_ports.last {
            return Err(invalid(
                "host-ports",
                format!(
                    "first ({}) must be at least 1 and at most last ({})",
                    self.host_ports.first, self.host_ports.last
                ),
            ));
        }
        if self.host_ports_allow.contains(&0) {
            return Err(invalid(
                "host-ports-allow",
                "0 is not a port (0 in a pod asks for any free port)".into(),
            ));
        }
        for allowed in &self.host_path_allow {
            if !allowed.is_absolute()
                || allowed
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(invalid(
                    "host-path-allow",
                    format!("{} must be absolute, without ..", allowed.display()),
                ));
            }
        }
        for (class, dir) in &self.volume_classes {
            if let Err(problem) = berth_model::validate_dns_label(class) {
                return Err(invalid("volume-classes", format!("{class:?}: {problem}")));
            }
            if !dir.to_str().is_some_and(is_plain_absolute_path) {
                return Err(invalid(
                    "volume-classes",
                    format!(
                        "{class} = {}: must be an absolute path of [A-Za-z0-9/._+-], without ..",
                        dir.display()
                    ),
                ));
            }
        }
        for server in &self.network_volume_servers {
            if server.contains(':') || berth_model::validate_node_address(server).is_err() {
                return Err(invalid(
                    "network-volume-servers",
                    format!("{server:?} is not a host name or IPv4 address"),
                ));
            }
        }
        for key in self.labels.keys() {
            if key.is_empty()
                || key.len() > 63
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                return Err(invalid(
                    "labels",
                    format!("{key:?} is not a label name ([A-Za-z0-9-_./], 1-63 characters)"),
                ));
            }
        }
        if let Some(master) = &self.master {
            let urls = master.urls();
            if urls.is_empty() {
                return Err(invalid("master.url", "or master.urls is required".into()));
            }
            if let Some(url) = urls
                .iter()
                .find(|url| !(url.starts_with("https://") || url.starts_with("http://")))
            {
                let field = if master.urls.contains(url) {
                    "master.urls"
                } else {
                    "master.url"
                };
                return Err(invalid(
                    field,
                    format!("must be an http(s) URL, got {url:?}"),
                ));
            }
            if urls.iter().any(|url| url.starts_with("https://")) && master.ca_hash.is_none() {
                return Err(invalid(
                    "master.ca-hash",
                    "is required for an https master".into(),
                ));
            }
        }
        if self.resync_interval_secs == 0 {
            return Err(invalid("resync-interval-secs", "must be at least 1".into()));
        }
        if self.metrics_interval_secs == 0 {
            return Err(invalid(
                "metrics-interval-secs",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Pod records (0600 files: they hold the pods' secrets).
    pub fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("pods")
    }

    /// The unit files the agent writes; systemd links to them.
    pub fn units_dir(&self) -> PathBuf {
        self.state_dir.join("units")
    }

    /// The fixed host ports pods may publish on this node.
    pub fn host_port_policy(&self) -> berth_model::HostPortPolicy {
        berth_model::HostPortPolicy {
            range: self.host_ports,
            allow: self.host_ports_allow.clone(),
        }
    }

    /// The volume classes as the heartbeat reports them: class to
    /// directory.
    pub fn volume_class_names(&self) -> BTreeMap<String, String> {
        self.volume_classes
            .iter()
            .map(|(class, dir)| (class.clone(), dir.display().to_string()))
            .collect()
    }

    /// Whether `host_path` lies inside one of the allowed directories.
    pub fn host_path_allowed(&self, host_path: &Path) -> bool {
        self.host_path_allow
            .iter()
            .any(|allowed| host_path.starts_with(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packaged example with its settings uncommented: settings are the
    /// lines that start with `#` and then a key or a table.
    fn uncommented(example: &str) -> String {
        example
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_packaged_example_gives_the_defaults_and_every_setting_in_it_is_valid() {
        let example = include_str!("../../packaging/etc/berth/agent.toml");
        let path = Path::new("agent.toml");
        let commented = AgentConfig::parse(example, path).unwrap();
        assert_eq!(commented.state_dir, AgentConfig::default().state_dir);
        let all = AgentConfig::parse(&uncommented(example), path).unwrap();
        assert_eq!(all.labels.get("zone").map(String::as_str), Some("a"));
        assert!(all.master.is_some() && all.registries.len() == 1);
        assert_eq!(all.volume_classes.len(), 2);
        assert_eq!(all.network_volume_servers, ["gluster-1.example"]);
    }

    #[test]
    fn the_master_table_takes_one_url_or_several() {
        let path = Path::new("agent.toml");
        let one = "[master]\nurl = \"http://m1:7070\"\ntoken = \"t\"\n";
        let one = AgentConfig::parse(one, path).unwrap().master.unwrap();
        assert_eq!(one.urls(), ["http://m1:7070"]);
        let several =
            "[master]\nurls = [\"https://m1:7443\", \"https://m2:7443\"]\ntoken = \"t\"\nca-hash = \"sha256:x\"\n";
        let several = AgentConfig::parse(several, path).unwrap().master.unwrap();
        assert_eq!(several.urls(), ["https://m1:7443", "https://m2:7443"]);
        for (text, setting) in [
            ("[master]\ntoken = \"t\"\n", "master.url"),
            ("[master]\nurls = [\"m2\"]\ntoken = \"t\"\n", "master.urls"),
            (
                "[master]\nurls = [\"https://m2\"]\ntoken = \"t\"\n",
                "master.ca-hash",
            ),
        ] {
            let err = AgentConfig::parse(text, path).unwrap_err().to_string();
            assert!(err.contains(setting), "{text}: {err}");
        }
    }

    #[test]
    fn the_engine_socket_is_a_unix_url_and_must_agree_with_docker_socket() {
        let path = Path::new("agent.toml");
        let podman = "[engine]\nsocket = \"unix:///run/podman/podman.sock\"\n";
        let config = AgentConfig::parse(podman, path).unwrap();
        assert_eq!(config.docker_socket, Path::new("/run/podman/podman.sock"));
        let same = format!("docker-socket = \"/run/podman/podman.sock\"\n{podman}");
        assert!(AgentConfig::parse(&same, path).is_ok());
        for text in [
            "[engine]\nsocket = \"/run/podman/podman.sock\"\n",
            "[engine]\nsocket = \"tcp://127.0.0.1:2375\"\n",
            "[engine]\nsocket = \"unix://run/x.sock\"\n",
            "docker-socket = \"/run/d.sock\"\n[engine]\nsocket = \"unix:///run/p.sock\"\n",
        ] {
            match AgentConfig::parse(text, path) {
                Err(ConfigError::Invalid { setting, .. }) => assert_eq!(setting, "engine.socket"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let default = AgentConfig::parse("", path).unwrap();
        assert_eq!(default.docker_socket, Path::new(DEFAULT_DOCKER_SOCKET));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = AgentConfig::parse("", Path::new("agent.toml")).unwrap();
        assert_eq!(
            config.host_ports,
            PortRange {
                first: 30000,
                last: 32767
            }
        );
        assert_eq!(config.units_dir(), PathBuf::from("/var/lib/berth/units"));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = AgentConfig::parse("host-ports = { first = 9, last = 8 }", Path::new("a.toml"))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("a.toml: host-ports: first (9)"),
            "{err}"
        );
        let err = AgentConfig::parse("state-dir = \"relative\"", Path::new("a.toml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("state-dir: must be an absolute path"),
            "{err}"
        );
        let err = AgentConfig::parse("state-dir = \"/var/lib/my berth\"", Path::new("a.toml"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("state-dir: must be a normalized path of [A-Za-z0-9/._+-]"),
            "{err}"
        );
        let err = AgentConfig::parse("shim-path = \"/usr/bin/../bin/shim\"", Path::new("a.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("shim-path: must be"), "{err}");
        let err = AgentConfig::parse("no-such = 1", Path::new("a.toml")).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn volume_classes_and_network_servers_are_checked_naming_the_setting() {
        for (text, setting) in [
            ("[volume-classes]\nFast = \"/srv/fast\"\n", "volume-classes"),
            ("[volume-classes]\nfast = \"srv/fast\"\n", "volume-classes"),
            ("[volume-classes]\nfast = \"/srv/a b\"\n", "volume-classes"),
            (
                "[volume-classes]\nfast = \"/srv/../etc\"\n",
                "volume-classes",
            ),
            (
                "network-volume-servers = [\"h 1\"]\n",
                "network-volume-servers",
            ),
            (
                "network-volume-servers = [\"fe80::1\"]\n",
                "network-volume-servers",
            ),
        ] {
            match AgentConfig::parse(text, Path::new("agent.toml")) {
                Err(ConfigError::Invalid { setting: got, .. }) => {
                    assert_eq!(got, setting, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let good = "network-volume-servers = [\"h1\", \"10.0.0.9\"]\n[volume-classes]\nfast = \"/srv/nvme/berth\"\n";
        let config = AgentConfig::parse(good, Path::new("agent.toml")).unwrap();
        assert_eq!(
            config.volume_class_names().get("fast").map(String::as_str),
            Some("/srv/nvme/berth")
        );
    }

    #[test]
    fn host_paths_are_checked_against_the_allow_list() {
        let config =
            AgentConfig::parse("host-path-allow = [\"/srv/data\"]", Path::new("a.toml")).unwrap();
        assert!(config.host_path_allowed(Path::new("/srv/data/x")));
        assert!(!config.host_path_allowed(Path::new("/srv/database")));
        assert!(!config.host_path_allowed(Path::new("/etc")));
    }
}
