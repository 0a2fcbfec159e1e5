//! systemd over D-Bus (zbus): link and enable unit files, start, stop and
//! restart units and wait for their jobs, read their state. Never by
//! scraping `systemctl`.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use berth_daemon::systemd::{ManagerProxy, ServiceProxy, UnitProxy};
use futures_util::StreamExt;
use zbus::zvariant::OwnedObjectPath;

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `activating`, `failed`, `inactive`, ...
    pub active_state: String,
    /// `running`, `auto-restart`, `dead`, `exited`, ...
    pub sub_state: String,
    /// `success`, `exit-code`, `signal`, `oom-kill`, ...
    pub result: String,
    /// Exit status of the last main process.
    pub exec_main_status: i32,
    /// How the main process ended, as a shell says it (its status, or 128
    /// plus the signal that killed it), once it has ended; `None` while it
    /// runs or before it ever ran.
    pub main_exit: Option<i64>,
    /// PID of the main process (the shim), 0 when none.
    pub main_pid: u32,
    /// Restarts systemd made.
    pub restarts: u32,
    /// Whether the loaded unit is older than its file.
    pub needs_reload: bool,
    /// The main process's last `STATUS=` (berth-shim reports its probes
    /// there).
    pub status_text: String,
}

/// What can go wrong talking to systemd.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// A D-Bus call failed.
    #[error("systemd: {action}: {source}")]
    Call {
        /// What was asked.
        action: String,
        /// D-Bus's answer.
        source: zbus::Error,
    },
    /// A job ended without success.
    #[error("systemd: {action} {unit} ended with result {result:?}")]
    Job {
        /// start, stop, restart.
        action: &'static str,
        /// The unit.
        unit: String,
        /// systemd's job result (`failed`, `timeout`, `dependency`, ...).
        result: String,
    },
    /// A job did not finish in time.
    #[error("systemd: {action} {unit} did not finish within {timeout:?}")]
    Timeout {
        /// start, stop, restart.
        action: &'static str,
        /// The unit.
        unit: String,
        /// How long the agent waited.
        timeout: Duration,
    },
}

fn call(action: impl Into<String>) -> impl FnOnce(zbus::Error) -> SystemdError {
    let action = action.into();
    move |source| SystemdError::Call { action, source }
}

/// The system manager, over the system bus.
#[derive(Debug, Clone)]
pub struct Systemd {
    connection: zbus::Connection,
    manager: ManagerProxy<'static>,
}

/// How long a start or stop job may take before the agent reports it.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

impl Systemd {
    /// Connects to the system bus and subscribes to job signals.
    pub async fn connect() -> Result<Self, SystemdError> {
        let connection = zbus::Connection::system()
            .await
            .map_err(call("connecting to the system bus"))?;
        let manager = ManagerProxy::new(&connection)
            .await
            .map_err(call("creating the manager proxy"))?;
        manager.subscribe().await.map_err(call("Subscribe"))?;
        Ok(Self {
            connection,
            manager,
        })
    }

    /// Links the unit files at `paths` into systemd's search path and enables
    /// them (`systemctl enable /path/unit`), so they start at boot. A unit
    /// file systemd has never loaded needs no reload to be started.
    pub async fn enable(&self, paths: &[String]) -> Result<(), SystemdError> {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.manager
            .enable_unit_files(&paths, false, true)
            .await
            .map_err(call("EnableUnitFiles"))?;
        Ok(())
    }

    /// Disables units and removes their links.
    pub async fn disable(&self, names: &[String]) -> Result<(), SystemdError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.manager
            .disable_unit_files(&names, false)
            .await
            .map_err(call("DisableUnitFiles"))?;
        Ok(())
    }

    /// `daemon-reload`: only for units whose loaded definition is stale.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        self.manager.reload().await.map_err(call("Reload"))
    }

    /// Starts a unit and waits until its job is done (for `Type=notify`, until
    /// it sent READY=1).
    pub async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("start", unit).await
    }

    /// Queues a unit's start and returns at once (the job runs on).
    pub async fn enqueue_start(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .start_unit(unit, "replace")
            .await
            .map_err(call(format!("start {unit}")))?;
        Ok(())
    }

    /// Stops a unit and waits until it is stopped.
    pub async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("stop", unit).await
    }

    /// Restarts a unit and waits until it runs again.
    pub async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("restart", unit).await
    }

    /// Forgets a failed unit's failure, so a new start is not rate limited.
    pub async fn reset_failed(&self, unit: &str) {
        let _ = self.manager.reset_failed_unit(unit).await;
    }

    async fn run_job(&self, action: &'static str, unit: &str) -> Result<(), SystemdError> {
        // Listen before asking, or a fast job's signal would be missed.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(call("watching JobRemoved"))?;
        let job = match action {
            "start" => self.manager.start_unit(unit, "replace").await,
            "stop" => self.manager.stop_unit(unit, "replace").await,
            _ => self.manager.restart_unit(unit, "replace").await,
        }
        .map_err(call(format!("{action} {unit}")))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return Some(args.result.to_owned());
                }
            }
            None
        };
        match tokio::time::timeout(JOB_TIMEOUT, wait).await {
            Ok(Some(result)) if result == "done" => Ok(()),
            Ok(Some(result)) => Err(SystemdError::Job {
                action,
                unit: unit.to_owned(),
                result,
            }),
            Ok(None) => Err(SystemdError::Job {
                action,
                unit: unit.to_owned(),
                result: "bus closed".into(),
            }),
            Err(_) => Err(SystemdError::Timeout {
                action,
                unit: unit.to_owned(),
                timeout: JOB_TIMEOUT,
            }),
        }
    }

    /// The state of `unit` if systemd has it loaded; `None` otherwise. Uses
    /// GetUnit, which never loads a unit (LoadUnit would cache it). The
    /// properties are asked for all at once: one wait for their answers,
    /// not one per property.
    pub async fn state(&self, unit: &str) -> Result<Option<UnitState>, SystemdError> {
        let Some(path) = self.loaded_unit(unit).await? else {
            return Ok(None);
        };
        let unit_proxy = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .map_err(call("unit path"))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(call("unit proxy"))?;
        let read = |e| SystemdError::Call {
            action: format!("reading {unit}"),
            source: e,
        };
        let (active_state, sub_state, needs_reload) = futures_util::try_join!(
            unit_proxy.active_state(),
            unit_proxy.sub_state(),
            unit_proxy.need_daemon_reload(),
        )
        .map_err(read)?;
        let mut state = UnitState {
            active_state,
            sub_state,
            needs_reload,
            ..UnitState::default()
        };
        // A slice has no process: only services have these.
        if unit.ends_with(".service") {
            let service = ServiceProxy::builder(&self.connection)
                .path(path)
                .map_err(call("service path"))?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .map_err(call("service proxy"))?;
            let exited;
            (
                state.result,
                state.exec_main_status,
                exited,
                state.main_pid,
                state.restarts,
                state.status_text,
            ) = futures_util::try_join!(
                service.result(),
                service.exec_main_status(),
                service.exec_main_exit_timestamp_monotonic(),
                service.main_pid(),
                service.n_restarts(),
                service.status_text(),
            )
            .map_err(read)?;
            if exited != 0 {
                let code = service.exec_main_code().await.map_err(read)?;
                state.main_exit = Some(main_exit(code, state.exec_main_status));
            }
        }
        Ok(Some(state))
    }

    /// The object path of `unit` if systemd has it loaded. GetUnit never
    /// loads a unit (LoadUnit would cache it).
    async fn loaded_unit(&self, unit: &str) -> Result<Option<OwnedObjectPath>, SystemdError> {
        match self.manager.get_unit(unit).await {
            Ok(path) => Ok(Some(path)),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(None)
            }
            Err(e) => Err(SystemdError::Call {
                action: format!("GetUnit {unit}"),
                source: e,
            }),
        }
    }

    /// Whether `unit` is settled: `None` when it is loaded, active and has
    /// no job pending (or is not loaded at all), else what it is doing
    /// (`active, a job pending`, `activating`, ...).
    pub async fn unsettled(&self, unit: &str) -> Result<Option<String>, SystemdError> {
        let Some(path) = self.loaded_unit(unit).await? else {
            return Ok(None);
        };
        let proxy = UnitProxy::builder(&self.connection)
            .path(path)
            .map_err(call("unit path"))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(call("unit proxy"))?;
        let read = |e| SystemdError::Call {
            action: format!("reading {unit}"),
            source: e,
        };
        let active = proxy.active_state().await.map_err(read)?;
        let (job, _) = proxy.job().await.map_err(read)?;
        Ok(match (active.as_str(), job) {
            ("active", 0) => None,
            (active, 0) => Some(format!("{unit} is {active}")),
            (active, _) => Some(format!("{unit} is {active}, a job pending")),
        })
    }

    /// States of several units at once.
    pub async fn states(
        &self,
        units: &[String],
    ) -> Result<HashMap<String, UnitState>, SystemdError> {
        // A few units at a time: their answers come in together.
        const AT_ONCE: usize = 8;
        let mut states = HashMap::new();
        for some in units.chunks(AT_ONCE) {
            let mut reads = Vec::with_capacity(some.len());
            for unit in some {
                reads.push(self.state(unit));
            }
            let read = futures_util::future::try_join_all(reads).await?;
            for (unit, state) in some.iter().zip(read) {
                states.extend(state.map(|s| (unit.clone(), s)));
            }
        }
        Ok(states)
    }
}

/// The properties of a unit that a pod's status shows (see [`UnitState`]):
/// a signal that changes none of them changes no status.
const STATUS_PROPERTIES: [&str; 9] = [
    "ActiveState",
    "SubState",
    "Result",
    "ExecMainStatus",
    "ExecMainCode",
    "ExecMainExitTimestampMonotonic",
    "MainPID",
    "NRestarts",
    "StatusText",
];

/// Whether a `PropertiesChanged` naming `properties` (changed or
/// invalidated) changes what a pod's status shows.
pub fn changes_status<'a>(mut properties: impl Iterator<Item = &'a str>) -> bool {
    properties.any(|p| STATUS_PROPERTIES.contains(&p))
}

/// The unit of a systemd object path (`/org/freedesktop/systemd1/unit/`
/// and the name with each byte other than a letter or digit written as
/// `_` and two hex digits, as sd-bus escapes it).
pub fn unit_of_path(path: &str) -> Option<String> {
    let label = path.strip_prefix("/org/freedesktop/systemd1/unit/")?;
    let mut bytes = Vec::with_capacity(label.len());
    let mut rest = label.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The berth unit a `PropertiesChanged` is about, if it changes a status.
fn changed_unit(message: &zbus::Message) -> Option<String> {
    let unit = unit_of_path(message.header().path()?.as_str())?;
    if !unit.starts_with("berth") {
        return None;
    }
    let body = message.body();
    let (_, changed, invalidated): (&str, HashMap<&str, zbus::zvariant::Value<'_>>, Vec<&str>) =
        body.deserialize().ok()?;
    changes_status(changed.keys().copied().chain(invalidated)).then_some(unit)
}

/// The berth unit a `UnitNew` or `UnitRemoved` is about.
fn loaded_unit(message: &zbus::Message) -> Option<String> {
    let header = message.header();
    let member = header.member()?.as_str();
    if member != "UnitNew" && member != "UnitRemoved" {
        return None;
    }
    let (unit, _): (String, OwnedObjectPath) = message.body().deserialize().ok()?;
    unit.starts_with("berth").then_some(unit)
}

impl Systemd {
    /// berth's units as they change, by name: those whose state a status
    /// shows changed (`PropertiesChanged`), or that were loaded or unloaded
    /// (`UnitNew`, `UnitRemoved`). Signals sent before the call are not
    /// seen; the stream ends when the bus connection does.
    pub async fn unit_changes(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + Send + 'static, SystemdError> {
        let rule = |interface: &'static str| {
            zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender("org.freedesktop.systemd1")
                .and_then(|b| b.interface(interface))
                .map_err(call("match rule"))
        };
        let properties = rule("org.freedesktop.DBus.Properties")?
            .member("PropertiesChanged")
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1/unit"))
            .map_err(call("match rule"))?
            .build();
        let loaded = rule("org.freedesktop.systemd1.Manager")?
            .path("/org/freedesktop/systemd1")
            .map_err(call("match rule"))?
            .build();
        // A full queue holds up every message of the connection, replies
        // included: the caller reads the stream without pause, and a
        // burst of changes has room.
        const QUEUED: Option<usize> = Some(4096);
        let properties = zbus::MessageStream::for_match_rule(properties, &self.connection, QUEUED)
            .await
            .map_err(call("watching PropertiesChanged"))?;
        let loaded = zbus::MessageStream::for_match_rule(loaded, &self.connection, QUEUED)
            .await
            .map_err(call("watching UnitNew and UnitRemoved"))?;
        let properties = properties
            .filter_map(|m| futures_util::future::ready(m.ok().as_ref().and_then(changed_unit)));
        let loaded = loaded
            .filter_map(|m| futures_util::future::ready(m.ok().as_ref().and_then(loaded_unit)));
        Ok(futures_util::stream::select(properties, loaded))
    }
}

/// A main process's end as a shell says it: `CLD_EXITED` (1) gives its
/// exit status, a signal (`CLD_KILLED`, `CLD_DUMPED`) 128 plus its number.
pub fn main_exit(code: i32, status: i32) -> i64 {
    const CLD_EXITED: i32 = 1;
    if code == CLD_EXITED {
        i64::from(status)
    } else {
        128 + i64::from(status)
    }
}

/// Where systemd keeps the links of units enabled for boot.
const WANTS_DIR: &str = "/etc/systemd/system/multi-user.target.wants";

impl Systemd {
    /// Units of `units` that are enabled for boot (linked from
    /// `multi-user.target.wants`).
    pub fn enabled(&self, units: &[String]) -> BTreeSet<String> {
        units
            .iter()
            .filter(|u| {
                std::path::Path::new(WANTS_DIR)
                    .join(u)
                    .symlink_metadata()
                    .is_ok()
            })
            .cloned()
            .collect()
    }
}

/// What the runtime asks of the service manager: the unit calls that run,
/// stop and enable pods, and the states it reads back, and nothing else.
/// [`Systemd`] is the real one; tests use a recording fake.
pub trait UnitManager: Send + Sync {
    /// Links and enables unit files (by path).
    fn enable(&self, paths: &[String]) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Disables units (by name).
    fn disable(&self, names: &[String]) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// `daemon-reload`.
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Starts a unit and waits until it is up.
    fn start(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Queues a unit's start.
    fn enqueue_start(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Stops a unit and waits until it is down.
    fn stop(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Restarts a unit and waits until it runs again.
    fn restart(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Forgets a failed unit's failure.
    fn reset_failed(&self, unit: &str) -> impl Future<Output = ()> + Send;
    /// States of the loaded units among `units`.
    fn states(
        &self,
        units: &[String],
    ) -> impl Future<Output = Result<HashMap<String, UnitState>, SystemdError>> + Send;
    /// Units of `units` that are enabled for boot.
    fn enabled(&self, units: &[String]) -> BTreeSet<String>;
}

impl UnitManager for Systemd {
    async fn enable(&self, paths: &[String]) -> Result<(), SystemdError> {
        Systemd::enable(self, paths).await
    }
    async fn disable(&self, names: &[String]) -> Result<(), SystemdError> {
        Systemd::disable(self, names).await
    }
    async fn reload(&self) -> Result<(), SystemdError> {
        Systemd::reload(self).await
    }
    async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        Systemd::start(self, unit).await
    }
    async fn enqueue_start(&self, unit: &str) -> Result<(), SystemdError> {
        Systemd::enqueue_start(self, unit).await
    }
    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        Systemd::stop(self, unit).await
    }
    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        Systemd::restart(self, unit).await
    }
    async fn reset_failed(&self, unit: &str) {
        Systemd::reset_failed(self, unit).await;
    }
    async fn states(&self, units: &[String]) -> Result<HashMap<String, UnitState>, SystemdError> {
        Systemd::states(self, units).await
    }
    fn enabled(&self, units: &[String]) -> BTreeSet<String> {
        Systemd::enabled(self, units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_name_their_units() {
        assert_eq!(
            unit_of_path("/org/freedesktop/systemd1/unit/berth_2dweb_2d0_2dapp_2eservice")
                .as_deref(),
            Some("berth-web-0-app.service")
        );
        assert_eq!(
            unit_of_path("/org/freedesktop/systemd1/unit/berth_2eslice").as_deref(),
            Some("berth.slice")
        );
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/unit/x_2"), None);
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/job/42"), None);
    }

    #[test]
    fn only_what_a_status_shows_counts_as_a_change() {
        assert!(changes_status(["ActiveState", "SubState"].into_iter()));
        assert!(changes_status(["StatusText"].into_iter()), "probes");
        assert!(changes_status(["NRestarts"].into_iter()));
        assert!(!changes_status(
            ["CPUUsageNSec", "MemoryCurrent"].into_iter()
        ));
        assert!(!changes_status(std::iter::empty()));
    }
}
