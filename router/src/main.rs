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
    berth_daemon::telemetry::init("berth-router");
    let config = match RouterConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth-router: {e}");
            return ExitCode::from(berth_daemon::config::BAD_CONFIG_EXIT_CODE);
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
