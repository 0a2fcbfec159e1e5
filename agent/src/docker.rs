//! Docker over its API (bollard): images, containers, labels. The agent
//! creates and removes containers here; starting and stopping them is the
//! units' business (through the shim).

use std::collections::HashMap;
use std::future::Future;

use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::models::{HostConfig, HostConfigLogConfig, PortBinding as DockerPortBinding};
use futures_util::StreamExt;

use crate::config::RegistryCredentials;

/// Label with the pod a container belongs to.
pub const LABEL_POD: &str = "berth.pod";
/// Label with the pod's project, on pods of every project but the default.
pub const LABEL_PROJECT: &str = "berth.project";
/// Label with the container's name in the pod (absent on the pod's network holder).
pub const LABEL_CONTAINER: &str = "berth.container";
/// Label with the hash of the container's create spec: a changed hash means
/// the container must be recreated.
pub const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Label on the network holder with the pod's spec, secrets redacted, so
/// that an agent that lost its state directory can adopt the pod again.
pub const LABEL_POD_SPEC: &str = "berth.pod-spec";
/// Label on the network holder with the pod's host port bindings.
pub const LABEL_HOST_PORTS: &str = "berth.host-ports";
/// Label on the network holder with who asked for the pod (`master` or
/// `local`), so that an adopted pod of the master's goes when the master no
/// longer assigns it. Not part of the spec hash: a pod the master claims
/// keeps its containers.
pub const LABEL_SOURCE: &str = "berth.source";

/// The image of every pod's network holder.
pub const PAUSE_IMAGE: &str = concat!("berth/pause:", env!("CARGO_PKG_VERSION"));
const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-pause"));

/// Everything the agent decides about one Docker container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Docker's container name (`berth.<pod>.<container>`).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override.
    pub entrypoint: Vec<String>,
    /// Command (arguments) override.
    pub cmd: Vec<String>,
    /// `NAME=value`, plain and secret.
    pub env: Vec<String>,
    /// Labels, the spec hash included.
    pub labels: Vec<(String, String)>,
    /// The unit's cgroup, for `--cgroup-parent`.
    pub cgroup_parent: String,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// `container:<holder>` to join the pod's network namespace.
    pub network_mode: Option<String>,
    /// `port/proto` -> host port, published on the network holder.
    pub published: Vec<(String, u16)>,
    /// Ports the container exposes (`port/proto`).
    pub exposed: Vec<String>,
    /// Bind and volume mounts (`src:dst[:ro]`).
    pub binds: Vec<String>,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u32,
    /// Stop signal override.
    pub stop_signal: Option<String>,
    /// Run Docker's init (tini) as PID 1: it forwards the stop signal and
    /// reaps zombies, so programs that never expected to be PID 1 stop
    /// promptly on `systemctl stop`.
    pub init: bool,
    /// Most processes and threads at once (`--pids-limit`).
    pub pids_limit: u32,
    /// Run as this user instead of the image's.
    pub user: Option<String>,
    /// Mount the root filesystem read-only.
    pub read_only_root_filesystem: bool,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
}

/// Docker's security option that keeps setuid binaries and file
/// capabilities from raising privileges (`NoNewPrivs: 1`). Every berth
/// container gets it.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// A berth container Docker knows about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedContainer {
    /// Docker's name, without the leading `/`.
    pub name: String,
    /// Docker's ID.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// `running`, `exited`, `created`, ...
    pub state: String,
}

/// What went wrong talking to Docker.
#[derive(Debug, thiserror::Error)]
///
/// bollard's error is part of the message, not a `source()`: printed with
/// its chain (`{:#}`), it would otherwise say everything twice.
#[error("docker: {action}: {cause}")]
pub struct DockerError {
    /// What was asked.
    pub action: String,
    /// bollard's error.
    pub cause: bollard::errors::Error,
}

impl DockerError {
    /// Whether Docker answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.cause,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    }
}

/// Turns Docker's 404 into success: removing what is gone already is done.
fn gone_is_fine(
    result: Result<(), bollard::errors::Error>,
    action: String,
) -> Result<(), DockerError> {
    match result {
        Ok(()) => Ok(()),
        Err(source) => {
            let e = DockerError {
                action,
                cause: source,
            };
            if e.is_not_found() {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

fn err(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let action = action.into();
    move |cause| DockerError { action, cause }
}

/// The host's dockerd, or another engine serving Docker's API.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    engine: Engine,
    socket: std::path::PathBuf,
}

/// Where `podman.socket` serves Podman's API (root).
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// Which engine answers on the socket: they speak one API, with a few
/// differences the agent works around (see [`Docker::connect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// dockerd.
    #[default]
    Docker,
    /// Podman's Docker-compatible API (`podman system service`).
    Podman,
}

impl Engine {
    /// The engine's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The systemd unit pods' units require and start after: dockerd's
    /// service, or the socket that starts Podman's API service on demand
    /// (the service itself exits when idle; containers outlive it).
    pub fn unit(self) -> &'static str {
        match self {
            Engine::Docker => "docker.service",
            Engine::Podman => "podman.socket",
        }
    }

    /// The engine's event for a container removed: Docker's `destroy`
    /// is Podman's `remove`, which its compat API passes on as it is.
    fn removed_event(self) -> &'static str {
        match self {
            Engine::Docker => "destroy",
            Engine::Podman => "remove",
        }
    }

    /// Which engine `GET /version` describes: Podman names itself among
    /// the components.
    pub fn of_version(version: &bollard::system::Version) -> Self {
        let podman = version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.starts_with("Podman"));
        if podman {
            Engine::Podman
        } else {
            Engine::Docker
        }
    }
}

/// State of a container from inspect: what `ps` needs beyond systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectedState {
    /// Docker's ID.
    pub id: String,
    /// Whether it runs.
    pub running: bool,
    /// PID on the host.
    pub pid: Option<u32>,
    /// Exit code of the last run.
    pub exit_code: Option<i64>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// When the current (or last) run started, as Docker writes it: it
    /// tells runs of the same container apart.
    pub started_at: Option<String>,
    /// Docker's error message, if any.
    pub error: Option<String>,
}

impl Docker {
    /// Connects to dockerd at `socket` and agrees on an API version.
    pub async fn connect(socket: &std::path::Path) -> Result<Self, DockerError> {
        let path = socket.to_string_lossy();
        let client = bollard::Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(err(format!("connecting to {path}")))?;
        let client = client
            .negotiate_version()
            .await
            .map_err(err("negotiating the API version"))?;
        let version = client
            .version()
            .await
            .map_err(err("asking for the engine's version"))?;
        let engine = Engine::of_version(&version);
        Ok(Self {
            client,
            engine,
            socket: socket.to_owned(),
        })
    }

    /// Which engine answers.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether dockerd answers at all (`GET /_ping`).
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client.ping().await.map(drop).map_err(err("ping"))
    }

    /// Pulls `image` unless it is present, with the registry's credentials,
    /// recording how far it has come in `progress`.
    pub async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        progress: &PullProgress,
    ) -> Result<(), DockerError> {
        if self.client.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let serveraddress = registry_of(image).map(String::from);
        let credentials = auth.map(|auth| match auth {
            PullAuth::Password(c) => bollard::auth::DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress,
                ..Default::default()
            },
            // dockerd sends a registry token as it is, asking no realm.
            PullAuth::Token(token) => bollard::auth::DockerCredentials {
                registrytoken: Some(token.clone()),
                serveraddress,
                ..Default::default()
            },
        });
        let (from_image, tag) = split_tag(image);
        let options = CreateImageOptions {
            from_image,
            tag,
            ..Default::default()
        };
        let mut pulled = self.client.create_image(Some(options), None, credentials);
        while let Some(step) = pulled.next().await {
            let step = step.map_err(err(format!("pulling {image}")))?;
            if let (Some(layer), Some(status)) = (&step.id, &step.status) {
                let detail = step.progress_detail.as_ref();
                let bytes = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                match status.as_str() {
                    "Downloading" => progress.record(
                        layer,
                        detail.and_then(|d| bytes(d.current)).unwrap_or(0),
                        detail.and_then(|d| bytes(d.total)).unwrap_or(0),
                    ),
                    "Download complete" | "Pull complete" | "Already exists" => {
                        progress.complete(layer);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Imports the pod network holder's image from the agent's own bytes.
    pub async fn ensure_pause_image(&self) -> Result<(), DockerError> {
        if self.client.inspect_image(PAUSE_IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = pause_import_reference(self.engine);
        let options = CreateImageOptions {
            from_src: QueryParam(Some("-")),
            repo: QueryParam(Some(repo)),
            tag: QueryParam(tag),
            ..Default::default()
        };
        let rootfs = bytes::Bytes::from(single_file_tar("pause", PAUSE_BINARY));
        let mut progress = self.client.create_image(Some(options), Some(rootfs), None);
        while let Some(step) = progress.next().await {
            step.map_err(err("importing the pause image"))?;
        }
        Ok(())
    }

    /// Creates a container; returns its ID.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let options = CreateContainerOptions {
            name: spec.name.clone(),
            platform: None,
        };
        let created = self
            .client
            .create_container(Some(options), create_config(spec))
            .await
            .map_err(err(format!("creating container {}", spec.name)))?;
        Ok(created.id)
    }

    /// Removes a container (stopping it first); one that is gone already is fine.
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let removed = self.client.remove_container(name, Some(options)).await;
        gone_is_fine(removed, format!("removing container {name}"))
    }

    /// Creates a pod's named volume, labelled with its pod; an existing one
    /// (with its data) is kept. With `device`, the volume keeps its data in
    /// that directory (a volume class's): a local volume bound there.
    pub async fn create_volume(
        &self,
        name: &str,
        pod: &str,
        device: Option<&str>,
    ) -> Result<(), DockerError> {
        let driver_opts = match device {
            Some(device) => [("type", "none"), ("o", "bind"), ("device", device)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            None => HashMap::new(),
        };
        let options = bollard::volume::CreateVolumeOptions {
            name: name.to_owned(),
            driver: "local".to_owned(),
            driver_opts,
            labels: [(LABEL_POD.to_owned(), pod.to_owned())]
                .into_iter()
                .collect(),
        };
        self.client
            .create_volume(options)
            .await
            .map_err(err(format!("creating volume {name}")))?;
        Ok(())
    }

    /// Named volumes of berth's pods, as (volume, pod).
    pub async fn list_berth_volumes(&self) -> Result<Vec<(String, String)>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![LABEL_POD.to_string()]);
        let options = bollard::volume::ListVolumesOptions { filters };
        let list = self
            .client
            .list_volumes(Some(options))
            .await
            .map_err(err("listing volumes"))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| Some((v.name.clone(), v.labels.get(LABEL_POD)?.clone())))
            .collect())
    }

    /// Where a volume's data is on this host; `None` for a volume that is
    /// not there.
    pub async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, DockerError> {
        match self.client.inspect_volume(name).await {
            Ok(volume) => Ok(Some(volume.mountpoint)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(err(format!("inspecting volume {name}"))(e)),
        }
    }

    /// Removes a volume and its data; one that is gone already is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let removed = self.client.remove_volume(name, None).await;
        gone_is_fine(removed, format!("removing volume {name}"))
    }

    /// Every container with a `berth.pod` label.
    pub async fn list_berth_containers(
        &self,
        pod: Option<&str>,
    ) -> Result<Vec<ObservedContainer>, DockerError> {
        let label = match pod {
            Some(pod) => format!("{LABEL_POD}={pod}"),
            None => LABEL_POD.to_string(),
        };
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label]);
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(err("listing containers"))?;
        Ok(list
            .into_iter()
            .map(|c| ObservedContainer {
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                id: c.id.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.unwrap_or_default(),
            })
            .collect())
    }

    /// Inspects a container; `None` if it does not exist.
    pub async fn inspect(&self, name: &str) -> Result<Option<InspectedState>, DockerError> {
        match self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                Ok(Some(InspectedState {
                    id: info.id.unwrap_or_default(),
                    running: state.running.unwrap_or(false),
                    pid: state
                        .pid
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p != 0),
                    exit_code: state.exit_code,
                    oom_killed: state.oom_killed.unwrap_or(false),
                    started_at: state.started_at.filter(|t| !t.starts_with("0001-")),
                    error: state.error.filter(|e| !e.is_empty()),
                }))
            }
            // Podman's compat API passes its own states on, e.g.
            // `stopped` for a container that exited and is not cleaned up
            // yet, which bollard's typed answer refuses: read it untyped.
            Err(bollard::errors::Error::JsonDataError { .. }) if self.engine == Engine::Podman => {
                let path = format!("/containers/{}/json", urlencoding_path(name));
                match self.get_json(&path).await {
                    Ok(json) => Ok(Some(inspected_state(&json))),
                    Err(e) => none_if_missing(name, e),
                }
            }
            Err(e) => none_if_missing(name, e),
        }
    }

    /// `GET path` on the engine's socket, its JSON answer untyped: for the
    /// answers of Podman's that bollard's types refuse.
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, bollard::errors::Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(&self.socket).await?;
        // HTTP/1.0: the answer ends with the connection, never chunked.
        let request = format!("GET {path} HTTP/1.0\r\nHost: engine\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            stream.read_to_end(&mut answer),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        let (status, body) = split_http_answer(&answer);
        if status != 200 {
            return Err(bollard::errors::Error::DockerResponseServerError {
                status_code: status,
                message: String::from_utf8_lossy(body).trim().to_owned(),
            });
        }
        serde_json::from_slice(body).map_err(|err| bollard::errors::Error::JsonSerdeError { err })
    }

    /// Waits for the next time one of berth's containers dies or is
    /// removed (by anyone, `docker rm -f` included), then returns. An error
    /// means the event stream broke; the caller resubscribes.
    pub async fn next_container_change(&self) -> Result<String, DockerError> {
        let options = bollard::system::EventsOptions::<String> {
            since: None,
            until: None,
            filters: self.berth_container_events(&["die", self.engine.removed_event()]),
        };
        let mut events = self
            .client
            .events(Some(options))
            .filter(|event| std::future::ready(event.as_ref().map_or(true, is_berth_event)));
        match events.next().await {
            Some(Ok(event)) => Ok(event.action.unwrap_or_default()),
            Some(Err(e)) => Err(DockerError {
                action: "watching events".into(),
                cause: e,
            }),
            None => Ok(String::new()),
        }
    }

    /// The names of berth's containers as they change (created, started,
    /// died, OOM-killed, removed), from a second before the call on: a
    /// caller that re-reads everything just before subscribing misses
    /// nothing in between. The stream ends or errs when dockerd goes.
    pub fn container_changes(
        &self,
    ) -> impl futures_util::Stream<Item = Result<String, DockerError>> + Send + 'static {
        let filters = self.berth_container_events(&[
            "create",
            "start",
            "die",
            "oom",
            self.engine.removed_event(),
        ]);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs().saturating_sub(1));
        let options = bollard::system::EventsOptions::<String> {
            since: Some(since.to_string()),
            until: None,
            filters,
        };
        self.events_attribute(options, "name", "watching container changes")
    }

    /// The events filter for `events` of berth's containers. Podman's
    /// compat API matches a label filter only as `key=value`, so a bare
    /// `label=berth.pod` would select nothing there: Podman gets no label
    /// filter, and [`is_berth_event`] picks berth's containers out on
    /// this side (labels are in every container event's attributes on
    /// both engines).
    fn berth_container_events(&self, events: &[&str]) -> HashMap<String, Vec<String>> {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        if self.engine == Engine::Docker {
            filters.insert("label".to_string(), vec![LABEL_POD.to_string()]);
        }
        filters.insert(
            "event".to_string(),
            events.iter().map(|e| (*e).to_owned()).collect(),
        );
        filters
    }

    /// Docker's events that `options` selects, each as the value of its
    /// actor's `attribute` (a label or `name`; empty if absent).
    fn events_attribute(
        &self,
        options: bollard::system::EventsOptions<String>,
        attribute: &'static str,
        action: &'static str,
    ) -> impl futures_util::Stream<Item = Result<String, DockerError>> + Send + 'static {
        let events = self
            .client
            .events(Some(options))
            .filter(|event| std::future::ready(event.as_ref().map_or(true, is_berth_event)));
        events.map(move |event| {
            event
                .map(|e| {
                    e.actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut attributes| attributes.remove(attribute))
                        .unwrap_or_default()
                })
                .map_err(|cause| DockerError {
                    action: action.into(),
                    cause,
                })
        })
    }

    /// Every start of one of berth's containers from now on, as the name
    /// of its pod: a restarted container has a new network namespace,
    /// which its links must be wired into again.
    pub fn container_starts(
        &self,
    ) -> impl futures_util::Stream<Item = Result<String, DockerError>> + Send + 'static {
        let options = bollard::system::EventsOptions::<String> {
            since: None,
            until: None,
            filters: self.berth_container_events(&["start"]),
        };
        self.events_attribute(options, LABEL_POD, "watching container starts")
    }

    /// Where the application metrics hook polls a container: the endpoint
    /// its labels (its image's, copied in by Docker) declare, at its
    /// address or, when it shares a pod's network holder, the holder's.
    pub async fn metrics_endpoint(&self, name: &str) -> Option<crate::app_metrics::Endpoint> {
        let info = self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        if !labels.contains_key(crate::app_metrics::PORT_LABEL) {
            return None;
        }
        let mut ip = info
            .network_settings
            .and_then(|n| n.ip_address)
            .filter(|ip| !ip.is_empty());
        if ip.is_none() {
            let mode = info.host_config.and_then(|h| h.network_mode);
            if let Some(holder) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
                ip = self
                    .client
                    .inspect_container(holder, None::<InspectContainerOptions>)
                    .await
                    .ok()
                    .and_then(|h| h.network_settings)
                    .and_then(|n| n.ip_address)
                    .filter(|ip| !ip.is_empty());
            }
        }
        let ip = ip?.parse().ok()?;
        crate::app_metrics::endpoint_from_labels(|key| labels.get(key).map(String::as_str), ip)
    }

    /// The environment a container was created with (to recover secrets when
    /// adopting a pod whose record was lost).
    pub async fn container_env(&self, name: &str) -> Result<Vec<String>, DockerError> {
        let info = match self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            // Podman's own states: see `inspect`.
            Err(bollard::errors::Error::JsonDataError { .. }) if self.engine == Engine::Podman => {
                let path = format!("/containers/{}/json", urlencoding_path(name));
                let json = self
                    .get_json(&path)
                    .await
                    .map_err(err(format!("inspecting {name}")))?;
                let env = json["Config"]["Env"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                return Ok(env
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect());
            }
            other => other.map_err(err(format!("inspecting {name}")))?,
        };
        Ok(info.config.and_then(|c| c.env).unwrap_or_default())
    }
}
/// The status code and body of an HTTP/1.0 answer; status 0 if it has
/// none.
fn split_http_answer(answer: &[u8]) -> (u16, &[u8]) {
    let status = answer
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .unwrap_or(0);
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&answer[answer.len()..], |end| &answer[end + 4..]);
    (status, body)
}

/// An inspect's failure: `None` if the container does not exist.
fn none_if_missing<T>(name: &str, cause: bollard::errors::Error) -> Result<Option<T>, DockerError> {
    let e = DockerError {
        action: format!("inspecting {name}"),
        cause,
    };
    if e.is_not_found() {
        Ok(None)
    } else {
        Err(e)
    }
}

/// A container name or ID as a path segment: anything but
/// `[A-Za-z0-9_.-]` percent-encoded.
fn urlencoding_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What [`Docker::inspect`] reads from an untyped inspect answer.
fn inspected_state(json: &serde_json::Value) -> InspectedState {
    let state = &json["State"];
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    InspectedState {
        id: text(&json["Id"]).unwrap_or_default(),
        running: state["Running"].as_bool().unwrap_or(false),
        pid: state["Pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0),
        exit_code: state["ExitCode"].as_i64(),
        oom_killed: state["OOMKilled"].as_bool().unwrap_or(false),
        started_at: text(&state["StartedAt"]).filter(|t| !t.starts_with("0001-")),
        error: text(&state["Error"]).filter(|e| !e.is_empty()),
    }
}

/// Whether an event is about one of berth's containers (its actor has the
/// `berth.pod` label among its attributes).
fn is_berth_event(event: &bollard::models::EventMessage) -> bool {
    event
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .is_some_and(|attributes| attributes.contains_key(LABEL_POD))
}

/// How a pull authenticates: a user and password from the agent's
/// configuration, or a registry token (the cluster registry's).
#[derive(Clone)]
pub enum PullAuth {
    Password(RegistryCredentials),
    Token(String),
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullAuth::Password(_) => "PullAuth::Password",
            PullAuth::Token(_) => "PullAuth::Token",
        })
    }
}

/// How far a pull has come: each layer's bytes downloaded and to
/// download, as dockerd reports them.
#[derive(Debug, Default)]
pub struct PullProgress {
    layers: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl PullProgress {
    fn layers(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (u64, u64)>> {
        self.layers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `layer` has `current` of `total` bytes.
    pub fn record(&self, layer: &str, current: u64, total: u64) {
        self.layers().insert(layer.to_owned(), (current, total));
    }

    /// `layer` is downloaded.
    pub fn complete(&self, layer: &str) {
        if let Some((current, total)) = self.layers().get_mut(layer) {
            *current = *total;
        }
    }

    /// `pulling 12.3/40.1 MB` (of the layers dockerd has sized so far).
    pub fn summary(&self) -> String {
        let (current, total) = self
            .layers()
            .values()
            .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
        if total == 0 {
            return "pulling".to_owned();
        }
        let mb = |bytes: u64| bytes as f64 / 1e6;
        format!("pulling {:.1}/{:.1} MB", mb(current), mb(total))
    }
}

/// The registry an image names (`HOST[:PORT]/...`), if it names one.
pub fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// What the runtime asks of the container engine: the calls that observe,
/// create and remove pods' containers, images and volumes, and nothing
/// else. [`Docker`] is the real one; tests use a recording fake.
pub trait ContainerEngine: Send + Sync {
    /// Pulls `image` unless it is present, with the registry's credentials.
    fn ensure_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        progress: &PullProgress,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Imports the pod network holder's image unless it is present.
    fn ensure_pause_image(&self) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Creates a container; returns its ID.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
    /// Removes a container; one that is gone already is no error.
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Creates a pod's named volume, in directory `device` if given.
    fn create_volume(
        &self,
        name: &str,
        pod: &str,
        device: Option<&str>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Removes a named volume and its data.
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Where a named volume's data is on this host, if it is there.
    fn volume_mountpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, DockerError>> + Send;
    /// berth's volumes, with the pod each belongs to.
    fn list_berth_volumes(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String)>, DockerError>> + Send;
    /// berth's containers; only those of `pod` if given (Docker filters
    /// them: a start among many pods lists its own containers only).
    fn list_berth_containers(
        &self,
        pod: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ObservedContainer>, DockerError>> + Send;
    /// A container's state; `None` if there is no such container.
    fn inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<InspectedState>, DockerError>> + Send;
    /// A container's environment (`NAME=value`).
    fn container_env(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;
    /// Waits for one of berth's containers to die or go; returns its name.
    fn next_container_change(&self) -> impl Future<Output = Result<String, DockerError>> + Send;
    /// Which engine this is.
    fn engine(&self) -> Engine {
        Engine::Docker
    }
}

impl ContainerEngine for Docker {
    async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        progress: &PullProgress,
    ) -> Result<(), DockerError> {
        Docker::ensure_image(self, image, auth, progress).await
    }
    async fn ensure_pause_image(&self) -> Result<(), DockerError> {
        Docker::ensure_pause_image(self).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        Docker::create(self, spec).await
    }
    async fn remove(&self, name: &str) -> Result<(), DockerError> {
        Docker::remove(self, name).await
    }
    async fn create_volume(
        &self,
        name: &str,
        pod: &str,
        device: Option<&str>,
    ) -> Result<(), DockerError> {
        Docker::create_volume(self, name, pod, device).await
    }
    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        Docker::remove_volume(self, name).await
    }
    async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, DockerError> {
        Docker::volume_mountpoint(self, name).await
    }
    async fn list_berth_volumes(&self) -> Result<Vec<(String, String)>, DockerError> {
        Docker::list_berth_volumes(self).await
    }
    async fn list_berth_containers(
        &self,
        pod: Option<&str>,
    ) -> Result<Vec<ObservedContainer>, DockerError> {
        Docker::list_berth_containers(self, pod).await
    }
    async fn inspect(&self, name: &str) -> Result<Option<InspectedState>, DockerError> {
        Docker::inspect(self, name).await
    }
    async fn container_env(&self, name: &str) -> Result<Vec<String>, DockerError> {
        Docker::container_env(self, name).await
    }
    async fn next_container_change(&self) -> Result<String, DockerError> {
        Docker::next_container_change(self).await
    }
    fn engine(&self) -> Engine {
        self.engine
    }
}

/// Docker's create request for `spec`. Pure, so the security settings
/// every container gets are checked without a Docker.
pub fn create_config(spec: &ContainerSpec) -> Config<String> {
    let port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = spec
        .published
        .iter()
        .map(|(port, host)| {
            (
                port.clone(),
                Some(vec![DockerPortBinding {
                    host_ip: None,
                    host_port: Some(host.to_string()),
                }]),
            )
        })
        .collect();
    let exposed: HashMap<String, HashMap<(), ()>> = spec
        .exposed
        .iter()
        .chain(spec.published.iter().map(|(p, _)| p))
        .map(|p| (p.clone(), HashMap::new()))
        .collect();
    Config {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.iter().cloned().collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        stop_timeout: Some(i64::from(spec.stop_timeout)),
        stop_signal: spec.stop_signal.clone(),
        user: spec.user.clone(),
        host_config: Some(HostConfig {
            cgroup_parent: Some(spec.cgroup_parent.clone()),
            memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
            network_mode: spec.network_mode.clone(),
            init: Some(spec.init),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            // systemd restarts the unit; Docker must not restart behind it.
            restart_policy: None,
            security_opt: Some(vec![NO_NEW_PRIVILEGES.to_owned()]),
            pids_limit: Some(i64::from(spec.pids_limit)),
            readonly_rootfs: Some(spec.read_only_root_filesystem),
            cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
            // berth-shim puts the output in the journal; a json-file log
            // beside it would store every line twice.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A query parameter that is left out of the request when `None`. An
/// import must not send `fromImage=` at all: dockerd reads an empty one
/// as none, but Podman's compat API then takes the request for a pull of
/// the image "" ("invalid reference format").
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct QueryParam(Option<&'static str>);

impl From<QueryParam> for String {
    fn from(param: QueryParam) -> String {
        param.0.unwrap_or_default().to_owned()
    }
}

/// The `repo` and `tag` parameters that import the pause image. Podman's
/// compat import ignores `tag` (it named the image
/// `docker.io/berth/pause:latest`), but takes a tag in `repo`, as
/// Docker's API allows too; dockerd keeps getting them apart.
fn pause_import_reference(engine: Engine) -> (&'static str, Option<&'static str>) {
    match engine {
        Engine::Docker => {
            let (repo, tag) = split_tag(PAUSE_IMAGE);
            (repo, Some(tag))
        }
        Engine::Podman => (PAUSE_IMAGE, None),
    }
}

/// `repo[:tag]` -> (`repo`, `tag`), defaulting the tag to `latest`. A `:`
/// before the last `/` belongs to a registry's port.
pub fn split_tag(image: &str) -> (&str, &str) {
    // By digest: dockerd takes the digest where the tag goes.
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// A ustar archive holding one executable file at the root: the rootfs of
/// the pause image.
fn single_file_tar(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o755);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], contents.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());

    let mut archive = header.to_vec();
    archive.extend_from_slice(contents);
    archive.resize(archive.len().div_ceil(512) * 512, 0);
    archive.extend_from_slice(&[0u8; 1024]);
    archive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_spec() -> ContainerSpec {
        ContainerSpec {
            name: "berth.web.app".into(),
            image: "local/busybox".into(),
            entrypoint: vec!["httpd".into(), "-f".into()],
            cmd: Vec::new(),
            env: Vec::new(),
            labels: Vec::new(),
            cgroup_parent: "/system.slice/berth-web-app.service".into(),
            memory: None,
            network_mode: None,
            published: vec![("8080/tcp".into(), 30080)],
            exposed: Vec::new(),
            binds: Vec::new(),
            stop_timeout: 10,
            stop_signal: None,
            init: true,
            pids_limit: 4096,
            user: None,
            read_only_root_filesystem: false,
            cap_drop: Vec::new(),
        }
    }

    #[test]
    fn every_container_gets_no_new_privileges_and_a_pid_limit() {
        let config = create_config(&plain_spec());
        let host = config.host_config.unwrap();
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".into()]));
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.readonly_rootfs, Some(false));
        assert_eq!(host.cap_drop, None);
        assert_eq!(config.user, None);
        assert_eq!(host.init, Some(true));
        assert_eq!(host.restart_policy, None);
        assert_eq!(host.log_config.and_then(|l| l.typ).as_deref(), Some("none"));
    }

    #[test]
    fn opt_in_settings_reach_the_create_request() {
        let spec = ContainerSpec {
            pids_limit: 64,
            user: Some("1000:1000".into()),
            read_only_root_filesystem: true,
            cap_drop: vec!["NET_RAW".into(), "CHOWN".into()],
            ..plain_spec()
        };
        let json = serde_json::to_value(create_config(&spec)).unwrap();
        assert_eq!(json["User"], "1000:1000");
        assert_eq!(json["HostConfig"]["PidsLimit"], 64);
        assert_eq!(json["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(
            json["HostConfig"]["CapDrop"],
            serde_json::json!(["NET_RAW", "CHOWN"])
        );
        assert_eq!(
            json["HostConfig"]["SecurityOpt"],
            serde_json::json!(["no-new-privileges"])
        );
    }

    #[test]
    fn podman_names_itself_among_the_version_components() {
        let version = |name: &str| bollard::system::Version {
            components: Some(vec![bollard::system::VersionComponents {
                name: name.into(),
                version: "4.3.1".into(),
                details: None,
            }]),
            ..Default::default()
        };
        assert_eq!(Engine::of_version(&version("Engine")), Engine::Docker);
        assert_eq!(
            Engine::of_version(&version("Podman Engine")),
            Engine::Podman
        );
        assert_eq!(Engine::of_version(&Default::default()), Engine::Docker);
    }

    #[test]
    fn podman_states_bollard_refuses_are_read_untyped() {
        let answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"5173cc\",\"State\":{\"Status\":\"stopped\",\"Running\":false,\"Pid\":0,\"ExitCode\":137,\"OOMKilled\":false,\"Error\":\"\",\"StartedAt\":\"2026-12-06T09:00:01.5Z\"}}";
        let (status, body) = split_http_answer(answer);
        assert_eq!(status, 200);
        let state = inspected_state(&serde_json::from_slice(body).unwrap());
        assert_eq!(
            state,
            InspectedState {
                id: "5173cc".into(),
                running: false,
                pid: None,
                exit_code: Some(137),
                oom_killed: false,
                started_at: Some("2026-12-06T09:00:01.5Z".into()),
                error: None,
            }
        );
        assert_eq!(
            split_http_answer(b"HTTP/1.0 404 Not Found\r\n\r\nno").0,
            404
        );
        assert_eq!(urlencoding_path("berth.a-b.c/x"), "berth.a-b.c%2Fx");
    }

    #[test]
    fn unset_query_parameters_are_left_out() {
        let options = CreateImageOptions {
            from_src: QueryParam(Some("-")),
            repo: QueryParam(Some("berth/pause")),
            ..Default::default()
        };
        let query = serde_urlencoded::to_string(options).unwrap();
        assert_eq!(query, "fromSrc=-&repo=berth%2Fpause");
    }

    #[test]
    fn pull_progress_sums_the_layers_dockerd_sized() {
        let progress = PullProgress::default();
        assert_eq!(progress.summary(), "pulling");
        progress.record("a", 1_000_000, 4_000_000);
        progress.record("b", 0, 10_000_000);
        assert_eq!(progress.summary(), "pulling 1.0/14.0 MB");
        progress.complete("a");
        assert_eq!(progress.summary(), "pulling 4.0/14.0 MB");
    }

    #[test]
    fn splits_tags_but_not_registry_ports() {
        assert_eq!(split_tag("local/busybox"), ("local/busybox", "latest"));
        assert_eq!(split_tag("web:1.2"), ("web", "1.2"));
        assert_eq!(
            split_tag("registry:5000/web"),
            ("registry:5000/web", "latest")
        );
        assert_eq!(split_tag("registry:5000/web:2"), ("registry:5000/web", "2"));
        assert_eq!(
            split_tag("registry:5000/a/web@sha256:ab"),
            ("registry:5000/a/web", "sha256:ab")
        );
    }

    #[test]
    fn tar_has_a_valid_header_and_padding() {
        let tar = single_file_tar("pause", b"abc");
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[..5], b"pause");
        assert_eq!(&tar[512..515], b"abc");
        let stored: u64 =
            u64::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        let mut header = tar[..512].to_vec();
        header[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, header.iter().map(|b| u64::from(*b)).sum::<u64>());
    }
}
