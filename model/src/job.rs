//! Jobs: work that runs to completion. A job runs its pod template as
//! run-once pods (`Restart=no` units, never restarted in place) until
//! `completions` of them have succeeded, at most `parallelism` at a time;
//! a failed attempt is a new pod, placed again by the scheduler after a
//! backoff, until `backoff_limit` attempts have failed. The master keeps
//! each attempt in the job's status and removes its pod once it ended.

use serde::{Deserialize, Serialize};

use crate::name::validate_dns_label;
use crate::pod::{Pod, RestartPolicy};
use crate::validation::ValidationErrors;

/// Longest job name: its pods are `<job>-<attempt>`.
pub const MAX_JOB_NAME_LEN: usize = 50;

/// Most completions or parallel pods of one job.
pub const MAX_JOB_PODS: u32 = 10_000;

/// The first retry waits this long; each further one twice as long.
pub const FIRST_BACKOFF_MS: u64 = 10_000;

/// The longest wait between attempts.
pub const MAX_BACKOFF_MS: u64 = 300_000;

fn one() -> u32 {
    1
}

fn six() -> u32 {
    6
}

/// Which queued pods are placed first: by priority, then in the order
/// they were queued. A `high` pod waits for room like any other (it evicts
/// nothing), but ahead of the rest.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Placed first.
    High,
    /// Services' pods, and jobs' unless told otherwise.
    #[default]
    Normal,
    /// Placed last.
    Low,
}

impl Priority {
    /// Whether this is the default, `normal`.
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }
}

/// A job: what to run and how often, and (written by the master) how it
/// went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// Its name, a DNS label; its pods are `<name>-<n>`.
    pub name: String,
    /// Free `key: value` pairs, e.g. for `berth apply --prune -l KEY=VALUE`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// The pod each attempt runs; its name is replaced per attempt and its
    /// restart policy is `no`.
    pub template: Pod,
    /// How many pods must succeed.
    #[serde(default = "one")]
    pub completions: u32,
    /// Most pods running at once.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Most attempts that may fail before the job does.
    #[serde(default = "six")]
    pub backoff_limit: u32,
    /// The job fails if it has not succeeded this many seconds after it
    /// started; its pods are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// Jobs that must succeed before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Its pods' place in the queue for room.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// The cron job that made it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Set by `cancel`: the job stops and ends `Cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// How it went, as the master records it; ignored when sent.
    #[serde(default)]
    pub status: JobStatus,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPhase {
    /// Waiting: for its prerequisites, a place to run, or a retry.
    #[default]
    Pending,
    /// A pod of it runs.
    Running,
    /// `completions` pods succeeded.
    Succeeded,
    /// Too many attempts failed, its deadline passed, or a prerequisite
    /// failed.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl JobPhase {
    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
        )
    }
}

/// How a job went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Where it stands.
    pub phase: JobPhase,
    /// Why, when it waits or ended other than by succeeding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pods that succeeded.
    pub succeeded: u32,
    /// Attempts that failed.
    pub failed: u32,
    /// Pods that run or wait for a place.
    pub active: u32,
    /// Every attempt that ended, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The number of the next attempt's pod (`<job>-<n>`): attempts are
    /// never numbered twice, so none runs twice.
    #[serde(default)]
    pub next_attempt: u32,
    /// When it started (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

/// One pod of a job that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Its pod.
    pub pod: String,
    /// Where it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Its container's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it ended, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the master saw it end (Unix milliseconds).
    pub end_ms: u64,
}

impl Job {
    /// The job as it is stored on creation: run-once pods, no status.
    pub fn completed(mut self) -> Job {
        for container in &mut self.template.containers {
            container.restart = RestartPolicy::Never;
        }
        self.status = JobStatus::default();
        self.cancelled = false;
        self
    }

    /// Checks everything that needs no other object.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        } else if self.name.len() > MAX_JOB_NAME_LEN {
            errors.push(
                "name",
                format!("must be at most {MAX_JOB_NAME_LEN} characters (pods add a suffix)"),
            );
        }
        for (field, value) in [
            ("completions", self.completions),
            ("parallelism", self.parallelism),
            ("backoffLimit", self.backoff_limit),
        ] {
            if value == 0 || value > MAX_JOB_PODS {
                errors.push(field, format!("must be from 1 to {MAX_JOB_PODS}"));
            }
        }
        if let Some(secs) = self.deadline_secs {
            if secs == 0 || i64::try_from(secs).is_err() {
                errors.push("deadlineSecs", format!("must be from 1 to {}", i64::MAX));
            }
        }
        for (i, after) in self.after.iter().enumerate() {
            if let Err(e) = crate::project::validate_qualified_name(after) {
                errors.push(format!("after[{i}]"), e.to_string());
            } else if *after == self.name {
                errors.push(format!("after[{i}]"), "a job cannot wait for itself");
            }
        }
        self.template.validate_as_template(&self.name, &mut errors);
        crate::labels::validate_labels("labels", &self.labels, &mut errors);
        errors.into_result()
    }

    /// The job as users see it: secret values blanked.
    pub fn redacted(mut self) -> Job {
        self.template = self.template.redacted();
        self
    }

    /// How long to wait after the last failed attempt before the next one:
    /// 10 s, doubling with each failure, at most 5 minutes.
    pub fn backoff_ms(failed: u32) -> u64 {
        let doublings = failed.saturating_sub(1).min(16);
        (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: serde_json::Value) -> Job {
        serde_json::from_value(json).expect("a job")
    }

    #[test]
    fn a_job_runs_once_with_defaults_and_no_status_of_its_own() {
        let sent = job(serde_json::json!({
            "name": "ok",
            "template": {"name": "ok", "containers": [{"name": "ok", "image": "x"}]},
            "status": {"phase": "Succeeded", "succeeded": 9, "failed": 0, "active": 0},
        }));
        let stored = sent.completed();
        assert_eq!(stored.template.containers[0].restart, RestartPolicy::Never);
        assert_eq!(stored.status, JobStatus::default());
        assert_eq!(
            (stored.completions, stored.parallelism, stored.backoff_limit),
            (1, 1, 6)
        );
        assert!(stored.validate().is_ok());
    }

    #[test]
    fn bad_counts_and_self_waits_are_named() {
        let bad = job(serde_json::json!({
            "name": "x", "completions": 0, "parallelism": 0, "after": ["x"],
            "template": {"name": "x", "containers": [{"name": "x", "image": "x"}]},
        }));
        let errors = bad.validate().expect_err("invalid");
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["completions", "parallelism", "after[0]"]);
    }

    #[test]
    fn retries_back_off_from_10_s_doubling_up_to_5_minutes() {
        assert_eq!(Job::backoff_ms(1), 10_000);
        assert_eq!(Job::backoff_ms(2), 20_000);
        assert_eq!(Job::backoff_ms(3), 40_000);
        assert_eq!(Job::backoff_ms(20), 300_000);
    }
}
