//! `berth build ...`: build configs (how source becomes an image of a
//! stream's tag) and their numbered builds, which run as jobs on the
//! cluster: create, start (from git, or from a directory, archive or file
//! sent along), follow, list, describe, logs, cancel and remove.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use berth_model::api::Versioned;
use berth_model::build::{
    Build, BuildConfig, BuildPhase, BuildStrategy, BuildTriggers, DockerStrategy, GitSource,
    RunPolicy, SourceStrategy,
};
use berth_model::{EnvVar, Resources, ValidationErrors};
use clap::{Args, Subcommand, ValueEnum};

use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;

/// How long one follow request waits at the master for new lines.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// How long after a build ended its last lines may still be on their way
/// to the master: its node ships the journal in batches, and may report
/// the build's end first.
const LOG_SETTLE: Duration = Duration::from_secs(5);

/// What is left of [`LOG_SETTLE`] after `build` ended, as of now.
fn settling(build: &Build) -> Duration {
    let Some(end_ms) = build.end_ms else {
        return Duration::ZERO;
    };
    let ended = std::time::UNIX_EPOCH + Duration::from_millis(end_ms);
    // Clocks may disagree: an end "in the future" has just happened.
    let since = std::time::SystemTime::now()
        .duration_since(ended)
        .unwrap_or_default();
    LOG_SETTLE.saturating_sub(since)
}

/// `berth build`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth build create site --strategy source --builder builder:latest --to site:latest \\
      --git git://h1/site.git
  berth build start site -f                       # build the branch's head, follow its log
  berth build create api --strategy docker --to api:latest   # a binary build
  berth build start api --from-dir . -f           # send the directory (.dockerignore applies)
  berth build ls ; berth build describe site-3 ; berth build logs site-3
  berth build webhook site                        # the URLs a git host posts pushes to
  berth build cancel site-4")]
pub struct BuildArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BuildCommand,
}

/// The `berth build` subcommands.
#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Create a build config.
    Create(CreateArgs),
    /// Start a build: of the git source's branch head (or --commit), or of
    /// the input sent along.
    Start(StartArgs),
    /// List the builds (of one config when named).
    Ls {
        /// A build config.
        config: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a build config (NAME) with its builds, or one build (NAME-N).
    Describe {
        /// A build config or a build.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// What a build printed; -f follows it until it ends.
    Logs {
        /// The build (NAME-N), or a config for its latest build.
        name: String,
        /// Follow until the build ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a build: its pod stops within its grace and it ends
    /// Cancelled.
    Cancel {
        /// The build (NAME-N).
        name: String,
    },
    /// Remove a build config and its builds.
    Rm {
        /// The build config.
        name: String,
    },
    /// The URLs of a build config's webhooks, secret included.
    Webhook {
        /// The build config.
        name: String,
    },
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// `docker build` of the source's Dockerfile.
    Docker,
    /// Source-to-image with a builder image (--builder).
    Source,
}

/// `--run-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunPolicyArg {
    /// One at a time, in order.
    Serial,
    /// One at a time; a waiting build is cancelled when a newer one comes.
    SerialLatestOnly,
    /// All at once.
    Parallel,
}

/// `berth build create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Its name (a DNS label of at most 36 characters); its builds are
    /// NAME-1, NAME-2, ...
    pub name: String,
    /// How the image is made.
    #[arg(long, value_enum)]
    pub strategy: StrategyArg,
    /// The stream tag the image is pushed to (STREAM:TAG).
    #[arg(long, value_name = "STREAM:TAG")]
    pub to: String,
    /// The builder image of a source build, a stream tag (STREAM:TAG).
    #[arg(long, value_name = "STREAM:TAG")]
    pub builder: Option<String>,
    /// Reuse the previous image's artifacts (its save-artifacts script).
    #[arg(long)]
    pub incremental: bool,
    /// A Docker build's base image, replacing its Dockerfile's last FROM.
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,
    /// A Docker build's Dockerfile, relative to the context.
    #[arg(long, value_name = "PATH")]
    pub dockerfile: Option<String>,
    /// The git repository to build; without it, the build is a binary one
    /// whose input comes with each start.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch to build.
    #[arg(long = "ref", value_name = "BRANCH", requires = "git")]
    pub git_ref: Option<String>,
    /// The directory of the repository that is the build's context.
    #[arg(long, value_name = "DIR", requires = "git")]
    pub context_dir: Option<String>,
    /// An environment variable of the build (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE", value_parser = parse::env_var)]
    pub env: Vec<EnvVar>,
    /// Which builds may run at once.
    #[arg(long, value_enum, default_value_t = RunPolicyArg::Serial)]
    pub run_policy: RunPolicyArg,
    /// The build's memory limit (512M, 2G).
    #[arg(long, value_parser = parse::memory_bytes)]
    pub memory: Option<u64>,
    /// The build's CPU limit (0.5, 2, 1500m).
    #[arg(long, value_parser = parse::cpu_millis)]
    pub cpus: Option<u32>,
    /// Do not build when the config changes.
    #[arg(long)]
    pub no_config_trigger: bool,
    /// Do not build when the builder image's tag moves.
    #[arg(long)]
    pub no_image_trigger: bool,
}

/// `berth build start`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").args(["from_dir", "from_archive", "from_file"])))]
pub struct StartArgs {
    /// The build config.
    pub name: String,
    /// Send this directory as the input (a Docker build leaves out what
    /// its .dockerignore names).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Send this tar archive as the input.
    #[arg(long, value_name = "FILE")]
    pub from_archive: Option<PathBuf>,
    /// Send this one file as the input (a Dockerfile, say).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Build this commit of the git source instead of its branch's head.
    #[arg(long, conflicts_with = "input")]
    pub commit: Option<String>,
    /// Follow the build's log until it ends; exit non-zero unless it
    /// completes.
    #[arg(short, long)]
    pub follow: bool,
}

/// The build config failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid build config")]
pub struct InvalidBuildConfig(pub ValidationErrors);

/// A followed build did not complete.
#[derive(Debug, thiserror::Error)]
#[error("build {name} {phase:?}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct BuildDidNotComplete {
    name: String,
    phase: BuildPhase,
    reason: Option<String>,
}

/// Runs one `berth build` command.
pub async fn run(client: &MasterClient, command: BuildCommand) -> anyhow::Result<()> {
    match command {
        BuildCommand::Create(args) => create(client, args).await,
        BuildCommand::Start(args) => start(client, args).await,
        BuildCommand::Ls {
            config,
            output: format,
        } => list(client, config.as_deref(), format).await,
        BuildCommand::Describe {
            name,
            output: format,
        } => describe(client, &name, format).await,
        BuildCommand::Logs { name, follow } => {
            let build = latest_or_named(client, &name).await?;
            logs(client, &build.object, follow).await?;
            Ok(())
        }
        BuildCommand::Cancel { name } => {
            let build = client.cancel_build(&name).await?;
            let state = if build.object.phase.is_final() {
                format!("already ended {:?}", build.object.phase)
            } else {
                "cancelling: its pod stops".to_owned()
            };
            output::print(&format!("build {name}: {state}\n"))
        }
        BuildCommand::Rm { name } => {
            client.delete_build_config(&name).await?;
            output::print(&format!("build config {name}: removed, with its builds\n"))
        }
        BuildCommand::Webhook { name } => {
            let hooks = client.build_webhooks(&name).await?;
            let base = client.base();
            output::print(&format!(
                "github:  {base}{}   (push events, X-Hub-Signature-256 keyed with the secret)\ngeneric: {base}{}\n",
                hooks.github, hooks.generic
            ))
        }
    }
}

async fn create(client: &MasterClient, args: CreateArgs) -> anyhow::Result<()> {
    let strategy = match args.strategy {
        StrategyArg::Docker => {
            if args.builder.is_some() || args.incremental {
                anyhow::bail!("--builder and --incremental are for --strategy source");
            }
            BuildStrategy::Docker(DockerStrategy {
                from: args.from,
                dockerfile: args.dockerfile,
            })
        }
        StrategyArg::Source => {
            if args.from.is_some() || args.dockerfile.is_some() {
                anyhow::bail!("--from and --dockerfile are for --strategy docker");
            }
            let builder = args
                .builder
                .context("--strategy source needs --builder STREAM:TAG")?;
            BuildStrategy::Source(SourceStrategy {
                builder,
                incremental: args.incremental,
            })
        }
    };
    let config = BuildConfig {
        name: args.name.clone(),
        labels: Default::default(),
        strategy,
        git: args.git.map(|url| GitSource {
            url,
            git_ref: args
                .git_ref
                .unwrap_or_else(|| berth_model::build::DEFAULT_GIT_REF.to_owned()),
            context_dir: args.context_dir.unwrap_or_default(),
        }),
        to: args.to,
        env: args.env,
        resources: Resources {
            memory_bytes: args.memory,
            cpu_millis: args.cpus,
            ..Resources::default()
        },
        run_policy: match args.run_policy {
            RunPolicyArg::Serial => RunPolicy::Serial,
            RunPolicyArg::SerialLatestOnly => RunPolicy::SerialLatestOnly,
            RunPolicyArg::Parallel => RunPolicy::Parallel,
        },
        triggers: BuildTriggers {
            config_change: !args.no_config_trigger,
            image_change: !args.no_image_trigger,
        },
        webhook_secret: String::new(),
        output_image: String::new(),
        last_version: 0,
    };
    config.validate().map_err(InvalidBuildConfig)?;
    let made = client.create_build_config(&config).await?;
    let mut text = format!(
        "build config {}: created; pushes to {}\n",
        args.name, made.object.output_image
    );
    if made.object.last_version > 0 {
        let _ = writeln!(
            text,
            "build {}-{}: started (berth build logs {0}-{1} -f)",
            args.name, made.object.last_version
        );
    } else if made.object.git.is_none() {
        let _ = writeln!(
            text,
            "a binary build: berth build start {} --from-dir DIR",
            args.name
        );
    }
    output::print(&text)
}

async fn start(client: &MasterClient, args: StartArgs) -> anyhow::Result<()> {
    let input = if let Some(dir) = &args.from_dir {
        let config = client.get_build_config(&args.name).await?;
        let docker = matches!(config.object.strategy, BuildStrategy::Docker(_));
        Some(pack_dir(dir, docker)?)
    } else if let Some(file) = &args.from_archive {
        Some(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
    } else if let Some(file) = &args.from_file {
        Some(pack_file(file)?)
    } else {
        None
    };
    let build = match input {
        Some(tar) => client.start_binary_build(&args.name, tar).await?,
        None => {
            client
                .start_build(&args.name, args.commit.as_deref())
                .await?
        }
    };
    let name = build.object.name.clone();
    if !args.follow {
        return output::print(&format!(
            "build {name}: started (berth build logs {name} -f)\n"
        ));
    }
    eprintln!("build {name}: started");
    let ended = logs(client, &build.object, true).await?;
    finished(&ended)
}

/// Exit status of a followed build: 0 only if it completed.
fn finished(build: &Build) -> anyhow::Result<()> {
    match build.phase {
        BuildPhase::Complete => {
            let pushed = build.output_image.as_deref().unwrap_or(&build.task.output);
            eprintln!("build {}: Complete, pushed {pushed}", build.name);
            Ok(())
        }
        phase => Err(BuildDidNotComplete {
            name: build.name.clone(),
            phase,
            reason: build.reason.clone(),
        }
        .into()),
    }
}

/// A tar of `dir`, leaving out what its .dockerignore names for a Docker
/// build (as `docker build` does), which also keeps uploads small.
fn pack_dir(dir: &Path, dockerignore: bool) -> anyhow::Result<Vec<u8>> {
    if !dir.is_dir() {
        anyhow::bail!("--from-dir: {} is not a directory", dir.display());
    }
    berth_client::build_context::pack_dir(dir, dockerignore)
        .with_context(|| format!("packing {}", dir.display()))
}

/// A tar of one file, under its own name.
fn pack_file(file: &Path) -> anyhow::Result<Vec<u8>> {
    let name = file
        .file_name()
        .with_context(|| format!("--from-file: {} names no file", file.display()))?;
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_path_with_name(file, name)
        .with_context(|| format!("reading {}", file.display()))?;
    Ok(builder.into_inner()?)
}

/// Prints the build's log (what its pod printed); with `follow`, until the
/// build ends. The build as it was last read.
async fn logs(client: &MasterClient, build: &Build, follow: bool) -> anyhow::Result<Build> {
    let mut build = build.clone();
    let mut last_id = 0;
    loop {
        let ended = build.phase.is_final();
        // A build that just ended may have lines still on their way: wait
        // for them a moment, a second at a time.
        let settle = if ended && build.pod.is_some() {
            settling(&build)
        } else {
            Duration::ZERO
        };
        if let Some(pod) = &build.pod {
            let mut query = vec![("target", pod.clone())];
            if last_id > 0 {
                query.push(("newer-than", last_id.to_string()));
            }
            let wait = if (follow && !ended) || !settle.is_zero() {
                FOLLOW_WAIT
            } else {
                Duration::ZERO
            };
            if !wait.is_zero() {
                query.push(("wait", wait.as_secs().to_string()));
            }
            // Before its pod ran, the build has no lines yet.
            match client.read_logs(&query, wait).await {
                Ok(page) => {
                    crate::logs::print_messages(&page.lines)?;
                    last_id = page.last_id.max(last_id);
                    if page.next.is_some() {
                        continue;
                    }
                }
                Err(_) => tokio::time::sleep(wait).await,
            }
        } else if follow {
            tokio::time::sleep(FOLLOW_WAIT / 4).await;
        }
        if ended && !settle.is_zero() {
            continue;
        }
        if !follow || ended {
            return Ok(build);
        }
        build = client.get_build(&build.name).await?.object;
    }
}

/// Build `name` (NAME-N), or the latest build of config `name`.
async fn latest_or_named(client: &MasterClient, name: &str) -> anyhow::Result<Versioned<Build>> {
    if let Ok(build) = client.get_build(name).await {
        return Ok(build);
    }
    let builds = client.list_builds().await?;
    builds
        .into_iter()
        .filter(|b| b.object.config == name)
        .max_by_key(|b| b.object.number)
        .with_context(|| format!("no build {name}, and no build of a config {name}"))
}

async fn list(client: &MasterClient, config: Option<&str>, format: Format) -> anyhow::Result<()> {
    let mut builds = client.list_builds().await?;
    builds.retain(|b| config.is_none_or(|c| b.object.config == c));
    builds.sort_by(|a, b| {
        (&a.object.config, a.object.number).cmp(&(&b.object.config, b.object.number))
    });
    if let Some(text) = output::structured(format, &builds)? {
        return output::print(&text);
    }
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            let b = &b.object;
            vec![
                b.name.clone(),
                format!("{:?}", b.phase),
                b.cause.to_string(),
                b.output_digest.clone().unwrap_or_default(),
                b.duration_ms()
                    .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::print(&output::table(
        &["NAME", "PHASE", "CAUSE", "OUTPUT", "DURATION"],
        &rows,
    ))
}

async fn describe(client: &MasterClient, name: &str, format: Format) -> anyhow::Result<()> {
    if let Ok(config) = client.get_build_config(name).await {
        if let Some(text) = output::structured(format, &config)? {
            return output::print(&text);
        }
        let c = &config.object;
        let mut text = String::new();
        let _ = writeln!(text, "Name:        {}", c.name);
        let strategy = match &c.strategy {
            BuildStrategy::Docker(d) => format!(
                "docker{}",
                d.from
                    .as_deref()
                    .map(|f| format!(" (FROM {f})"))
                    .unwrap_or_default()
            ),
            BuildStrategy::Source(s) => format!("source (builder {})", s.builder),
        };
        let _ = writeln!(text, "Strategy:    {strategy}");
        let source = match &c.git {
            Some(git) => format!(
                "{} {}{}",
                git.url,
                git.git_ref,
                if git.context_dir.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", git.context_dir)
                }
            ),
            None => "binary (berth build start --from-dir DIR)".to_owned(),
        };
        let _ = writeln!(text, "Source:      {source}");
        let _ = writeln!(text, "To:          {} ({})", c.to, c.output_image);
        let _ = writeln!(text, "Run policy:  {}", c.run_policy.as_str());
        let _ = writeln!(
            text,
            "Triggers:    config change {}, image change {}",
            on_off(c.triggers.config_change),
            on_off(c.triggers.image_change)
        );
        let _ = writeln!(text, "Webhooks:    berth build webhook {}", c.name);
        output::print(&text)?;
        return list(client, Some(name), Format::Table).await;
    }
    let build = client.get_build(name).await?;
    if let Some(text) = output::structured(format, &build)? {
        return output::print(&text);
    }
    let b = &build.object;
    let mut text = String::new();
    let _ = writeln!(text, "Name:        {}", b.name);
    let _ = writeln!(text, "Config:      {}", b.config);
    let _ = writeln!(text, "Phase:       {:?}", b.phase);
    if let Some(reason) = &b.reason {
        let _ = writeln!(text, "Reason:      {reason}");
    }
    let _ = writeln!(text, "Cause:       {} (by {})", b.cause, b.by);
    let input = match &b.task.input {
        berth_model::build::BuildInput::Git {
            url,
            git_ref,
            commit,
            ..
        } => format!(
            "{url} {git_ref}{}",
            commit
                .as_deref()
                .map(|c| format!(" at {c}"))
                .unwrap_or_default()
        ),
        berth_model::build::BuildInput::Archive { digest } => format!("archive {digest}"),
    };
    let _ = writeln!(text, "Input:       {input}");
    let _ = writeln!(
        text,
        "Output:      {}",
        b.output_image.as_deref().unwrap_or(&b.task.output)
    );
    if let Some(node) = &b.node {
        let _ = writeln!(text, "Node:        {node}");
    }
    let _ = writeln!(
        text,
        "Created:     {}",
        output::utc_time_of_ms(b.created_ms)
    );
    if let Some(ms) = b.duration_ms() {
        let _ = writeln!(text, "Duration:    {:.1}s", ms as f64 / 1000.0);
    }
    let _ = writeln!(text, "Logs:        berth build logs {}", b.name);
    output::print(&text)
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
