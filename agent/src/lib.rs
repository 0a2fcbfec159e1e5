//! berth-agent: one host's container runtime. It turns pod definitions into
//! systemd units, runs their containers through Docker's API and reports to
//! the master.
//!
//! The tree names the parts: [`config`] is read once at start, [`api`]
//! turns HTTP into calls on the [`runtime`], which plans with
//! [`reconcile`] and acts through [`systemd`] (D-Bus) and [`docker`]
//! (bollard). [`unit`] renders unit files and names units, [`ports`] hands
//! out host ports and [`store`] keeps the pod records. [`journal`] is the
//! one place that runs `journalctl`.
//!
//! The runtime reaches each outside system through one narrow trait
//! ([`docker::ContainerEngine`], [`systemd::UnitManager`],
//! [`journal::EventJournal`]), so its unit tests run against a recording
//! fake host instead of root and a lab.
#![forbid(unsafe_code)]

pub mod api;
pub mod app_metrics;
pub mod build;
pub mod cgroup;
pub mod cluster_registry;
pub mod config;
pub mod container_events;
pub mod docker;
#[cfg(test)]
pub mod fakes;
pub mod host_path;
pub mod journal;
pub mod links;
pub mod log_shipping;
pub mod master_link;
pub mod metrics;
pub mod ports;
pub mod private_file;
pub mod reconcile;
pub mod runtime;
pub mod shim_root;
pub mod stamped_files;
pub mod status_cache;
pub mod store;
pub mod systemd;
pub mod unit;
pub mod volume_move;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use crate::config::AgentConfig;
use crate::runtime::{Runtime, Volumes};

/// Runs the agent until `shutdown` resolves: connects to Docker and systemd
/// (waiting for them at boot), adopts what runs, serves the local API and
/// resyncs. Returns when asked to stop; pods keep running.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = store::PodStore::open(&config.pods_dir())?;
    let docker = wait_for("docker", || docker::Docker::connect(&config.docker_socket)).await;
    let systemd = wait_for("systemd", systemd::Systemd::connect).await;
    journal::lift_rate_limit(&systemd).await;
    let runtime = Arc::new(Runtime::new(config.clone(), store, docker, systemd));
    let status_events = tokio::spawn(status_cache::follow(
        Arc::clone(runtime.status_cache()),
        runtime.docker().clone(),
        runtime.systemd().clone(),
    ));

    let metrics = metrics::Metrics::new();
    // Heartbeats start before anything else: a restarted agent must not
    // look like a dead node. Assignments wait for the first resync, which
    // adopts what runs, so that no running pod is taken for missing.
    let joined = berth_client::Joined::load(&config.state_dir)?;
    let standalone = joined.is_none() && config.master.is_none();
    match joined {
        Some(mut joined) => {
            // `[master] urls` added after the join (a single master that
            // became several): the node follows the list from now on.
            if let Some(urls) = config.master.as_ref().map(|m| m.urls()) {
                if urls.len() > 1 && joined.urls != urls {
                    joined.urls = urls;
                    if let Err(e) = joined.save(&config.state_dir) {
                        warn!(error = %format!("{e:#}"), "cannot save the masters' URLs");
                    }
                }
            }
            master_link::announce(&joined);
            tokio::spawn(master_link::run(
                joined,
                Arc::clone(&runtime),
                Arc::clone(&metrics),
            ));
        }
        None if config.master.is_some() => {
            tokio::spawn(master_link::join_from_config(
                config.clone(),
                Arc::clone(&runtime),
                Arc::clone(&metrics),
            ));
        }
        None => {}
    }
    // Adopt and converge before answering anyone.
    if let Err(e) = runtime.resync().await {
        warn!(error = %format!("{e:#}"), "first resync failed; retrying in the background");
    }
    if standalone && !runtime.pod_containers().is_empty() {
        // Pods without a master: local ones, or a joined node's whose
        // state directory (and credential) is gone.
        let node = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        warn!(
            "not joined to a master, but pods run here; they keep running. If this node was \
             joined and lost its credential: {}",
            master_link::rejoin_hint(node.trim())
        );
    }
    // Its own Docker client: polling application endpoints must not wait
    // behind the runtime's work.
    let hook_docker = docker::Docker::connect(&config.docker_socket).await.ok();
    let sampler = tokio::spawn(metrics::run(
        Arc::clone(&metrics),
        Arc::clone(&runtime),
        hook_docker,
        Duration::from_secs(config.metrics_interval_secs),
    ));
    if let Some(address) = config.metrics_listen {
        let tcp = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding metrics-listen {address}"))?;
        info!(listen = %address, "serving /metrics over TCP");
        let router = metrics::router(Arc::clone(&metrics));
        tokio::spawn(async move { axum::serve(tcp, router).await });
    }
    let listener = bind_socket(&config.socket)?;
    info!(socket = %config.socket.display(), "local API listening");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let resync = {
        let runtime = Arc::clone(&runtime);
        let interval = Duration::from_secs(config.resync_interval_secs);
        tokio::spawn(async move { runtime.resync_forever(interval).await })
    };
    // On stop, requests in flight get a second to finish: long polls and
    // log streams must not hold a stop up (or a host's shutdown).
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let (mut graceful, mut deadline) = (stop.clone(), stop);
    let router = api::router(runtime).merge(metrics::router(metrics));
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let served = tokio::select! {
        served = server => served,
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => Ok(()),
    };
    resync.abort();
    sampler.abort();
    status_events.abort();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = std::fs::remove_file(&config.socket);
    served.context("serving the local API")
}

/// Stops and removes every pod on this host (units, containers, slices,
/// host ports), the way a package removal needs: the shim the units run is
/// about to disappear, so they must not be left to fail on their next
/// start. Pods a lost state directory left behind are adopted first so
/// they go too. Named volumes are kept (a purge removes them). Returns the
/// pods removed.
pub async fn teardown(config: AgentConfig) -> anyhow::Result<Vec<String>> {
    let store = store::PodStore::open(&config.pods_dir())?;
    let docker = docker::Docker::connect(&config.docker_socket)
        .await
        .context("connecting to Docker")?;
    let systemd = systemd::Systemd::connect()
        .await
        .context("connecting to systemd")?;
    let runtime = Runtime::new(config, store, docker, systemd.clone());
    runtime.resync().await?;
    let mut removed = Vec::new();
    for pod in runtime.list(true).await? {
        runtime.delete_with(&pod.name, Volumes::Keep).await?;
        removed.push(pod.name);
    }
    // The parent slice of every pod's, empty now.
    systemd
        .stop("berth.slice")
        .await
        .context("stopping berth.slice")?;
    // journald keeps its lifted rate limit until the next boot; the drop-in
    // itself is berth's and goes now.
    match std::fs::remove_file(journal::RATE_LIMIT_DROP_IN) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(journal::RATE_LIMIT_DROP_IN);
        }
        _ => {}
    }
    Ok(removed)
}

async fn wait_for<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut connect: impl FnMut() -> F,
) -> T {
    let mut delay = Duration::from_millis(100);
    loop {
        match connect().await {
            Ok(client) => return client,
            Err(e) => {
                warn!(error = %e, "waiting for {what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Binds the API socket, root only: the directory is 0700 and the socket
/// 0600. A stale socket from a crashed agent is replaced.
fn bind_socket(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()))
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
