//! Rollouts: every service's pods follow its revisions. Pure.
//!
//! A service's target is its latest deployment while that rolls out or is
//! complete, and otherwise (it failed or was cancelled) the last complete
//! one. Pods of the target are made up to the replica count; the others
//! go as the strategy allows:
//!
//! - `rolling`: new pods start beside the old, at most `maxSurge` beyond
//!   the replicas, and an old pod goes only while at least `replicas -
//!   maxUnavailable` pods stay available (a new one counts once it has
//!   been ready for `minReadySeconds`);
//! - `recreate`: every old pod goes, and each is replaced in its place:
//!   the same name and node, so its named volumes stay.
//!
//! A pod never stops at once: it first drains ([`DRAIN_MS`]), out of
//! every router's backends and link's rules while it still runs, so that
//! no request is sent to a pod that is stopping. A rollout with no
//! progress for its deadline fails, and may roll back by itself.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::api::Versioned;
use berth_model::deployment::{
    Cause, DeploymentPhase, DeploymentStatus, FailurePolicy, HookPoint, StrategyKind, DRAIN_MS,
};
use berth_model::link::add_link_env;
use berth_model::pod::{EnvVar, RestartPolicy};
use berth_model::quota::Usage;
use berth_model::{
    ClusterPod, Deployment, Event, EventKind, Job, JobPhase, NodeCondition, Pod, Service,
};
use rustc_hash::FxHashSet;

use super::change::Change;
use super::pods::{Indexed, PodIndex};
use super::replicas::{replica_index, ServicesByName};
use super::Cluster;

/// What the rollouts decide.
#[derive(Debug, Default)]
pub struct Rollouts {
    /// Pods drained, stopped or replaced in place, deployments written and
    /// hook jobs made.
    pub changes: Vec<Change>,
    /// New pods, not yet placed: placement binds them.
    pub new: Vec<ClusterPod>,
}

/// The revision a service's pods are brought to.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    revision: u64,
    template: &'a Pod,
    env: &'a [EnvVar],
}

impl<'a> Target<'a> {
    fn of(deployment: &'a Deployment) -> Self {
        Target {
            revision: deployment.revision,
            template: &deployment.template,
            env: &deployment.env,
        }
    }
}

/// Plans every service's rollout. Pods in `removed` are going already
/// (evicted) and count for nothing.
pub fn plan(cluster: &Cluster, index: &PodIndex<'_>, removed: &BTreeSet<String>) -> Rollouts {
    let services = super::replicas::by_name(cluster);
    let mut deployments: BTreeMap<&str, Vec<&Versioned<Deployment>>> = BTreeMap::new();
    for deployment in &cluster.deployments {
        deployments
            .entry(deployment.object.service.as_str())
            .or_default()
            .push(deployment);
    }
    let jobs: BTreeMap<&str, &Versioned<Job>> = cluster
        .jobs
        .iter()
        .map(|j| (j.object.name.as_str(), j))
        .collect();
    // Services with a ready endpoint, for links that wait for one.
    let ready_nodes: FxHashSet<&str> = cluster
        .nodes
        .iter()
        .filter(|(_, condition)| *condition == NodeCondition::Ready)
        .map(|(node, _)| node.name.as_str())
        .collect();
    let ready_services: FxHashSet<&str> = index
        .by_service
        .iter()
        .filter(|(_, pods)| {
            pods.iter().map(|(_, p)| &p.object).any(|p| {
                p.reported_ready()
                    && p.draining_since_ms.is_none()
                    && p.node.as_deref().is_some_and(|n| ready_nodes.contains(n))
            })
        })
        .map(|(service, _)| *service)
        .collect();
    let mut rollouts = Rollouts::default();
    for (service, records) in &mut deployments {
        records.sort_by_key(|d| d.object.revision);
        if !services.contains_key(service) {
            for record in records.iter() {
                rollouts
                    .changes
                    .extend(forget(record, "its service was deleted", &jobs));
            }
        }
    }
    for service in &cluster.services {
        let name = service.object.name.as_str();
        let planner = ServicePlanner {
            cluster,
            service: &service.object,
            service_revision: service.resource_version,
            deployments: deployments.get(name).map(Vec::as_slice).unwrap_or_default(),
            pods: index.of_service(name),
            removed,
            services: &services,
            jobs: &jobs,
            ready_services: &ready_services,
        };
        planner.plan(&mut rollouts);
    }
    rollouts
}

/// One service's rollout.
struct ServicePlanner<'a> {
    cluster: &'a Cluster,
    service: &'a Service,
    service_revision: u64,
    deployments: &'a [&'a Versioned<Deployment>],
    pods: &'a [Indexed<'a>],
    removed: &'a BTreeSet<String>,
    services: &'a ServicesByName<'a>,
    jobs: &'a BTreeMap<&'a str, &'a Versioned<Job>>,
    ready_services: &'a FxHashSet<&'a str>,
}

/// A hook's state in a rollout.
enum HookStep {
    /// Over, or there is none: the rollout goes on.
    Done,
    /// Its job runs, or is made now.
    Waiting(String, Option<Box<Job>>),
    /// It failed and aborts the rollout.
    Failed(String),
}

impl<'a> ServicePlanner<'a> {
    /// The service's pods.
    fn pods(&self) -> impl Iterator<Item = &'a Versioned<ClusterPod>> + 'a {
        self.pods.iter().map(|&(_, pod)| pod)
    }

    fn plan(&self, out: &mut Rollouts) {
        let now = self.cluster.now_ms;
        let service = self.service;
        let name = service.name.as_str();
        let latest = self.deployments.last().copied();
        let adopted;
        let target = match latest {
            // A service made before revisions: its template is revision 1,
            // recorded now; its pods run it already.
            None => {
                adopted = Deployment {
                    status: DeploymentStatus {
                        phase: DeploymentPhase::Complete,
                        progress_ms: now,
                        ended_ms: Some(now),
                        ..DeploymentStatus::default()
                    },
                    ..Deployment::begin(service, 1, Cause::ConfigChange, "berth (upgrade)", now)
                };
                out.changes.push(Change::WriteDeployment {
                    deployment: adopted.clone(),
                    expected_revision: None,
                    reason: format!("service {name} is recorded as revision 1"),
                    event: None,
                });
                Target::of(&adopted)
            }
            Some(latest) if !rolled_away(latest.object.status.phase) => Target::of(&latest.object),
            Some(latest) => self
                .deployments
                .iter()
                .rev()
                .find(|d| d.object.status.phase == DeploymentPhase::Complete)
                .map_or(Target::of(&latest.object), |d| Target::of(&d.object)),
        };
        let rolling_out = latest.filter(|d| {
            d.object.status.phase == DeploymentPhase::Running
                && d.object.revision == target.revision
        });
        self.supersede(latest, out);
        self.forget_history(target.revision, out);
        // Pods held back by a --wait-ready link go on once it is ready.
        if self.release_waiting(out) {
            return;
        }
        // A rollback's pods that run its template already are kept: only
        // their revision changes, so nothing restarts.
        if rolling_out.is_some_and(|d| matches!(d.object.cause, Cause::Rollback { .. })) {
            let adopted = self.adopt(target, out);
            if adopted {
                return;
            }
        }

        let strategy = &service.strategy;
        let kind = strategy.kind_for(service.stateful);
        let replicas = service.replicas as usize;
        let min_ready_ms = u64::from(strategy.min_ready_seconds) * 1000;

        // Draining pods finish draining: stopped, or (recreate) replaced
        // in their place by the target.
        let mut live: Vec<&Versioned<ClusterPod>> = Vec::new();
        let mut old_draining = 0usize;
        let mut replaced = 0usize;
        let current = self
            .pods()
            .filter(|p| !self.removed.contains(&p.object.spec.name))
            .filter(|p| {
                p.object.draining_since_ms.is_none() && p.object.revision() == target.revision
            })
            .count();
        for pod in self.pods() {
            if self.removed.contains(&pod.object.spec.name) {
                continue;
            }
            let Some(since) = pod.object.draining_since_ms else {
                live.push(pod);
                continue;
            };
            let old = pod.object.revision() != target.revision;
            if now < since + DRAIN_MS {
                old_draining += usize::from(old);
                continue;
            }
            let in_place = kind == StrategyKind::Recreate
                && old
                && pod.object.node.is_some()
                && current + replaced < replicas;
            if in_place {
                replaced += 1;
                out.changes.push(self.replace_in_place(pod, target));
            } else {
                out.changes.push(Change::delete_pod(
                    now,
                    &pod.object,
                    pod.resource_version,
                    EventKind::PodDeleted,
                    if old {
                        format!("service {name} rolls out revision {}", target.revision)
                    } else {
                        format!("service {name} scaled down to {replicas}")
                    },
                ));
            }
        }
        live.sort_by_cached_key(|p| replica_index(name, &p.object.spec.name).unwrap_or(u32::MAX));
        let (new, old): (Vec<_>, Vec<_>) = live
            .iter()
            .copied()
            .partition(|p| p.object.revision() == target.revision);
        let available_new = new
            .iter()
            .filter(|p| available(&p.object, min_ready_ms, now))
            .count();
        let available_old = old.iter().filter(|p| p.object.reported_ready()).count();

        // What holds the rollout: a pause, a hook, a canary.
        let mut status = rolling_out.map(|d| d.object.status.clone());
        let mut waiting: Option<String> = None;
        let mut failed: Option<String> = None;
        if let (Some(deployment), Some(status)) = (rolling_out, status.as_mut()) {
            if status.paused {
                waiting = Some("paused (berth rollout resume)".to_owned());
            } else if !old.is_empty() || old_draining > 0 {
                match self.hook(HookPoint::Pre, &deployment.object, status) {
                    HookStep::Done => {}
                    HookStep::Waiting(why, job) => {
                        waiting = Some(why);
                        out.changes.extend(job.map(|job| Change::CreateJob {
                            reason: format!("rollout of {name} runs its pre hook"),
                            job: *job,
                        }));
                    }
                    HookStep::Failed(why) => failed = Some(why),
                }
            }
        }
        let canary = match rolling_out {
            Some(d)
                if kind == StrategyKind::Rolling
                    && !d.object.status.promoted
                    && !matches!(d.object.cause, Cause::Rollback { .. })
                    && !old.is_empty() =>
            {
                strategy.canary.min(service.replicas) as usize
            }
            _ => 0,
        };

        let mut note: Option<String> = None;
        if waiting.is_none() && failed.is_none() {
            let mut drain = Vec::new();
            // Beyond the replica count: the highest go.
            drain.extend(new.iter().skip(replicas).rev());
            let mut create = 0;
            match kind {
                StrategyKind::Rolling => {
                    let mut surge = strategy.surge(service.replicas) as usize;
                    let mut unavailable = strategy.unavailable(service.replicas) as usize;
                    if canary == 0 && !old.is_empty() {
                        // The quota caps the service's pods at what it
                        // runs now plus the room left: the same cap whether
                        // an old pod has just gone or a new one just came.
                        if let Some((room, what)) = self.quota_room(target) {
                            let cap = live
                                .len()
                                .saturating_add(usize::try_from(room).unwrap_or(usize::MAX));
                            let allowed = cap.saturating_sub(replicas);
                            if allowed < surge {
                                let project = berth_model::project::split_qualified(name).0;
                                // Read back by `is_quota_note`.
                                let mut why = format!(
                                    "surging {allowed} instead of {surge} within project {project}'s {what} quota"
                                );
                                surge = allowed;
                                if surge == 0 && unavailable == 0 {
                                    unavailable = 1;
                                    why.push_str(": replacing one pod at a time");
                                }
                                note = Some(why);
                            }
                        }
                    }
                    if canary == 0 && !old.is_empty() {
                        // Unavailable old pods serve nothing: they go first,
                        // then available ones while enough stay available.
                        let min_available = replicas - unavailable.min(replicas);
                        let mut budget =
                            (available_new + available_old).saturating_sub(min_available);
                        for pod in old.iter().rev() {
                            if !pod.object.reported_ready() {
                                drain.push(pod);
                            } else if budget > 0 {
                                budget -= 1;
                                drain.push(pod);
                            }
                        }
                    }
                    // The pods that drain now leave the surge at once: the
                    // next wave starts in this round, not the next one.
                    let (wanted, room) = if canary > 0 {
                        (canary, usize::MAX)
                    } else {
                        let staying = live.len().saturating_sub(drain.len());
                        (replicas, (replicas + surge).saturating_sub(staying))
                    };
                    create = wanted.saturating_sub(new.len()).min(room);
                }
                StrategyKind::Recreate => {
                    if !old.is_empty() {
                        drain.extend(old.iter());
                    } else if old_draining == 0 {
                        create = replicas.saturating_sub(new.len() + replaced);
                    }
                }
            }
            for pod in drain {
                out.changes.push(draining(pod, now, target.revision));
            }
            let new_pods = self.new_pods(create, target, &out.new);
            match self.waits_for() {
                None => out.new.extend(new_pods),
                Some(why) => out.changes.extend(new_pods.into_iter().map(|mut pod| {
                    pod.waiting_for = Some(why.clone());
                    pod.unschedulable_reason = Some(why.clone());
                    let name = pod.spec.name.clone();
                    Change::CreatePod {
                        event: Some(super::change::pod_event(
                            now,
                            EventKind::PodWaiting,
                            &name,
                            None,
                            &why,
                        )),
                        reason: format!("pod {name} {why}"),
                        pod,
                    }
                })),
            }
        }

        let (Some(deployment), Some(mut status)) = (rolling_out, status) else {
            return;
        };
        let counts = (
            (new.len() + replaced) as u32,
            available_new as u32,
            (old.len() + old_draining) as u32,
        );
        if counts != (status.updated, status.available, status.old) {
            (status.updated, status.available, status.old) = counts;
            status.progress_ms = now;
        }
        if canary > 0 && available_new >= canary {
            waiting = Some(format!(
                "canary: {available_new} new pod(s) available beside {} old; waiting for berth rollout promote",
                old.len()
            ));
        }
        let settled = counts == (service.replicas, service.replicas, 0) && canary == 0;
        if settled && waiting.is_none() && failed.is_none() {
            match self.hook(HookPoint::Post, &deployment.object, &mut status) {
                HookStep::Done => {}
                HookStep::Waiting(why, job) => {
                    waiting = Some(why);
                    out.changes.extend(job.map(|job| Change::CreateJob {
                        reason: format!("rollout of {name} runs its post hook"),
                        job: *job,
                    }));
                }
                HookStep::Failed(why) => failed = Some(why),
            }
        }
        let record = &deployment.object;
        let deadline_ms = strategy.progress_deadline_ms();
        if let Some(why) = &waiting {
            // A rollout that waits on a person or a hook is not stuck.
            if status.paused || why.starts_with("canary") {
                status.progress_ms = now;
            }
        }
        if failed.is_none() && waiting.is_none() && settled {
            status.phase = DeploymentPhase::Complete;
            // A rollout held back by its quota keeps saying so.
            status.reason = note.or(status.reason.filter(|r| is_quota_note(r)));
            status.ended_ms = Some(now);
            let reason = format!(
                "service {name} runs revision {} on all {} replicas",
                record.revision, service.replicas
            );
            out.changes
                .push(self.write(deployment, status, EventKind::RolloutComplete, reason));
            return;
        }
        if failed.is_none() && now.saturating_sub(status.progress_ms) > deadline_ms {
            failed = Some(format!(
                "no progress for {}s: {available_new} of {} new pods available{}",
                deadline_ms / 1000,
                service.replicas,
                self.why_unready(&new)
            ));
        }
        if let Some(why) = failed {
            status.phase = DeploymentPhase::Failed;
            status.ended_ms = Some(now);
            out.changes.push(self.fail(deployment, status, why));
            return;
        }
        if let Some(why) = waiting {
            if status.reason.as_deref() != Some(why.as_str()) {
                status.reason = Some(why.clone());
                let reason = format!("rollout of {name} revision {}: {why}", record.revision);
                out.changes
                    .push(self.write(deployment, status, EventKind::RolloutWaiting, reason));
                return;
            }
        } else {
            status.reason = note.or(status.reason.filter(|r| is_quota_note(r)));
        }
        if status != record.status {
            out.changes.push(Change::WriteDeployment {
                deployment: Deployment {
                    status,
                    ..record.clone()
                },
                expected_revision: Some(deployment.resource_version),
                reason: format!("rollout of {name} revision {} moves on", record.revision),
                event: None,
            });
        }
    }

    /// How many more pods of `target` the service's project quota allows
    /// beside its pods now, and which limit binds; `None` without a quota.
    fn quota_room(&self, target: Target<'_>) -> Option<(u64, &'static str)> {
        let project = berth_model::project::split_qualified(&self.service.name).0;
        let quota = self.cluster.quotas.get(project)?;
        let used = self
            .cluster
            .pods
            .iter()
            .map(|p| &p.object)
            .filter(|p| p.draining_since_ms.is_none())
            .filter(|p| berth_model::project::in_project(&p.spec.name, project))
            .fold(Usage::default(), |used, p| {
                used.plus(Usage::of_pod(&p.spec))
            });
        quota.room(used, Usage::of_pod(target.template))
    }

    /// Why new pods must wait: a `waitReady` link whose service has no
    /// ready endpoint.
    fn waits_for(&self) -> Option<String> {
        let link = self
            .service
            .links
            .iter()
            .find(|l| l.wait_ready && !self.ready_services.contains(l.service.as_str()))?;
        let project = berth_model::project::split_qualified(&self.service.name).0;
        let target = berth_model::project::reference_from(project, &link.service);
        Some(format!(
            "waiting for {target}: no ready endpoint yet (a --wait-ready link)"
        ))
    }

    /// Lets the pods held back by a `waitReady` link be placed once they
    /// need wait no more; says whether there were any.
    fn release_waiting(&self, out: &mut Rollouts) -> bool {
        if self.waits_for().is_some() {
            return false;
        }
        let before = out.changes.len();
        for pod in self.pods().filter(|p| p.object.waiting_for.is_some()) {
            if self.removed.contains(&pod.object.spec.name) {
                continue;
            }
            let mut released = pod.object.clone();
            released.waiting_for = None;
            released.unschedulable_reason = None;
            out.changes.push(Change::UpdatePod {
                reason: format!(
                    "pod {} waits no more: its --wait-ready links are ready",
                    pod.object.spec.name
                ),
                pod: released,
                expected_revision: pod.resource_version,
                event: None,
            });
        }
        out.changes.len() > before
    }

    /// Marks the live pods whose revision has `target`'s template and
    /// variables as running `target`; says whether there were any.
    fn adopt(&self, target: Target<'_>, out: &mut Rollouts) -> bool {
        let same = |revision: u64| {
            self.deployments.iter().any(|d| {
                d.object.revision == revision
                    && d.object.template == *target.template
                    && d.object.env == target.env
            })
        };
        let before = out.changes.len();
        for pod in self.pods() {
            let p = &pod.object;
            if self.removed.contains(&p.spec.name)
                || p.draining_since_ms.is_some()
                || p.revision() == target.revision
                || !same(p.revision())
            {
                continue;
            }
            let mut adopted = p.clone();
            adopted.revision = Some(target.revision);
            out.changes.push(Change::UpdatePod {
                reason: format!(
                    "pod {} runs the template of revision {} already",
                    p.spec.name, target.revision
                ),
                pod: adopted,
                expected_revision: pod.resource_version,
                event: None,
            });
        }
        out.changes.len() > before
    }

    /// Older deployments still marked running were replaced by a newer
    /// revision.
    fn supersede(&self, latest: Option<&Versioned<Deployment>>, out: &mut Rollouts) {
        let Some(latest) = latest else {
            return;
        };
        let undone = matches!(
            latest.object.cause,
            Cause::Rollback {
                automatic: false,
                ..
            }
        );
        for record in self.deployments.iter() {
            if record.object.revision == latest.object.revision
                || record.object.status.phase != DeploymentPhase::Running
            {
                continue;
            }
            let mut status = record.object.status.clone();
            // Every replica of it ran and was ready, though no round had
            // recorded so yet: it is a revision a rollback can return to.
            let serving = self
                .pods()
                .map(|p| &p.object)
                .filter(|p| p.revision() == record.object.revision)
                .filter(|p| p.reported_ready() && p.draining_since_ms.is_none())
                .count();
            if serving >= self.service.replicas as usize && serving > 0 {
                status.phase = DeploymentPhase::Complete;
                status.reason = None;
            } else {
                status.phase = if undone {
                    DeploymentPhase::RolledBack
                } else {
                    DeploymentPhase::Cancelled
                };
                status.reason = Some(format!("replaced by revision {}", latest.object.revision));
            }
            status.ended_ms = Some(self.cluster.now_ms);
            out.changes.push(Change::WriteDeployment {
                deployment: Deployment {
                    status,
                    ..record.object.clone()
                },
                expected_revision: Some(record.resource_version),
                reason: format!(
                    "revision {} of {} replaced by {}",
                    record.object.revision, self.service.name, latest.object.revision
                ),
                event: None,
            });
        }
    }

    /// Ended revisions beyond the service's history limit go, oldest
    /// first; the target and the latest stay.
    fn forget_history(&self, target: u64, out: &mut Rollouts) {
        let limit = self.service.strategy.history_limit() as usize;
        let excess = self.deployments.len().saturating_sub(limit);
        let latest = self.deployments.last().map(|d| d.object.revision);
        let forgettable = self.deployments.iter().filter(|d| {
            d.object.status.phase.is_final()
                && d.object.revision != target
                && Some(d.object.revision) != latest
        });
        for record in forgettable.take(excess) {
            out.changes.extend(forget(
                record,
                "beyond its service's history limit",
                self.jobs,
            ));
        }
    }

    /// The state of `deployment`'s hook at `point`; a hook found over is
    /// recorded in `status`.
    fn hook(
        &self,
        point: HookPoint,
        deployment: &Deployment,
        status: &mut DeploymentStatus,
    ) -> HookStep {
        let Some(hook) = self.service.strategy.hooks.at(point) else {
            return HookStep::Done;
        };
        // A rollback never runs hooks again.
        if matches!(deployment.cause, Cause::Rollback { .. }) {
            return HookStep::Done;
        }
        if status.hooks_done.contains(&point) {
            return HookStep::Done;
        }
        let job_name = hook_job_name(&deployment.name, point);
        let shown = berth_model::project::unqualified(&job_name).to_owned();
        let Some(job) = self.jobs.get(job_name.as_str()).map(|j| &j.object) else {
            return HookStep::Waiting(
                format!("running the {point} hook (job {shown})"),
                Some(Box::new(hook_job(
                    &job_name,
                    self.service,
                    deployment,
                    point,
                ))),
            );
        };
        match job.status.phase {
            JobPhase::Succeeded => {
                status.hooks_done.push(point);
                HookStep::Done
            }
            phase if phase.is_final() => {
                if hook.failure_policy == FailurePolicy::Ignore {
                    status.hooks_done.push(point);
                    return HookStep::Done;
                }
                let why = job.status.reason.as_deref().unwrap_or("it failed");
                HookStep::Failed(format!("{point} hook job {shown} failed: {why}"))
            }
            _ => HookStep::Waiting(format!("running the {point} hook (job {shown})"), None),
        }
    }

    /// The deployment with `status`, and an event of `kind`.
    fn write(
        &self,
        deployment: &Versioned<Deployment>,
        status: DeploymentStatus,
        kind: EventKind,
        reason: String,
    ) -> Change {
        Change::WriteDeployment {
            event: Some(self.event(kind, &reason)),
            deployment: Deployment {
                status,
                ..deployment.object.clone()
            },
            expected_revision: Some(deployment.resource_version),
            reason,
        }
    }

    /// A failed deployment: recorded, and with `autoRollback` the service
    /// returns to its last complete revision as a new one.
    fn fail(
        &self,
        deployment: &Versioned<Deployment>,
        mut status: DeploymentStatus,
        why: String,
    ) -> Change {
        let name = &self.service.name;
        let record = &deployment.object;
        let last_complete = self
            .deployments
            .iter()
            .rev()
            .find(|d| d.object.status.phase == DeploymentPhase::Complete);
        let (Some(back), true) = (last_complete, self.service.strategy.auto_rollback) else {
            status.reason = Some(why.clone());
            let reason = format!(
                "rollout of {name} revision {} failed: {why}",
                record.revision
            );
            return self.write(deployment, status, EventKind::RolloutFailed, reason);
        };
        let back = &back.object;
        status.reason = Some(format!("{why}; rolled back to revision {}", back.revision));
        let mut service = self.service.clone();
        service.template = back.template.clone();
        service.env = back.env.clone();
        let latest = self.deployments.last().map_or(0, |d| d.object.revision);
        let revision = Deployment {
            name: Deployment::name_of(name, latest + 1),
            revision: latest + 1,
            template: back.template.clone(),
            env: back.env.clone(),
            cause: Cause::Rollback {
                to_revision: back.revision,
                automatic: true,
            },
            user: "berth (autoRollback)".to_owned(),
            created_ms: self.cluster.now_ms,
            status: DeploymentStatus {
                progress_ms: self.cluster.now_ms,
                ..DeploymentStatus::default()
            },
            ..back.clone()
        };
        let reason = format!(
            "rollout of {name} revision {} failed: {why}; rolled back to revision {} as revision {}",
            record.revision, back.revision, revision.revision
        );
        Change::RollBack {
            failed: Deployment {
                status,
                ..record.clone()
            },
            failed_revision: deployment.resource_version,
            service,
            service_revision: self.service_revision,
            revision,
            event: Some(self.event(EventKind::RolloutFailed, &reason)),
            reason,
        }
    }

    fn event(&self, kind: EventKind, reason: &str) -> Event {
        Event {
            time_ms: self.cluster.now_ms,
            kind,
            object: format!("service/{}", self.service.name),
            node: None,
            reason: reason.to_owned(),
        }
    }

    /// What a new pod that is not ready says of itself, for a failure.
    fn why_unready(&self, new: &[&Versioned<ClusterPod>]) -> String {
        new.iter()
            .find(|p| !p.object.reported_ready())
            .map(|p| {
                let pod = berth_model::project::unqualified(&p.object.spec.name);
                let status = p.object.status.as_ref();
                let said = status
                    .and_then(|s| s.containers.iter().find_map(|c| c.health.clone()))
                    .or_else(|| {
                        status.and_then(|s| s.start_failure.as_ref().map(|f| f.message.clone()))
                    })
                    .or_else(|| p.object.unschedulable_reason.clone())
                    .unwrap_or_else(|| "not ready".to_owned());
                format!(" ({pod}: {said})")
            })
            .unwrap_or_default()
    }

    /// `count` new pods of `target`, at the lowest free replica indexes.
    fn new_pods(&self, count: usize, target: Target<'_>, made: &[ClusterPod]) -> Vec<ClusterPod> {
        if count == 0 {
            return Vec::new();
        }
        let name = self.service.name.as_str();
        let mut used: BTreeSet<u32> = self
            .pods()
            .filter_map(|p| replica_index(name, &p.object.spec.name))
            .collect();
        used.extend(
            made.iter()
                .filter_map(|p| replica_index(name, &p.spec.name)),
        );
        let mut pods = Vec::with_capacity(count);
        let mut index = 0;
        while pods.len() < count {
            if used.insert(index) {
                pods.push(replica(self.service, target, index, self.services));
            }
            index += 1;
        }
        pods
    }

    /// A drained pod of an earlier revision, rewritten in its place to run
    /// the target: same name and node, so its volumes stay.
    fn replace_in_place(&self, pod: &Versioned<ClusterPod>, target: Target<'_>) -> Change {
        let index = replica_index(&self.service.name, &pod.object.spec.name).unwrap_or_default();
        let mut fresh = replica(self.service, target, index, self.services);
        fresh.spec.name = pod.object.spec.name.clone();
        fresh.node = pod.object.node.clone();
        Change::UpdatePod {
            reason: format!(
                "pod {} runs revision {} of {} in its place",
                pod.object.spec.name, target.revision, self.service.name
            ),
            pod: fresh,
            expected_revision: pod.resource_version,
            event: None,
        }
    }
}

/// Whether a deployment's reason is the note that its project's quota
/// held its surge back: it stays for the rest of the rollout.
fn is_quota_note(reason: &str) -> bool {
    reason.starts_with("surging ")
}

/// Whether a deployment in `phase` hands its service back to the last
/// complete revision.
fn rolled_away(phase: DeploymentPhase) -> bool {
    matches!(
        phase,
        DeploymentPhase::Failed | DeploymentPhase::Cancelled | DeploymentPhase::RolledBack
    )
}

/// Whether a pod of the target counts as available: ready, for at least
/// `min_ready_ms`.
fn available(pod: &ClusterPod, min_ready_ms: u64, now: u64) -> bool {
    pod.reported_ready()
        && pod
            .ready_since_ms
            .is_some_and(|since| since + min_ready_ms <= now)
}

/// `pod` taken out of traffic, still running, before it stops.
fn draining(pod: &Versioned<ClusterPod>, now: u64, target: u64) -> Change {
    let mut drained = pod.object.clone();
    drained.draining_since_ms = Some(now);
    Change::UpdatePod {
        reason: format!(
            "pod {} drains (its service's target is revision {target})",
            pod.object.spec.name
        ),
        pod: drained,
        expected_revision: pod.resource_version,
        event: None,
    }
}

/// A deployment record going, with its hooks' jobs.
fn forget(
    record: &Versioned<Deployment>,
    why: &str,
    jobs: &BTreeMap<&str, &Versioned<Job>>,
) -> Vec<Change> {
    let name = &record.object.name;
    let hooks = [HookPoint::Pre, HookPoint::Post]
        .into_iter()
        .filter_map(|point| jobs.get(hook_job_name(name, point).as_str()))
        .map(|job| Change::DeleteJob {
            name: job.object.name.clone(),
            expected_revision: job.resource_version,
            reason: format!("hook job {} goes with deployment {name}", job.object.name),
        });
    std::iter::once(Change::DeleteDeployment {
        name: name.clone(),
        expected_revision: record.resource_version,
        reason: format!("deployment {name} goes: {why}"),
    })
    .chain(hooks)
    .collect()
}

/// The job of deployment `deployment`'s hook at `point`.
fn hook_job_name(deployment: &str, point: HookPoint) -> String {
    format!("{deployment}-{point}")
}

/// The job of `deployment`'s hook at `point`: the hook's image and command
/// in a pod like the service's first container (its variables, secrets,
/// resources and volumes), run once.
fn hook_job(name: &str, service: &Service, deployment: &Deployment, point: HookPoint) -> Job {
    let hook = service
        .strategy
        .hooks
        .at(point)
        .expect("a hook's job is made only for a hook");
    let mut template = deployment.template.clone();
    template.name = name.to_owned();
    template.containers.truncate(1);
    if let Some(container) = template.containers.first_mut() {
        container.name = "hook".to_owned();
        container.image = hook.image.clone();
        container.command = hook.command.clone();
        container.args.clear();
        container.ports.clear();
        container.probes = Default::default();
        container.restart = RestartPolicy::Never;
        add_link_env(&mut template, &deployment.env, &[]);
        add_link_env(&mut template, &hook.env, &[]);
    }
    let job = serde_json::json!({
        "name": name,
        "template": template,
        "backoffLimit": if hook.failure_policy == FailurePolicy::Retry { 3 } else { 1 },
    });
    serde_json::from_value::<Job>(job)
        .expect("a hook's job is a job")
        .completed()
}

/// The pod object of replica `index` of a service at `target`, with its
/// links and their variables (`DB_HOST`, ... and what the linked services
/// publish; the template's own values win). `services` finds what linked
/// services publish.
fn replica(
    service: &Service,
    target: Target<'_>,
    index: u32,
    services: &ServicesByName<'_>,
) -> ClusterPod {
    let spec = service.replica_spec(target.template, target.env, index, |linked| {
        services
            .get(linked)
            .map(|s| s.object.publish.as_slice())
            .unwrap_or_default()
    });
    ClusterPod {
        service: Some(service.name.clone()),
        links: service.links.clone(),
        egress: service.egress,
        revision: Some(target.revision),
        ..ClusterPod::unplaced(spec)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::api::Versioned;
    use berth_model::deployment::{Amount, Cause, DeploymentPhase, FailurePolicy, Hook, DRAIN_MS};
    use berth_model::{ClusterPod, Deployment, JobPhase, PodStatus};

    use super::super::testing::*;
    use super::super::{plan, Cluster};

    /// Marks the placed pods that `ready` picks as reported running and
    /// ready for a long time; the others as running but not ready.
    fn report(cluster: &mut Cluster, ready: impl Fn(&ClusterPod) -> bool) {
        for pod in &mut cluster.pods {
            let p = &mut Arc::make_mut(pod).object;
            if p.node.is_none() {
                continue;
            }
            let is_ready = ready(p);
            let status: PodStatus = serde_json::from_value(serde_json::json!({
                "name": p.spec.name, "phase": "Running", "slice": "s", "spec": p.spec,
                "containers": [{"name": "app", "unit": "u", "state": "active",
                    "subState": "running", "restarts": 0, "hostPorts": [], "ready": is_ready,
                    "health": if is_ready { "ready" } else { "not ready: probe failed" }}],
            }))
            .unwrap();
            p.status = Some(status);
            p.ready_since_ms = is_ready.then(|| p.ready_since_ms.unwrap_or(cluster.now_ms));
        }
    }

    /// A new template for the service, as `PUT` records it.
    fn change_image(cluster: &mut Cluster, image: &str) {
        first_service(cluster).template.containers[0].image = image.to_owned();
        let revision = cluster.deployments.last().map_or(0, |d| d.object.revision) + 1;
        let service = &cluster.services[0].object;
        let deployment = Deployment::begin(service, revision, Cause::ConfigChange, "test", NOW);
        cluster.deployments.push(Arc::new(Versioned {
            resource_version: 1,
            object: deployment,
        }));
    }

    fn available(cluster: &Cluster) -> usize {
        cluster
            .pods
            .iter()
            .filter(|p| p.object.reported_ready() && p.object.draining_since_ms.is_none())
            .count()
    }

    fn revisions(cluster: &Cluster) -> Vec<u64> {
        let mut revisions: Vec<u64> = cluster.pods.iter().map(|p| p.object.revision()).collect();
        revisions.sort();
        revisions
    }

    fn phase(cluster: &Cluster, revision: u64) -> DeploymentPhase {
        let deployment = cluster
            .deployments
            .iter()
            .find(|d| d.object.revision == revision);
        deployment.unwrap().object.status.phase
    }

    /// Rounds a second apart, with `ready` deciding which pods are ready,
    /// until `done` or 100 rounds; checks after each that `min` pods stay
    /// available.
    fn run(
        cluster: &mut Cluster,
        min: usize,
        ready: impl Fn(&ClusterPod) -> bool,
        done: impl Fn(&Cluster) -> bool,
    ) {
        for _ in 0..100 {
            step(cluster);
            report(cluster, &ready);
            assert!(
                available(cluster) >= min,
                "{} available: {:?}",
                available(cluster),
                revisions(cluster)
            );
            if done(cluster) {
                return;
            }
            cluster.now_ms += 1000;
        }
        panic!("never done: {:?}", cluster.deployments);
    }

    fn steady(replicas: u32) -> Cluster {
        let mut cluster = cluster(
            vec![service("web", replicas, false)],
            ready(&["h1", "h2", "h3"]),
        );
        run(
            &mut cluster,
            0,
            |_| true,
            |c| available(c) == replicas as usize,
        );
        cluster
    }

    #[test]
    fn a_rolling_update_never_drops_below_the_replicas_and_ends_complete() {
        let mut cluster = steady(4);
        change_image(&mut cluster, "local/httpd");
        let mut most = 0;
        run(
            &mut cluster,
            4,
            |_| true,
            |c| phase(c, 2) == DeploymentPhase::Complete,
        );
        for _ in 0..3 {
            most = most.max(cluster.pods.len());
            step(&mut cluster);
            cluster.now_ms += DRAIN_MS;
        }
        assert!(
            most <= 5 + 1,
            "surge of 25% of 4 is one more pod (plus draining)"
        );
        assert_eq!(revisions(&cluster), [2, 2, 2, 2]);
        assert_eq!(plan(&cluster), [], "a complete rollout rests");
    }

    #[test]
    fn the_next_wave_starts_in_the_round_the_last_one_lets_old_pods_drain() {
        let mut cluster = steady(12);
        change_image(&mut cluster, "local/httpd");
        let new = |c: &Cluster| c.pods.iter().filter(|p| p.object.revision() == 2).count();
        let draining = |c: &Cluster| {
            c.pods
                .iter()
                .filter(|p| p.object.draining_since_ms.is_some())
                .count()
        };
        step(&mut cluster);
        assert_eq!((new(&cluster), draining(&cluster)), (3, 0), "25% of 12");
        report(&mut cluster, |_| true);
        cluster.now_ms += 1000;
        step(&mut cluster);
        assert_eq!(
            (new(&cluster), draining(&cluster)),
            (6, 3),
            "three old pods drain and three new ones start in the same round"
        );
        assert_eq!(
            cluster.pods.len() - draining(&cluster),
            15,
            "the surge still holds"
        );
        assert!(available(&cluster) >= 12);
    }

    #[test]
    fn a_rollout_without_progress_fails_and_rolls_back_by_itself() {
        let mut cluster = steady(4);
        first_service(&mut cluster)
            .strategy
            .progress_deadline_seconds = Some(20);
        first_service(&mut cluster).strategy.auto_rollback = true;
        change_image(&mut cluster, "local/broken");
        let started = cluster.now_ms;
        run(
            &mut cluster,
            4,
            |p| p.revision() != 2,
            |c| phase(c, 2) == DeploymentPhase::Failed,
        );
        assert!(
            cluster.now_ms - started <= 22_000,
            "failed within the deadline and a round"
        );
        let failed = &cluster.deployments[1].object.status;
        assert!(
            failed
                .reason
                .as_deref()
                .unwrap()
                .contains("rolled back to revision 1"),
            "{failed:?}"
        );
        let back = &cluster.deployments[2].object;
        assert_eq!(
            back.cause,
            Cause::Rollback {
                to_revision: 1,
                automatic: true
            }
        );
        assert_eq!(
            cluster.services[0].object.template.containers[0].image,
            "local/busybox"
        );
        run(
            &mut cluster,
            4,
            |p| p.revision() != 2,
            |c| phase(c, 3) == DeploymentPhase::Complete,
        );
        assert!(cluster
            .pods
            .iter()
            .all(|p| p.object.spec.containers[0].image == "local/busybox"));
    }

    #[test]
    fn recreate_replaces_each_pod_in_its_place() {
        let mut cluster = cluster(vec![service("db", 1, true)], ready(&["h1", "h2"]));
        run(&mut cluster, 0, |_| true, |c| available(c) == 1);
        let node = cluster.pods[0].object.node.clone();
        change_image(&mut cluster, "local/postgres");
        run(
            &mut cluster,
            0,
            |_| true,
            |c| phase(c, 2) == DeploymentPhase::Complete,
        );
        let pod = &cluster.pods[0].object;
        assert_eq!(
            (pod.spec.name.as_str(), &pod.node, pod.revision()),
            ("db-0", &node, 2)
        );
    }

    #[test]
    fn a_canary_waits_for_its_promotion() {
        let mut cluster = steady(4);
        first_service(&mut cluster).strategy.canary = 1;
        first_service(&mut cluster).strategy.max_unavailable = Some(Amount::Count(0));
        change_image(&mut cluster, "local/httpd");
        run(
            &mut cluster,
            4,
            |_| true,
            |c| {
                c.deployments[1]
                    .object
                    .status
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("canary"))
            },
        );
        for _ in 0..30 {
            step(&mut cluster);
            cluster.now_ms += 1000;
        }
        assert_eq!(
            revisions(&cluster),
            [1, 1, 1, 1, 2],
            "one canary beside the old"
        );
        assert_eq!(
            phase(&cluster, 2),
            DeploymentPhase::Running,
            "no deadline while it waits"
        );
        deployment_at(&mut cluster, 1).status.promoted = true;
        run(
            &mut cluster,
            4,
            |_| true,
            |c| phase(c, 2) == DeploymentPhase::Complete,
        );
        assert_eq!(revisions(&cluster), [2, 2, 2, 2]);
    }

    #[test]
    fn a_failed_pre_hook_aborts_and_the_old_revision_serves() {
        let mut cluster = steady(2);
        first_service(&mut cluster).strategy.hooks.pre = Some(Hook {
            image: "local/busybox".to_owned(),
            command: vec!["false".to_owned()],
            env: vec![],
            failure_policy: FailurePolicy::Abort,
        });
        change_image(&mut cluster, "local/httpd");
        step(&mut cluster);
        assert_eq!(cluster.jobs.len(), 1);
        assert_eq!(cluster.jobs[0].object.name, "web-2-pre");
        assert_eq!(revisions(&cluster), [1, 1], "nothing new before the hook");
        cluster.jobs[0].object.status.phase = JobPhase::Failed;
        cluster.jobs[0].object.status.reason = Some("exit code 1".to_owned());
        run(
            &mut cluster,
            2,
            |_| true,
            |c| phase(c, 2) == DeploymentPhase::Failed,
        );
        let reason = cluster.deployments[1].object.status.reason.clone().unwrap();
        assert_eq!(reason, "pre hook job web-2-pre failed: exit code 1");
        for _ in 0..5 {
            step(&mut cluster);
            cluster.now_ms += 1000;
        }
        assert_eq!(revisions(&cluster), [1, 1]);
    }

    #[test]
    fn a_wait_ready_link_holds_new_pods_until_its_service_is_ready() {
        let mut web = service("web", 2, false);
        web.object.links = vec![berth_model::Link {
            service: "db".to_owned(),
            port: 5432,
            local_port: None,
            address: None,
            wait_ready: true,
        }];
        let mut cluster = cluster(vec![web, service("db", 1, false)], ready(&["h1", "h2"]));
        for _ in 0..3 {
            step(&mut cluster);
            report(&mut cluster, |p| p.service.as_deref() != Some("db"));
            cluster.now_ms += 1000;
        }
        let waiting: Vec<_> = cluster
            .pods
            .iter()
            .filter(|p| p.object.service.as_deref() == Some("web"))
            .map(|p| (p.object.node.clone(), p.object.waiting_for.clone()))
            .collect();
        assert_eq!(waiting.len(), 2, "{waiting:?}");
        for (node, why) in &waiting {
            assert_eq!(node, &None);
            assert_eq!(
                why.as_deref(),
                Some("waiting for db: no ready endpoint yet (a --wait-ready link)")
            );
        }
        run(&mut cluster, 0, |_| true, |c| available(c) == 3);
        assert!(cluster.pods.iter().all(|p| p.object.waiting_for.is_none()));
    }

    #[test]
    fn a_rollout_surges_only_within_its_projects_quota() {
        let mut cluster = steady(4);
        let quota = berth_model::quota::Quota {
            pods: Some(4),
            ..Default::default()
        };
        cluster.quotas.insert("default".to_owned(), quota);
        change_image(&mut cluster, "local/httpd");
        let mut said = None;
        for _ in 0..100 {
            step(&mut cluster);
            report(&mut cluster, |_| true);
            let running = cluster
                .pods
                .iter()
                .filter(|p| p.object.draining_since_ms.is_none())
                .count();
            assert!(running <= 4, "over the quota: {:?}", revisions(&cluster));
            said = said.or(cluster.deployments[1].object.status.reason.clone());
            if phase(&cluster, 2) == DeploymentPhase::Complete {
                break;
            }
            cluster.now_ms += 1000;
        }
        assert_eq!(phase(&cluster, 2), DeploymentPhase::Complete);
        assert_eq!(
            said.as_deref(),
            Some(
                "surging 0 instead of 1 within project default's pods quota: \
                 replacing one pod at a time"
            )
        );
    }

    #[test]
    fn a_revision_replaced_before_its_round_recorded_it_complete_is_complete() {
        let mut cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        deployment_at(&mut cluster, 0).status.phase = DeploymentPhase::Running;
        step(&mut cluster);
        report(&mut cluster, |_| true);
        // A change lands before the round that would mark revision 1
        // complete.
        change_image(&mut cluster, "local/httpd");
        step(&mut cluster);
        assert_eq!(phase(&cluster, 1), DeploymentPhase::Complete);
    }
}
