//! `berth project ...`: projects, which hold services, pods and routes
//! under names of their own, and the project the other commands work in.

use anyhow::Context as _;
use berth_model::api::Versioned;
use berth_model::project::validate_project_name;
use berth_model::quota::{Quota, Usage};
use berth_model::{Project, Role, ValidationErrors, DEFAULT_PROJECT};
use clap::{Args, Subcommand};

use crate::config;
use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;

/// `berth project`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth project create shop --description 'the web shop'
  berth project use shop           # later commands work in shop
  berth -p shop ps                 # one command in shop
  berth project add-member shop alice --role edit
  berth project quota shop --pods 20 --memory 8G --cpus 4 --image-streams 10 --image-bytes 5G
  berth project grant-link db --from shop
  berth project rm shop            # with everything in it")]
pub struct ProjectArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ProjectCommand,
}

/// The `berth project` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// Its name: lowercase letters, digits and '-', at most 30.
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the projects; `*` marks the one commands work in.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a project: its grants, services and pods.
    Describe {
        /// The project (default: the current one).
        name: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a project with every service, pod and route in it.
    Rm {
        /// The project.
        name: String,
    },
    /// Work in a project from now on (saved with the login); without a
    /// name, say which one.
    Use {
        /// The project.
        name: Option<String>,
    },
    /// Let the services of project FROM link to the services of PROJECT.
    GrantLink {
        /// The project whose services are linked to.
        project: String,
        /// The project whose services link.
        #[arg(long)]
        from: String,
    },
    /// Give a user a role in a project (view-no-logs, view, edit, admin),
    /// replacing the one it had.
    AddMember {
        /// The project.
        project: String,
        /// The user.
        user: String,
        /// Its role there.
        #[arg(long, default_value = "view")]
        role: Role,
    },
    /// Take a user's role in a project away.
    RemoveMember {
        /// The project.
        project: String,
        /// The user.
        user: String,
    },
    /// Set a project's quota (the cluster's admin only): what its services'
    /// replicas may ask for together. `none` lifts a limit.
    Quota {
        /// The project.
        project: String,
        /// Most pods.
        #[arg(long, value_parser = limit(count))]
        pods: Option<Limit>,
        /// Most CPUs, summed over the containers' limits (0.5, 2, 1500m).
        #[arg(long, value_parser = limit(cpus))]
        cpus: Option<Limit>,
        /// Most memory, summed over the containers' limits (512M, 4G).
        #[arg(long, value_parser = limit(parse::memory_bytes))]
        memory: Option<Limit>,
        /// Most image streams.
        #[arg(long, value_parser = limit(count))]
        image_streams: Option<Limit>,
        /// Most bytes of images in the integrated registry (2G): once its
        /// images take this much, pushes are refused until some are pruned.
        #[arg(long, value_parser = limit(parse::memory_bytes))]
        image_bytes: Option<Limit>,
    },
    /// Take back a grant: existing links keep working until changed.
    RevokeLink {
        /// The project whose services were linked to.
        project: String,
        /// The project whose services linked.
        #[arg(long)]
        from: String,
    },
}

/// The project failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid project")]
pub struct InvalidProject(pub ValidationErrors);

/// Runs one `berth project` command.
pub async fn run(client: &MasterClient, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create { name, description } => {
            let project = Project {
                description,
                ..Project::named(&name)
            };
            project.validate().map_err(InvalidProject)?;
            let created = client
                .create_project(&project)
                .await
                .with_context(|| format!("cannot create project {name}"))?;
            output::print(&format!(
                "project {}: created; work in it with `berth -p {0} ...` or `berth project use {0}`\n",
                created.object.name
            ))
        }
        ProjectCommand::Ls { output: format } => {
            let projects = client.list_projects().await?;
            if let Some(text) = output::structured(format, &projects)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    let current = if p.object.name == client.project() {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        current.to_owned(),
                        p.object.name.clone(),
                        p.object.link_grants.join(","),
                        p.object.description.clone(),
                    ]
                })
                .collect();
            output::print(&output::table(
                &["", "NAME", "LINKS FROM", "DESCRIPTION"],
                &rows,
            ))
        }
        ProjectCommand::Describe {
            name,
            output: format,
        } => {
            let name = name.unwrap_or_else(|| client.project().to_owned());
            describe(client, &name, format).await
        }
        ProjectCommand::Rm { name } => {
            let removed = client
                .delete_project(&name)
                .await
                .with_context(|| format!("cannot remove project {name}"))?;
            output::print(&format!(
                "project {}: removed with everything in it\n",
                removed.object.name
            ))
        }
        ProjectCommand::Use { name: None } => output::print(&format!("{}\n", client.project())),
        ProjectCommand::Use { name: Some(name) } => use_project(client, &name).await,
        ProjectCommand::AddMember {
            project,
            user,
            role,
        } => {
            change(client, &project, |p| {
                p.members.insert(user.clone(), role);
                Ok(())
            })
            .await?;
            output::print(&format!("project {project}: {user} is {role}\n"))
        }
        ProjectCommand::RemoveMember { project, user } => {
            change(client, &project, |p| {
                p.members
                    .remove(&user)
                    .map(|_| ())
                    .with_context(|| format!("{user} has no role in project {project}"))
            })
            .await?;
            output::print(&format!("project {project}: {user} has no role any more\n"))
        }
        ProjectCommand::Quota {
            project,
            pods,
            cpus,
            memory,
            image_streams,
            image_bytes,
        } => {
            let saved = change(client, &project, |p| {
                for (limit, set) in [
                    (&mut p.quota.pods, pods),
                    (&mut p.quota.cpu_millis, cpus),
                    (&mut p.quota.memory_bytes, memory),
                    (&mut p.quota.image_streams, image_streams),
                    (&mut p.quota.image_bytes, image_bytes),
                ] {
                    if let Some(Limit(value)) = set {
                        *limit = value;
                    }
                }
                Ok(())
            })
            .await?;
            output::print(&format!(
                "project {project}: quota {}\n",
                quota_summary(&saved.object.quota)
            ))
        }
        ProjectCommand::GrantLink { project, from } => {
            change_grant(client, &project, &from, true).await
        }
        ProjectCommand::RevokeLink { project, from } => {
            change_grant(client, &project, &from, false).await
        }
    }
}

async fn describe(client: &MasterClient, name: &str, format: Format) -> anyhow::Result<()> {
    let project = client.get_project(name).await?;
    if let Some(text) = output::structured(format, &project)? {
        return output::print(&text);
    }
    let inside = client.in_project(name);
    let services = inside.list_services().await?;
    let pods = inside.list_pods().await?;
    let grants = match project.object.link_grants.as_slice() {
        [] => "(none)".to_owned(),
        grants => grants.join(", "),
    };
    let mut text = format!("Name:         {}\n", project.object.name);
    if !project.object.description.is_empty() {
        text.push_str(&format!("Description:  {}\n", project.object.description));
    }
    text.push_str(&format!("Links from:   {grants}\n"));
    let used = services.iter().fold(Usage::default(), |used, s| {
        used.plus(Usage::of_service(&s.object))
    });
    let quota = &project.object.quota;
    let against = |used: String, limit: Option<String>| match limit {
        Some(limit) => format!("{used} of {limit}"),
        None => format!("{used} (no quota)"),
    };
    text.push_str(&format!(
        "Quota:\n  pods:       {}\n  cpus:       {}\n  memory:     {}\n",
        against(used.pods.to_string(), quota.pods.map(|n| n.to_string())),
        against(
            output::cpus(used.cpu_millis),
            quota.cpu_millis.map(output::cpus)
        ),
        against(
            output::bytes(used.memory_bytes),
            quota.memory_bytes.map(output::bytes)
        ),
    ));
    let images = inside.project_usage().await?;
    text.push_str(&format!(
        "  streams:    {}\n  images:     {}\n",
        against(
            images.image_streams.to_string(),
            quota.image_streams.map(|n| n.to_string())
        ),
        against(
            output::bytes(images.image_bytes),
            quota.image_bytes.map(output::bytes)
        ),
    ));
    text.push_str(&format!(
        "Services:     {}\nPods:         {}\n",
        services.len(),
        pods.len()
    ));
    output::print(&text)
}

async fn use_project(client: &MasterClient, name: &str) -> anyhow::Result<()> {
    validate_project_name(name).map_err(|e| anyhow::anyhow!("invalid project {name:?}: {e}"))?;
    // A typo would otherwise send every later command to a 404.
    client.get_project(name).await?;
    let path = config::config_path(&config::process_env)?;
    let mut saved = config::load(&path)?
        .context("`berth project use` saves the project with the login: run `berth login` first")?;
    saved.project = (name != DEFAULT_PROJECT).then(|| name.to_owned());
    config::save(&path, &saved)?;
    output::print(&format!("now working in project {name}\n"))
}

/// A quota flag's value: a limit, or `none` to lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(Option<u64>);

/// A quota flag's parser: `none` lifts the limit, anything else is `parse`d.
fn limit(
    parse: fn(&str) -> Result<u64, String>,
) -> impl Fn(&str) -> Result<Limit, String> + Clone + Send + Sync + 'static {
    move |text| match text {
        "none" => Ok(Limit(None)),
        text => parse(text).map(|n| Limit(Some(n))),
    }
}

fn count(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| "must be a whole number, or none".to_owned())
}

fn cpus(text: &str) -> Result<u64, String> {
    parse::cpu_millis(text).map(u64::from)
}

/// `pods 2, cpus (none), memory 256M`.
fn quota_summary(quota: &Quota) -> String {
    let none = || "(none)".to_owned();
    format!(
        "pods {}, cpus {}, memory {}, image streams {}, image bytes {}",
        quota.pods.map_or_else(none, |n| n.to_string()),
        quota.cpu_millis.map_or_else(none, output::cpus),
        quota.memory_bytes.map_or_else(none, output::bytes),
        quota.image_streams.map_or_else(none, |n| n.to_string()),
        quota.image_bytes.map_or_else(none, output::bytes)
    )
}

/// Reads project `name`, changes it, and writes it back at the revision
/// read: a concurrent change is a conflict, not lost.
async fn change(
    client: &MasterClient,
    name: &str,
    edit: impl FnOnce(&mut Project) -> anyhow::Result<()>,
) -> anyhow::Result<Versioned<Project>> {
    let mut project = client.get_project(name).await?;
    edit(&mut project.object)?;
    project.object.validate().map_err(InvalidProject)?;
    Ok(client.replace_project(&project).await?)
}

async fn change_grant(
    client: &MasterClient,
    project: &str,
    from: &str,
    grant: bool,
) -> anyhow::Result<()> {
    validate_project_name(from).map_err(|e| anyhow::anyhow!("invalid --from {from:?}: {e}"))?;
    change(client, project, |target| {
        let had = target.link_grants.iter().any(|p| p == from);
        match (grant, had) {
            (true, false) => target.link_grants.push(from.to_owned()),
            (false, true) => target.link_grants.retain(|p| p != from),
            (true, true) => {}
            (false, false) => anyhow::bail!("project {project} grants no links from {from}"),
        }
        Ok(())
    })
    .await?;
    let verb = if grant { "grants" } else { "no longer grants" };
    output::print(&format!(
        "project {project}: {verb} links from project {from}\n"
    ))
}
