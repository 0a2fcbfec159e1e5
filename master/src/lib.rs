//! berth-master: cluster state, the HTTP API, the scheduler and node
//! lifecycle.
//!
//! [`store`] keeps the state (embedded or etcd), [`objects`] says where each
//! kind lives in it, [`api`] turns HTTP into store reads and writes,
//! [`controller`] keeps services at their replica count and places pods with
//! the pure [`scheduler`], and [`auth`] decides who may call what.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod controller;
pub mod objects;
pub mod scheduler;
pub mod store;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::info;

use crate::config::MasterConfig;
use crate::controller::liveness::Liveness;
use crate::store::Store;

/// Runs the master on `listener` until `shutdown` resolves: opens the
/// store, makes sure an admin token exists, runs the controller and serves
/// the API.
pub async fn run(
    config: MasterConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store::embedded::EmbeddedStore::open(
        &config.state_dir.join("store.db"),
    )?);
    let admin_token = ensure_admin_token(&config.state_dir.join("admin.token"))?;
    let liveness = Arc::new(Liveness::new(Duration::from_secs(config.node_grace_secs)));
    let state = api::AppState {
        store: Arc::clone(&store),
        liveness: Arc::clone(&liveness),
        admin_token_hash: auth::hash(&admin_token),
        public_url: config.public_url("http"),
    };
    let controller = tokio::spawn(controller::run(
        store,
        liveness,
        Duration::from_millis(config.controller_interval_ms),
    ));
    info!(listen = %listener.local_addr()?, url = %state.public_url, "berth-master serving");
    notify_ready();
    // On stop, requests in flight get a second to finish: long polls and
    // log streams must not hold a stop up (or a host's shutdown).
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let (mut graceful, mut deadline) = (stop.clone(), stop);
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let served = tokio::select! {
        served = server => served,
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => Ok(()),
    };
    controller.abort();
    served.context("serving the API")
}

/// The admin token, made at first start: 0600, read by `berth login`.
fn ensure_admin_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        return Ok(token.trim().to_owned());
    }
    let token = auth::new_secret()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    info!(path = %path.display(), "admin token created");
    Ok(token)
}

/// Tells systemd the master is up (Type=notify), if it runs under systemd.
fn notify_ready() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}
