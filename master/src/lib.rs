//! berth-master: cluster state, the HTTP API, the scheduler and node
//! lifecycle.
//!
//! [`store`] keeps the state (embedded or etcd), [`objects`] says where each
//! kind lives in it, [`api`] turns HTTP into store reads and writes,
//! [`controller`] keeps services at their replica count and places pods with
//! the pure [`scheduler`], and [`auth`] decides who may call what.
#![forbid(unsafe_code)]

pub mod api;
pub mod assignments;
pub mod auth;
pub mod config;
pub mod controller;
pub mod instruments;
pub mod joining;
pub mod logs;
pub mod metrics;
pub mod mirror;
pub mod objects;
pub mod registry;
pub mod resource;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tls;
pub mod ui;
pub mod webhooks;
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
    run_with(config, listener, Serving::InsecureHttp, shutdown).await
}

/// How the API is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// HTTPS with the master's own CA (the default of `berth-master`).
    Tls,
    /// Plain HTTP: tests on loopback and `--insecure-http` only.
    InsecureHttp,
}

/// Runs the master, serving the API as `serving` says.
pub async fn run_with(
    config: MasterConfig,
    listener: tokio::net::TcpListener,
    serving: Serving,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let instruments = Arc::new(instruments::Instruments::default());
    // With etcd, several masters may share the store: keep the etcd handle
    // for the election and for sharing heartbeats.
    let etcd = match config.store.backend {
        store::StoreBackend::Etcd => Some(
            store::etcd::EtcdStore::connect(
                &config.store.etcd_endpoints,
                &config.store.etcd_prefix,
            )
            .await?,
        ),
        store::StoreBackend::Embedded => None,
    };
    let opened: Arc<dyn Store> = match &etcd {
        Some(etcd) => Arc::new(etcd.clone()),
        None => store::open_store(&config.store, &config.state_dir).await?,
    };
    let store: Arc<dyn Store> =
        Arc::new(store::timed::Timed::new(opened, Arc::clone(&instruments)));
    ensure_default_project(store.as_ref())
        .await
        .context("creating the default project")?;
    let logs = logs::LogStore::open(&config.state_dir.join("logs.db"))
        .with_context(|| format!("opening {}", config.state_dir.join("logs.db").display()))?;
    let log_retention = tokio::spawn(prune_logs_forever(Arc::clone(&logs), config.logs));
    let admin_token = ensure_admin_token(&config.state_dir.join("admin.token"))?;
    let liveness = Arc::new(Liveness::new(Duration::from_secs(config.node_grace_secs)));
    let pki = match serving {
        Serving::Tls => Some(tls::ensure(&config.state_dir, &server_names(&config))?),
        Serving::InsecureHttp => None,
    };
    let ca_hash = pki.as_ref().map(|p| tls::ca_hash(&p.ca_pem)).transpose()?;
    let registry = pki
        .as_ref()
        .map(|p| registry::Registry::open(&config, &p.ca_pem).map(Arc::new))
        .transpose()
        .context("loading the registry's keys")?;
    let mirror = Arc::new(mirror::ClusterMirror::default());
    let mirroring = tokio::spawn(Arc::clone(&mirror).follow(Arc::clone(&store)));
    let state = api::AppState {
        mirror,
        ca_pem: pki.as_ref().map(|p| p.ca_pem.clone()),
        ca_hash,
        store: Arc::clone(&store),
        logs,
        metrics: Arc::new(metrics::MetricsCache::default()),
        instruments: Arc::clone(&instruments),
        registry,
        build_inputs: config.state_dir.join("build-inputs"),
        ca_dir: pki.as_ref().map(|_| config.state_dir.clone()),
        liveness: Arc::clone(&liveness),
        heartbeat_sharing: etcd.as_ref().map(|etcd| {
            Arc::new(controller::shared_liveness::HeartbeatSharing::new(
                etcd.clone(),
                Duration::from_secs(config.node_grace_secs),
            ))
        }),
        admin_token_hash: auth::hash(&admin_token),
        route_suffix: config.route_suffix.clone(),
        host_ports: config.host_port_policy(),
        network_volume_servers: config.network_volume_servers.clone(),
        master_name: master_name(),
        public_url: config.public_url(if serving == Serving::Tls {
            "https"
        } else {
            "http"
        }),
    };
    let leader_work = LeaderWork {
        state: state.clone(),
        config: config.clone(),
        liveness,
        instruments,
        follow_heartbeats: etcd.is_some(),
    };
    // On stop, requests in flight get a second to finish: long polls and
    // log streams must not hold a stop up (or a host's shutdown).
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let (campaign, leading) = match etcd {
        Some(etcd) => {
            let me = store::etcd::election::Member {
                name: state.master_name.clone(),
                url: state.public_url.clone(),
            };
            let (terms, elected) = tokio::sync::watch::channel(None);
            let ttl = Duration::from_secs(config.store.leader_lease_secs);
            let campaign = tokio::spawn(store::etcd::election::campaign(
                etcd.clone(),
                me,
                ttl,
                terms,
                stop.clone(),
            ));
            let lead = tokio::spawn(lead_each_term(leader_work, etcd, elected));
            (Some(campaign), vec![lead])
        }
        // The embedded store has one master: it always leads.
        None => (None, leader_work.start(store)),
    };
    info!(listen = %listener.local_addr()?, url = %state.public_url, "berth-master serving");
    notify_ready();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let tls = pki.as_ref().map(tls::server_config).transpose()?;
    check_open_file_limit(&config.connections);
    // The web console calls the API's router in process.
    let api = api::router(state);
    let app = ui::router(api.clone(), serving == Serving::Tls).merge(api);
    let server = server::serve(listener, tls, app, config.connections, stop.clone());
    let mut deadline = stop;
    tokio::select! {
        () = server => {}
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => {}
    };
    // A stopping leader revokes its lease (the campaign does on stop), so
    // that another master takes over at once rather than after the lease.
    if let Some(campaign) = campaign {
        let _ = tokio::time::timeout(Duration::from_secs(2), campaign).await;
    }
    for task in leading {
        task.abort();
    }
    log_retention.abort();
    mirroring.abort();
    Ok(())
}

/// What only the leader runs, and what it needs for it.
struct LeaderWork {
    state: api::AppState,
    config: MasterConfig,
    liveness: Arc<Liveness>,
    instruments: Arc<instruments::Instruments>,
    /// Whether other masters share heartbeats through the store.
    follow_heartbeats: bool,
}

impl LeaderWork {
    /// Starts the controller, webhook delivery and scheduled image imports,
    /// writing through `store` (fenced on the term with etcd), after giving
    /// every node a fresh grace period.
    fn start(&self, store: Arc<dyn Store>) -> Vec<tokio::task::JoinHandle<()>> {
        self.liveness.fresh_grace();
        let config = &self.config;
        let retention = controller::events::Retention {
            max_events: config.events.max_count,
            max_age: Duration::from_secs(config.events.max_age_secs),
        };
        let mut tasks = vec![
            tokio::spawn(webhooks::run(Arc::clone(&store), config.webhooks.clone())),
            tokio::spawn(api::image_streams::import_forever(
                api::AppState {
                    store: Arc::clone(&store),
                    ..self.state.clone()
                },
                Duration::from_secs(config.registry.import_interval_secs),
            )),
        ];
        if self.follow_heartbeats {
            tasks.push(tokio::spawn(controller::shared_liveness::follow(
                Arc::clone(&store),
                Arc::clone(&self.liveness),
            )));
        }
        tasks.push(tokio::spawn(controller::prune_events_forever(
            Arc::clone(&store),
            retention,
        )));
        tasks.push(tokio::spawn(controller::run(
            store,
            Arc::clone(&self.state.mirror),
            Arc::clone(&self.liveness),
            Duration::from_millis(config.controller_interval_ms),
            config.unhealthy_node_threshold,
            Arc::clone(&self.instruments),
        )));
        tasks
    }
}

/// Runs the leader's work during each term this master wins, through the
/// store fenced on that term, and stops it the moment the term ends.
async fn lead_each_term(
    work: LeaderWork,
    etcd: store::etcd::EtcdStore,
    mut elected: tokio::sync::watch::Receiver<Option<store::etcd::election::Term>>,
) {
    loop {
        let Ok(term) = elected.wait_for(Option::is_some).await.map(|t| t.clone()) else {
            return;
        };
        let Some(term) = term else { continue };
        let fenced: Arc<dyn Store> = Arc::new(store::timed::Timed::new(
            Arc::new(term.fenced(&etcd)),
            Arc::clone(&work.instruments),
        ));
        let tasks = work.start(fenced);
        let sharing = work.state.heartbeat_sharing.as_deref();
        if let Some(sharing) = sharing {
            sharing.set_leading(true);
        }
        let created = term.created();
        let ended = elected
            .wait_for(|now| now.as_ref().map(store::etcd::election::Term::created) != Some(created))
            .await;
        if let Some(sharing) = sharing {
            sharing.set_leading(false);
        }
        for task in tasks {
            task.abort();
        }
        if ended.is_err() {
            return;
        }
    }
}

/// This master's name among several: its host name.
fn master_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "master".into())
}

/// Warns when the open-file limit leaves no room for the connection cap:
/// connections past it would fail to be accepted, instead of getting the
/// cap's clear refusal.
fn check_open_file_limit(connections: &config::ConnectionsConfig) {
    let needed = connections.max_connections as u64 + server::RESERVED_FILES;
    if let Some(limit) = server::open_file_limit() {
        if limit < needed {
            tracing::warn!(
                limit,
                needed,
                "the open-file limit is below connections.max-connections plus what the master needs besides; raise LimitNOFILE= or lower the cap"
            );
        }
    }
}

/// Applies log retention at start and every minute after.
async fn prune_logs_forever(logs: Arc<logs::LogStore>, config: config::LogsConfig) {
    loop {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let logs_now = Arc::clone(&logs);
        match tokio::task::spawn_blocking(move || logs_now.prune(&config, now_us)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(dropped)) => info!(dropped, "log retention dropped old lines"),
            Ok(Err(e)) => tracing::warn!(error = %e, "log retention failed"),
            Err(e) => tracing::warn!(error = %e, "log retention panicked"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// The names the server certificate covers: the host's name, the public
/// URL's host, the listen address and loopback.
pub(crate) fn server_names(config: &MasterConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        names.push(host.trim().to_owned());
    }
    if !config.listen.ip().is_unspecified() {
        names.push(config.listen.ip().to_string());
    }
    if let Some(url) = &config.public_url {
        if let Some(host) = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split([':', '/']).next())
        {
            names.push(host.to_owned());
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

/// The admin token, made at first start: 0600, read by `berth login`.
pub(crate) fn ensure_admin_token(path: &Path) -> anyhow::Result<String> {
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

/// Creates the `default` project unless it exists: the objects made before
/// projects, and the API paths without one, are its.
async fn ensure_default_project(store: &dyn Store) -> Result<(), store::StoreError> {
    let default = berth_model::Project::named(berth_model::DEFAULT_PROJECT);
    match store.apply(resource::create_ops(&default)).await {
        Ok(_) | Err(store::StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
