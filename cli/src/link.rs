//! `berth link A B --port P [--local-port L]` and `berth unlink A B`:
//! service A's pods reach service B at 127.0.0.1:L, rewired live.

use berth_model::link::{env_prefix, EgressPolicy};
use berth_model::Link;
use clap::{Args, ValueEnum};

use crate::master_client::MasterClient;
use crate::output;

/// `berth link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The linking service (A).
    pub service: String,
    /// The service it reaches (B).
    pub target: String,
    /// B's container port (one B publishes on its hosts).
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// The port A connects to on 127.0.0.1 (default: --port).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Connect to this stable address (in 169.254.0.0/16) instead of
    /// 127.0.0.1: connections need no source rewrite and no
    /// route_localnet.
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Start order: SERVICE's new pods start only once TARGET has a ready
    /// endpoint, and wait (placed nowhere, never crash-looping) until then.
    #[arg(long = "wait-ready")]
    pub wait_ready: bool,
}

/// `berth unlink`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    /// The linking service (A).
    pub service: String,
    /// The service it reaches (B); every link from A to B goes.
    pub target: String,
}

/// `--egress` of `berth run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum EgressArg {
    /// Pods may reach anything.
    #[default]
    Open,
    /// Pods may reach only their links; other new outbound connections
    /// are refused inside the pod's network namespace.
    LinksOnly,
}

impl From<EgressArg> for EgressPolicy {
    fn from(arg: EgressArg) -> Self {
        match arg {
            EgressArg::Open => EgressPolicy::Open,
            EgressArg::LinksOnly => EgressPolicy::LinksOnly,
        }
    }
}

/// `SERVICE:PORT[:LOCAL_PORT]`, as `berth run --link` takes it.
pub fn parse_link(text: &str) -> Result<Link, String> {
    let mut parts = text.split(':');
    let (Some(service), Some(port)) = (parts.next(), parts.next()) else {
        return Err("expected SERVICE:PORT[:LOCAL_PORT], e.g. db:3306".into());
    };
    let number = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let link = Link {
        service: service.to_owned(),
        port: number(port)?,
        local_port: parts.next().map(number).transpose()?,
        address: None,
        wait_ready: false,
    };
    if parts.next().is_some() {
        return Err("expected SERVICE:PORT[:LOCAL_PORT], e.g. db:3306".into());
    }
    Ok(link)
}

/// Adds the link and says what changed, and what waits for a restart.
pub async fn link(client: &MasterClient, args: &LinkArgs) -> anyhow::Result<()> {
    let link = Link {
        service: args.target.clone(),
        port: args.port,
        local_port: args.local_port,
        address: args.address,
        wait_ready: args.wait_ready,
    };
    client.add_link(&args.service, &link).await?;
    let prefix = env_prefix(&args.target);
    output::print(&format!(
        "service {a}: linked to {b} at {address}:{local}; running pods are rewired now\n\
         note: {prefix}_HOST and {prefix}_PORT reach pods created from now on; \
         running pods get them when they are next restarted\n",
        a = args.service,
        b = args.target,
        local = link.local_port(),
        address = link.local_address(),
    ))
}

/// Removes A's links to B.
pub async fn unlink(client: &MasterClient, args: &UnlinkArgs) -> anyhow::Result<()> {
    client.remove_link(&args.service, &args.target).await?;
    output::print(&format!(
        "service {}: unlinked from {}; its nodes remove the rules\n",
        args.service, args.target
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_flags_parse() {
        assert_eq!(
            parse_link("db:3306:13306"),
            Ok(Link {
                service: "db".into(),
                port: 3306,
                local_port: Some(13306),
                address: None,
                wait_ready: false,
            })
        );
        assert_eq!(parse_link("db:3306").map(|l| l.local_port()), Ok(3306));
        assert!(parse_link("db").is_err());
        assert!(parse_link("db:x").is_err());
        assert!(parse_link("db:1:2:3").is_err());
    }
}
