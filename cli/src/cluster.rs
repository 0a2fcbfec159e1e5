//! The cluster commands: `berth login`, `node`, `run`, `ps`, `scale`, `rm`,
//! `describe` and `move`, through berth-master's API.

use anyhow::Context as _;
use berth_model::api::Versioned;
use berth_model::{ClusterPod, Service, ValidationErrors};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::{self, Config, TOKEN_ENV, URL_ENV};
use crate::master_client::MasterClient;
use crate::node::{self, NodeCommand};
use crate::output::{self, Format};
use crate::parse;
use crate::pod_flags::PodFlags;

/// The commands that talk to the master once logged in.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The cluster's nodes: list and show them, cordon them, and add new
    /// ones with a join token.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The masters sharing the cluster's store: list them, with the one
    /// that leads.
    #[command(subcommand)]
    Master(crate::master::MasterCommand),
    /// Create a service: replicas of a pod of one container, which the
    /// master places on nodes and keeps running.
    ///
    /// Running the same command again is harmless: the master answers that
    /// the identical service already exists. A different service of the same
    /// name is refused; change its size with `berth scale`, or remove it
    /// first with `berth rm`.
    #[command(after_help = "Examples:\n  \
        berth run web --image local/busybox -p 8080 --replicas 2 -- httpd -f -p 8080\n  \
        berth run db --image mysql:8 --stateful --memory 512M --secret-env MYSQL_ROOT_PASSWORD\n  \
        berth run app --image app:1 --link db:3306 -e MODE=prod")]
    Run(Box<RunArgs>),
    /// List the cluster's pods: their service, node, phase and host ports.
    #[command(after_help = "Examples:\n  \
        berth ps                 every pod but those that finished\n  \
        berth ps web -o wide     the pods of service web, with restarts and images\n  \
        berth ps -a -o json      every pod, as the master keeps them")]
    Ps(PsArgs),
    /// Change how many pods a service runs.
    #[command(after_help = "Examples:\n  \
        berth scale web 3     three pods\n  \
        berth scale web 0     none, keeping the service")]
    Scale(ScaleArgs),
    /// Remove a service; the master stops and removes its pods.
    #[command(after_help = "Example:\n  berth rm web")]
    Rm(ServiceName),
    /// Show a service, its pod template and its pods; or one pod, with
    /// each container's state and why it is not running.
    #[command(after_help = "Examples:\n  \
        berth describe web                   the service web\n  \
        berth describe pod web-0             its first pod\n  \
        berth describe service web -o json\n  \
        berth describe service web -o yaml > web.yaml   a document for berth apply")]
    Describe(DescribeArgs),
    /// Move a pod to another node (the only way a stateful pod moves).
    ///
    /// The old node stops the pod and the new one starts it.
    Move(MoveArgs),
    /// Link a service to another: its pods reach one of the other's ready
    /// pods at 127.0.0.1:PORT, wherever they run, rewired live.
    Link(crate::link::LinkArgs),
    /// Remove a service's links to another.
    Unlink(crate::link::UnlinkArgs),
    /// Routes: DNS names the routers send to services (plain HTTP, TLS
    /// edge or passthrough by SNI, websockets).
    #[command(subcommand)]
    Route(crate::route::RouteCommand),
    /// Volumes: each named volume with its node, class, size and pod, and
    /// each network volume with the pods that mount it.
    #[command(subcommand)]
    Volume(crate::volume::VolumeCommand),
}

/// `berth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The master's URL, e.g. http://master.example:7070; several masters
    /// (HA) as URL1,URL2,..., tried in turn when one is gone.
    pub url: String,

    /// The master's admin token. Taken from BERTH_TOKEN when not given, which
    /// keeps it out of the shell history.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub token: String,

    /// The master's CA certificate (PEM file; on the master host it is
    /// /var/lib/berth/master/ca.crt). It becomes the only CA trusted for
    /// this master.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// `berth run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("the_image").args(["image", "image_stream"]).required(true)))]
pub struct RunArgs {
    /// The service's name, also its container's name (a DNS label of at most
    /// 50 characters); its pods are NAME-0, NAME-1, ...
    pub name: String,

    /// How many pods to run.
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true, value_parser = parse::replicas)]
    pub replicas: u32,

    /// The master never moves its pods by itself, not even off a failed
    /// node: for pods that keep their data on their node. Only `berth move`
    /// moves them.
    #[arg(long)]
    pub stateful: bool,

    /// Place the pods only on nodes with this label. Repeatable; a node
    /// must have all of them.
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_parser = parse::label)]
    pub node_selector: Vec<(String, String)>,

    /// Reach service SERVICE's PORT at 127.0.0.1:LOCAL_PORT (default
    /// PORT) from every pod. Repeatable.
    #[arg(long = "link", value_name = "SERVICE:PORT[:LOCAL_PORT]", value_parser = crate::link::parse_link)]
    pub links: Vec<berth_model::Link>,

    /// What the pods may reach besides their links.
    #[arg(long, value_enum, default_value_t = crate::link::EgressArg::Open)]
    pub egress: crate::link::EgressArg,

    /// A value handed to the services that link to this one, as
    /// <SERVICE>_<NAME> (secret). Repeatable.
    #[arg(long = "link-env", value_name = "NAME=VALUE", value_parser = parse::env_var)]
    pub publish: Vec<berth_model::EnvVar>,
    /// A secret variable generated once, now, from an expression such as
    /// '[a-zA-Z0-9]{16}' (as a template's generated parameters), and
    /// printed only now. `berth set env NAME=VALUE` overrides it; `berth
    /// set env NAME-` brings it back. Repeatable.
    #[arg(long = "generate-env", value_name = "NAME=EXPRESSION", value_parser = parse::generated_env)]
    pub generate_env: Vec<(String, String)>,
    /// How later changes roll out.
    #[command(flatten)]
    pub strategy: crate::strategy_flags::StrategyFlags,

    /// Run the image an image stream's tag points at (by digest), and
    /// roll out whenever the tag moves, as `berth set triggers
    /// --from-image` does. Instead of --image.
    #[arg(long, value_name = "STREAM:TAG", conflicts_with = "image")]
    pub image_stream: Option<String>,

    /// The pod every replica runs.
    #[command(flatten)]
    pub pod: PodFlags,
}

/// `berth ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only the pods of this service.
    pub service: Option<String>,

    /// Also the pods that finished (`Succeeded`).
    #[arg(short, long)]
    pub all: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The name of an existing service.
#[derive(Debug, Args)]
pub struct ServiceName {
    /// The service's name.
    pub name: String,
}

/// `berth scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The service's name.
    pub name: String,
    /// How many pods it should run; 0 stops them all but keeps the service.
    #[arg(allow_negative_numbers = true, value_parser = parse::replicas)]
    pub replicas: u32,
}

/// `berth describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `service` or `pod`, then the name; a name alone is a service's.
    #[arg(value_name = "[KIND] NAME", num_args = 1..=2, required = true)]
    pub what: Vec<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `berth move`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The pod's name, e.g. web-0 (see `berth ps`).
    pub pod: String,

    /// The node to move it to (see `berth node ls`).
    #[arg(long, value_name = "NODE")]
    pub to: String,

    /// A pod with named volumes moves with their data; keep the old
    /// node's copy once it runs on the new one.
    #[arg(long)]
    pub keep_source: bool,
}

/// The service failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid service")]
pub struct InvalidService(pub ValidationErrors);

/// What `berth describe service -o json|yaml` prints: an apply document
/// (`kind: Service`, its revision, its fields), with its pods under
/// `status`, which `berth apply` ignores, as it does `resourceVersion`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Description {
    kind: &'static str,
    #[serde(flatten)]
    service: Versioned<Service>,
    status: ServiceStatus,
}

/// The part of a described service that the master reports.
#[derive(Debug, Serialize)]
struct ServiceStatus {
    pods: Vec<Versioned<ClusterPod>>,
    /// The latest revision and how its rollout went.
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<Versioned<berth_model::Deployment>>,
}

/// Runs one cluster command.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let client = client()?;
    match command {
        ClusterCommand::Node(node) => node::run(&client, node).await,
        ClusterCommand::Master(master) => crate::master::run(&client, master).await,
        ClusterCommand::Route(route) => crate::route::run(&client, route).await,
        ClusterCommand::Volume(volume) => crate::volume::run(&client, volume).await,
        ClusterCommand::Run(run) => create_service(&client, &run).await,
        ClusterCommand::Ps(ps) => list_pods(&client, &ps).await,
        ClusterCommand::Scale(scale) => {
            let service = client.scale_service(&scale.name, scale.replicas).await?;
            output::print(&format!(
                "service {}: scaled to {} {}\n",
                service.object.name,
                service.object.replicas,
                plural(service.object.replicas, "replica", "replicas")
            ))
        }
        ClusterCommand::Rm(service) => {
            let removed = client.delete_service(&service.name).await?;
            output::print(&format!(
                "service {}: removed; the master stops and removes its pods\n",
                removed.object.name
            ))
        }
        ClusterCommand::Describe(describe) => match describe.what.as_slice() {
            [name] => describe_service(&client, name, describe.output).await,
            [kind, name] if kind == "service" || kind == "services" || kind == "svc" => {
                describe_service(&client, name, describe.output).await
            }
            [kind, name] if kind == "pod" || kind == "pods" => {
                describe_pod(&client, name, describe.output).await
            }
            [kind, _] => anyhow::bail!("cannot describe a {kind:?}: the kinds are service and pod"),
            _ => unreachable!("clap takes one or two values"),
        },
        ClusterCommand::Link(args) => crate::link::link(&client, &args).await,
        ClusterCommand::Unlink(args) => crate::link::unlink(&client, &args).await,
        ClusterCommand::Move(request) => {
            let moved = client
                .move_pod(&request.pod, &request.to, request.keep_source)
                .await?;
            let with_data = if moved.object.moving.is_some() {
                " with its data (see berth describe pod)"
            } else {
                ""
            };
            output::print(&format!(
                "pod {}: moving to {}{with_data}\n",
                moved.object.spec.name, request.to
            ))
        }
    }
}

/// A client for the master of the saved login, or of `BERTH_URL`.
pub fn client() -> anyhow::Result<MasterClient> {
    let config = config::resolve(&config::process_env)?;
    Ok(MasterClient::new(&config)?)
}

/// `berth login`: checks the token against the master, then saves the login.
pub async fn log_in(args: &LoginArgs) -> anyhow::Result<()> {
    let ca_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?,
        ),
        None => None,
    };
    let config = Config {
        url: config::normalize_url(&args.url)?,
        token: args.token.clone(),
        ca_pem,
        project: None,
    };
    let client = MasterClient::new(&config)?;
    let login_failed = || format!("cannot log in to {}", config.url);
    // A user's token proves itself by who it is; the admin's also says
    // something useful about the cluster. A master from before users has
    // no whoami (404): its token can only be the admin's.
    let who = match client.whoami().await {
        Ok(who) => Some(who),
        Err(crate::master_client::Error::Api { status, .. })
            if status == reqwest::StatusCode::NOT_FOUND =>
        {
            None
        }
        Err(error) => return Err(error).with_context(login_failed),
    };
    let path = config::config_path(&config::process_env)?;
    let summary = match who {
        Some(who) if who.kind != "admin" => {
            let roles: Vec<String> = who
                .roles
                .iter()
                .map(|(project, role)| format!("{project}: {role}"))
                .collect();
            format!(
                "as {} {} ({})",
                who.kind,
                who.name,
                if roles.is_empty() {
                    "no project yet".to_owned()
                } else {
                    roles.join(", ")
                }
            )
        }
        _ => {
            let nodes = client.list_nodes().await.with_context(login_failed)?;
            format!("{} {}", nodes.len(), plural(nodes.len(), "node", "nodes"))
        }
    };
    config::save(&path, &config)?;
    output::print(&format!(
        "logged in to {} ({summary}); saved to {}\n",
        config.url,
        path.display()
    ))?;
    // Otherwise the next command would quietly use another master or token.
    for (name, saved) in [(URL_ENV, &config.url), (TOKEN_ENV, &config.token)] {
        if std::env::var_os(name).is_some_and(|value| !value.is_empty() && value != saved.as_str())
        {
            eprintln!("berth: note: {name} is set and overrides the saved login");
        }
    }
    Ok(())
}

/// The integrated registry tells the master of a push a moment after
/// `docker push` returns, so `docker push && berth run --image-stream` can
/// find the tag still empty: then the registry itself is asked (an import
/// from it), and the tag it holds is used.
async fn pushed_but_not_yet_noticed(
    client: &MasterClient,
    stream: &str,
    tag: &str,
) -> Option<berth_model::image_stream::TagEvent> {
    let registry = client.registry().await.ok()?;
    let address = registry.get("address")?.as_str()?;
    let from = format!("{address}/{}/{stream}:{tag}", client.project());
    let imported = client.import_image(stream, tag, &from, false).await.ok()?;
    imported.object.current(tag).cloned()
}

async fn create_service(client: &MasterClient, args: &RunArgs) -> anyhow::Result<()> {
    let mut service = args.service();
    if let Some(from) = &args.image_stream {
        // The master resolves the tag again as it writes the service; here
        // a tag without an image is refused before anything is made.
        let (stream, tag) = berth_model::image_stream::parse_stream_tag(from)
            .map_err(|e| anyhow::anyhow!("--image-stream: {e}"))?;
        let found = client.get_image_stream(stream).await.ok();
        let now = match found.as_ref().and_then(|s| s.object.current(tag)) {
            Some(now) => Some(now.clone()),
            None => pushed_but_not_yet_noticed(client, stream, tag).await,
        };
        let Some(now) = now else {
            anyhow::bail!(
                "--image-stream: {from} points at no image yet: push one (docker push $(berth registry info)/{}/{stream}:{tag}) or `berth tag IMAGE {from}`",
                client.project()
            );
        };
        for container in &mut service.template.containers {
            container.image.clone_from(&now.image);
        }
    }
    service.generated_env = crate::generate::generate_vars(&args.generate_env)?;
    // The master judges the service by the same rules; checking here first
    // saves a round trip and names the same fields.
    service.validate().map_err(InvalidService)?;
    let answer = client.create_service(&service).await?;
    let replicas = answer.service.object.replicas;
    let text = if answer.created {
        format!(
            "service {}: created with {replicas} {}; see `berth ps`\n",
            answer.service.object.name,
            plural(replicas, "replica", "replicas")
        )
    } else {
        format!(
            "service {}: unchanged (an identical service exists)\n",
            answer.service.object.name
        )
    };
    output::print(&text)?;
    if answer.created && !service.generated_env.is_empty() {
        output::print(&crate::generate::shown_once(
            service
                .generated_env
                .iter()
                .map(|var| (var.name.as_str(), var.value.as_str())),
        ))?;
    }
    Ok(())
}

async fn list_pods(client: &MasterClient, ps: &PsArgs) -> anyhow::Result<()> {
    if let Some(service) = &ps.service {
        // A typo says so, rather than listing nothing.
        client.get_service(service).await?;
    }
    let pods: Vec<_> = client
        .list_pods()
        .await?
        .into_iter()
        .filter(|pod| {
            ps.service
                .as_deref()
                .is_none_or(|service| pod.object.service.as_deref() == Some(service))
        })
        .filter(|pod| ps.all || !finished(&pod.object))
        .map(|pod| pod.map(ClusterPod::redacted))
        .collect();
    match output::structured(ps.output, &pods)? {
        Some(text) => output::print(&text),
        None if ps.output == Format::Wide => output::print(&output::cluster_pods_wide_table(&pods)),
        None => output::print(&output::cluster_pods_table(&pods)),
    }
}

/// Whether a pod ran to completion: `berth ps` leaves it out without `-a`.
fn finished(pod: &ClusterPod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|status| status.phase == berth_model::PodPhase::Succeeded)
}

async fn describe_pod(client: &MasterClient, name: &str, format: Format) -> anyhow::Result<()> {
    let pod = client
        .list_pods()
        .await?
        .into_iter()
        .find(|pod| pod.object.spec.name == name)
        .map(|pod| pod.map(ClusterPod::redacted))
        .ok_or_else(|| anyhow::anyhow!("pod {name} not found (see berth ps -a)"))?;
    match output::structured(format, &pod)? {
        Some(text) => output::print(&text),
        None => output::print(&output::pod_details(&pod)),
    }
}

async fn describe_service(client: &MasterClient, name: &str, format: Format) -> anyhow::Result<()> {
    let service = client.get_service(name).await?.map(Service::redacted);
    let pods: Vec<_> = client
        .list_pods()
        .await?
        .into_iter()
        .filter(|pod| pod.object.service.as_deref() == Some(name))
        .map(|pod| pod.map(ClusterPod::redacted))
        .collect();
    // A master from before deployments has no revisions to show.
    let deployment = client
        .list_deployments(name)
        .await
        .ok()
        .and_then(|mut revisions| revisions.pop());
    let description = Description {
        kind: "Service",
        service,
        status: ServiceStatus { pods, deployment },
    };
    match output::structured(format, &description)? {
        Some(text) => output::print(&text),
        None => {
            let mut text = output::service_details(&description.service, &description.status.pods);
            if let Some(d) = &description.status.deployment {
                let d = &d.object;
                let mut line =
                    format!("revision: {} ({}), {}", d.revision, d.cause, d.status.phase);
                if let Some(reason) = &d.status.reason {
                    line.push_str(&format!(": {reason}"));
                }
                text.push_str(&format!("{line} (berth rollout history {name})\n"));
            }
            output::print(&text)
        }
    }
}

impl RunArgs {
    /// The service these flags describe; its template is the pod
    /// `berth local run` would make of the same flags.
    pub fn service(&self) -> Service {
        Service {
            name: self.name.clone(),
            labels: Default::default(),
            replicas: self.replicas,
            stateful: self.stateful,
            node_selector: self.node_selector.iter().cloned().collect(),
            template: self.pod.pod(&self.name),
            env: Vec::new(),
            links: self.links.clone(),
            egress: self.egress.into(),
            publish: self.publish.clone(),
            generated_env: Vec::new(),
            strategy: self.strategy.apply(Default::default()),
            triggers: self.triggers(),
        }
    }

    /// The default triggers, and following `--image-stream`'s tag.
    fn triggers(&self) -> Vec<berth_model::deployment::Trigger> {
        let mut triggers = berth_model::deployment::default_triggers();
        if let Some(from) = &self.image_stream {
            triggers.push(berth_model::deployment::Trigger::ImageChange(
                berth_model::deployment::ImageTrigger {
                    from: from.clone(),
                    container: self.name.clone(),
                    automatic: true,
                },
            ));
        }
        triggers
    }
}

fn plural<N: PartialEq + From<u8>>(
    count: N,
    one: &'static str,
    many: &'static str,
) -> &'static str {
    if count == N::from(1) {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn cluster_command(args: &[&str]) -> ClusterCommand {
        let argv = ["berth"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Cluster(command) => command,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let argv: Vec<&str> = ["run"].iter().chain(args).copied().collect();
        match cluster_command(&argv) {
            ClusterCommand::Run(run) => *run,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn run_builds_a_service_around_the_local_pod() {
        let args = run_args(&[
            "web",
            "--image",
            "local/busybox",
            "--replicas",
            "3",
            "--stateful",
            "--node-selector",
            "zone=a",
            "-p",
            "8080",
            "--secret-env",
            "PW=hunter2",
            "--memory",
            "64M",
            "--",
            "httpd",
            "-f",
        ]);
        let service = args.service();
        assert_eq!(service.validate(), Ok(()));
        let expected = serde_json::json!({
            "name": "web",
            "replicas": 3,
            "stateful": true,
            "nodeSelector": {"zone": "a"},
            "template": {
                "name": "web",
                "containers": [{
                    "name": "web",
                    "image": "local/busybox",
                    "command": ["httpd", "-f"],
                    "secretEnv": [{"name": "PW", "value": "hunter2"}],
                    "ports": [{"containerPort": 8080, "protocol": "tcp", "hostPort": 0}],
                    "resources": {"memoryBytes": 67108864},
                    "restart": "always",
                    "stopTimeoutSecs": 10
                }]
            }
        });
        assert_eq!(serde_json::to_value(&service).unwrap(), expected);
    }

    #[test]
    fn run_defaults_to_one_replica_that_may_move() {
        let service = run_args(&["web", "--image", "i"]).service();
        assert_eq!(service.replicas, 1);
        assert!(!service.stateful);
        assert!(service.node_selector.is_empty());
    }

    #[test]
    fn the_template_is_the_local_pod() {
        let flags = ["web", "--image", "i", "-e", "A=b", "-v", "/srv:/data:ro"];
        let local_argv: Vec<&str> = ["berth", "local", "run"]
            .iter()
            .chain(&flags)
            .copied()
            .collect();
        let local_pod = match Cli::try_parse_from(local_argv).unwrap().command {
            Command::Local(crate::local::LocalArgs {
                command: crate::local::LocalCommand::Run(run),
                ..
            }) => run.pod(),
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(run_args(&flags).service().template, local_pod);
    }

    #[test]
    fn validation_names_the_fields_the_master_names() {
        let service = run_args(&["Web", "--image", "", "-e", "1X=y"]).service();
        let errors = service.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "template.containers[0].name",
                "template.containers[0].image",
                "template.containers[0].env[0].name"
            ]
        );
    }

    #[test]
    fn the_master_s_service_rules_are_checked_before_asking_it() {
        let long = "w".repeat(51);
        let service = run_args(&[&long, "--image", "i", "--link-env", "1X=y"]).service();
        let errors = service.validate().unwrap_err();
        let found: Vec<(&str, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("name", "must be at most 50 characters (pods add a suffix)"),
                ("publish[0].name", "must match [A-Za-z_][A-Za-z0-9_]*"),
            ]
        );
    }

    #[test]
    fn secrets_are_blanked_before_printing() {
        let service = run_args(&["web", "--image", "i", "--secret-env", "PW=hunter2"]).service();
        let shown = Versioned {
            resource_version: 1,
            object: service.clone(),
        }
        .map(Service::redacted);
        assert_eq!(shown.object.template.containers[0].secret_env[0].value, "");
        let pod = Versioned {
            resource_version: 1,
            object: ClusterPod {
                service: Some("web".to_owned()),
                ..ClusterPod::unplaced(service.template.clone())
            },
        }
        .map(ClusterPod::redacted);
        assert!(!serde_json::to_string(&pod).unwrap().contains("hunter2"));
    }

    #[test]
    fn every_command_parses() {
        let argv = ["berth", "login", "http://m:7070", "--token", "t"];
        assert!(matches!(
            Cli::try_parse_from(argv).unwrap().command,
            Command::Login(LoginArgs { token, .. }) if token == "t"
        ));
        assert!(matches!(
            cluster_command(&["ps", "-o", "yaml"]),
            ClusterCommand::Ps(PsArgs {
                output: Format::Yaml,
                all: false,
                service: None,
            })
        ));
        assert!(matches!(
            cluster_command(&["scale", "web", "0"]),
            ClusterCommand::Scale(ScaleArgs { replicas: 0, .. })
        ));
        assert!(matches!(
            cluster_command(&["rm", "web"]),
            ClusterCommand::Rm(_)
        ));
        assert!(matches!(
            cluster_command(&["describe", "web", "-o", "json"]),
            ClusterCommand::Describe(DescribeArgs {
                output: Format::Json,
                ..
            })
        ));
        assert!(matches!(
            cluster_command(&["describe", "pod", "web-0"]),
            ClusterCommand::Describe(DescribeArgs { what, .. }) if what == ["pod", "web-0"]
        ));
        assert!(matches!(
            cluster_command(&["ps", "web", "-a", "-o", "wide"]),
            ClusterCommand::Ps(PsArgs { service: Some(s), all: true, output: Format::Wide }) if s == "web"
        ));
        assert!(matches!(
            cluster_command(&["move", "web-0", "--to", "node-b"]),
            ClusterCommand::Move(MoveArgs { pod, to, keep_source: false }) if pod == "web-0" && to == "node-b"
        ));
        assert!(matches!(
            cluster_command(&["node", "show", "node-a", "-o", "json"]),
            ClusterCommand::Node(NodeCommand::Show { .. })
        ));
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1u32, "node", "nodes"), "node");
        assert_eq!(plural(0usize, "node", "nodes"), "nodes");
    }
}
