//! Cron jobs: each due slot becomes one job, made in the same commit that
//! records the slot as taken (so a slot runs once, whatever restarts), or
//! is skipped (`forbid`, the last run still running) or missed (past its
//! starting deadline), and said so in an event. Old runs beyond the
//! history go. Pure.

use berth_model::api::Versioned;
use berth_model::cron::Concurrency;
use berth_model::{CronJob, Event, EventKind, Job};

use super::change::Change;
use super::Cluster;

/// Plans every cron job's next step.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let mut changes: Vec<Change> = cluster
        .cron_jobs
        .iter()
        .filter_map(|cron| advance(cluster, cron))
        .collect();
    // Runs of cron jobs that are gone go too.
    for job in &cluster.jobs {
        let Some(cron) = job.object.cron.as_deref() else {
            continue;
        };
        if !cluster.cron_jobs.iter().any(|c| c.object.name == cron) {
            changes.push(Change::DeleteJob {
                name: job.object.name.clone(),
                expected_revision: job.resource_version,
                reason: format!("cron job {cron} deleted"),
            });
        }
    }
    changes
}

/// The next slot of any cron job not suspended, after the cluster was
/// read, in Unix milliseconds: the controller wakes for it instead of up
/// to a round late.
pub fn next_slot_ms(cluster: &Cluster) -> Option<u64> {
    cluster
        .cron_jobs
        .iter()
        .filter(|cron| !cron.object.suspend)
        .filter_map(|cron| cron.object.next_slot(cluster.now_ms))
        .min()
}

fn advance(cluster: &Cluster, cron: &Versioned<CronJob>) -> Option<Change> {
    let spec = &cron.object;
    let now = cluster.now_ms;
    let runs: Vec<&Versioned<Job>> = cluster
        .jobs
        .iter()
        .filter(|j| j.object.cron.as_deref() == Some(spec.name.as_str()))
        .collect();
    let mut status = spec.status.clone();
    let mut start = None;
    let mut cancel = Vec::new();
    let mut event = None;
    match status.last_slot_ms {
        // First seen: slots count from now, none before.
        None => status.last_slot_ms = Some(now),
        Some(_) if spec.suspend => {
            // Suspended: slots pass untaken, and are not run on resume.
            status.last_slot_ms = Some(now);
        }
        Some(last) => {
            let due = spec.due_slots(last, now);
            if let Some((&slot, earlier)) = due.split_last() {
                status.last_slot_ms = Some(slot);
                let late = spec
                    .starting_deadline_secs
                    .is_some_and(|secs| now > slot + secs * 1000);
                let missed = earlier.len() as u64 + u64::from(late);
                status.missed += missed;
                let active: Vec<&&Versioned<Job>> = runs
                    .iter()
                    .filter(|j| !j.object.status.phase.is_final())
                    .collect();
                if late {
                    event = Some(cron_event(
                        now,
                        EventKind::CronJobMissed,
                        &spec.name,
                        format!("{missed} runs missed: past their starting deadline"),
                    ));
                } else if spec.concurrency == Concurrency::Forbid && !active.is_empty() {
                    status.skipped += 1;
                    event = Some(cron_event(
                        now,
                        EventKind::CronJobSkipped,
                        &spec.name,
                        format!(
                            "the run due at {}s skipped: job {} still runs{}",
                            slot / 1000,
                            berth_model::project::unqualified(&active[0].object.name),
                            missed_too(missed)
                        ),
                    ));
                } else {
                    if spec.concurrency == Concurrency::Replace {
                        cancel = active
                            .iter()
                            .map(|j| {
                                let mut job = j.object.clone();
                                job.cancelled = true;
                                (job, j.resource_version)
                            })
                            .collect();
                    }
                    let job = spec.job_at(slot);
                    status.runs += 1;
                    status.last_job = Some(job.name.clone());
                    if missed > 0 {
                        event = Some(cron_event(
                            now,
                            EventKind::CronJobMissed,
                            &spec.name,
                            format!("{missed} runs missed while the master was away"),
                        ));
                    }
                    start = Some(job);
                }
            }
        }
    }
    // Ended runs beyond the history, oldest first, go.
    let mut ended: Vec<&&Versioned<Job>> = runs
        .iter()
        .filter(|j| j.object.status.phase.is_final())
        .collect();
    ended.sort_by_key(|j| j.object.status.end_ms.unwrap_or(0));
    let keep = spec.history as usize;
    let forget: Vec<(String, u64)> = ended
        .iter()
        .take(ended.len().saturating_sub(keep))
        .map(|j| (j.object.name.clone(), j.resource_version))
        .collect();
    if status == spec.status && start.is_none() && cancel.is_empty() && forget.is_empty() {
        return None;
    }
    let mut advanced = spec.clone();
    advanced.status = status;
    Some(Change::AdvanceCron {
        reason: format!(
            "cron job {}: {} started, {} cancelled, {} forgotten",
            spec.name,
            usize::from(start.is_some()),
            cancel.len(),
            forget.len()
        ),
        cron: advanced,
        expected_revision: cron.resource_version,
        start,
        cancel,
        forget,
        event,
    })
}

fn missed_too(missed: u64) -> String {
    if missed == 0 {
        String::new()
    } else {
        format!(" ({missed} earlier runs missed)")
    }
}

fn cron_event(now: u64, kind: EventKind, cron: &str, reason: String) -> Event {
    Event {
        time_ms: now,
        kind,
        object: format!("cronjob/{cron}"),
        node: None,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use berth_model::JobPhase;

    use super::*;
    use crate::controller::testing::{cluster, ready, NOW};

    fn cron(json: serde_json::Value) -> Versioned<CronJob> {
        let mut value = serde_json::json!({
            "name": "tick",
            "schedule": "*/10 * * * * *",
            "template": {"name": "x", "containers": [{"name": "run", "image": "local/busybox"}]},
        });
        for (k, v) in json.as_object().expect("an object") {
            value[k] = v.clone();
        }
        Versioned {
            resource_version: 1,
            object: serde_json::from_value(value).expect("a cron job"),
        }
    }

    /// One round of the cron planner, committed.
    fn round(cluster: &mut Cluster) -> Vec<EventKind> {
        let mut events = Vec::new();
        for change in plan(cluster) {
            events.extend(change.event().map(|e| e.kind));
            match change {
                Change::AdvanceCron {
                    cron,
                    start,
                    cancel,
                    forget,
                    ..
                } => {
                    cluster
                        .jobs
                        .retain(|j| !forget.iter().any(|(n, _)| *n == j.object.name));
                    for (job, _) in cancel {
                        let at = cluster.jobs.iter().position(|j| j.object.name == job.name);
                        cluster.jobs[at.expect("the job")].object = job;
                    }
                    cluster.jobs.extend(start.map(|object| Versioned {
                        resource_version: 1,
                        object,
                    }));
                    let at = cluster
                        .cron_jobs
                        .iter()
                        .position(|c| c.object.name == cron.name);
                    cluster.cron_jobs[at.expect("the cron job")].object = cron;
                }
                Change::DeleteJob { name, .. } => cluster.jobs.retain(|j| j.object.name != name),
                _ => {}
            }
        }
        events
    }

    fn names(cluster: &Cluster) -> Vec<String> {
        cluster.jobs.iter().map(|j| j.object.name.clone()).collect()
    }

    fn end_all(cluster: &mut Cluster) {
        for job in &mut cluster.jobs {
            job.object.status.phase = JobPhase::Succeeded;
            job.object.status.end_ms = Some(cluster.now_ms);
        }
    }

    #[test]
    fn each_slot_runs_once_and_none_before_the_cron_was_made() {
        // NOW is 2026-12-05 00:00:00 UTC give or take: on a 10 s slot.
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.now_ms = NOW - NOW % 10_000 + 3_000;
        cluster.cron_jobs = vec![cron(serde_json::json!({}))];
        round(&mut cluster);
        assert!(names(&cluster).is_empty(), "nothing before its first slot");
        let slot = cluster.now_ms - 3_000 + 10_000;
        cluster.now_ms = slot + 200;
        round(&mut cluster);
        assert_eq!(names(&cluster), [format!("tick-{}", slot / 1000)]);
        // The same slot again (a second round, a restarted master) makes
        // nothing more.
        round(&mut cluster);
        cluster.now_ms += 500;
        round(&mut cluster);
        assert_eq!(cluster.jobs.len(), 1);
        assert_eq!(cluster.cron_jobs[0].object.status.runs, 1);
    }

    #[test]
    fn forbid_skips_a_slot_while_the_last_run_runs_and_says_so() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        let base = NOW - NOW % 10_000;
        cluster.now_ms = base + 1_000;
        cluster.cron_jobs = vec![cron(serde_json::json!({"concurrency": "forbid"}))];
        round(&mut cluster);
        cluster.now_ms = base + 10_100;
        round(&mut cluster);
        assert_eq!(cluster.jobs.len(), 1);
        cluster.now_ms = base + 20_100;
        assert_eq!(round(&mut cluster), [EventKind::CronJobSkipped]);
        assert_eq!(cluster.jobs.len(), 1);
        assert_eq!(cluster.cron_jobs[0].object.status.skipped, 1);
        end_all(&mut cluster);
        cluster.now_ms = base + 30_100;
        round(&mut cluster);
        assert_eq!(cluster.jobs.len(), 2, "ended: the next slot runs");
    }

    #[test]
    fn slots_past_their_deadline_are_missed_and_counted_not_run() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        let base = NOW - NOW % 10_000;
        cluster.now_ms = base + 1_000;
        cluster.cron_jobs = vec![cron(serde_json::json!({"startingDeadlineSecs": 5}))];
        round(&mut cluster);
        // The master was away for a minute: six slots passed.
        cluster.now_ms = base + 68_000;
        assert_eq!(round(&mut cluster), [EventKind::CronJobMissed]);
        assert!(cluster.jobs.is_empty());
        assert_eq!(cluster.cron_jobs[0].object.status.missed, 6);
        // Within the deadline, the last slot runs late, once.
        cluster.now_ms = base + 72_000;
        round(&mut cluster);
        assert_eq!(
            names(&cluster),
            [format!("tick-{}", (base + 70_000) / 1000)]
        );
    }

    #[test]
    fn ended_runs_beyond_the_history_go() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        let base = NOW - NOW % 10_000;
        cluster.now_ms = base + 1_000;
        cluster.cron_jobs = vec![cron(serde_json::json!({"history": 2}))];
        round(&mut cluster);
        for i in 1..=4 {
            cluster.now_ms = base + i * 10_000 + 100;
            round(&mut cluster);
            end_all(&mut cluster);
        }
        cluster.now_ms += 1;
        round(&mut cluster);
        assert_eq!(cluster.jobs.len(), 2, "{:?}", names(&cluster));
    }

    #[test]
    fn the_next_slot_is_the_earliest_of_the_crons_not_suspended_and_a_started_run_hands_on() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        let base = NOW - NOW % 10_000;
        cluster.now_ms = base + 3_000;
        cluster.cron_jobs = vec![
            cron(serde_json::json!({})),
            cron(serde_json::json!({"name": "fast", "schedule": "* * * * * *", "suspend": true})),
        ];
        assert_eq!(next_slot_ms(&cluster), Some(base + 10_000));
        assert!(plan(&cluster).iter().all(|c| !c.hands_on()), "first seen");
        round(&mut cluster);
        cluster.now_ms = base + 10_000;
        let changes = plan(&cluster);
        assert!(changes.iter().any(Change::hands_on), "{changes:?}");
        cluster.cron_jobs[1].object.suspend = false;
        assert_eq!(next_slot_ms(&cluster), Some(base + 11_000));
    }
}
