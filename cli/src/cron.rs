//! `berth cron ...`: jobs made on a schedule.

use std::time::Duration;

use anyhow::Context as _;
use berth_model::cron::Concurrency;
use berth_model::{CronJob, ValidationErrors};
use clap::{Args, Subcommand, ValueEnum};

use crate::job::RunFlags;
use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;
use crate::pod_flags::PodFlags;

/// `berth cron`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth cron create nightly --schedule '0 3 * * *' --image local/busybox -- sh -c 'echo backup'
  berth cron create tick --schedule '*/10 * * * * *' --concurrency forbid --image local/busybox -- sleep 25
  berth cron suspend nightly ; berth cron resume nightly ; berth cron trigger nightly
  berth job ls                     # each run is a job: NAME-<slot in Unix seconds>")]
pub struct CronArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CronCommand,
}

/// The `berth cron` subcommands.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Create a cron job: each due slot of SCHEDULE runs one job.
    Create(Box<CreateCronArgs>),
    /// List the cron jobs.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a cron job: its schedule, next slot and counts.
    Describe {
        /// The cron job.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a cron job; its runs go too.
    Rm {
        /// The cron job.
        name: String,
    },
    /// Start no new runs until resumed (slots in between are not run).
    Suspend {
        /// The cron job.
        name: String,
    },
    /// Start runs again from the next slot.
    Resume {
        /// The cron job.
        name: String,
    },
    /// Run it now, outside its schedule.
    Trigger {
        /// The cron job.
        name: String,
    },
}

/// `--concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConcurrencyArg {
    /// Run a slot even while the last run runs.
    Allow,
    /// Skip a slot while the last run runs, and report it.
    Forbid,
    /// Cancel the running one and start the new.
    Replace,
}

/// `berth cron create`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("the_image").args(["image"]).required(true)))]
pub struct CreateCronArgs {
    /// Its name (a DNS label of at most 38 characters).
    pub name: String,
    /// 5-field cron (`*/5 * * * *`), or 6 fields with seconds first
    /// (`*/10 * * * * *`).
    #[arg(long)]
    pub schedule: String,
    /// UTC (the default) or a fixed offset such as +02:00.
    #[arg(long)]
    pub timezone: Option<String>,
    /// A slot that comes while the last run still runs.
    #[arg(long, value_enum, default_value_t = ConcurrencyArg::Allow)]
    pub concurrency: ConcurrencyArg,
    /// A slot not started this long after it was due (the master was
    /// away) is missed, not run late (30s, 10m).
    #[arg(long = "starting-deadline", value_parser = parse::duration)]
    pub starting_deadline: Option<Duration>,
    /// How many ended runs to keep.
    #[arg(long, default_value_t = 3)]
    pub history: u32,
    /// Create it suspended.
    #[arg(long)]
    pub suspend: bool,
    /// How each run runs.
    #[command(flatten)]
    pub run: RunFlags,
    /// The pod each run's attempts run.
    #[command(flatten)]
    pub pod: PodFlags,
}

impl CreateCronArgs {
    fn cron_job(&self) -> CronJob {
        CronJob {
            name: self.name.clone(),
            labels: Default::default(),
            schedule: self.schedule.clone(),
            timezone: self.timezone.clone(),
            concurrency: match self.concurrency {
                ConcurrencyArg::Allow => Concurrency::Allow,
                ConcurrencyArg::Forbid => Concurrency::Forbid,
                ConcurrencyArg::Replace => Concurrency::Replace,
            },
            starting_deadline_secs: self.starting_deadline.map(|d| d.as_secs().max(1)),
            history: self.history,
            suspend: self.suspend,
            template: self.pod.pod(&self.name),
            completions: self.run.completions,
            parallelism: self.run.parallelism,
            backoff_limit: self.run.backoff_limit,
            deadline_secs: self.run.deadline_secs(),
            priority: self.run.priority.into(),
            status: Default::default(),
        }
    }
}

/// The cron job failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron job")]
pub struct InvalidCronJob(pub ValidationErrors);

/// Runs one `berth cron` command.
pub async fn run(client: &MasterClient, command: CronCommand) -> anyhow::Result<()> {
    match command {
        CronCommand::Create(args) => {
            let cron = args.cron_job();
            cron.validate().map_err(InvalidCronJob)?;
            let created = client
                .create_cron_job(&cron)
                .await
                .with_context(|| format!("cannot create cron job {}", cron.name))?;
            output::print(&format!(
                "cron job {}: created ({})\n",
                created.object.name, created.object.schedule
            ))
        }
        CronCommand::Ls { output: format } => {
            let crons = client.list_cron_jobs().await?;
            if let Some(text) = output::structured(format, &crons)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = crons
                .iter()
                .map(|c| {
                    let (c, s) = (&c.object, &c.object.status);
                    vec![
                        c.name.clone(),
                        c.schedule.clone(),
                        if c.suspend { "yes" } else { "no" }.to_owned(),
                        s.runs.to_string(),
                        s.skipped.to_string(),
                        s.missed.to_string(),
                        s.last_job.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::print(&output::table(
                &[
                    "NAME",
                    "SCHEDULE",
                    "SUSPENDED",
                    "RUNS",
                    "SKIPPED",
                    "MISSED",
                    "LAST JOB",
                ],
                &rows,
            ))
        }
        CronCommand::Describe {
            name,
            output: format,
        } => {
            let cron = client.get_cron_job(&name).await?;
            if let Some(text) = output::structured(format, &cron)? {
                return output::print(&text);
            }
            let (c, s) = (&cron.object, &cron.object.status);
            let next = s
                .last_slot_ms
                .and_then(|last| c.next_slot(last))
                .map_or("-".to_owned(), |ms| format!("{} (Unix seconds)", ms / 1000));
            output::print(&format!(
                "Name:         {}\nSchedule:     {} ({})\nConcurrency:  {:?}\nSuspended:    {}\n\
                 Next slot:    {next}\nRuns:         {}\nSkipped:      {}\nMissed:       {}\n\
                 Last job:     {}\n",
                c.name,
                c.schedule,
                c.timezone.as_deref().unwrap_or("UTC"),
                c.concurrency,
                c.suspend,
                s.runs,
                s.skipped,
                s.missed,
                s.last_job.as_deref().unwrap_or("-"),
            ))
        }
        CronCommand::Rm { name } => {
            client.delete_cron_job(&name).await?;
            output::print(&format!("cron job {name}: removed, with its runs\n"))
        }
        CronCommand::Suspend { name } => set_suspended(client, &name, true).await,
        CronCommand::Resume { name } => set_suspended(client, &name, false).await,
        CronCommand::Trigger { name } => {
            let job = client.trigger_cron_job(&name).await?;
            output::print(&format!(
                "cron job {name}: job {} started\n",
                job.object.name
            ))
        }
    }
}

async fn set_suspended(client: &MasterClient, name: &str, suspend: bool) -> anyhow::Result<()> {
    let mut cron = client.get_cron_job(name).await?;
    cron.object.suspend = suspend;
    client.replace_cron_job(&cron).await?;
    let state = if suspend { "suspended" } else { "resumed" };
    output::print(&format!("cron job {name}: {state}\n"))
}
