//! Cron jobs: a job made on a schedule. Each due slot of the schedule
//! becomes one job, `<cron>-<slot in Unix seconds>`, made in the same
//! commit that records the slot as taken: a slot is never run twice, and
//! across a master's restart a slot still within its starting deadline is
//! run late, once; older ones are counted as missed and reported.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::job::{Job, Priority};
use crate::name::validate_dns_label;
use crate::pod::Pod;
use crate::validation::ValidationErrors;

/// Longest cron job name: its jobs add `-<10 digits>`.
pub const MAX_CRON_NAME_LEN: usize = 38;

/// Most slots looked at in one step: a schedule every second, a master
/// down for longer than this, counts the rest as missed in later steps.
const MAX_SLOTS_PER_STEP: usize = 1000;

fn three() -> u32 {
    3
}

fn one() -> u32 {
    1
}

fn six() -> u32 {
    6
}

/// What happens when a slot comes while the last run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Run it anyway, side by side.
    #[default]
    Allow,
    /// Skip the slot, and report it.
    Forbid,
    /// Cancel the running one and start the new.
    Replace,
}

/// A job made on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJob {
    /// Its name, a DNS label of at most [`MAX_CRON_NAME_LEN`].
    pub name: String,
    /// Free `key: value` pairs, e.g. for `berth apply --prune -l KEY=VALUE`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// Standard 5-field cron (`*/5 * * * *`), or 6 fields with seconds
    /// first (`*/10 * * * * *`).
    pub schedule: String,
    /// `UTC` (the default) or a fixed offset such as `+02:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A slot that comes while the last run still runs.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// A slot not started within this many seconds (the master was down)
    /// is missed, not run late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_secs: Option<u64>,
    /// How many ended runs are kept.
    #[serde(default = "three")]
    pub history: u32,
    /// No new runs while set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// The pod each run's attempts run.
    pub template: Pod,
    /// Each run's completions.
    #[serde(default = "one")]
    pub completions: u32,
    /// Each run's parallelism.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Each run's backoff limit.
    #[serde(default = "six")]
    pub backoff_limit: u32,
    /// Each run's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// Each run's priority.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// How it went, as the master records it.
    #[serde(default)]
    pub status: CronStatus,
}

/// How a cron job went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronStatus {
    /// The last slot taken (run, skipped or missed), Unix milliseconds;
    /// `None` until the master first saw the cron job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_slot_ms: Option<u64>,
    /// The last run's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// Slots run.
    #[serde(default)]
    pub runs: u64,
    /// Slots skipped: the last run still ran (`forbid`).
    #[serde(default)]
    pub skipped: u64,
    /// Slots missed: past their starting deadline when the master got to
    /// them.
    #[serde(default)]
    pub missed: u64,
}

impl CronJob {
    /// Checks everything that needs no other object.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        } else if self.name.len() > MAX_CRON_NAME_LEN {
            errors.push(
                "name",
                format!("must be at most {MAX_CRON_NAME_LEN} characters (its jobs add -<time>)"),
            );
        }
        if let Err(e) = self.parsed_schedule() {
            errors.push("schedule", e);
        }
        if let Err(e) = self.offset() {
            errors.push("timezone", e);
        }
        if self.history > 100 {
            errors.push("history", "must be at most 100");
        }
        if let Some(secs) = self.starting_deadline_secs {
            if secs == 0 || i64::try_from(secs).is_err() {
                errors.push(
                    "startingDeadlineSecs",
                    format!("must be from 1 to {}", i64::MAX),
                );
            }
        }
        // The run's own rules, named as this object spells them.
        if let Err(job_errors) = self.job_at(0).validate() {
            for e in job_errors.errors() {
                if e.field != "name" {
                    errors.push(e.field.clone(), e.message.clone());
                }
            }
        }
        crate::labels::validate_labels("labels", &self.labels, &mut errors);
        errors.into_result()
    }

    fn parsed_schedule(&self) -> Result<croner::Cron, String> {
        let fields = self.schedule.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "must have 5 fields (minute hour day month weekday), or 6 with seconds first; got {fields}"
            ));
        }
        croner::Cron::from_str(&self.schedule).map_err(|e| e.to_string())
    }

    fn offset(&self) -> Result<FixedOffset, String> {
        let Some(zone) = self.timezone.as_deref() else {
            return Ok(FixedOffset::east_opt(0).expect("UTC"));
        };
        if zone.eq_ignore_ascii_case("utc") || zone == "Z" {
            return Ok(FixedOffset::east_opt(0).expect("UTC"));
        }
        zone.parse::<FixedOffset>().map_err(|_| {
            "must be UTC or a fixed offset such as +02:00 (named zones are not supported yet)"
                .to_owned()
        })
    }

    /// The slots due after `after_ms` up to `now_ms`, oldest first (at most
    /// a thousand).
    pub fn due_slots(&self, after_ms: u64, now_ms: u64) -> Vec<u64> {
        let (Ok(schedule), Ok(offset)) = (self.parsed_schedule(), self.offset()) else {
            return Vec::new();
        };
        let Some(start) = at(after_ms, offset) else {
            return Vec::new();
        };
        let mut slots = Vec::new();
        let mut from = start;
        while slots.len() < MAX_SLOTS_PER_STEP {
            let Ok(next) = schedule.find_next_occurrence(&from, false) else {
                break;
            };
            let ms = u64::try_from(next.timestamp_millis()).unwrap_or(u64::MAX);
            if ms > now_ms {
                break;
            }
            slots.push(ms);
            from = next;
        }
        slots
    }

    /// The next slot after `after_ms`, if the schedule has one.
    pub fn next_slot(&self, after_ms: u64) -> Option<u64> {
        let schedule = self.parsed_schedule().ok()?;
        let start = at(after_ms, self.offset().ok()?)?;
        let next = schedule.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The job of the slot at `slot_ms`: `<cron>-<slot in Unix seconds>`.
    pub fn job_at(&self, slot_ms: u64) -> Job {
        Job {
            name: format!("{}-{}", self.name, slot_ms / 1000),
            // Not the cron job's: a pruning `berth apply` must not take
            // its runs for objects the files dropped.
            labels: Default::default(),
            template: self.template.clone(),
            completions: self.completions,
            parallelism: self.parallelism,
            backoff_limit: self.backoff_limit,
            deadline_secs: self.deadline_secs,
            after: Vec::new(),
            priority: self.priority,
            cron: Some(self.name.clone()),
            cancelled: false,
            status: Default::default(),
        }
        .completed()
    }

    /// The cron job as users see it: secret values blanked.
    pub fn redacted(mut self) -> CronJob {
        self.template = self.template.redacted();
        self
    }

    /// The cron job with the secret values it was sent blank taken from
    /// `stored` (see [`Pod::with_secrets_from`]).
    pub fn with_secrets_from(mut self, stored: &CronJob) -> CronJob {
        self.template = self.template.with_secrets_from(&stored.template);
        self
    }
}

fn at(ms: u64, offset: FixedOffset) -> Option<DateTime<FixedOffset>> {
    Some(DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)?.with_timezone(&offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(schedule: &str, timezone: Option<&str>) -> CronJob {
        serde_json::from_value(serde_json::json!({
            "name": "nightly",
            "schedule": schedule,
            "timezone": timezone,
            "template": {"name": "x", "containers": [{"name": "run", "image": "local/busybox"}]},
        }))
        .expect("a cron job")
    }

    #[test]
    fn five_fields_or_six_with_seconds() {
        assert!(cron("*/5 * * * *", None).validate().is_ok());
        assert!(cron("*/10 * * * * *", None).validate().is_ok());
        let errors = cron("* * *", None).validate().expect_err("3 fields");
        assert_eq!(errors.errors()[0].field, "schedule");
        assert!(cron("61 * * * *", None).validate().is_err());
        let errors = cron("* * * * *", Some("Europe/Paris"))
            .validate()
            .expect_err("named");
        assert_eq!(errors.errors()[0].field, "timezone");
    }

    #[test]
    fn slots_follow_the_schedule_and_the_offset() {
        let every_10s = cron("*/10 * * * * *", None);
        // 2026-12-05 00:00:03 UTC.
        let base = 1_796_428_803_000;
        assert_eq!(
            every_10s.due_slots(base, base + 25_000),
            [base + 7_000, base + 17_000]
        );
        assert_eq!(every_10s.next_slot(base), Some(base + 7_000));
        // At 02:00 in +02:00 is midnight UTC.
        let two_am = cron("0 2 * * *", Some("+02:00"));
        let midnight_utc = 1_796_428_800_000;
        assert_eq!(two_am.next_slot(midnight_utc - 1_000), Some(midnight_utc));
    }

    #[test]
    fn a_slots_job_is_named_by_its_time_and_belongs_to_the_cron() {
        let job = cron("* * * * *", None).job_at(1_796_428_800_000);
        assert_eq!(job.name, "nightly-1796428800");
        assert_eq!(job.cron.as_deref(), Some("nightly"));
        assert!(job.validate().is_ok());
    }
}
