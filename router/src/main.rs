//! `berth-router`: reads `/etc/berth/router.toml`, starts tracing and
//! runs the router.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_router::config::{RouterConfig, DEFAULT_CONFIG_PATH};
use clap::Parser;

/// berth's router: HAProxy kept in step with the master's routes and the
/// services' ready endpoints.
#[derive(Debug, Parser)]
#[command(name = "berth-router", version)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Under systemd the journal shows the lines: no colour codes.
        .with_ansi(std::env::var_os("JOURNAL_STREAM").is_none())
        .init();
    let config = match RouterConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth-router: {e}");
            // EX_USAGE: a bad configuration, not a crash.
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-router: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth_router::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}
