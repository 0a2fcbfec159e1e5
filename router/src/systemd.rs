//! systemd over D-Bus (zbus): start the HAProxy unit and reload it, each
//! waiting for its job. Never by running `systemctl`.

use std::time::Duration;

use berth_daemon::systemd::ManagerProxy;
use futures_util::StreamExt;

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
    /// A job ended without success, or not in time.
    #[error("systemd: {action} {unit} ended with {result:?}")]
    Job {
        /// start or reload.
        action: &'static str,
        /// The unit.
        unit: String,
        /// systemd's job result (`failed`, `timeout`, ...).
        result: String,
    },
}

/// How long a start or reload may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// The system manager, over the system bus.
#[derive(Debug, Clone)]
pub struct Systemd {
    manager: ManagerProxy<'static>,
}

impl Systemd {
    /// Connects to the system bus and subscribes to job signals.
    pub async fn connect() -> Result<Self, SystemdError> {
        let call = |action: &str| {
            let action = action.to_owned();
            move |source| SystemdError::Call { action, source }
        };
        let connection = zbus::Connection::system()
            .await
            .map_err(call("connecting to the system bus"))?;
        let manager = ManagerProxy::new(&connection)
            .await
            .map_err(call("manager proxy"))?;
        manager.subscribe().await.map_err(call("Subscribe"))?;
        Ok(Self { manager })
    }

    /// Starts `unit` (a no-op if it runs) and waits until it is up.
    pub async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("start", unit).await
    }

    /// Reloads `unit` (its `ExecReload=`) and waits for the job.
    pub async fn reload(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("reload", unit).await
    }

    async fn run_job(&self, action: &'static str, unit: &str) -> Result<(), SystemdError> {
        // Listen before asking, or a fast job's signal would be missed.
        let mut removed =
            self.manager
                .receive_job_removed()
                .await
                .map_err(|source| SystemdError::Call {
                    action: "watching JobRemoved".into(),
                    source,
                })?;
        let job = match action {
            "start" => self.manager.start_unit(unit, "replace").await,
            _ => self.manager.reload_unit(unit, "replace").await,
        }
        .map_err(|source| SystemdError::Call {
            action: format!("{action} {unit}"),
            source,
        })?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return args.result.to_owned();
                }
            }
            "bus closed".to_owned()
        };
        let result = tokio::time::timeout(JOB_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| "timeout".to_owned());
        if result == "done" {
            Ok(())
        } else {
            Err(SystemdError::Job {
                action,
                unit: unit.to_owned(),
                result,
            })
        }
    }
}
