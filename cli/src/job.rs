//! `berth job ...`: work that runs to completion as run-once pods, with
//! retries, deadlines, cancel and prerequisites.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_model::api::Versioned;
use berth_model::job::Priority;
use berth_model::{Job, JobPhase, ValidationErrors};
use clap::{Args, Subcommand};

use crate::logs::LogsArgs;
use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;
use crate::pod_flags::PodFlags;

/// `berth job`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth job run ok --image local/busybox -- sh -c 'echo done'
  berth job wait ok && berth job logs ok
  berth job run batch --image local/busybox --completions 6 --parallelism 2 -- sh -c 'sleep 3'
  berth job run flaky --image local/busybox --backoff-limit 3 --deadline 10m -- ./run-once
  berth job run report --image local/busybox --after batch -- sh -c 'echo all done'
  berth job cancel batch")]
pub struct JobArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JobCommand,
}

/// The `berth job` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a job: its pods run once each, until COMPLETIONS succeeded.
    Run(RunJobArgs),
    /// List the jobs.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a job: its phase, counts and every attempt.
    Describe {
        /// The job.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// What the job's pods printed; -f follows.
    Logs(LogsArgs),
    /// Wait until the job ends: exit 0 if it succeeded, 1 (saying why)
    /// if it did not.
    Wait {
        /// The job.
        name: String,
        /// Give up (exit 1) after this long (90s, 10m, 2h).
        #[arg(long, value_parser = parse::duration)]
        timeout: Option<Duration>,
    },
    /// Cancel a job: its pods stop and it ends Cancelled.
    Cancel {
        /// The job.
        name: String,
    },
    /// Remove a job; its pods go too.
    Rm {
        /// The job.
        name: String,
    },
}

/// `berth job run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("the_image").args(["image"]).required(true)))]
pub struct RunJobArgs {
    /// The job's name (a DNS label of at most 50 characters); its pods are
    /// NAME-0, NAME-1, ...
    pub name: String,
    /// Start only once this job has succeeded; fail if it does not.
    /// Repeatable.
    #[arg(long = "after", value_name = "JOB")]
    pub after: Vec<String>,
    /// How it runs.
    #[command(flatten)]
    pub run: RunFlags,
    /// The pod each attempt runs (its restart policy is always `no`).
    #[command(flatten)]
    pub pod: PodFlags,
}

/// How a job runs: `berth job run`'s, and each run of `berth cron create`.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// How many pods must succeed.
    #[arg(long, default_value_t = 1)]
    pub completions: u32,
    /// Most pods running at once.
    #[arg(long, default_value_t = 1)]
    pub parallelism: u32,
    /// Most attempts that may fail before the job does; retries wait 10 s,
    /// doubling, at most 5 minutes.
    #[arg(long = "backoff-limit", default_value_t = 6)]
    pub backoff_limit: u32,
    /// Fail the job, stopping its pods, if it has not succeeded this long
    /// after it started (30s, 10m, 2h).
    #[arg(long, value_parser = parse::duration)]
    pub deadline: Option<Duration>,
    /// Its pods' place in the queue for room: high ones are placed first
    /// (they evict nothing), then first come first placed.
    #[arg(long, value_enum, default_value_t = PriorityArg::Normal)]
    pub priority: PriorityArg,
}

impl RunFlags {
    /// `--deadline` in seconds.
    pub fn deadline_secs(&self) -> Option<u64> {
        self.deadline.map(|d| d.as_secs().max(1))
    }
}

/// `--priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorityArg {
    /// Placed first.
    High,
    /// Like services' pods.
    Normal,
    /// Placed last.
    Low,
}

impl From<PriorityArg> for Priority {
    fn from(arg: PriorityArg) -> Priority {
        match arg {
            PriorityArg::High => Priority::High,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::Low => Priority::Low,
        }
    }
}

impl RunJobArgs {
    fn job(&self) -> Job {
        Job {
            name: self.name.clone(),
            labels: Default::default(),
            template: self.pod.pod(&self.name),
            completions: self.run.completions,
            parallelism: self.run.parallelism,
            backoff_limit: self.run.backoff_limit,
            deadline_secs: self.run.deadline_secs(),
            after: self.after.clone(),
            priority: self.run.priority.into(),
            cron: None,
            cancelled: false,
            status: Default::default(),
        }
        .completed()
    }
}

/// The job failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid job")]
pub struct InvalidJob(pub ValidationErrors);

/// A job that ended without succeeding (`berth job wait`); exit 1.
#[derive(Debug, thiserror::Error)]
#[error("job {name} ended {phase:?}: {reason}")]
pub struct JobDidNotSucceed {
    name: String,
    phase: JobPhase,
    reason: String,
}

/// Runs one `berth job` command.
pub async fn run(client: &MasterClient, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Run(args) => {
            let job = args.job();
            job.validate().map_err(InvalidJob)?;
            let created = client
                .create_job(&job)
                .await
                .with_context(|| format!("cannot run job {}", job.name))?;
            output::print(&format!(
                "job {}: created; `berth job wait {0}` waits for it\n",
                created.object.name
            ))
        }
        JobCommand::Ls { output: format } => {
            let jobs = client.list_jobs().await?;
            if let Some(text) = output::structured(format, &jobs)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = jobs.iter().map(|j| row(&j.object)).collect();
            output::print(&output::table(
                &["NAME", "PHASE", "SUCCEEDED", "FAILED", "ACTIVE", "REASON"],
                &rows,
            ))
        }
        JobCommand::Describe {
            name,
            output: format,
        } => {
            let job = client.get_job(&name, None).await?;
            if let Some(text) = output::structured(format, &job)? {
                return output::print(&text);
            }
            output::print(&details(&job))
        }
        JobCommand::Logs(args) => crate::logs::run(args).await,
        JobCommand::Wait { name, timeout } => wait(client, &name, timeout).await,
        JobCommand::Cancel { name } => {
            let job = client.cancel_job(&name).await?;
            let state = if job.object.status.phase.is_final() {
                format!("already ended {:?}", job.object.status.phase)
            } else {
                "cancelling: its pods stop".to_owned()
            };
            output::print(&format!("job {name}: {state}\n"))
        }
        JobCommand::Rm { name } => {
            client.delete_job(&name).await?;
            output::print(&format!("job {name}: removed, with its pods\n"))
        }
    }
}

/// Waits in long polls until the job ends or `timeout` passes.
pub async fn wait(
    client: &MasterClient,
    name: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
        // The master answers a job's long poll within 30 s.
        let poll = left.map_or(Duration::from_secs(30), |l| l.min(Duration::from_secs(30)));
        let job = client.get_job(name, Some(poll.as_secs().max(1))).await?;
        let status = &job.object.status;
        if status.phase == JobPhase::Succeeded {
            return output::print(&format!(
                "job {name}: Succeeded ({} of {} pods)\n",
                status.succeeded, job.object.completions
            ));
        }
        if status.phase.is_final() {
            return Err(JobDidNotSucceed {
                name: name.to_owned(),
                phase: status.phase,
                reason: status.reason.clone().unwrap_or_default(),
            }
            .into());
        }
        if left.is_some_and(|l| l.is_zero()) {
            anyhow::bail!(
                "job {name} is still {:?} after {:?}{}",
                status.phase,
                timeout.unwrap_or_default(),
                status
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn row(job: &Job) -> Vec<String> {
    let s = &job.status;
    vec![
        job.name.clone(),
        format!("{:?}", s.phase),
        format!("{}/{}", s.succeeded, job.completions),
        s.failed.to_string(),
        s.active.to_string(),
        s.reason.clone().unwrap_or_default(),
    ]
}

fn details(job: &Versioned<Job>) -> String {
    let (job, s) = (&job.object, &job.object.status);
    let mut text = format!("Name:         {}\nPhase:        {:?}\n", job.name, s.phase);
    if let Some(reason) = &s.reason {
        text.push_str(&format!("Reason:       {reason}\n"));
    }
    text.push_str(&format!(
        "Completions:  {}/{} (parallelism {}, at most {} failed attempts)\n",
        s.succeeded, job.completions, job.parallelism, job.backoff_limit
    ));
    text.push_str(&format!(
        "Active:       {}\nFailed:       {}\n",
        s.active, s.failed
    ));
    if let Some(deadline) = job.deadline_secs {
        text.push_str(&format!("Deadline:     {deadline}s\n"));
    }
    if !job.after.is_empty() {
        text.push_str(&format!("After:        {}\n", job.after.join(", ")));
    }
    if let (Some(start), end) = (s.start_ms, s.end_ms) {
        let took = end.map_or("running".to_owned(), |end| {
            format!("{:.1}s", end.saturating_sub(start) as f64 / 1000.0)
        });
        text.push_str(&format!("Duration:     {took}\n"));
    }
    if !s.attempts.is_empty() {
        text.push_str("Attempts:\n");
        let rows: Vec<Vec<String>> = s
            .attempts
            .iter()
            .map(|a| {
                vec![
                    a.pod.clone(),
                    a.node.clone().unwrap_or_default(),
                    if a.succeeded { "Succeeded" } else { "Failed" }.to_owned(),
                    a.exit_code.map_or(String::new(), |c| c.to_string()),
                    a.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        for line in output::table(&["POD", "NODE", "RESULT", "EXIT", "REASON"], &rows).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}
