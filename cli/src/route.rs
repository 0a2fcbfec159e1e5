//! `berth route ...`: DNS names that the routers send to services.

use anyhow::Context as _;
use berth_model::route::RoutesView;
use berth_model::{Route, RouteTls, TlsTermination, ValidationErrors};
use clap::{Args, Subcommand, ValueEnum};

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// The `berth route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Route a DNS name (and path) to a service's ready endpoints through
    /// every router.
    ///
    /// Without HOSTNAME the master generates SERVICE-default.SUFFIX (the
    /// suffix is `route-suffix` in the master's configuration).
    Add(AddArgs),
    /// List the routes.
    Ls(LsArgs),
    /// Remove a route; routers stop serving it.
    Rm {
        /// The route's name.
        name: String,
    },
}

/// How TLS is handled, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsFlag {
    /// The router ends TLS with --cert and --key, chosen by SNI.
    Edge,
    /// The router passes the TLS stream, chosen by SNI, to the pods.
    Passthrough,
}

/// `berth route add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The service to send the traffic to.
    pub service: String,
    /// The DNS name clients use.
    pub hostname: Option<String>,
    /// The route's name (default: the service's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Only requests under this path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The service's container port (default: its first).
    #[arg(long)]
    pub port: Option<u16>,
    /// TLS termination.
    #[arg(long, value_enum)]
    pub tls: Option<TlsFlag>,
    /// PEM certificate chain file (with --tls edge).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key file (with --tls edge).
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// Keep upgraded connections (websockets) open as long as they are used.
    #[arg(long)]
    pub websocket: bool,
    /// Replace the route of this name if it exists (in one step: routers
    /// never see it missing).
    #[arg(long)]
    pub replace: bool,
}

/// `berth route ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The route failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid route")]
pub struct InvalidRoute(pub ValidationErrors);

fn read(path: &Option<std::path::PathBuf>, flag: &str) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).with_context(|| format!("reading {flag} {}", p.display()))
        })
        .transpose()
}

impl AddArgs {
    fn route(&self) -> anyhow::Result<Route> {
        let tls = match self.tls {
            None => {
                if self.cert.is_some() || self.key.is_some() {
                    anyhow::bail!("--cert and --key need --tls edge");
                }
                None
            }
            Some(flag) => Some(RouteTls {
                termination: match flag {
                    TlsFlag::Edge => TlsTermination::Edge,
                    TlsFlag::Passthrough => TlsTermination::Passthrough,
                },
                certificate: read(&self.cert, "--cert")?,
                key: read(&self.key, "--key")?,
            }),
        };
        Ok(Route {
            name: self.name.clone().unwrap_or_else(|| self.service.clone()),
            labels: Default::default(),
            service: self.service.clone(),
            host: self.hostname.clone().unwrap_or_default(),
            path: self.path.clone(),
            port: self.port,
            tls,
            websocket: self.websocket,
        })
    }
}

/// Runs one `berth route` command.
pub async fn run(client: &MasterClient, command: RouteCommand) -> anyhow::Result<()> {
    match command {
        RouteCommand::Add(args) => {
            let route = args.route()?;
            // The master checks the same rules (and more); checking here
            // first names the same fields without a round trip.
            route.validate().map_err(InvalidRoute)?;
            let (saved, verb) = if args.replace && client.get_route(&route.name).await.is_ok() {
                (client.replace_route(&route).await?, "replaced")
            } else {
                (client.create_route(&route).await?, "added")
            };
            output::print(&format!(
                "route {}: {verb}, {} -> service {}\n",
                saved.object.name,
                url_of(&saved.object),
                saved.object.service
            ))
        }
        RouteCommand::Ls(args) => {
            let view: RoutesView = client.list_routes().await?;
            match output::structured(args.output, &view.routes)? {
                Some(text) => output::print(&text),
                None => output::print(&routes_table(&view.routes)),
            }
        }
        RouteCommand::Rm { name } => {
            let removed = client.delete_route(&name).await?;
            output::print(&format!(
                "route {}: removed ({})\n",
                removed.object.name,
                url_of(&removed.object)
            ))
        }
    }
}

/// How clients reach a route: `https://host/path`.
fn url_of(route: &Route) -> String {
    let scheme = if route.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{}{}", route.host, route.path)
}

/// The `berth route ls` table.
pub fn routes_table(routes: &[Route]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                r.path.clone(),
                r.service.clone(),
                r.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                r.tls
                    .as_ref()
                    .map_or("-", |t| t.termination.as_str())
                    .to_owned(),
                if r.websocket { "yes" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "HOST",
            "PATH",
            "SERVICE",
            "PORT",
            "TLS",
            "WEBSOCKET",
        ],
        &rows,
    )
}
