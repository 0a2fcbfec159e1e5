//! `berth master ...`: the masters sharing the cluster's store.

use clap::Subcommand;

use crate::master_client::MasterClient;
use crate::node::NodeFormat;
use crate::output;

/// The `berth master` subcommands.
#[derive(Debug, Subcommand)]
pub enum MasterCommand {
    /// List the masters: URL, health, and which one leads.
    Ls(NodeFormat),
}

/// Runs one `berth master` command.
pub async fn run(client: &MasterClient, command: MasterCommand) -> anyhow::Result<()> {
    match command {
        MasterCommand::Ls(args) => {
            let masters = client.list_masters().await?;
            match output::structured(args.output, &masters)? {
                Some(text) => output::print(&text),
                None => output::print(&output::masters_table(&masters)),
            }
        }
    }
}
