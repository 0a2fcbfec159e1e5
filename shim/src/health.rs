//! The probe loop: a thread that joins the container's network namespace
//! (so TCP and HTTP checks reach `127.0.0.1:PORT` as the container sees
//! it), runs the startup probe until it passes, then readiness and liveness
//! on their own periods.
//!
//! Readiness is told to systemd: the first pass sends `READY=1` (until then
//! the unit is `activating`), and every change sets `STATUS=ready` or
//! `STATUS=not ready: ...`, which the agent reads as the unit's
//! `StatusText` and reports as the container's readiness. A startup or
//! liveness probe that fails its threshold records `ContainerUnhealthy` and
//! stops the container: the shim then exits with its status and systemd
//! restarts the unit by its `Restart=` policy.

use std::fs::File;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use nix::sched::{setns, CloneFlags};

use crate::docker::Docker;
use crate::journal::{self, ContainerEvent};
use crate::notify;
use crate::probe::{Check, Counter, ProbeSpec, Prober, Role, Schedule, Verdict};

/// The prefix of `STATUS=` while the container is ready; the agent reads
/// a unit whose status starts with [`NOT_READY`] as not ready.
pub const READY: &str = "ready";
/// The prefix of `STATUS=` while the readiness probe fails.
pub const NOT_READY: &str = "not ready";

/// What the probe thread needs.
pub struct Health {
    pub docker: Docker,
    pub container: String,
    /// The container's main process, whose network namespace the checks use.
    pub pid: u64,
    pub probes: Vec<ProbeSpec>,
    pub stop_timeout: u32,
    /// Set to why the container was found unhealthy, before it is stopped.
    pub unhealthy: Arc<OnceLock<String>>,
}

/// Starts the probe thread.
pub fn spawn(health: Health) -> Result<(), String> {
    std::thread::Builder::new()
        .name("probes".into())
        .stack_size(256 * 1024)
        .spawn(move || health.run())
        .map(drop)
        .map_err(|e| format!("starting the probe thread: {e}"))
}

impl Health {
    fn run(self) {
        let needs_network = self
            .probes
            .iter()
            .any(|p| !matches!(p.check, Check::Exec { .. }));
        if needs_network {
            if let Err(e) = self.enter_network() {
                // Checks would then probe the host: better to say so and
                // let them fail than to report a wrong "ready".
                eprintln!("berth-shim: {}: probes: {e}", self.container);
                notify::send(&format!("STATUS={NOT_READY}: probes cannot run: {e}"));
                return;
            }
        }
        let prober = Prober {
            docker: self.docker.clone(),
            container: self.container.clone(),
        };
        let started = Instant::now();
        if let Some(startup) = self.probes.iter().find(|p| p.role == Role::Startup) {
            notify::send(&format!(
                "STATUS={NOT_READY}: waiting for the startup probe"
            ));
            if !self.until_started(&prober, startup, started) {
                return;
            }
        }
        self.watch(&prober, Instant::now());
    }

    /// Joins the network namespace of the container's main process. Only
    /// this thread moves: the shim's other threads stay in the host's.
    fn enter_network(&self) -> Result<(), String> {
        let path = format!("/proc/{}/ns/net", self.pid);
        let namespace = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|e| format!("entering {path}: {e}"))
    }

    /// Runs the startup probe until it passes (true) or fails for good
    /// (false, the container is being stopped).
    fn until_started(&self, prober: &Prober, spec: &ProbeSpec, start: Instant) -> bool {
        let mut counter = Counter::default();
        let mut schedule = Schedule::new(&[spec], start);
        while let Some((_, due)) = schedule.next() {
            sleep_until(due);
            let now = Instant::now();
            let result = prober.check(&spec.check, spec.timeout);
            schedule.ran(0, now, spec.period);
            match counter.record(result.is_ok(), spec) {
                Verdict::Passing => return true,
                Verdict::Failing => {
                    self.fail(spec, counter.failures(), result.err().unwrap_or_default());
                    return false;
                }
                Verdict::Undecided => {}
            }
        }
        true
    }

    /// Readiness and liveness, each on its own period, until liveness
    /// fails for good.
    fn watch(&self, prober: &Prober, start: Instant) {
        let specs: Vec<&ProbeSpec> = self
            .probes
            .iter()
            .filter(|p| p.role != Role::Startup)
            .collect();
        let has_readiness = specs.iter().any(|p| p.role == Role::Readiness);
        let mut announced_ready = false;
        if !has_readiness {
            announce_ready(&mut announced_ready, &self.container);
        } else {
            notify::send(&format!(
                "STATUS={NOT_READY}: waiting for the readiness probe"
            ));
        }
        let mut counters = vec![Counter::default(); specs.len()];
        let mut ready: Option<bool> = None;
        let mut schedule = Schedule::new(&specs, start);
        while let Some((index, due)) = schedule.next() {
            sleep_until(due);
            let spec = specs[index];
            let now = Instant::now();
            let result = prober.check(&spec.check, spec.timeout);
            schedule.ran(index, now, spec.period);
            let verdict = counters[index].record(result.is_ok(), spec);
            match (spec.role, verdict) {
                (Role::Readiness, Verdict::Passing) if ready != Some(true) => {
                    ready = Some(true);
                    if announced_ready {
                        notify::send(&format!("STATUS={READY}"));
                    } else {
                        announce_ready(&mut announced_ready, &self.container);
                    }
                }
                (Role::Readiness, Verdict::Failing) if ready != Some(false) => {
                    ready = Some(false);
                    let why = result.err().unwrap_or_default();
                    notify::send(&format!(
                        "STATUS={NOT_READY}: readiness probe {} failed: {why}",
                        spec.check.describe()
                    ));
                }
                (Role::Liveness, Verdict::Failing) => {
                    let failures = counters[index].failures();
                    self.fail(spec, failures, result.err().unwrap_or_default());
                    return;
                }
                _ => {}
            }
        }
    }

    /// Records why the container is unhealthy and stops it; systemd's
    /// restart policy takes it from there.
    fn fail(&self, spec: &ProbeSpec, failures: u32, why: String) {
        let reason = format!(
            "{} probe {} failed {failures} times: {why}",
            spec.role.as_str(),
            spec.check.describe()
        );
        let _ = self.unhealthy.set(reason.clone());
        journal::record(ContainerEvent::Unhealthy, &self.container, "", &reason);
        notify::send(&format!("STATUS=unhealthy: {reason}"));
        if let Err(e) = self.docker.stop(&self.container, self.stop_timeout) {
            eprintln!("berth-shim: stopping {}: {e}", self.container);
        }
    }
}

fn announce_ready(announced: &mut bool, container: &str) {
    *announced = true;
    notify::send(&format!(
        "READY=1\nSTATUS={READY}: container {container} passes its probes"
    ));
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}
