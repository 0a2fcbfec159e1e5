//! `berth-agent`: parses its configuration, starts logging and runs the
//! agent until SIGTERM. Pods keep running when it stops.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use clap::Parser;

/// berth-agent: runs pods on this host as systemd units, through Docker.
///
/// Serves a local API on a root-only unix socket (used by `berth local`).
/// Stopping or killing the agent never stops a pod.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Configuration file (TOML); a missing default file means all defaults.
    #[arg(long, short, env = "BERTH_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the agent (the default).
    Serve,
    /// Join a master with a one-time token (from `berth node token`), save
    /// this node's credential, then enable and (re)start berth-agent.
    Join {
        /// The master's URL, e.g. http://h1:7443.
        url: String,
        /// The one-time join token.
        #[arg(long)]
        token: String,
        /// The master's CA, `sha256:<hex>`, as the join command gives it.
        /// Required for an https master.
        #[arg(long)]
        ca_hash: Option<String>,
        /// Take over the cluster's node of this host's name, whose
        /// credential was lost (the state directory was deleted): the
        /// token comes from `berth node rejoin NAME` (admin). Running pods
        /// are adopted, never stopped. Example:
        /// `berth-agent join https://h1:7443 --token T --ca-hash sha256:… --reuse-name`
        #[arg(long)]
        reuse_name: bool,
    },
    /// Stop and remove every pod on this host: units, containers, slices
    /// and host ports (named volumes are kept). The package's removal runs
    /// it after stopping berth-agent; a joined node's pods are replaced on
    /// other nodes by the master.
    Teardown,
    /// Run the build a build pod's unit was prepared for in DIR (the
    /// agent writes DIR/spec.json and DIR/input.tar): build through
    /// dockerd, push to the cluster registry, print the build's log.
    /// Exits 0 once pushed, 1 when the build failed, 143 when stopped.
    Build {
        /// The build's directory (`/var/lib/berth/builds/POD`).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Build { dir }) = &args.command {
        // The runner reads its own spec; the agent's configuration is not
        // its business.
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => ExitCode::from(runtime.block_on(berth_agent::build::run(dir))),
            Err(e) => {
                eprintln!("berth-agent build: starting the async runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth-agent: {e}");
            return ExitCode::from(berth_daemon::config::BAD_CONFIG_EXIT_CODE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-agent: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Join {
        url,
        token,
        ca_hash,
        reuse_name,
    }) = args.command
    {
        return match runtime.block_on(join(&url, &token, ca_hash.as_deref(), reuse_name, &config)) {
            Ok(message) => {
                println!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth-agent: joining {url}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Teardown) = args.command {
        return match runtime.block_on(berth_agent::teardown(config)) {
            Ok(removed) => {
                println!("removed {} pod(s): {}", removed.len(), removed.join(" "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth-agent: teardown: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    berth_daemon::telemetry::init("berth-agent");
    match runtime.block_on(berth_agent::run(
        config,
        berth_daemon::shutdown::signal_received(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "berth-agent failed");
            ExitCode::FAILURE
        }
    }
}

/// Joins, then makes the agent run joined: enabled for boot and restarted
/// so it picks up the credential.
async fn join(
    url: &str,
    token: &str,
    ca_hash: Option<&str>,
    reuse_name: bool,
    config: &AgentConfig,
) -> anyhow::Result<String> {
    let joined = berth_agent::master_link::join(
        url,
        token,
        ca_hash,
        &config.labels,
        &config.state_dir,
        reuse_name,
    )
    .await?;
    let systemd = berth_agent::systemd::Systemd::connect().await?;
    systemd.enable(&["berth-agent.service".to_string()]).await?;
    systemd.restart("berth-agent.service").await?;
    Ok(format!(
        "joined {} as node {}; berth-agent is enabled and running",
        joined.url, joined.node
    ))
}
