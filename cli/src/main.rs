//! `berth`: the command line. The cluster commands (`login`, `node`, `run`,
//! `ps`, ...) talk to berth-master's HTTP API; `berth local ...` drives the
//! berth-agent of this host over its unix socket.

use std::io::{self, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use berth_model::FieldError;
use clap::{CommandFactory as _, Parser, Subcommand};

mod agent_client;
mod apply;
mod build;
mod cluster;
mod completions;
mod config;
mod cron;
mod events;
mod generate;
mod image_stream;
mod job;
mod link;
mod local;
mod logs;
mod master;
mod master_client;
mod node;
mod output;
mod parse;
mod pod_flags;
mod project;
mod registry;
mod rollout;
mod route;
mod strategy_flags;
mod template;
mod top;
mod user;
mod volume;

/// berth: drive a berth cluster from the command line.
#[derive(Debug, Parser)]
// Named explicitly: the package is `berth-cli`, and completion scripts and
// `--version` must say `berth`.
#[command(name = "berth", version)]
struct Cli {
    /// Work in this project (before the command: `berth -p shop ps`);
    /// beats BERTH_PROJECT and `berth project use`.
    #[arg(short = 'p', long = "project", value_name = "PROJECT")]
    project: Option<String>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The command families: the cluster through the master, or this host
/// through its agent.
#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to a berth master: check the token, then save the master's URL
    /// and the token for the other commands.
    ///
    /// The login is saved to $XDG_CONFIG_HOME/berth/config.json (by default
    /// ~/.config/berth/config.json), readable by you only. BERTH_URL and
    /// BERTH_TOKEN, when set, override it for every command.
    Login(cluster::LoginArgs),
    /// The cluster, through the master.
    #[command(flatten)]
    Cluster(cluster::ClusterCommand),
    /// Projects: each holds services, pods and routes under names of its
    /// own. Commands work in `default` unless told otherwise.
    Project(project::ProjectArgs),
    /// Jobs: work that runs to completion as run-once pods, with retries,
    /// deadlines, cancel and prerequisites.
    Job(job::JobArgs),
    /// Cron jobs: a job made on each slot of a schedule, never twice.
    Cron(cron::CronArgs),
    /// Builds: source (git, or a directory sent along) to an image of a
    /// stream, Docker or source-to-image style, run as jobs.
    Build(build::BuildArgs),
    /// Change a service's image, variables, resources, probes, rollout
    /// strategy, hooks or triggers: each template change is a new revision,
    /// rolled out without downtime.
    Set(rollout::SetArgs),
    /// Follow, pause, promote, cancel and undo a service's rollouts, and
    /// show its revisions.
    Rollout(rollout::RolloutArgs),
    /// Image streams: images under one name, with tags and each tag's
    /// history; services follow a tag with `berth set triggers --from-image`.
    #[command(name = "image-stream", visible_alias = "is")]
    ImageStream(image_stream::ImageStreamArgs),
    /// Point an image stream's tag at an image, or at another tag
    /// (`--alias` keeps following it).
    Tag(image_stream::TagArgs),
    /// Point an image stream's tag at the digest an image reference of
    /// another registry points at now (and, with --scheduled, later).
    ImportImage(image_stream::ImportImageArgs),
    /// The integrated registry: its address, and `docker login` to it
    /// with your berth token.
    Registry(registry::RegistryArgs),
    /// Images in the integrated registry: prune those nothing needs.
    Image(registry::ImageArgs),
    /// Make the cluster hold the objects of YAML or JSON files (services,
    /// links, routes, jobs, cron jobs): new ones are created, changed ones
    /// replaced, unchanged ones left alone; one line per object.
    ///
    /// Each document has `kind:` (Service, Link, Route, Job or CronJob)
    /// and the object's fields, as `berth describe service NAME -o yaml`
    /// prints them (`resourceVersion` and `status` are ignored). Every
    /// document is checked first: if any is invalid, nothing is applied.
    /// Secret values left blank (as describe shows them) keep their stored
    /// values.
    #[command(after_help = "Examples:\n  \
        berth apply -f shop.yaml                         create or update what it declares\n  \
        berth apply -f deploy/                           every *.yaml, *.yml and *.json in it\n  \
        berth describe service web -o yaml | berth apply -f -   changes nothing\n  \
        berth apply -f shop/ --prune -l app=shop         also remove app=shop objects no longer in shop/\n\n\
        A document:\n  \
        kind: Service\n  \
        name: web\n  \
        labels: {app: shop}\n  \
        replicas: 2\n  \
        template:\n    \
          name: web\n    \
          containers:\n    \
          - name: web\n      \
            image: local/busybox\n      \
            args: [httpd, -f, -p, \"8080\"]\n      \
            ports: [{containerPort: 8080, hostPort: 0}]\n  \
        ---\n  \
        kind: Link          # service web reaches db at 127.0.0.1:5432\n  \
        service: web\n  \
        target: db\n  \
        port: 5432")]
    Apply(apply::ApplyArgs),
    /// What `berth apply` would change: a unified diff of each object that
    /// would be created, changed or pruned (secret values never shown).
    /// Exits 1 when there are differences, 0 when there are none.
    #[command(after_help = "Examples:\n  \
        berth diff -f shop.yaml\n  \
        berth diff -f shop/ --prune -l app=shop   also what pruning would remove")]
    Diff(apply::ApplyArgs),
    /// Render a template file without creating anything: its objects as
    /// documents `berth apply -f` reads, or with --parameters its
    /// parameters. A missing required parameter, an unknown one or a bad
    /// expression is an error naming it.
    #[command(after_help = "Examples:\n  \
        berth process examples/templates/web-db.yaml -p NAME=shop\n  \
        berth process examples/templates/web-db.yaml --parameters\n  \
        berth process web-db.yaml --param-file shop.env -o json")]
    Process(template::ProcessArgs),
    /// Create every object of a template file in one commit, all or
    /// nothing; generated values (passwords) are printed once and kept
    /// only as secrets. The template's script job runs afterwards: --wait
    /// waits for it, and exits 1 naming it if it fails. The objects stay
    /// when the script fails, as OpenShift's do: remove them, or fix the
    /// cause and run the job again. --link-to links an existing service
    /// to the template's linkable services in the same commit.
    #[command(after_help = "Examples:\n  \
        berth new-app examples/templates/web-db.yaml -p NAME=shop\n  \
        berth new-app examples/templates/web-db.yaml -p NAME=shop2 --link-to web\n  \
        berth new-app examples/templates/web-db-seeded.yaml -p NAME=shop3 -p ROUTER=10.0.0.1 --wait")]
    NewApp(template::NewAppArgs),
    /// Templates stored in the project: `berth new-app NAME` makes one's
    /// objects.
    Template(template::TemplateArgs),
    /// Users and robot accounts, each with a token of its own (the
    /// cluster's admin only).
    User(user::UserArgs),
    /// Who this login is, and its role in each project.
    Whoami,
    /// What this login may do.
    Auth(user::AuthArgs),
    /// What happened in the cluster: pods placed, evicted or deleted,
    /// services scaled, nodes lost and back. `-w` follows new events.
    Events(events::EventsArgs),
    /// What a service's pods (or one pod) printed, from every node, merged
    /// in time order; each line starts with its pod and node. `-f` follows.
    Logs(logs::LogsArgs),
    /// The latest CPU, memory, OOM kills, pids and IO of every pod's
    /// containers (or, with `node`, of every node), from their cgroups.
    Top(top::TopArgs),
    /// Pods on this host, through the local berth-agent (no master needed).
    Local(local::LocalArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(completions::CompletionsArgs),
}

fn main() -> ExitCode {
    // Usage errors exit here with clap's code 2.
    let cli = Cli::parse();
    if let Some(project) = cli.project {
        config::set_project_flag(project);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Login(args) => cluster::log_in(&args).await,
            Command::Cluster(command) => cluster::run(command).await,
            Command::Project(args) => match cluster::client() {
                Ok(client) => project::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Job(args) => match cluster::client() {
                Ok(client) => job::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Cron(args) => match cluster::client() {
                Ok(client) => cron::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Build(args) => match cluster::client() {
                Ok(client) => build::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Set(args) => match cluster::client() {
                Ok(client) => rollout::set(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Rollout(args) => match cluster::client() {
                Ok(client) => rollout::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::ImageStream(args) => match cluster::client() {
                Ok(client) => image_stream::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Tag(args) => match cluster::client() {
                Ok(client) => image_stream::tag(&client, &args).await,
                Err(error) => Err(error),
            },
            Command::ImportImage(args) => match cluster::client() {
                Ok(client) => image_stream::import(&client, &args).await,
                Err(error) => Err(error),
            },
            Command::Registry(args) => match cluster::client() {
                Ok(client) => registry::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Image(args) => match cluster::client() {
                Ok(client) => registry::image(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Apply(args) => match cluster::client() {
                Ok(client) => apply::apply(&client, &args).await,
                Err(error) => Err(error),
            },
            Command::Diff(args) => match cluster::client() {
                Ok(client) => apply::diff(&client, &args).await,
                Err(error) => Err(error),
            },
            Command::Process(args) => template::process(&args).await,
            Command::Template(args) => match cluster::client() {
                Ok(client) => template::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::NewApp(args) => match cluster::client() {
                Ok(client) => template::new_app(&client, &args).await,
                Err(error) => Err(error),
            },
            Command::User(args) => match cluster::client() {
                Ok(client) => user::run(&client, args.command).await,
                Err(error) => Err(error),
            },
            Command::Whoami => match cluster::client() {
                Ok(client) => user::whoami(&client).await,
                Err(error) => Err(error),
            },
            Command::Auth(user::AuthArgs {
                command: user::AuthCommand::CanI { verb, kind },
            }) => match cluster::client() {
                Ok(client) => match user::can_i(&client, &verb, &kind).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(anyhow::Error::new(AnswerIsNo)),
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            },
            Command::Events(args) => events::run(args).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Top(args) => top::run(args).await,
            Command::Local(args) => local::run(args).await,
            Command::Completions(args) => {
                let script = completions::script(args.shell, &mut Cli::command());
                let mut stdout = io::stdout().lock();
                stdout
                    .write_all(&script)
                    .and_then(|()| stdout.flush())
                    .context("writing to stdout")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `berth local logs -f | head` closes the pipe: nothing to report.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) if error.is::<AnswerIsNo>() || error.is::<apply::Differences>() => {
            ExitCode::FAILURE
        }
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// A command that answered "no" (`berth auth can-i`): exit 1, with the
/// answer already printed.
#[derive(Debug, thiserror::Error)]
#[error("the answer is no")]
struct AnswerIsNo;

/// Prints `berth: <error>` and, indented below it, each field at fault.
fn report(error: &anyhow::Error) {
    let head = format!("{error:#}");
    eprintln!("berth: {head}");
    // An error about one field already says it in its first line.
    for field in field_errors(error) {
        let line = format!("{}: {}", field.field, field.message);
        if !head.contains(&line) {
            eprintln!("  {line}");
        }
    }
}

/// The fields at fault, whether the agent, the master or local validation
/// found them.
fn field_errors(error: &anyhow::Error) -> &[FieldError] {
    for cause in error.chain() {
        if let Some(agent_client::Error::Api { error, .. }) = cause.downcast_ref() {
            return &error.fields;
        }
        if let Some(master_client::Error::Api { error, .. }) = cause.downcast_ref() {
            return &error.fields;
        }
        if let Some(local::InvalidPod(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(cluster::InvalidService(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(route::InvalidRoute(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(project::InvalidProject(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(user::InvalidUser(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(job::InvalidJob(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(cron::InvalidCronJob(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(build::InvalidBuildConfig(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
        if let Some(image_stream::InvalidImageStream(errors)) = cause.downcast_ref() {
            return errors.errors();
        }
    }
    &[]
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use berth_model::{ApiError, ValidationErrors};
    use clap::CommandFactory;
    use hyper::StatusCode;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn field_errors_come_from_the_agent_or_local_validation() {
        let fields = vec![FieldError {
            field: "containers[0].image".to_owned(),
            message: "must not be empty".to_owned(),
        }];
        let from_agent = anyhow::Error::new(agent_client::Error::Api {
            status: StatusCode::BAD_REQUEST,
            error: ApiError {
                error: "invalid pod".to_owned(),
                fields: fields.clone(),
            },
        });
        assert_eq!(field_errors(&from_agent), fields);

        let mut errors = ValidationErrors::new();
        errors.push("containers[0].image", "must not be empty");
        let local = anyhow::Error::new(local::InvalidPod(errors));
        assert_eq!(field_errors(&local), fields);

        let from_master = anyhow::Error::new(master_client::Error::Api {
            status: StatusCode::BAD_REQUEST,
            error: ApiError {
                error: "invalid service".to_owned(),
                fields: fields.clone(),
            },
        })
        .context("cannot create service web");
        assert_eq!(field_errors(&from_master), fields);

        let mut errors = ValidationErrors::new();
        errors.push("containers[0].image", "must not be empty");
        let cluster = anyhow::Error::new(cluster::InvalidService(errors));
        assert_eq!(field_errors(&cluster), fields);

        assert!(field_errors(&anyhow::anyhow!("other")).is_empty());
    }

    #[test]
    fn the_socket_flag_works_before_or_after_the_subcommand() {
        for argv in [
            ["berth", "local", "--socket", "/tmp/a.sock", "ps"],
            ["berth", "local", "ps", "--socket", "/tmp/a.sock"],
        ] {
            let Command::Local(local) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("not a local command");
            };
            assert_eq!(local.socket, std::path::PathBuf::from("/tmp/a.sock"));
        }
    }
}
