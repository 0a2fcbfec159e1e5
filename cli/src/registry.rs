//! `berth registry` and `berth image prune`: the integrated registry as a
//! user meets it. `login` hands the current berth credential to the local
//! docker (`docker login --password-stdin`), as `oc registry login` does,
//! after making sure docker trusts the registry's CA.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// `berth registry`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth registry info
  berth registry login
  docker tag local/web:1 $(berth registry info)/default/web:v1
  docker push $(berth registry info)/default/web:v1     the stream web's tag v1 moves")]
pub struct RegistryArgs {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// The `berth registry` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Print the registry's address (HOST:PORT): images of project P's
    /// stream S are pushed as HOST:PORT/P/S:TAG.
    Info,
    /// Log the local docker in to the registry with the current berth
    /// token, and trust the registry's CA
    /// (/etc/docker/certs.d/HOST:PORT/berth-ca.crt), so that `docker push` and
    /// `docker pull` work. Pushing needs the edit role in the project.
    Login,
}

/// `berth image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `berth image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Delete the integrated registry's images that nothing needs, then
    /// collect its garbage so their layers leave the disk (admin only).
    ///
    /// An image stays when a pod runs it, when a deployment still in a
    /// service's history names it (a rollback may need it), or when it is
    /// among the newest --keep-tag-revisions images of one of its stream's
    /// tags. Without --confirm nothing is deleted: the list is what would
    /// be. Prune when nobody pushes: a layer uploaded during the garbage
    /// collection, not yet in a manifest, may be taken.
    #[command(after_help = "Examples:
  berth image prune                                  what would go
  berth image prune --keep-tag-revisions 1 --confirm")]
    Prune {
        /// The newest images of each tag that stay.
        #[arg(long, default_value_t = 3)]
        keep_tag_revisions: usize,
        /// Delete (without it, a dry run).
        #[arg(long)]
        confirm: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// Runs `berth registry`.
pub async fn run(client: &MasterClient, command: RegistryCommand) -> anyhow::Result<()> {
    let info = client.registry().await?;
    let address = info["address"]
        .as_str()
        .context("the master's answer has no registry address")?;
    match command {
        RegistryCommand::Info => {
            println!("{address}");
            Ok(())
        }
        RegistryCommand::Login => {
            let ca = info["caCertificate"].as_str().unwrap_or_default();
            trust_ca(address, ca);
            let mut docker = Command::new("docker")
                .args(["login", address, "--username", "berth", "--password-stdin"])
                .stdin(Stdio::piped())
                .spawn()
                .context("running docker login (is docker installed?)")?;
            docker
                .stdin
                .take()
                .context("docker's stdin")?
                .write_all(client.token().as_bytes())?;
            let status = docker.wait()?;
            if !status.success() {
                bail!("docker login {address} failed ({status})");
            }
            Ok(())
        }
    }
}

/// Puts the registry's CA where dockerd reads it, when this user may (an
/// agent on this host has done it already).
fn trust_ca(address: &str, ca: &str) {
    if ca.is_empty() || address.contains('/') {
        return;
    }
    let dir = std::path::Path::new("/etc/docker/certs.d").join(address);
    let path = dir.join("berth-ca.crt");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(ca) {
        return;
    }
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, ca));
    if let Err(e) = written {
        eprintln!(
            "berth: cannot write {} ({e}): docker may not trust the registry; as root, run berth registry login again",
            path.display()
        );
    }
}

/// Runs `berth image`.
pub async fn image(client: &MasterClient, command: ImageCommand) -> anyhow::Result<()> {
    let ImageCommand::Prune {
        keep_tag_revisions,
        confirm,
        output: format,
    } = command;
    let report = client.prune_registry(keep_tag_revisions, confirm).await?;
    if let Some(text) = output::structured(format, &report)? {
        return output::print(&text);
    }
    let empty = Vec::new();
    let deleted = report["deleted"].as_array().unwrap_or(&empty);
    let verb = if confirm { "deleted" } else { "would delete" };
    for image in deleted {
        println!(
            "{verb} {}@{}",
            image["repository"].as_str().unwrap_or_default(),
            image["digest"].as_str().unwrap_or_default()
        );
    }
    for image in report["kept"].as_array().unwrap_or(&empty) {
        println!(
            "kept {}@{} ({})",
            image["repository"].as_str().unwrap_or_default(),
            image["digest"].as_str().unwrap_or_default(),
            image["why"].as_str().unwrap_or_default()
        );
    }
    if deleted.is_empty() {
        println!("nothing to delete");
    } else if !confirm {
        println!("a dry run: add --confirm to delete");
    }
    if let Some(gc) = report["garbageCollection"].as_str() {
        println!("garbage collection: {}", gc.lines().last().unwrap_or(""));
    }
    Ok(())
}
