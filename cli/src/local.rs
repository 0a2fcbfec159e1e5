//! `berth local ...`: pods on this host, through the local agent's API.

use std::path::PathBuf;

use anyhow::Context as _;
use berth_model::{Pod, PodStatus, ValidationErrors};
use clap::{Args, Subcommand, ValueEnum};
use tokio::io::AsyncWriteExt as _;

use crate::agent_client::{AgentClient, LogOptions, PodAction, DEFAULT_SOCKET};
use crate::output::{self, print};
use crate::pod_flags::PodFlags;

/// Pods on this host, through the local berth-agent (no master needed).
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The agent's unix socket (root-only).
    #[arg(
        long,
        global = true,
        env = "BERTH_AGENT_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: LocalCommand,
}

/// The `berth local` subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create and start a pod of one container, named like the pod.
    ///
    /// Running the same command again is harmless: the agent answers that the
    /// identical pod already exists. A different pod of the same name is
    /// refused; remove it first with `berth local rm`.
    Run(RunArgs),
    /// List pods and their containers.
    Ps(PsArgs),
    /// Start a stopped pod's containers.
    Start(NameArg),
    /// Stop a pod's containers; they stay stopped until started again.
    Stop(NameArg),
    /// Stop a pod's containers and start them again.
    Restart(NameArg),
    /// Stop a pod and remove it with its units, containers and host ports.
    Rm(NameArg),
    /// Print a pod's logs: its containers' output.
    Logs(LogsArgs),
    /// Print everything the agent knows about a pod, as JSON.
    Inspect(NameArg),
}

/// The name of an existing pod.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The pod's name.
    pub name: String,
}

/// `berth local run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("the_image").args(["image"]).required(true)))]
pub struct RunArgs {
    /// The pod's name, also its container's name (a DNS label: a-z, 0-9, '-').
    pub name: String,

    /// The pod's container.
    #[command(flatten)]
    pub pod: PodFlags,
}

/// `berth local ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every pod, also stopped, succeeded and failed ones.
    #[arg(short, long)]
    pub all: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// The `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns, one row per container.
    Table,
    /// The agent's pod statuses, as a JSON array.
    Json,
}

/// `berth local logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod's name.
    pub name: String,

    /// Keep printing new lines as they come, until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Start with only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,

    /// Only this container's logs.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    /// `text`: `TIME CONTAINER | line`, every byte a terminal would act on
    /// escaped reversibly (`\xff`, `\u{2028}`, `\\`); `raw`: exactly the
    /// bytes the containers printed, a newline after each line.
    #[arg(short, long, value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub output: crate::logs::LogFormat,
}

/// The pod failed validation before it was sent to the agent.
#[derive(Debug, thiserror::Error)]
#[error("invalid pod")]
pub struct InvalidPod(pub ValidationErrors);

/// Runs one `berth local` command.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let client = AgentClient::new(args.socket);
    match args.command {
        LocalCommand::Run(run) => run_pod(&client, &run).await,
        LocalCommand::Ps(ps) => list(&client, &ps).await,
        LocalCommand::Start(pod) => act(&client, &pod.name, PodAction::Start).await,
        LocalCommand::Stop(pod) => act(&client, &pod.name, PodAction::Stop).await,
        LocalCommand::Restart(pod) => act(&client, &pod.name, PodAction::Restart).await,
        LocalCommand::Rm(pod) => {
            let status = client.delete_pod(&pod.name).await?;
            print(&format!(
                "pod {}: removed (last phase {})\n",
                status.name,
                output::phase_name(status.phase)
            ))
        }
        LocalCommand::Logs(logs) => stream_logs(&client, &logs).await,
        LocalCommand::Inspect(pod) => {
            let status = client.get_pod(&pod.name).await?;
            // The agent already blanks secrets; doing it again here means a
            // faulty agent still cannot make berth print one.
            print(&output::json(&status.redacted())?)
        }
    }
}

async fn run_pod(client: &AgentClient, args: &RunArgs) -> anyhow::Result<()> {
    let pod = args.pod();
    // The agent judges the pod by the same rules; checking here first saves
    // a round trip and works even when the agent is down.
    pod.validate().map_err(InvalidPod)?;
    let created = client.create_pod(&pod).await?;
    print(&output::pod_summary(&created.status, created.created))
}

async fn list(client: &AgentClient, args: &PsArgs) -> anyhow::Result<()> {
    let pods: Vec<PodStatus> = client
        .list_pods(args.all)
        .await?
        .into_iter()
        .map(PodStatus::redacted)
        .collect();
    match args.output {
        OutputFormat::Table => print(&output::pods_table(&pods)),
        OutputFormat::Json => print(&output::json(&pods)?),
    }
}

async fn act(client: &AgentClient, name: &str, action: PodAction) -> anyhow::Result<()> {
    let status = client.pod_action(name, action).await?;
    print(&format!(
        "pod {}: {}\n",
        status.name,
        output::phase_name(status.phase)
    ))
}

async fn stream_logs(client: &AgentClient, args: &LogsArgs) -> anyhow::Result<()> {
    let options = LogOptions {
        follow: args.follow,
        tail: args.tail,
        container: args.container.clone(),
        raw: args.output == crate::logs::LogFormat::Raw,
    };
    let mut logs = client.logs(&args.name, &options).await?;
    let mut stdout = tokio::io::stdout();
    // Flushed chunk by chunk so that `-f` shows each line as it arrives.
    while let Some(chunk) = logs.next_chunk().await? {
        stdout
            .write_all(&chunk)
            .await
            .context("writing to stdout")?;
        stdout.flush().await.context("writing to stdout")?;
    }
    Ok(())
}

impl RunArgs {
    /// The one-container pod these flags describe.
    pub fn pod(&self) -> Pod {
        self.pod.pod(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use berth_model::{Port, Protocol, RestartPolicy};
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn local_command(args: &[&str]) -> LocalCommand {
        let argv = ["berth", "local"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Local(local) => local.command,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let argv: Vec<&str> = ["run"].iter().chain(args).copied().collect();
        match local_command(&argv) {
            LocalCommand::Run(run) => run,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn parse_error(args: &[&str]) -> String {
        let argv = ["berth", "local"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    #[test]
    fn minimal_flags_give_a_minimal_pod() {
        let pod = run_args(&["web", "--image", "local/busybox"]).pod();
        let expected: Pod = serde_json::from_str(
            r#"{"name":"web","containers":[{"name":"web","image":"local/busybox"}]}"#,
        )
        .unwrap();
        assert_eq!(pod, expected);
        assert_eq!(pod.validate(), Ok(()));
    }

    #[test]
    fn every_flag_lands_in_the_pod() {
        let pod = run_args(&[
            "web",
            "--image",
            "local/busybox",
            "-p",
            "31001:8080",
            "-p",
            "53/udp",
            "-e",
            "MODE=prod",
            "-e",
            "EMPTY=",
            "--secret-env",
            "PW=hunter2",
            "--memory",
            "64M",
            "--cpus",
            "0.5",
            "-v",
            "/srv/data:/data",
            "-v",
            "cache:/cache:ro",
            "-v",
            "/srv/logs:/logs:ro",
            "--restart",
            "no",
            "--stop-timeout",
            "30",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
        ])
        .pod();
        assert_eq!(pod.validate(), Ok(()));
        let expected = serde_json::json!({
            "name": "web",
            "containers": [{
                "name": "web",
                "image": "local/busybox",
                "command": ["httpd", "-f", "-p", "8080"],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY", "value": ""}],
                "secretEnv": [{"name": "PW", "value": "hunter2"}],
                "ports": [
                    {"containerPort": 8080, "protocol": "tcp", "hostPort": 31001},
                    {"containerPort": 53, "protocol": "udp", "hostPort": 0}
                ],
                "volumeMounts": [
                    {"volume": "vol0", "path": "/data"},
                    {"volume": "cache", "path": "/cache", "readOnly": true},
                    {"volume": "vol1", "path": "/logs", "readOnly": true}
                ],
                "resources": {"memoryBytes": 67108864, "cpuMillis": 500},
                "restart": "never",
                "stopTimeoutSecs": 30
            }],
            "volumes": [
                {"name": "vol0", "hostPath": "/srv/data"},
                {"name": "cache"},
                {"name": "vol1", "hostPath": "/srv/logs"}
            ]
        });
        assert_eq!(serde_json::to_value(&pod).unwrap(), expected);
    }

    #[test]
    fn restart_accepts_never_as_no() {
        for (flag, policy) in [
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("no", RestartPolicy::Never),
            ("never", RestartPolicy::Never),
        ] {
            let pod = run_args(&["web", "--image", "i", "--restart", flag]).pod();
            assert_eq!(pod.containers[0].restart, policy, "{flag}");
        }
    }

    #[test]
    fn env_without_equals_is_an_error_naming_the_flag() {
        let error = parse_error(&["run", "web", "--image", "i", "-e", "MODE"]);
        assert!(error.contains("--env"), "{error}");
        assert!(error.contains("NAME=VALUE"), "{error}");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flag, value) in [
            ("--memory", "lots"),
            ("--cpus", "half"),
            ("-p", "http"),
            ("-v", "data"),
        ] {
            let error = parse_error(&["run", "web", "--image", "i", flag, value]);
            assert!(error.contains("invalid value"), "{flag}: {error}");
        }
    }

    #[test]
    fn a_command_needs_the_double_dash() {
        let error = parse_error(&["run", "web", "--image", "i", "httpd"]);
        assert!(error.contains("unexpected argument"), "{error}");
    }

    #[test]
    fn debug_of_the_flags_hides_secrets() {
        let args = run_args(&["web", "--image", "i", "--secret-env", "PW=hunter2"]);
        let debug = format!("{args:?} {:?}", args.pod());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn invalid_flags_give_field_errors() {
        let pod = run_args(&["Web", "--image", "i", "-e", "1X=y", "--memory", "1K"]).pod();
        let errors = pod.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "containers[0].name",
                "containers[0].env[0].name",
                "containers[0].resources.memoryBytes"
            ]
        );
    }

    #[test]
    fn ps_and_logs_flags() {
        match local_command(&["ps", "-a", "-o", "json"]) {
            LocalCommand::Ps(ps) => {
                assert!(ps.all);
                assert_eq!(ps.output, OutputFormat::Json);
            }
            other => panic!("parsed as {other:?}"),
        }
        match local_command(&["logs", "web", "-f", "--tail", "5", "--container", "app"]) {
            LocalCommand::Logs(logs) => {
                assert!(logs.follow);
                assert_eq!(logs.tail, Some(5));
                assert_eq!(logs.container.as_deref(), Some("app"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn published_ports_default_to_any_host_port() {
        let pod = run_args(&["web", "--image", "i", "-p", "8080"]).pod();
        assert_eq!(
            pod.containers[0].ports,
            [Port {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_port: Some(0)
            }]
        );
    }
}
