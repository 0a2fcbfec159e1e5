//! The `berth-lab` command line.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::host_exec::host_command;
use crate::lab::{self, MasterStore, UpOptions};
use crate::paths::{LabPaths, DEFAULT_STATE_ROOT};
use crate::rootfs::Engine;

/// Real multi-host test bed on one machine: every host has its own
/// namespaces, overlay root and cgroup subtree, with systemd as PID 1,
/// D-Bus, journald and dockerd, on a private lab network (10.231.0.0/24)
/// that routes nowhere else. Needs root.
#[derive(Debug, Parser)]
#[command(name = "berth-lab", version, about, long_about = None)]
struct Cli {
    /// Where labs keep their state (hosts' disks live on a tmpfs here).
    #[arg(long, global = true, env = "BERTH_LAB_STATE_DIR", default_value = DEFAULT_STATE_ROOT)]
    state_dir: PathBuf,

    /// The lab to act on; several labs can be up at once.
    #[arg(long, short, global = true, env = "BERTH_LAB", default_value = "lab")]
    name: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot hosts h1..hN and print their lab addresses.
    Up {
        /// How many hosts to boot.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Directory with freshly built berth binaries to install into every
        /// host (default: the directory berth-lab itself lives in).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Boot hosts without berth's binaries and units (to test packages).
        #[arg(long, conflicts_with = "bin_dir")]
        bare: bool,
        /// The store of the master on h1.
        #[arg(long, value_enum, default_value_t = MasterStore::Embedded)]
        store: MasterStore,
        /// Run a master on each of h1..hN, beside an etcd cluster of N
        /// members (implies --store etcd). Agents join h1's master.
        #[arg(long, default_value_t = 1)]
        masters: usize,
        /// The container engine the hosts' agents run pods with; with
        /// `podman`, dockerd is masked and `podman.socket` serves the
        /// Docker API on `/run/podman/podman.sock`.
        #[arg(long, value_enum, default_value_t = Engine::Docker)]
        engine: Engine,
    },
    /// Stop every host and remove everything the lab made.
    Down,
    /// Run a command inside a host, passing stdio and its exit code through.
    Exec {
        /// The host (h1, h2, ...).
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Show the hosts, their PIDs, addresses and state.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop a host and boot it again; its disk is kept, /run and /tmp are not.
    Reboot {
        /// The host to reboot.
        host: String,
    },
    /// Cut a host off the lab network.
    Partition {
        /// The host to cut off.
        host: String,
    },
    /// Plug a partitioned host back into the lab network.
    Heal {
        /// The host to plug back in.
        host: String,
    },
    /// List the labs that are up.
    List,
}

/// Runs the command line; the exit code is the one `exec` got, 0 on success
/// of other commands, 1 on errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = LabPaths::new(&cli.state_dir, &cli.name);
    match cli.command {
        Command::Up {
            hosts,
            bin_dir,
            bare,
            store,
            masters,
            engine,
        } => {
            // Several masters share state through etcd only.
            let store = if masters > 1 {
                MasterStore::Etcd
            } else {
                store
            };
            let berth_bin_dir = if bare {
                None
            } else {
                match bin_dir {
                    Some(dir) => Some(dir),
                    None => std::env::current_exe()?.parent().map(PathBuf::from),
                }
            };
            let started = Instant::now();
            let state = lab::up(
                &paths,
                &UpOptions {
                    hosts,
                    berth_bin_dir,
                    store,
                    masters,
                    engine,
                },
            )?;
            println!(
                "lab {:?} is up with {} hosts in {:.1?}:",
                state.name,
                state.hosts.len(),
                started.elapsed()
            );
            for host in &state.hosts {
                println!("  {}\t{}", host.name, host.address);
            }
            println!(
                "next: berth-lab --name {} exec h1 -- systemctl status",
                state.name
            );
        }
        Command::Down => {
            let started = Instant::now();
            lab::down(&paths)?;
            println!("lab {:?} is down ({:.1?})", paths.name, started.elapsed());
        }
        Command::Exec { host, command } => {
            let pid = lab::host_pid(&paths, &host)?;
            let status = host_command(pid, &command)
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .context("running nsenter")?;
            return Ok(exit_code(status));
        }
        Command::Status { json } => {
            let hosts = lab::status(&paths)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
            } else {
                println!(
                    "{:<6} {:<14} {:<8} {:<12} NETWORK",
                    "HOST", "ADDRESS", "PID", "STATE"
                );
                for h in hosts {
                    let pid = h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    let network = if h.partitioned {
                        "partitioned"
                    } else {
                        "connected"
                    };
                    println!(
                        "{:<6} {:<14} {:<8} {:<12} {network}",
                        h.name, h.address, pid, h.state
                    );
                }
            }
        }
        Command::Reboot { host } => {
            let started = Instant::now();
            lab::reboot(&paths, &host)?;
            println!("{host} rebooted in {:.1?}", started.elapsed());
        }
        Command::Partition { host } => {
            lab::set_partitioned(&paths, &host, true)?;
            println!("{host} is cut off the lab network");
        }
        Command::Heal { host } => {
            lab::set_partitioned(&paths, &host, false)?;
            println!("{host} is back on the lab network");
        }
        Command::List => {
            for name in lab::list_labs(&cli.state_dir) {
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command's exit code, or 128 + the signal that killed it, as a shell
/// reports it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
