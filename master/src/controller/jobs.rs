//! Jobs: each job's attempts are run-once pods. An attempt that ended is
//! recorded in the job's status and its pod removed, in the same commit,
//! so no attempt is counted twice; new attempts are numbered from the
//! status, so none is started twice. Retries wait out a backoff; a
//! deadline, a cancel or a failed prerequisite ends the job and stops its
//! pods. Pure.

use std::collections::BTreeSet;

use berth_model::api::Versioned;
use berth_model::job::Attempt;
use berth_model::{ClusterPod, Event, EventKind, Job, JobPhase, PodPhase};

use super::change::Change;
use super::pods::{in_cluster_order, Indexed, PodIndex};
use super::Cluster;

/// Plans every job's next step; pods in `removed` are going already.
pub fn plan(cluster: &Cluster, pods: &PodIndex<'_>, removed: &BTreeSet<String>) -> Vec<Change> {
    let mut changes: Vec<Change> = cluster
        .jobs
        .iter()
        .filter_map(|job| advance(cluster, pods.of_job(&job.object.name), job, removed))
        .collect();
    // Pods of jobs that are gone go too.
    let mut gone = Vec::new();
    for (job, group) in &pods.by_job {
        if cluster.jobs.iter().any(|j| j.object.name == *job) {
            continue;
        }
        for &(position, pod) in group {
            if !removed.contains(&pod.object.spec.name) {
                let change = Change::delete_pod(
                    cluster.now_ms,
                    &pod.object,
                    pod.resource_version,
                    EventKind::PodDeleted,
                    format!("job {job} deleted"),
                );
                gone.push((position, change));
            }
        }
    }
    changes.extend(in_cluster_order(gone));
    changes
}

/// One job's step, if anything changes.
fn advance(
    cluster: &Cluster,
    pods: &[Indexed<'_>],
    job: &Versioned<Job>,
    removed: &BTreeSet<String>,
) -> Option<Change> {
    let name = job.object.name.as_str();
    let now = cluster.now_ms;
    let mut status = job.object.status.clone();
    let mut stop: Vec<(String, u64)> = Vec::new();
    let mut active: Vec<&Versioned<ClusterPod>> = Vec::new();
    let pods = pods
        .iter()
        .map(|&(_, pod)| pod)
        .filter(|p| !removed.contains(&p.object.spec.name));
    for pod in pods {
        match ended(&pod.object) {
            Some(attempt) => {
                if !status.attempts.iter().any(|a| a.pod == attempt.pod) {
                    if attempt.succeeded {
                        status.succeeded += 1;
                    } else {
                        status.failed += 1;
                    }
                    status.attempts.push(Attempt {
                        end_ms: now,
                        ..attempt
                    });
                }
                stop.push((pod.object.spec.name.clone(), pod.resource_version));
            }
            None => active.push(pod),
        }
    }
    let mut start: Vec<ClusterPod> = Vec::new();
    let spec = &job.object;
    if !status.phase.is_final() {
        let over = |phase: JobPhase, reason: String| (phase, Some(reason));
        let deadline_passed = spec
            .deadline_secs
            .zip(status.start_ms)
            .is_some_and(|(secs, started)| now >= started + secs * 1000);
        let ending = if spec.cancelled {
            Some(over(JobPhase::Cancelled, "cancelled".to_owned()))
        } else if status.succeeded >= spec.completions {
            Some((JobPhase::Succeeded, None))
        } else if deadline_passed {
            let secs = spec.deadline_secs.unwrap_or_default();
            Some(over(
                JobPhase::Failed,
                format!("its deadline of {secs}s passed"),
            ))
        } else if status.failed >= spec.backoff_limit {
            let last = status.attempts.iter().rev().find(|a| !a.succeeded);
            let code = last
                .and_then(|a| a.exit_code)
                .map_or("no exit code".to_owned(), |c| format!("exit code {c}"));
            Some(over(
                JobPhase::Failed,
                format!(
                    "{} of {} attempts failed; the last with {code}",
                    status.failed, spec.backoff_limit
                ),
            ))
        } else {
            prerequisite_failed(cluster, spec).map(|why| over(JobPhase::Failed, why))
        };
        match ending {
            Some((phase, reason)) => {
                status.phase = phase;
                status.reason = reason;
                status.end_ms = Some(now);
            }
            None => match waiting_for(cluster, spec) {
                Some(prerequisite) => {
                    status.phase = JobPhase::Pending;
                    status.reason = Some(format!("waiting for job {prerequisite} to succeed"));
                }
                None => {
                    status.start_ms.get_or_insert(now);
                    let wanted = spec
                        .parallelism
                        .min(spec.completions - status.succeeded)
                        .saturating_sub(u32::try_from(active.len()).unwrap_or(u32::MAX));
                    let retry_at = status
                        .attempts
                        .iter()
                        .rev()
                        .find(|a| !a.succeeded)
                        .map_or(0, |a| a.end_ms + Job::backoff_ms(status.failed));
                    status.reason = None;
                    if wanted > 0 && now < retry_at {
                        status.reason = Some(format!(
                            "retrying in {}s after {} failed attempts",
                            (retry_at - now).div_ceil(1000),
                            status.failed
                        ));
                    } else {
                        for _ in 0..wanted {
                            start.push(attempt_pod(spec, status.next_attempt, now));
                            status.next_attempt += 1;
                        }
                    }
                    let running = active.iter().any(|p| {
                        p.object
                            .status
                            .as_ref()
                            .is_some_and(|s| s.phase == PodPhase::Running)
                    });
                    status.phase = if running {
                        JobPhase::Running
                    } else {
                        JobPhase::Pending
                    };
                    if status.phase == JobPhase::Pending && status.reason.is_none() {
                        status.reason = active
                            .iter()
                            .find_map(|p| p.object.unschedulable_reason.clone());
                    }
                }
            },
        }
    }
    if status.phase.is_final() {
        // An ended job stops what still runs of it.
        stop.extend(
            active
                .iter()
                .map(|p| (p.object.spec.name.clone(), p.resource_version)),
        );
        active.clear();
    }
    status.active = u32::try_from(active.len() + start.len()).unwrap_or(u32::MAX);
    if status == job.object.status && stop.is_empty() && start.is_empty() {
        return None;
    }
    let event = (status.phase.is_final() && !job.object.status.phase.is_final()).then(|| Event {
        time_ms: now,
        kind: match status.phase {
            JobPhase::Succeeded => EventKind::JobSucceeded,
            JobPhase::Cancelled => EventKind::JobCancelled,
            _ => EventKind::JobFailed,
        },
        object: format!("job/{name}"),
        node: None,
        reason: status
            .reason
            .clone()
            .unwrap_or_else(|| format!("{} pods succeeded", status.succeeded)),
    });
    let mut advanced = job.object.clone();
    advanced.status = status;
    Some(Change::AdvanceJob {
        reason: format!(
            "job {name}: {:?}, {} started, {} ended",
            advanced.status.phase,
            start.len(),
            stop.len()
        ),
        job: advanced,
        expected_revision: job.resource_version,
        stop,
        start,
        event,
    })
}

/// The attempt a pod's ending makes, if it ended.
fn ended(pod: &ClusterPod) -> Option<Attempt> {
    let status = pod.status.as_ref()?;
    let succeeded = match status.phase {
        PodPhase::Succeeded => true,
        PodPhase::Failed => false,
        _ => return None,
    };
    let container = status.containers.iter().find(|c| c.exit_code != Some(0));
    let container = container.or(status.containers.first());
    Some(Attempt {
        pod: pod.spec.name.clone(),
        node: pod.node.clone(),
        succeeded,
        exit_code: container.and_then(|c| c.exit_code),
        reason: (!succeeded)
            .then(|| container.and_then(|c| c.reason.clone()))
            .flatten(),
        end_ms: 0,
    })
}

/// Attempt `n`'s pod: `<job>-<n>`, not yet placed, queued at `now`.
fn attempt_pod(job: &Job, n: u32, now: u64) -> ClusterPod {
    let mut spec = job.template.clone();
    spec.name = format!("{}-{n}", job.name);
    ClusterPod {
        job: Some(job.name.clone()),
        priority: job.priority,
        queued_ms: Some(now),
        ..ClusterPod::unplaced(spec)
    }
}

/// Why a prerequisite will never succeed, if one will not.
fn prerequisite_failed(cluster: &Cluster, job: &Job) -> Option<String> {
    job.after.iter().find_map(|after| {
        let shown = berth_model::project::unqualified(after);
        match cluster.jobs.iter().find(|j| j.object.name == *after) {
            None => Some(format!("its prerequisite job {shown} is gone")),
            Some(j) => {
                let phase = j.object.status.phase;
                (phase.is_final() && phase != JobPhase::Succeeded)
                    .then(|| format!("its prerequisite job {shown} ended {phase:?}"))
            }
        }
    })
}

/// The first prerequisite that has not succeeded yet.
fn waiting_for<'a>(cluster: &Cluster, job: &'a Job) -> Option<&'a str> {
    job.after
        .iter()
        .find(|after| {
            !cluster
                .jobs
                .iter()
                .any(|j| j.object.name == **after && j.object.status.phase == JobPhase::Succeeded)
        })
        .map(|after| berth_model::project::unqualified(after))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::{ContainerStatus, PodStatus};

    use super::*;
    use crate::controller::testing::{cluster, ready, NOW};

    /// The jobs planner over every pod of `cluster`.
    fn plan(cluster: &Cluster, removed: &BTreeSet<String>) -> Vec<Change> {
        super::plan(cluster, &PodIndex::of(cluster), removed)
    }

    fn job(name: &str, json: serde_json::Value) -> Versioned<Job> {
        let mut value = serde_json::json!({
            "name": name,
            "template": {"name": name, "containers": [{"name": "run", "image": "local/busybox"}]},
        });
        for (k, v) in json.as_object().expect("an object") {
            value[k] = v.clone();
        }
        Versioned {
            resource_version: 1,
            object: serde_json::from_value::<Job>(value)
                .expect("a job")
                .completed(),
        }
    }

    /// Applies a plan's job changes to the cluster as the commit would.
    fn apply(cluster: &mut Cluster, changes: Vec<Change>) {
        for change in changes {
            let Change::AdvanceJob {
                job, stop, start, ..
            } = change
            else {
                continue;
            };
            cluster
                .pods
                .retain(|p| !stop.iter().any(|(n, _)| *n == p.object.spec.name));
            cluster.pods.extend(start.into_iter().map(|object| {
                Arc::new(Versioned {
                    resource_version: 1,
                    object,
                })
            }));
            let at = cluster.jobs.iter().position(|j| j.object.name == job.name);
            cluster.jobs[at.expect("the job")].object = job;
        }
    }

    /// One controller round of the jobs planner, committed.
    fn round(cluster: &mut Cluster) {
        let changes = plan(cluster, &BTreeSet::new());
        apply(cluster, changes);
    }

    fn end(cluster: &mut Cluster, pod: &str, exit_code: i64) {
        let pod = cluster
            .pods
            .iter_mut()
            .find(|p| p.object.spec.name == pod)
            .expect("the pod");
        let pod = Arc::make_mut(pod);
        pod.object.node = Some("h1".into());
        pod.object.status = Some(PodStatus {
            name: pod.object.spec.name.clone(),
            phase: if exit_code == 0 {
                PodPhase::Succeeded
            } else {
                PodPhase::Failed
            },
            slice: String::new(),
            containers: vec![ContainerStatus {
                name: "run".into(),
                unit: String::new(),
                container_id: None,
                state: "inactive".into(),
                sub_state: "dead".into(),
                pid: None,
                exit_code: Some(exit_code),
                reason: (exit_code != 0).then(|| format!("exited with status {exit_code}")),
                restarts: 0,
                host_ports: vec![],
                ready: false,
                health: None,
            }],
            spec: pod.object.spec.clone(),
            start_failure: None,
            volumes: Vec::new(),
        });
    }

    fn pods(cluster: &Cluster) -> Vec<String> {
        cluster
            .pods
            .iter()
            .map(|p| p.object.spec.name.clone())
            .collect()
    }

    fn status(cluster: &Cluster, name: &str) -> berth_model::JobStatus {
        cluster
            .jobs
            .iter()
            .find(|j| j.object.name == name)
            .expect("the job")
            .object
            .status
            .clone()
    }

    #[test]
    fn a_failed_attempt_is_retried_after_a_backoff_and_counted_once() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.jobs = vec![job("ok", serde_json::json!({"backoffLimit": 3}))];
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["ok-0"]);
        end(&mut cluster, "ok-0", 1);
        round(&mut cluster);
        assert!(pods(&cluster).is_empty(), "the ended pod goes");
        let waiting = status(&cluster, "ok");
        assert_eq!((waiting.failed, waiting.phase), (1, JobPhase::Pending));
        assert_eq!(
            waiting.reason.as_deref(),
            Some("retrying in 10s after 1 failed attempts")
        );
        cluster.now_ms = NOW + 10_000;
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["ok-1"], "a new attempt, numbered on");
        end(&mut cluster, "ok-1", 0);
        let changes = plan(&cluster, &BTreeSet::new());
        let events: Vec<EventKind> = changes
            .iter()
            .filter_map(|c| c.event())
            .map(|e| e.kind)
            .collect();
        assert_eq!(events, [EventKind::JobSucceeded]);
        apply(&mut cluster, changes);
        let done = status(&cluster, "ok");
        assert_eq!(
            (done.phase, done.succeeded, done.failed),
            (JobPhase::Succeeded, 1, 1)
        );
        assert_eq!(done.attempts.len(), 2);
        assert_eq!(done.attempts[0].exit_code, Some(1));
        assert!(
            plan(&cluster, &BTreeSet::new()).is_empty(),
            "an ended job rests"
        );
    }

    #[test]
    fn too_many_failures_fail_the_job_naming_the_last_exit_code() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.jobs = vec![job("once", serde_json::json!({"backoffLimit": 1}))];
        round(&mut cluster);
        end(&mut cluster, "once-0", 3);
        round(&mut cluster);
        let failed = status(&cluster, "once");
        assert_eq!(failed.phase, JobPhase::Failed);
        assert_eq!(
            failed.reason.as_deref(),
            Some("1 of 1 attempts failed; the last with exit code 3")
        );
        assert!(pods(&cluster).is_empty());
    }

    #[test]
    fn completions_run_at_most_parallelism_at_once() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.jobs = vec![job(
            "many",
            serde_json::json!({"completions": 3, "parallelism": 2}),
        )];
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["many-0", "many-1"]);
        end(&mut cluster, "many-0", 0);
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["many-1", "many-2"]);
        end(&mut cluster, "many-1", 0);
        round(&mut cluster);
        assert_eq!(
            pods(&cluster),
            ["many-2"],
            "no fourth: only one more is needed"
        );
    }

    #[test]
    fn a_deadline_or_a_cancel_ends_the_job_and_stops_its_pods() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.jobs = vec![
            job("slow", serde_json::json!({"deadlineSecs": 3})),
            job("stopped", serde_json::json!({})),
        ];
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["slow-0", "stopped-0"]);
        cluster.jobs[1].object.cancelled = true;
        cluster.now_ms = NOW + 3_000;
        round(&mut cluster);
        assert!(pods(&cluster).is_empty());
        assert_eq!(status(&cluster, "slow").phase, JobPhase::Failed);
        assert_eq!(status(&cluster, "stopped").phase, JobPhase::Cancelled);
    }

    #[test]
    fn a_high_job_is_placed_before_a_low_one_queued_earlier() {
        // Room for one 6 GiB pod on an 8 GiB node.
        let mut cluster = cluster(vec![], ready(&["h1"]));
        let big = |name: &str, priority: &str| {
            let mut job = job(name, serde_json::json!({"priority": priority}));
            job.object.template.containers[0].resources.memory_bytes = Some(6 << 30);
            job
        };
        cluster.jobs = vec![big("low", "low")];
        round(&mut cluster);
        cluster.now_ms = NOW + 1_000;
        cluster.jobs.push(big("high", "high"));
        round(&mut cluster);
        // Both wait unplaced, low queued first; the whole controller
        // places high.
        let changes = crate::controller::plan(&cluster);
        let placed: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::BindPod { pod, .. } => Some(pod.spec.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(placed, ["high-0"]);
    }

    #[test]
    fn a_job_waits_for_its_prerequisite_and_fails_with_it() {
        let mut cluster = cluster(vec![], ready(&["h1"]));
        cluster.jobs = vec![
            job("a", serde_json::json!({"backoffLimit": 1})),
            job("b", serde_json::json!({"after": ["a"]})),
        ];
        round(&mut cluster);
        assert_eq!(pods(&cluster), ["a-0"]);
        assert_eq!(
            status(&cluster, "b").reason.as_deref(),
            Some("waiting for job a to succeed")
        );
        end(&mut cluster, "a-0", 2);
        round(&mut cluster);
        round(&mut cluster);
        let b = status(&cluster, "b");
        assert_eq!(b.phase, JobPhase::Failed);
        assert_eq!(
            b.reason.as_deref(),
            Some("its prerequisite job a ended Failed")
        );
    }
}
