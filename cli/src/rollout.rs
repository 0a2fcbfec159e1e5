//! `berth set ...` changes a service's template (each change is a new
//! revision, rolled out by its strategy) and `berth rollout ...` follows,
//! pauses, promotes, cancels and undoes those rollouts.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use berth_model::api::Versioned;
use berth_model::deployment::{DeploymentPhase, FailurePolicy, Hook, ImageTrigger, Trigger};
use berth_model::pod::{Container, EnvVar};
use berth_model::probe::{Check, Probe};
use berth_model::{Deployment, Service};
use clap::{Args, Subcommand, ValueEnum};

use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;
use crate::strategy_flags::StrategyFlags;

/// `berth set`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each change to a service's template is a new revision, rolled out by its
strategy with no request lost (berth rollout status web -w follows it).

Examples:
  berth set image web local/httpd:2
  berth set image web web=local/httpd:2 sidecar=local/busybox
  berth set env web MODE=fast DEBUG-
  berth set resources web --memory 128M --cpus 0.5
  berth set probe web --readiness http:8080/health
  berth set strategy web --max-surge 2 --min-ready 5 --progress-deadline 60 --auto-rollback
  berth set hook web pre --image local/busybox --policy abort -- sh -c './migrate'
  berth set triggers web --manual"
)]
pub struct SetArgs {
    /// What to change.
    #[command(subcommand)]
    pub command: SetCommand,
}

/// The `berth set` subcommands.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Change a container's image (the only container's, without NAME=).
    Image {
        /// The service.
        service: String,
        /// `IMAGE`, or `CONTAINER=IMAGE` for each container to change.
        #[arg(required = true, value_name = "[CONTAINER=]IMAGE")]
        images: Vec<String>,
        /// Even if it drops a port a route or link uses.
        #[arg(long)]
        force: bool,
    },
    /// Set (`K=V`) or remove (`K-`) variables of every container.
    Env {
        /// The service.
        service: String,
        /// `NAME=VALUE` to set, `NAME-` to remove.
        #[arg(required = true, value_name = "NAME=VALUE|NAME-")]
        changes: Vec<String>,
    },
    /// Change a container's memory and CPU limits.
    Resources {
        /// The service.
        service: String,
        /// The container (by default the only one).
        #[arg(short, long)]
        container: Option<String>,
        /// Memory limit (64M, 1G).
        #[arg(long, value_parser = parse::memory_bytes)]
        memory: Option<u64>,
        /// CPUs (0.5, 2).
        #[arg(long, value_parser = parse::cpu_millis)]
        cpus: Option<u32>,
    },
    /// Set or remove a container's probes.
    Probe {
        /// The service.
        service: String,
        /// The container (by default the only one).
        #[arg(short, long)]
        container: Option<String>,
        /// Readiness check: tcp:PORT, http:PORT[/PATH] or exec:CMD.
        #[arg(long, value_parser = parse::probe_check)]
        readiness: Option<Check>,
        /// Liveness check.
        #[arg(long, value_parser = parse::probe_check)]
        liveness: Option<Check>,
        /// Remove every probe of the container first.
        #[arg(long)]
        remove: bool,
    },
    /// Change how new revisions roll out.
    Strategy {
        /// The service.
        service: String,
        /// The strategy's settings.
        #[command(flatten)]
        flags: StrategyFlags,
    },
    /// Set (or --remove) a hook: a job run before the first new pod (pre)
    /// or once they are all ready (post).
    Hook {
        /// The service.
        service: String,
        /// pre or post.
        #[arg(value_enum)]
        point: HookArg,
        /// The hook's image.
        #[arg(long, required_unless_present = "remove")]
        image: Option<String>,
        /// What its failure does: abort (the rollout fails, the old
        /// revision stays), retry (then abort) or ignore.
        #[arg(long, value_enum, default_value_t = PolicyArg::Abort)]
        policy: PolicyArg,
        /// Remove the hook.
        #[arg(long)]
        remove: bool,
        /// Its command.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Whether changes and new images roll out by themselves (--auto) or
    /// wait for `berth rollout restart` (--manual).
    Triggers {
        /// The service.
        service: String,
        /// Roll out every change at once.
        #[arg(long, conflicts_with = "manual", required_unless_present_any = ["manual", "from_image"])]
        auto: bool,
        /// Record changes; roll out on `berth rollout restart`.
        #[arg(long)]
        manual: bool,
        /// Follow an image stream's tag: a new image there rolls out.
        #[arg(long = "from-image", value_name = "STREAM:TAG")]
        from_image: Option<String>,
        /// The container that follows it (by default the only one).
        #[arg(short, long, requires = "from_image")]
        container: Option<String>,
    },
}

/// A hook's point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    /// Before the first new pod.
    Pre,
    /// Once every new pod is ready.
    Post,
}

/// A hook's failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// The rollout fails; the old revision stays.
    Abort,
    /// Retry the job, then abort.
    Retry,
    /// Go on.
    Ignore,
}

/// `berth rollout`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth rollout status web -w
  berth rollout history web
  berth rollout history web --revision 2
  berth rollout undo web
  berth rollout undo web --to-revision 1
  berth rollout promote web
  berth rollout restart web")]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// The `berth rollout` subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The latest revision's rollout; exits 1 if it failed. -w waits for
    /// it to end.
    Status {
        /// The service.
        service: String,
        /// Wait until the rollout ends (exit 0 complete, 1 otherwise).
        #[arg(short, long)]
        watch: bool,
        /// Give up waiting after this long (90s, 10m).
        #[arg(long, value_parser = parse::duration)]
        timeout: Option<Duration>,
    },
    /// The service's revisions with their causes; --revision shows one's
    /// template.
    History {
        /// The service.
        service: String,
        /// Show this revision's template.
        #[arg(long)]
        revision: Option<u64>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Return to an earlier revision (by default the last complete one
    /// before the latest), as a new revision. Image triggers are turned
    /// off, so that the next push does not replace the rollback.
    Undo {
        /// The service.
        service: String,
        /// The revision to return to.
        #[arg(long = "to-revision")]
        to_revision: Option<u64>,
    },
    /// A new revision of the same template: every pod replaced, without
    /// downtime. Also rolls out changes made with --manual triggers.
    Restart {
        /// The service.
        service: String,
    },
    /// Stop the running rollout where it is.
    Pause {
        /// The service.
        service: String,
    },
    /// Go on with a paused rollout.
    Resume {
        /// The service.
        service: String,
    },
    /// Let a canary rollout go on to every replica.
    Promote {
        /// The service.
        service: String,
    },
    /// End the running rollout; the last complete revision serves again.
    Cancel {
        /// The service.
        service: String,
    },
}

/// Runs a `berth set` subcommand.
pub async fn set(client: &MasterClient, command: SetCommand) -> anyhow::Result<()> {
    let (name, force) = match &command {
        SetCommand::Image { service, force, .. } => (service.clone(), *force),
        SetCommand::Env { service, .. }
        | SetCommand::Resources { service, .. }
        | SetCommand::Probe { service, .. }
        | SetCommand::Strategy { service, .. }
        | SetCommand::Hook { service, .. }
        | SetCommand::Triggers { service, .. } => (service.clone(), false),
    };
    let current = client.get_service(&name).await?;
    let mut service = current.object.clone();
    change(&mut service, command)?;
    if service == current.object {
        println!("service {name}: unchanged");
        return Ok(());
    }
    if let Err(errors) = service.validate() {
        return Err(crate::cluster::InvalidService(errors).into());
    }
    let before = client.list_deployments(&name).await?;
    let written = client
        .replace_service(
            &Versioned {
                resource_version: current.resource_version,
                object: service,
            },
            force,
        )
        .await?;
    let after = client.list_deployments(&name).await?;
    match after.last().filter(|d| before.last().map(|b| b.object.revision) != Some(d.object.revision)) {
        Some(new) => println!(
            "service {name}: revision {} ({}), rolling out (berth rollout status {name} -w)",
            new.object.revision, new.object.cause
        ),
        None if written.object.rolls_out_changes() => println!("service {name}: changed"),
        None => println!(
            "service {name}: changed; triggers are manual, so it rolls out on berth rollout restart {name}"
        ),
    }
    Ok(())
}

/// Applies a `set` command to the service.
fn change(service: &mut Service, command: SetCommand) -> anyhow::Result<()> {
    match command {
        SetCommand::Image { images, .. } => {
            for image in images {
                let (container, image) = match image.split_once('=') {
                    Some((container, image)) => (Some(container.to_owned()), image.to_owned()),
                    None => (None, image),
                };
                container_mut(service, container.as_deref())?.image = image;
            }
        }
        SetCommand::Env { changes, .. } => {
            for change in changes {
                if let Some(name) = change.strip_suffix('-').filter(|n| !n.contains('=')) {
                    service.env.retain(|v| v.name != name);
                    for container in &mut service.template.containers {
                        container.env.retain(|v| v.name != name);
                    }
                    continue;
                }
                let var: EnvVar = parse::env_var(&change).map_err(anyhow::Error::msg)?;
                // A container's own value would win over the service's.
                for container in &mut service.template.containers {
                    container.env.retain(|v| v.name != var.name);
                }
                match service.env.iter_mut().find(|v| v.name == var.name) {
                    Some(existing) => existing.value = var.value,
                    None => service.env.push(var),
                }
            }
        }
        SetCommand::Resources {
            container,
            memory,
            cpus,
            ..
        } => {
            let container = container_mut(service, container.as_deref())?;
            if memory.is_none() && cpus.is_none() {
                bail!("nothing to set: give --memory, --cpus or both");
            }
            container.resources.memory_bytes = memory.or(container.resources.memory_bytes);
            container.resources.cpu_millis = cpus.or(container.resources.cpu_millis);
        }
        SetCommand::Probe {
            container,
            readiness,
            liveness,
            remove,
            ..
        } => {
            let container = container_mut(service, container.as_deref())?;
            if remove {
                container.probes = Default::default();
            }
            if let Some(check) = readiness {
                container.probes.readiness = Some(Probe::new(check));
            }
            if let Some(check) = liveness {
                container.probes.liveness = Some(Probe::new(check));
            }
        }
        SetCommand::Strategy { flags, .. } => {
            service.strategy = flags.apply(std::mem::take(&mut service.strategy));
        }
        SetCommand::Hook {
            point,
            image,
            policy,
            remove,
            command,
            ..
        } => {
            let hook = (!remove).then(|| Hook {
                image: image.unwrap_or_default(),
                command,
                env: Vec::new(),
                failure_policy: match policy {
                    PolicyArg::Abort => FailurePolicy::Abort,
                    PolicyArg::Retry => FailurePolicy::Retry,
                    PolicyArg::Ignore => FailurePolicy::Ignore,
                },
            });
            let hooks = &mut service.strategy.hooks;
            *match point {
                HookArg::Pre => &mut hooks.pre,
                HookArg::Post => &mut hooks.post,
            } = hook;
        }
        SetCommand::Triggers {
            auto,
            manual,
            from_image,
            container,
            ..
        } => {
            if auto || manual {
                service.triggers.retain(|t| *t != Trigger::ConfigChange);
                if auto {
                    service.triggers.insert(0, Trigger::ConfigChange);
                }
                for trigger in &mut service.triggers {
                    if let Trigger::ImageChange(image) = trigger {
                        image.automatic = auto;
                    }
                }
            }
            if let Some(from) = from_image {
                let container = container_mut(service, container.as_deref())?.name.clone();
                service.triggers.retain(
                    |t| !matches!(t, Trigger::ImageChange(image) if image.container == container),
                );
                service.triggers.push(Trigger::ImageChange(ImageTrigger {
                    from,
                    container,
                    automatic: !manual,
                }));
            }
        }
    }
    Ok(())
}

/// The container named `name`, or the only one.
fn container_mut<'a>(
    service: &'a mut Service,
    name: Option<&str>,
) -> anyhow::Result<&'a mut Container> {
    let names: Vec<String> = service
        .template
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let containers = &mut service.template.containers;
    let found = match name {
        Some(name) => containers.iter_mut().find(|c| c.name == name),
        None if containers.len() == 1 => containers.first_mut(),
        None => bail!(
            "service {} has containers {}: name one (CONTAINER=IMAGE or -c CONTAINER)",
            service.name,
            names.join(", ")
        ),
    };
    found.with_context(|| {
        format!(
            "service {} has no container {:?} (it has {})",
            service.name,
            name.unwrap_or_default(),
            names.join(", ")
        )
    })
}

/// Runs a `berth rollout` subcommand.
pub async fn run(client: &MasterClient, command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status {
            service,
            watch,
            timeout,
        } => status(client, &service, watch, timeout).await,
        RolloutCommand::History {
            service,
            revision,
            output: format,
        } => history(client, &service, revision, format).await,
        RolloutCommand::Undo {
            service,
            to_revision,
        } => {
            let rolled = client.roll_back(&service, to_revision).await?;
            let d = &rolled.deployment.object;
            println!(
                "service {service}: revision {} ({}), rolling out (berth rollout status {service} -w)",
                d.revision, d.cause
            );
            if !rolled.triggers_disabled.is_empty() {
                println!(
                    "image triggers turned off, so that the next push does not replace the rollback: {}\n\
                     (turn them on again with berth set triggers {service} --auto)",
                    rolled.triggers_disabled.join(", ")
                );
            }
            Ok(())
        }
        RolloutCommand::Restart { service } => {
            let d = client.rollout_verb(&service, "restart").await?.object;
            println!(
                "service {service}: revision {} ({}), rolling out (berth rollout status {service} -w)",
                d.revision, d.cause
            );
            Ok(())
        }
        RolloutCommand::Pause { service } => verb(client, &service, "pause", "paused").await,
        RolloutCommand::Resume { service } => verb(client, &service, "resume", "resumed").await,
        RolloutCommand::Promote { service } => verb(client, &service, "promote", "promoted").await,
        RolloutCommand::Cancel { service } => verb(client, &service, "cancel", "cancelled").await,
    }
}

async fn verb(client: &MasterClient, service: &str, verb: &str, done: &str) -> anyhow::Result<()> {
    let d = client.rollout_verb(service, verb).await?.object;
    println!(
        "service {service}: rollout of revision {} {done}",
        d.revision
    );
    Ok(())
}

/// A failed, cancelled or undone rollout: `berth rollout status` exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RolloutNotComplete(pub String);

async fn status(
    client: &MasterClient,
    service: &str,
    watch: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let deployments = client.list_deployments(service).await?;
    let Some(latest) = deployments.last() else {
        bail!("service {service} has no revision yet");
    };
    let revision = latest.object.revision;
    let started = Instant::now();
    let mut deployment = latest.object.clone();
    let mut last_line = String::new();
    loop {
        let line = status_line(&deployment);
        if line != last_line {
            println!("{line}");
            last_line = line;
        }
        match deployment.status.phase {
            DeploymentPhase::Complete => return Ok(()),
            DeploymentPhase::Running if !watch => return Ok(()),
            DeploymentPhase::Running => {}
            _ => {
                return Err(RolloutNotComplete(format!(
                    "rollout of {service} revision {revision} {}",
                    deployment.status.phase.to_string().to_lowercase()
                ))
                .into())
            }
        }
        let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
        if left == Some(Duration::ZERO) {
            return Err(RolloutNotComplete(format!(
                "rollout of {service} revision {revision} still running after {:?}",
                timeout.unwrap_or_default()
            ))
            .into());
        }
        let wait = left.map_or(30, |l| l.as_secs().clamp(1, 30));
        deployment = client
            .get_deployment(service, revision, Some(wait.min(2)))
            .await?
            .object;
    }
}

/// One line on where a rollout stands.
fn status_line(d: &Deployment) -> String {
    let s = &d.status;
    let mut line = format!(
        "revision {} ({}): {}: {} new pod(s), {} available, {} old",
        d.revision, d.cause, s.phase, s.updated, s.available, s.old
    );
    if let Some(reason) = &s.reason {
        let _ = write!(line, ": {reason}");
    }
    line
}

async fn history(
    client: &MasterClient,
    service: &str,
    revision: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    let deployments = client.list_deployments(service).await?;
    if let Some(revision) = revision {
        let Some(found) = deployments.iter().find(|d| d.object.revision == revision) else {
            let kept: Vec<String> = deployments
                .iter()
                .map(|d| d.object.revision.to_string())
                .collect();
            bail!(
                "revision {revision} of {service} is not in its history (kept: {})",
                kept.join(", ")
            );
        };
        return match output::structured(format, found)? {
            Some(text) => output::print(&text),
            None => {
                let d = &found.object;
                let mut text = format!(
                    "revision {} of {service}\ncause: {}\nby: {}\ncreated: {}\nstatus: {}\n",
                    d.revision,
                    d.cause,
                    d.user,
                    output::utc_time_of_ms(d.created_ms),
                    d.status.phase
                );
                if let Some(reason) = &d.status.reason {
                    let _ = writeln!(text, "reason: {reason}");
                }
                text.push_str("template:\n");
                for line in output::yaml(&d.template)?.lines() {
                    let _ = writeln!(text, "  {line}");
                }
                if !d.env.is_empty() {
                    text.push_str("env:\n");
                    for var in &d.env {
                        let _ = writeln!(text, "  {}={}", var.name, var.value);
                    }
                }
                output::print(&text)
            }
        };
    }
    if let Some(text) = output::structured(format, &deployments)? {
        return output::print(&text);
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let d = &d.object;
            vec![
                d.revision.to_string(),
                d.cause.to_string(),
                d.user.clone(),
                output::utc_time_of_ms(d.created_ms),
                d.status.phase.to_string(),
                d.status.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::print(&output::table(
        &["REVISION", "CAUSE", "BY", "CREATED", "STATUS", "REASON"],
        &rows,
    ))
}
