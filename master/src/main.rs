//! `berth-master`: parses its configuration, starts logging, binds the API
//! and runs until SIGTERM. Workloads never depend on it being up.

mod memory;

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
    /// On the first of several masters sharing etcd: makes the CA, the
    /// admin token and the registry's keys (if this master has none yet),
    /// keeps them in etcd sealed with a new key, and prints the join
    /// command for the other masters. The key is printed once and kept
    /// nowhere.
    ///
    /// Example: berth-master init
    Init {
        /// The cluster is initialised already: seal its secrets under a
        /// new key and print a new token (earlier tokens stop working).
        #[arg(long)]
        new_token: bool,
    },
    /// On each other master, before its first start: fetches the
    /// cluster's CA, admin token and registry keys from etcd with the
    /// token `berth-master init` printed, after checking that the master
    /// at URL serves the same CA.
    ///
    /// Example: berth-master join https://m1.example:7443 --token bjt1.…
    Join {
        /// A master of the cluster.
        url: String,
        /// The join token `berth-master init` printed.
        #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
        token: String,
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
    if let Some(command @ (Command::Init { .. } | Command::Join { .. })) = &args.command {
        return joining(&config, command);
    }
    berth_daemon::telemetry::init("berth-master");
    let Some(runtime) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        tokio::spawn(memory::trim_forever());
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

/// `berth-master init` and `join`.
fn joining(config: &MasterConfig, command: &Command) -> ExitCode {
    let Some(runtime) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    let done = runtime.block_on(async {
        match command {
            Command::Init { new_token } => {
                let token = berth_master::joining::init(config, *new_token).await?;
                let url = config.public_url("https");
                println!("The cluster's CA, admin token and registry keys are in etcd, sealed.");
                println!("On each other master (its master.toml naming the same etcd), run:");
                println!();
                println!("  berth-master join {url} --token {token}");
                println!("  systemctl enable --now berth-master");
                println!();
                println!("The token opens the cluster's secrets: pass it like a password.");
                Ok(())
            }
            Command::Join { url, token } => {
                let files = berth_master::joining::join(config, url, token).await?;
                println!(
                    "joined the cluster of {url}: wrote {} to {}; now run: systemctl enable --now berth-master",
                    files.join(", "),
                    config.state_dir.display()
                );
                Ok(())
            }
            Command::RegistryConfig { .. } => Ok(()),
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: anyhow::Error = e;
            eprintln!("berth-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The master's async runtime: a thread per core, up to four. Most of the
/// master's work is I/O, but a controller round over tens of thousands of
/// pods is not, and must not hold up heartbeats and long polls meanwhile.
fn async_runtime() -> Option<tokio::runtime::Runtime> {
    memory::tune_allocator();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("berth-master: starting the async runtime: {e}");
            None
        }
    }
}
