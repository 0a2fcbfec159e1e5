//! `berth node ...`: the cluster's nodes, and join tokens for new ones.

use clap::{Args, Subcommand};

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// The `berth node` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: condition, capacity, pods and last heartbeat.
    Ls(NodeFormat),
    /// Show one node.
    Show {
        /// The node's name.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Cordon a node: the master places no new pods on it; those it runs
    /// stay until moved or removed.
    Cordon(NodeName),
    /// Let the master place new pods on a cordoned node again.
    Uncordon(NodeName),
    /// Cordon a node and evict the pods of its stateless services, which
    /// the master places elsewhere. Stateful pods stay: move them with
    /// `berth move`.
    Drain(NodeName),
    /// Create a one-time join token and print the command that joins a new
    /// host with it.
    ///
    /// The command alone goes to stdout, so `$(berth node token)` is the
    /// command; the token is valid for one join, until it expires.
    Token(NodeFormat),
    /// Create a one-time token that re-registers a registered node, and
    /// print the command that uses it.
    ///
    /// For a host that lost its credential (a reinstalled agent, a wiped
    /// state directory): a plain `berth node token` cannot register a name
    /// that is already registered. The token works for this node's name
    /// only; its join gives the node a new credential (the old one stops
    /// working) and keeps the node, its cordon and its pods.
    ///
    /// Example, on the master, then on h2 as root:
    ///
    ///   berth node rejoin h2
    ///   berth-agent join https://h1:7443 --token … --ca-hash sha256:…
    Rejoin {
        /// The registered node's name (see `berth node ls`).
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// The output format of a node command.
#[derive(Debug, Args)]
pub struct NodeFormat {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The name of a node.
#[derive(Debug, Args)]
pub struct NodeName {
    /// The node's name (see `berth node ls`).
    pub name: String,
}

/// Runs one `berth node` command.
pub async fn run(client: &MasterClient, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Ls(args) => {
            let nodes = client.list_nodes().await?;
            match output::structured(args.output, &nodes)? {
                Some(text) => output::print(&text),
                None => output::print(&output::nodes_table(&nodes)),
            }
        }
        NodeCommand::Show { name, output } => {
            let node = client.get_node(&name).await?;
            match output::structured(output, &node)? {
                Some(text) => output::print(&text),
                None => output::print(&output::node_details(&node)),
            }
        }
        NodeCommand::Cordon(node) => {
            let node = client.set_cordoned(&node.name, true).await?;
            output::print(&format!(
                "node {}: cordoned; no new pods are placed on it\n",
                node.name
            ))
        }
        NodeCommand::Uncordon(node) => {
            let node = client.set_cordoned(&node.name, false).await?;
            output::print(&format!(
                "node {}: uncordoned; new pods may be placed on it\n",
                node.name
            ))
        }
        NodeCommand::Drain(node) => {
            let drained = client.drain(&node.name).await?;
            let list = |pods: &[String]| {
                if pods.is_empty() {
                    "none".to_owned()
                } else {
                    pods.join(", ")
                }
            };
            output::print(&format!(
                "node {}: cordoned; evicted {}; kept {}\n",
                drained.node,
                list(&drained.evicted),
                list(&drained.kept)
            ))
        }
        NodeCommand::Token(args) => {
            let token = client.create_join_token().await?;
            if let Some(text) = output::structured(args.output, &token)? {
                return output::print(&text);
            }
            // The explanation goes to stderr so that stdout is the command.
            eprintln!(
                "on the new host, as root, run (the token works once, until {}):",
                output::utc_time(token.expires_at)
            );
            output::print(&format!("{}\n", token.command))
        }
        NodeCommand::Rejoin { name, output } => {
            let token = client.create_rejoin_token(&name).await?;
            if let Some(text) = output::structured(output, &token)? {
                return output::print(&text);
            }
            eprintln!(
                "on {name}, as root, run (the token re-registers node {name} once, until {}; \
                 the node's old credential then stops working):",
                output::utc_time(token.expires_at)
            );
            output::print(&format!("{}\n", token.command))
        }
    }
}
