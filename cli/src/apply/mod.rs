//! `berth apply -f` and `berth diff -f`: objects declared in YAML or JSON
//! files, made so on the master. Every document is read and checked
//! first ([`document`]), then compared with what the master has
//! ([`plan`]); only then is anything written, one request per object
//! that differs, and nothing at all for one that does not.

pub mod document;
mod plan;
mod unified;
mod units;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_model::Labels;
use clap::Args;

use crate::master_client::MasterClient;
use crate::output;
use crate::parse;
use document::{Document, Problem};
use plan::{Current, Outcome, Step, Write};

/// `berth apply` and `berth diff`: which files, and what to prune.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A YAML or JSON file of one or more documents (`---` between
    /// them), a directory of such files (*.yaml, *.yml, *.json), or `-`
    /// for standard input. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,

    /// Also remove the objects that carry the labels of -l but that the
    /// files no longer hold.
    #[arg(long, requires = "selector")]
    pub prune: bool,

    /// The labels (KEY=VALUE, repeatable) that mark the files' objects,
    /// for --prune; every object of the files must carry them.
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_parser = parse::label)]
    pub selector: Vec<(String, String)>,
}

impl ApplyArgs {
    fn prune_selector(&self) -> Option<Labels> {
        self.prune.then(|| self.selector.iter().cloned().collect())
    }
}

/// Some documents are invalid: nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems_text(.0))]
pub struct InvalidDocuments(pub Vec<Problem>);

fn problems_text(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("nothing applied:\n  {}", lines.join("\n  "))
}

/// `berth diff` found differences (exit 1, as diff(1) and `kubectl diff`).
#[derive(Debug, thiserror::Error)]
#[error("the files differ from the cluster")]
pub struct Differences;

/// `berth apply`: makes the master hold what the files say, printing one
/// line per object.
pub async fn apply(client: &MasterClient, args: &ApplyArgs) -> anyhow::Result<()> {
    let (steps, _) = planned(client, args).await?;
    for step in &steps {
        let outcome = match &step.write {
            None => step.outcome,
            Some(write) => carry_out(client, step, write)
                .await
                .with_context(|| format!("cannot apply {}/{}", step.kind, step.name))?,
        };
        output::print(&format!(
            "{}/{} {}\n",
            step.kind,
            step.name,
            outcome.as_str()
        ))?;
    }
    Ok(())
}

/// `berth diff`: what `apply` would change, as a unified diff per object,
/// and for a changed service's pods, per unit file on each pod's node.
pub async fn diff(client: &MasterClient, args: &ApplyArgs) -> anyhow::Result<()> {
    let (steps, current) = planned(client, args).await?;
    let changes_pods = steps
        .iter()
        .any(|s| matches!(s.write, Some(Write::UpdateService(_))));
    let text = if changes_pods {
        let pods = client.list_pods().await?;
        // Nodes are the admin's to read: without them, each pod says so.
        let nodes = client.list_nodes().await;
        let why = match &nodes {
            Ok(_) => String::new(),
            Err(e) => format!("the nodes cannot be read: {e}"),
        };
        let cluster = units::Cluster {
            services: &current.services,
            pods: &pods,
            nodes: nodes.as_deref().map_err(|_| why.as_str()),
            project: client.project(),
        };
        diff_text(&steps, Some(&cluster))
    } else {
        diff_text(&steps, None)
    };
    if text.is_empty() {
        return Ok(());
    }
    output::print(&text)?;
    Err(Differences.into())
}

/// The object diffs of `steps`, in order, each changed service's followed
/// by its pods' unit diffs on `cluster`.
fn diff_text(steps: &[Step], cluster: Option<&units::Cluster<'_>>) -> String {
    let mut text = String::new();
    for step in steps {
        let object = format!("{}/{}", step.kind, step.name);
        match step.outcome {
            // A link's change shows in its service's.
            _ if step.kind == "link" => {}
            Outcome::Unchanged => {}
            Outcome::SecretsSent => text.push_str(&format!(
                "# {object}: secret values are sent; the master keeps the object \
                 as it is unless they differ\n"
            )),
            Outcome::Created | Outcome::Configured | Outcome::Pruned => {
                let (before, from) = match &step.before {
                    Some(before) => (before.as_str(), format!("{object} (cluster)")),
                    None => ("", "/dev/null".to_owned()),
                };
                let (after, to) = match &step.after {
                    Some(after) => (after.as_str(), format!("{object} (files)")),
                    None => ("", "/dev/null".to_owned()),
                };
                text.push_str(&unified::unified(before, after, &from, &to));
                if let (Some(Write::UpdateService(wanted)), Some(cluster)) = (&step.write, cluster)
                {
                    text.push_str(&units::unit_diffs(&wanted.object, cluster));
                }
            }
        }
    }
    text
}

/// Reads and checks every document, reads the master, and plans.
async fn planned(client: &MasterClient, args: &ApplyArgs) -> anyhow::Result<(Vec<Step>, Current)> {
    let documents = read_documents(args)?;
    let current = Current {
        services: client.list_services().await?,
        routes: client.list_routes().await?.routes,
        jobs: client.list_jobs().await?,
        cron_jobs: client.list_cron_jobs().await?,
        build_configs: client.list_build_configs().await?,
    };
    let steps = plan::plan(&documents, &current, args.prune_selector().as_ref())
        .map_err(InvalidDocuments)?;
    Ok((steps, current))
}

/// Every document of every file, checked alone and together.
fn read_documents(args: &ApplyArgs) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in read_files(&args.files)? {
        match document::parse(&name, &text) {
            Ok(found) => documents.extend(found),
            Err(found) => problems.extend(found),
        }
    }
    problems.extend(document::check_together(&documents));
    if let Some(selector) = args.prune_selector() {
        problems.extend(document::check_selected(&documents, &selector));
    }
    if !problems.is_empty() {
        return Err(InvalidDocuments(problems).into());
    }
    Ok(documents)
}

/// The files named, as (name to report, text): a directory's YAML and
/// JSON files in name order, `-` standard input.
fn read_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            files.push(("-".to_owned(), text));
        } else if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            found.sort();
            for file in found {
                files.push(read_file(&file)?);
            }
        } else {
            files.push(read_file(path)?);
        }
    }
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Sends the step's request; what became of the object.
async fn carry_out(client: &MasterClient, step: &Step, write: &Write) -> anyhow::Result<Outcome> {
    // A step that sends only secrets learns from the revision whether the
    // master wrote anything.
    let written = |before: u64, after: u64| {
        if step.outcome == Outcome::SecretsSent && before == after {
            Outcome::Unchanged
        } else {
            Outcome::Configured
        }
    };
    Ok(match write {
        Write::CreateService(service) => {
            let answer = client.create_service(service).await?;
            if answer.created {
                Outcome::Created
            } else {
                Outcome::Unchanged
            }
        }
        Write::UpdateService(service) => {
            let answer = client.replace_service(service, false).await?;
            written(service.resource_version, answer.resource_version)
        }
        Write::CreateRoute(route) => {
            client.create_route(route).await?;
            Outcome::Created
        }
        Write::ReplaceRoute(route) => {
            let before = client.get_route(&route.name).await?.resource_version;
            let after = client.replace_route(route).await?.resource_version;
            written(before, after)
        }
        Write::CreateJob(job) => {
            client.create_job(job).await?;
            Outcome::Created
        }
        Write::CreateCronJob(cron) => {
            client.create_cron_job(cron).await?;
            Outcome::Created
        }
        Write::UpdateCronJob(cron) => {
            let answer = client.replace_cron_job(cron).await?;
            written(cron.resource_version, answer.resource_version)
        }
        Write::CreateBuildConfig(config) => {
            client.create_build_config(config).await?;
            Outcome::Created
        }
        Write::UpdateBuildConfig(config) => {
            let answer = client.replace_build_config(config).await?;
            written(config.resource_version, answer.resource_version)
        }
        Write::Delete => {
            match step.kind {
                "service" => drop(client.delete_service(&step.name).await?),
                "route" => drop(client.delete_route(&step.name).await?),
                "job" => drop(client.delete_job(&step.name).await?),
                "cronjob" => drop(client.delete_cron_job(&step.name).await?),
                "buildconfig" => drop(client.delete_build_config(&step.name).await?),
                other => anyhow::bail!("cannot prune a {other}"),
            }
            Outcome::Pruned
        }
    })
}
