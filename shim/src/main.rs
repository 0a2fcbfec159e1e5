//! `berth-shim run CONTAINER`: the main process of a berth container unit.
//!
//! systemd starts it; it attaches to the Docker container, starts it, tells
//! systemd the service is ready, relays the container's stdout and stderr to
//! its own (so they land in the journal under the unit), and exits with the
//! container's exit status. On SIGTERM (`systemctl stop`) it asks Docker to
//! stop the container and then ends as if SIGTERM had killed it, which
//! systemd counts as a clean stop.
//!
//! It is small on purpose: std, a hand-rolled HTTP/1.1 exchange over Docker's
//! unix socket, and no async runtime, so each container costs about 1 MiB.
#![forbid(unsafe_code)]

mod docker;
mod notify;
mod relay;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{raise, SigSet, Signal};

use crate::docker::Docker;

const USAGE: &str = "usage: berth-shim run CONTAINER [--stop-timeout SECONDS]

Runs as the main process of a berth container unit (Type=notify): starts the
Docker container CONTAINER, relays its output to the journal, reports READY=1
once it runs, and exits with its exit status. SIGTERM stops the container.

environment:
  DOCKER_HOST     unix:///path/to/docker.sock (default unix:///run/docker.sock)
  NOTIFY_SOCKET   set by systemd";

struct Args {
    container: String,
    stop_timeout: u32,
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
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stop-timeout" => {
                let value = args.next().ok_or("--stop-timeout needs a value")?;
                stop_timeout = value
                    .parse()
                    .map_err(|_| format!("--stop-timeout: not a number: {value:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        container,
        stop_timeout,
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
            notify::send(&format!("STATUS=failed: {e}"));
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

    // Attach before starting so not one line of output is missed.
    let stream = docker.attach(&args.container)?;
    docker.start(&args.container)?;
    let state = docker.inspect_state(&args.container)?;
    if state.running {
        // The readiness hook: probes will later gate this message.
        notify::send(&format!(
            "READY=1\nSTATUS=container {} running (pid {})",
            args.container, state.pid
        ));
    }

    relay::relay(stream, state.tty);

    let code = docker.wait(&args.container)?;
    if stopping.load(Ordering::SeqCst) {
        return Ok(Outcome::Stopped);
    }
    let state = docker.inspect_state(&args.container).unwrap_or_default();
    if state.oom_killed {
        eprintln!(
            "berth-shim: container {} was killed: out of memory",
            args.container
        );
        notify::send("STATUS=OOM-killed");
    } else {
        eprintln!(
            "berth-shim: container {} exited with status {code}",
            args.container
        );
    }
    // Docker's exit codes are 0..=255; anything else would be a Docker bug.
    Ok(Outcome::Exited(u8::try_from(code).unwrap_or(255)))
}

/// How long requests to Docker may take before the shim gives up.
pub(crate) const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
