//! berth-router: HAProxy, run as a systemd unit, serving the master's
//! routes to the services' ready endpoints.
//!
//! [`master`] follows the routes and endpoints by long poll; [`layout`]
//! decides what HAProxy should serve and [`plan`] whether the runtime API
//! can get it there or a reload must (both pure); [`haproxy`] renders,
//! checks and talks to HAProxy; [`systemd`] starts and reloads its unit.
#![forbid(unsafe_code)]

pub mod config;
pub mod haproxy;
pub mod layout;
pub mod master;
pub mod plan;
pub mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_model::endpoints::ServiceEndpoints;
use berth_model::Route;
use tracing::{info, warn};

use crate::config::{RouterConfig, RUNTIME_DIR, STATE_DIR};
use crate::haproxy::render::{self, Paths, Ports};
use crate::layout::Layout;
use crate::master::Master;
use crate::plan::{Applied, Step};
use crate::systemd::Systemd;

/// Runs the router until the process is stopped. Stopping it leaves
/// HAProxy serving what it serves.
pub async fn run(config: RouterConfig) -> anyhow::Result<()> {
    let mut joined = master::load_joined(&config.agent_state_dir)?;
    if !config.master.urls.is_empty() {
        joined.urls.clone_from(&config.master.urls);
    }
    let master = Master::new(joined)?;
    let systemd = Systemd::connect().await?;
    let state_dir = PathBuf::from(STATE_DIR);
    for dir in [
        state_dir.clone(),
        state_dir.join("certs"),
        state_dir.join("check"),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    info!(node = master.node(), "berth-router following the master");
    let (mut routes, mut endpoints) = master.watch();
    let mut router = Router {
        config,
        systemd,
        master,
        state_dir,
        applied: None,
        rejected: BTreeMap::new(),
        started: false,
        reload_mark: String::new(),
    };
    loop {
        let wanted = (
            routes.borrow_and_update().clone(),
            endpoints.borrow_and_update().clone(),
        );
        let mut retry = None;
        if let (Some(routes), Some(endpoints)) = wanted {
            if let Err(e) = router.converge(&routes.routes, &endpoints.services).await {
                warn!(error = %format!("{e:#}"), "applying routes failed; retrying");
                retry = Some(Duration::from_secs(1));
            }
        }
        let pause = tokio::time::sleep(retry.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            changed = routes.changed() => changed?,
            changed = endpoints.changed() => changed?,
            () = pause => {}
        }
    }
}

/// The router's own state between rounds.
struct Router {
    config: RouterConfig,
    systemd: Systemd,
    master: Master,
    state_dir: PathBuf,
    /// What HAProxy runs, as this process last applied it.
    applied: Option<Applied>,
    /// Routes HAProxy refused, as they were when refused: skipped until
    /// they change.
    rejected: BTreeMap<String, Route>,
    /// Whether the HAProxy unit was started (and systemd told we are up).
    started: bool,
    /// The reload HAProxy's configuration was applied by (its
    /// `description`): runtime commands must reach a worker of it.
    reload_mark: String,
}

impl Router {
    fn ports(&self) -> Ports {
        Ports {
            http: self.config.http_port,
            https: self.config.https_port,
        }
    }

    /// Brings HAProxy to the routes and endpoints.
    async fn converge(
        &mut self,
        routes: &[Route],
        endpoints: &[ServiceEndpoints],
    ) -> anyhow::Result<()> {
        // A rejected route is retried once it changes.
        self.rejected
            .retain(|name, bad| routes.iter().any(|r| &r.name == name && r == bad));
        let skip: BTreeSet<String> = self.rejected.keys().cloned().collect();
        let (layout, wanted) = layout::decide(routes, endpoints, &skip);
        match plan::plan(self.applied.as_ref(), layout.clone(), &wanted) {
            Step::Nothing => Ok(()),
            Step::Runtime { commands, slots } => {
                let socket = Path::new(RUNTIME_DIR).join("admin.sock");
                match haproxy::runtime::send(&socket, &commands, &self.reload_mark).await {
                    Ok(()) => {
                        info!(
                            commands = commands.len(),
                            "servers changed through the runtime API"
                        );
                        if let Some(applied) = &mut self.applied {
                            applied.slots.extend(slots);
                            // If HAProxy restarts, it starts with the
                            // servers it has now: the file follows, without
                            // a reload (only server addresses changed).
                            let applied = applied.clone();
                            let config = self.state_dir.join("haproxy.cfg");
                            let crt_list = self.state_dir.join("crt-list");
                            self.write(&applied, &config, &crt_list, &self.reload_mark)?;
                        }
                        Ok(())
                    }
                    Err(e) => {
                        warn!(error = %e, "runtime API failed; reloading instead");
                        let Step::Reload(next) = plan::plan(None, layout, &wanted) else {
                            unreachable!("a first plan always reloads")
                        };
                        self.reload(next, routes).await
                    }
                }
            }
            Step::Reload(next) => self.reload(next, routes).await,
        }
    }

    /// Writes, checks and applies a new configuration. If HAProxy refuses
    /// it, finds the routes it refuses one by one, reports and skips them,
    /// and applies the rest.
    async fn reload(&mut self, next: Applied, routes: &[Route]) -> anyhow::Result<()> {
        let config_path = self.state_dir.join("haproxy.cfg");
        let candidate = self.state_dir.join("haproxy.cfg.new");
        let crt_list = self.state_dir.join("crt-list");
        let reload_mark = new_reload_mark();
        self.write(&next, &candidate, &crt_list, &reload_mark)?;
        if let Err(refused) = haproxy::check::check(&self.config.haproxy, &candidate).await {
            warn!(error = %refused, "haproxy refused the configuration; checking route by route");
            let bad = self.find_refused(&next.layout, routes).await?;
            if bad.is_empty() {
                return Err(refused)
                    .context("haproxy refused a configuration without routes at fault");
            }
            for (route, reason) in bad {
                warn!(route = %route.name, %reason, "route refused by haproxy; skipped");
                if let Err(e) = self.master.reject(&route.name, &reason).await {
                    warn!(error = %e, "reporting the refused route failed");
                }
                self.rejected.insert(route.name.clone(), route);
            }
            // The next round renders without them.
            anyhow::bail!("skipping refused routes; applying the others next");
        }
        std::fs::rename(&candidate, &config_path)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let unit = self.config.haproxy_unit.clone();
        if self.started {
            self.systemd.reload(&unit).await?;
        } else {
            // Start it if it is not running, then reload: it may run an
            // older configuration from before this router started.
            self.systemd.start(&unit).await?;
            self.systemd.reload(&unit).await?;
            self.started = true;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        info!(
            backends = next.layout.backends.len(),
            "haproxy reloaded with a new configuration"
        );
        self.remove_stale_certificates(&next.layout);
        self.applied = Some(next);
        self.reload_mark = reload_mark;
        Ok(())
    }

    /// Writes the certificates (0600), the crt-list and the configuration
    /// at `path`.
    fn write(
        &self,
        applied: &Applied,
        path: &Path,
        crt_list: &Path,
        reload_mark: &str,
    ) -> anyhow::Result<()> {
        let certificates_dir = self.state_dir.join("certs");
        for certificate in &applied.layout.certificates {
            write_private(
                &certificates_dir.join(format!("{}.pem", certificate.route)),
                &certificate.pem,
            )?;
        }
        write_private(
            crt_list,
            &render::render_crt_list(&applied.layout, &certificates_dir)?,
        )?;
        let paths = Paths {
            runtime_dir: Path::new(RUNTIME_DIR),
            crt_list,
            certificates_dir: &certificates_dir,
        };
        let text = render::render(
            &applied.layout,
            &applied.slots,
            self.ports(),
            &paths,
            reload_mark,
        )?;
        write_private(path, &text)
    }

    /// The routes HAProxy refuses when each is checked alone, with why.
    async fn find_refused(
        &self,
        layout: &Layout,
        routes: &[Route],
    ) -> anyhow::Result<Vec<(Route, String)>> {
        let mut bad = Vec::new();
        for route in routes {
            if self.rejected.contains_key(&route.name)
                || !layout
                    .backends
                    .iter()
                    .any(|b| b.name == layout::backend_name(&route.name))
            {
                continue;
            }
            let (alone, wanted) =
                layout::decide(std::slice::from_ref(route), &[], &BTreeSet::new());
            let Step::Reload(applied) = plan::plan(None, alone, &wanted) else {
                continue;
            };
            let dir = self.state_dir.join("check");
            let path = dir.join(format!("{}.cfg", route.name));
            let crt_list = dir.join(format!("{}.crt-list", route.name));
            let reason = match self.write(&applied, &path, &crt_list, &self.reload_mark) {
                Err(e) => Some(format!("{e:#}")),
                Ok(()) => haproxy::check::check(&self.config.haproxy, &path)
                    .await
                    .err()
                    .map(|e| e.to_string()),
            };
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&crt_list);
            if let Some(reason) = reason {
                bad.push((route.clone(), reason));
            }
        }
        Ok(bad)
    }

    /// Removes the certificate files of routes no longer served.
    fn remove_stale_certificates(&self, layout: &Layout) {
        let keep: BTreeSet<String> = layout
            .certificates
            .iter()
            .map(|c| format!("{}.pem", c.route))
            .collect();
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("certs")) else {
            return;
        };
        for entry in entries.flatten() {
            if !keep.contains(&entry.file_name().to_string_lossy().into_owned()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes `text` to `path` readable by root only (certificates and keys,
/// and the configuration that names them), replacing it atomically.
/// A mark no earlier reload had, this router's or a previous one's: the
/// time in nanoseconds.
fn new_reload_mark() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("berth-router-{}", now.as_nanos())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
