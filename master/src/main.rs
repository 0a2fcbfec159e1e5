//! `berth-master`: parses its configuration, starts logging, binds the API
//! and runs until SIGTERM. Workloads never depend on it being up.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_master::config::{MasterConfig, DEFAULT_CONFIG_PATH};
use clap::Parser;

/// berth-master: assigns pods to hosts and keeps the cluster in step.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); a missing default file means all defaults.
    #[arg(long, short, env = "BERTH_MASTER_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Serve plain HTTP instead of TLS. For development and the lab only:
    /// tokens then cross the network in clear text.
    #[arg(long)]
    insecure_http: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Writes the integrated registry's configuration and certificates
    /// (run by berth-registry.service before it starts the registry).
    ///
    /// Example: berth-master registry-config --out /run/berth-registry
    RegistryConfig {
        /// Where to write config.yml, ca.crt, tls.crt and tls.key.
        #[arg(long, default_value = berth_master::registry::setup::DEFAULT_OUT_DIR)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MasterConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth-master: {e}");
            return ExitCode::from(berth_daemon::config::BAD_CONFIG_EXIT_CODE);
        }
    };
    if let Some(Command::RegistryConfig { out }) = &args.command {
        return match berth_master::registry::setup::write_config(&config, out) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth-master registry-config: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    berth_daemon::telemetry::init("berth-master");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-master: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let serving = if args.insecure_http {
            berth_master::Serving::InsecureHttp
        } else {
            berth_master::Serving::Tls
        };
        berth_master::run_with(
            config,
            listener,
            serving,
            berth_daemon::shutdown::signal_received(),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "berth-master failed");
            ExitCode::FAILURE
        }
    }
}
