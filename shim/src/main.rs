//! `berth-shim run CONTAINER`: the main process of a berth container unit.
//!
//! systemd starts it; it attaches to the Docker container, starts it, tells
//! systemd the service is ready, relays the container's stdout and stderr to
//! the journal, one native entry per line (filed under the unit, byte for
//! byte), and exits with the container's exit status. On SIGTERM (`systemctl stop`) it asks Docker to
//! stop the container and then ends as if SIGTERM had killed it, which
//! systemd counts as a clean stop.
//!
//! It is small on purpose: std, a hand-rolled HTTP/1.1 exchange over Docker's
//! unix socket, and no async runtime, so each container costs about 1 MiB.
#![forbid(unsafe_code)]

mod docker;
mod health;
mod host_paths;
mod journal;
mod notify;
mod probe;
mod relay;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{raise, SigSet, Signal};

use crate::docker::Docker;
use crate::journal::ContainerEvent;

const USAGE: &str = "usage: berth-shim run CONTAINER [--stop-timeout SECONDS] [PROBE...]

PROBE: --probe startup|readiness|liveness tcp|http|exec [--port N] [--path P]
       [--command WORD]... [--initial-delay S] [--period S] [--timeout S]
       [--failure-threshold N] [--success-threshold N]

Runs as the main process of a berth container unit (Type=notify): starts the
Docker container CONTAINER, relays its output to the journal, reports READY=1
once it runs (and its startup and readiness probes passed), and exits with
its exit status. A failing liveness or startup probe stops the container.
SIGTERM stops the container.

environment:
  DOCKER_HOST     unix:///path/to/docker.sock (default unix:///run/docker.sock;
                  Podman's Docker API: unix:///run/podman/podman.sock)
  NOTIFY_SOCKET   set by systemd";

struct Args {
    container: String,
    stop_timeout: u32,
    probes: Vec<probe::ProbeSpec>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("run") => {}
        Some("--help" | "-h") => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        Some("--version" | "-V") => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    let container = args.next().ok_or("missing CONTAINER")?;
    let mut stop_timeout = 10;
    let mut probes: Vec<probe::ProbeSpec> = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| -> Result<u32, String> {
            text.parse()
                .map_err(|_| format!("{arg}: not a number: {text:?}"))
        };
        // Probe settings apply to the probe named last.
        let must_follow = || format!("{arg} must follow --probe");
        match arg.as_str() {
            "--stop-timeout" => stop_timeout = number(value()?)?,
            "--probe" => {
                let role = value()?;
                let role =
                    probe::Role::parse(&role).ok_or(format!("--probe: unknown probe {role:?}"))?;
                let check = match value()?.as_str() {
                    "tcp" => probe::Check::Tcp { port: 0 },
                    "http" => probe::Check::Http {
                        port: 0,
                        path: "/".into(),
                    },
                    "exec" => probe::Check::Exec {
                        command: Vec::new(),
                    },
                    other => return Err(format!("--probe: unknown check {other:?}")),
                };
                probes.push(probe::ProbeSpec::new(role, check));
            }
            "--port" => {
                let port = u16::try_from(number(value()?)?)
                    .map_err(|_| "--port: out of range".to_string())?;
                match &mut probes.last_mut().ok_or_else(must_follow)?.check {
                    probe::Check::Tcp { port: p } | probe::Check::Http { port: p, .. } => *p = port,
                    probe::Check::Exec { .. } => return Err("--port: not for exec".into()),
                }
            }
            "--path" => {
                let path = value()?;
                match &mut probes.last_mut().ok_or_else(must_follow)?.check {
                    probe::Check::Http { path: p, .. } => *p = path,
                    _ => return Err("--path: only for http".into()),
                }
            }
            "--command" => {
                let word = value()?;
                match &mut probes.last_mut().ok_or_else(must_follow)?.check {
                    probe::Check::Exec { command } => command.push(word),
                    _ => return Err("--command: only for exec".into()),
                }
            }
            "--initial-delay" => {
                let secs = number(value()?)?;
                probes.last_mut().ok_or_else(must_follow)?.initial_delay =
                    Duration::from_secs(secs.into());
            }
            "--period" => {
                let secs = number(value()?)?.max(1);
                probes.last_mut().ok_or_else(must_follow)?.period =
                    Duration::from_secs(secs.into());
            }
            "--timeout" => {
                let secs = number(value()?)?.max(1);
                probes.last_mut().ok_or_else(must_follow)?.timeout =
                    Duration::from_secs(secs.into());
            }
            "--failure-threshold" => {
                probes.last_mut().ok_or_else(must_follow)?.failure_threshold =
                    number(value()?)?.max(1);
            }
            "--success-threshold" => {
                probes.last_mut().ok_or_else(must_follow)?.success_threshold =
                    number(value()?)?.max(1);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        container,
        stop_timeout,
        probes,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("berth-shim: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    // SIGTERM and SIGINT are taken by a thread of their own (sigwait), so the
    // mask must be set before any other thread starts.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    if let Err(e) = stop_signals.thread_block() {
        eprintln!("berth-shim: blocking signals: {e}");
        return ExitCode::from(70);
    }
    match run(&args, stop_signals) {
        Ok(Outcome::Exited(code)) => ExitCode::from(code),
        Ok(Outcome::Stopped) => {
            // End the way a service killed by SIGTERM ends: systemd treats
            // that as a clean stop, where a non-zero exit code would not be.
            // SIGTERM keeps its default action (the shim never installs a
            // handler): raise it while blocked, then unblock to die by it.
            let _ = raise(Signal::SIGTERM);
            let _ = stop_signals.thread_unblock();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-shim: {}: {e}", args.container);
            // A refusal is its own reason (`refused: ...`), which the
            // agent reports as is.
            if e.starts_with("refused: ") {
                notify::send(&format!("STATUS={e}"));
            } else {
                notify::send(&format!("STATUS=failed: {e}"));
            }
            ExitCode::from(1)
        }
    }
}

enum Outcome {
    Exited(u8),
    Stopped,
}

fn run(args: &Args, stop_signals: SigSet) -> Result<Outcome, String> {
    let docker = Docker::from_env()?;
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let docker = docker.clone();
        let stopping = Arc::clone(&stopping);
        let container = args.container.clone();
        let timeout = args.stop_timeout;
        // The thread only waits and makes one small request: a small stack
        // keeps the shim's memory down (one shim runs per container).
        let waiter = std::thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024);
        let spawned = waiter.spawn(move || {
            if stop_signals.wait().is_ok() {
                stopping.store(true, Ordering::SeqCst);
                notify::send("STOPPING=1");
                if let Err(e) = docker.stop(&container, timeout) {
                    eprintln!("berth-shim: stopping {container}: {e}");
                }
            }
        });
        spawned.map_err(|e| format!("starting the signal thread: {e}"))?;
    }

    // Every start, systemd's restarts included, passes through here: the
    // host paths are checked right before Docker resolves them.
    host_paths::check(&docker.bind_sources(&args.container)?)?;
    // Attach before starting so not one line of output is missed.
    let stream = docker.attach(&args.container)?;
    let started_at = since_epoch().saturating_sub(Duration::from_secs(1));
    docker.start(&args.container)?;
    let state = docker.inspect_state(&args.container)?;
    let unhealthy = Arc::new(std::sync::OnceLock::new());
    if state.running {
        journal::record(
            ContainerEvent::Started,
            &args.container,
            &state.started_at,
            &format!("started (pid {})", state.pid),
        );
        if args.probes.is_empty() {
            notify::send(&format!(
                "READY=1\nSTATUS=container {} running (pid {})",
                args.container, state.pid
            ));
        } else {
            // READY=1 waits for the startup and readiness probes.
            health::spawn(health::Health {
                docker: docker.clone(),
                container: args.container.clone(),
                pid: state.pid,
                probes: args.probes.clone(),
                stop_timeout: args.stop_timeout,
                unhealthy: Arc::clone(&unhealthy),
            })?;
        }
    } else {
        // It started, ran and ended before it could be looked at (a quick
        // `exit 3` on a busy host). It did start: without READY=1 systemd
        // would call the start itself failed, and a run-once pod's exit
        // would read as "could not start".
        journal::record(
            ContainerEvent::Started,
            &args.container,
            &state.started_at,
            "started (and ended at once)",
        );
        notify::send(&format!(
            "READY=1\nSTATUS=container {} started and ended at once",
            args.container
        ));
    }

    relay::relay(
        stream,
        state.tty,
        &mut journal::OutputJournal::new(&args.container),
    );

    let code = docker.wait(&args.container)?;
    if stopping.load(Ordering::SeqCst) {
        return Ok(Outcome::Stopped);
    }
    let run = state.started_at;
    let oom_killed = was_oom_killed(
        &docker,
        &args.container,
        started_at,
        code,
        unhealthy.get().is_some(),
    );
    if oom_killed {
        journal::record(
            ContainerEvent::OomKilled,
            &args.container,
            &run,
            &format!("killed: out of memory (exit status {code})"),
        );
        notify::send("STATUS=OOM-killed");
    } else {
        let why = match unhealthy.get() {
            Some(reason) => format!("exited with status {code} after {reason}"),
            None => format!("exited with status {code}"),
        };
        journal::record(ContainerEvent::Exited, &args.container, &run, &why);
    }
    // Docker's exit codes are 0..=255; anything else would be a Docker bug.
    Ok(Outcome::Exited(u8::try_from(code).unwrap_or(255)))
}

/// Whether the kernel's OOM killer ended the container. containerd
/// reports the OOM kill and the exit as two events, and under load the
/// exit can reach dockerd first, so that `State.OOMKilled` stays false.
/// Docker's `oom` event is logged either way: a container killed by
/// SIGKILL (status 137) that nobody stopped is looked up there for a
/// little while before it counts as merely killed.
fn was_oom_killed(
    docker: &Docker,
    container: &str,
    started_at: Duration,
    code: i64,
    unhealthy: bool,
) -> bool {
    const SIGKILL_STATUS: i64 = 128 + 9;
    const OOM_EVENT_GRACE: Duration = Duration::from_secs(3);
    if docker
        .inspect_state(container)
        .unwrap_or_default()
        .oom_killed
    {
        return true;
    }
    if code != SIGKILL_STATUS || unhealthy {
        return false;
    }
    let deadline = std::time::Instant::now() + OOM_EVENT_GRACE;
    loop {
        match docker.oom_event_between(container, started_at, since_epoch()) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => eprintln!("berth-shim: reading Docker's events: {e}"),
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long requests to Docker may take before the shim gives up.
pub(crate) const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
