//! Typed changes: what the planners decide, before anything is encoded for
//! the store. Each carries why (for the log) and the event that tells users
//! about it; [`commit`](super::commit) turns them into store operations.

use berth_model::{
    Build, BuildConfig, ClusterPod, CronJob, Deployment, Event, EventKind, ImageStream, Job, Node,
    Service,
};

/// One change to the cluster's objects, why, and the event that records it.
// A round makes and commits each change once: boxing the big ones (a
// rollback carries two deployments and a service) would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new pod, as it is written: a replica bound to its node, or saying
    /// why it fits nowhere.
    CreatePod {
        /// The pod.
        pod: ClusterPod,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// An existing pod goes to `node`: placed for the first time, placed
    /// again after failing to start, or moved on request. The commit sets
    /// its node and clears why it was unschedulable; everything else is
    /// written as `pod` holds it.
    BindPod {
        /// The pod as it is to be written, apart from its binding.
        pod: ClusterPod,
        /// Where it goes.
        node: String,
        /// The revision it was read at: the bind fails if it moved on.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// An existing pod rewritten in place: why it fits nowhere, the links
    /// its service has now, or the status its node reports.
    UpdatePod {
        /// The pod as it is to be written.
        pod: ClusterPod,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A pod goes away: its node stops it.
    DeletePod {
        /// The pod's name.
        name: String,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A job's step, committed as one: its status written, the pods of
    /// attempts that ended (or of a job that ended) removed, and new
    /// attempts' pods made, not yet placed.
    AdvanceJob {
        /// The job as it is to be written.
        job: Job,
        /// The revision it was read at.
        expected_revision: u64,
        /// Pods removed, each with the revision it was read at.
        stop: Vec<(String, u64)>,
        /// New attempts' pods.
        start: Vec<ClusterPod>,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`: the job's end.
        event: Option<Event>,
    },
    /// A cron job's step, committed as one: its status written (the slot
    /// taken), its new run's job made, running ones cancelled (`replace`)
    /// and old ended ones removed.
    AdvanceCron {
        /// The cron job as it is to be written.
        cron: CronJob,
        /// The revision it was read at.
        expected_revision: u64,
        /// The job of the slot taken, if it runs.
        start: Option<Job>,
        /// Jobs marked cancelled, each with the revision it was read at.
        cancel: Vec<(Job, u64)>,
        /// Ended jobs removed, each with the revision it was read at.
        forget: Vec<(String, u64)>,
        /// Why, for the log.
        reason: String,
        /// What users see of it: a slot skipped or missed.
        event: Option<Event>,
    },
    /// A job goes, with its pods (its cron job went).
    DeleteJob {
        /// The job.
        name: String,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
    },
    /// A deployment written: its status advanced (`expected_revision` is
    /// the revision it was read at) or, with none, the record of a revision
    /// made.
    WriteDeployment {
        /// The deployment as it is to be written.
        deployment: Deployment,
        /// The revision it was read at; `None` creates it.
        expected_revision: Option<u64>,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A failed rollout returns to an earlier revision, committed as one:
    /// the failed deployment's status, the service's template returned to
    /// the earlier one, and the new revision that records the rollback.
    RollBack {
        /// The failed deployment, as it is to be written.
        failed: Deployment,
        /// The revision it was read at.
        failed_revision: u64,
        /// The service with the earlier template.
        service: Service,
        /// The revision the service was read at.
        service_revision: u64,
        /// The new revision.
        revision: Deployment,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A deployment record goes: beyond its service's history, or its
    /// service went.
    DeleteDeployment {
        /// Its name.
        name: String,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
    },
    /// An image stream's tags moved: aliases following their sources.
    WriteImageStream {
        /// The stream as it is to be written.
        stream: ImageStream,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A service follows the tag its image-change trigger names, committed
    /// as one: its container's image set, and the revision that records it.
    FollowImage {
        /// The service with the tag's image.
        service: Service,
        /// The revision the service was read at.
        service_revision: u64,
        /// The new revision.
        deployment: Deployment,
        /// Why, for the log.
        reason: String,
    },
    /// A job made: a rollout's hook.
    CreateJob {
        /// The job.
        job: Job,
        /// Why, for the log.
        reason: String,
    },
    /// A build's step, committed as one: its record written, and its job
    /// made (it starts), cancelled (on request), or removed (it ended).
    AdvanceBuild {
        /// The build as it is to be written.
        build: Build,
        /// The revision it was read at.
        expected_revision: u64,
        /// The job that runs it, made now.
        create_job: Option<Job>,
        /// Its job, rewritten (cancelled), with the revision read.
        update_job: Option<(Job, u64)>,
        /// Its job removed, with the revision read: the build ended.
        delete_job: Option<(String, u64)>,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A new build of a config (its builder image moved), with the
    /// config's count of builds.
    StartBuild {
        /// The config with its new count.
        config: BuildConfig,
        /// The revision it was read at.
        config_revision: u64,
        /// The build.
        build: Build,
        /// Why, for the log.
        reason: String,
        /// What users see of it in `berth events`.
        event: Option<Event>,
    },
    /// A build goes: past its config's history, or its config is gone.
    DeleteBuild {
        /// The build's name.
        name: String,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
    },
    /// A node's object rewritten: the capacity its heartbeat reports.
    UpdateNode {
        /// The node as it is to be written.
        node: Node,
        /// The revision it was read at.
        expected_revision: u64,
        /// Why, for the log.
        reason: String,
    },
}

impl Change {
    /// Deleting `pod`, read at `expected_revision`, because of `kind`, with
    /// the event users see: the log line and the event share one reason.
    pub fn delete_pod(
        now_ms: u64,
        pod: &ClusterPod,
        expected_revision: u64,
        kind: EventKind,
        reason: String,
    ) -> Self {
        let name = pod.spec.name.clone();
        let event = pod_event(now_ms, kind, &name, pod.node.as_deref(), &reason);
        Self::DeletePod {
            name,
            expected_revision,
            reason,
            event: Some(event),
        }
    }

    /// Why, for the log.
    pub fn reason(&self) -> &str {
        match self {
            Self::CreatePod { reason, .. }
            | Self::BindPod { reason, .. }
            | Self::UpdatePod { reason, .. }
            | Self::DeletePod { reason, .. }
            | Self::AdvanceJob { reason, .. }
            | Self::AdvanceCron { reason, .. }
            | Self::DeleteJob { reason, .. }
            | Self::WriteDeployment { reason, .. }
            | Self::RollBack { reason, .. }
            | Self::DeleteDeployment { reason, .. }
            | Self::CreateJob { reason, .. }
            | Self::WriteImageStream { reason, .. }
            | Self::FollowImage { reason, .. }
            | Self::AdvanceBuild { reason, .. }
            | Self::StartBuild { reason, .. }
            | Self::DeleteBuild { reason, .. }
            | Self::UpdateNode { reason, .. } => reason,
        }
    }

    /// The event that records the change, if users are told of it.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Self::CreatePod { event, .. }
            | Self::BindPod { event, .. }
            | Self::UpdatePod { event, .. }
            | Self::DeletePod { event, .. }
            | Self::AdvanceJob { event, .. }
            | Self::AdvanceCron { event, .. }
            | Self::WriteDeployment { event, .. }
            | Self::RollBack { event, .. }
            | Self::WriteImageStream { event, .. }
            | Self::AdvanceBuild { event, .. }
            | Self::StartBuild { event, .. } => event.as_ref(),
            Self::UpdateNode { .. }
            | Self::DeleteBuild { .. }
            | Self::DeleteJob { .. }
            | Self::DeleteDeployment { .. }
            | Self::FollowImage { .. }
            | Self::CreateJob { .. } => None,
        }
    }

    /// Whether the change makes work that only the next round acts on: a
    /// cron slot's new job (whose pods the next round makes) or a job's
    /// new attempts (which the next round places).
    pub fn hands_on(&self) -> bool {
        match self {
            Self::AdvanceCron { start, .. } => start.is_some(),
            Self::AdvanceJob { start, .. } => !start.is_empty(),
            Self::CreateJob { .. } | Self::StartBuild { .. } => true,
            Self::AdvanceBuild { create_job, .. } => create_job.is_some(),
            _ => false,
        }
    }

    /// Whether a plan of the cluster with the change applied has nothing
    /// more to do for it at once: a new pod, or a pod placed. After a
    /// round of only such changes, its own commits do not wake the next
    /// round (which would plan all over again to find nothing); after any
    /// other (a revision recorded, a pod drained or deleted, a job's step)
    /// they do, since the next step may follow at once.
    pub fn settles(&self) -> bool {
        matches!(self, Self::CreatePod { .. } | Self::BindPod { .. })
    }

    /// The name of the pod the change deletes, if it deletes one.
    pub fn deleted_pod(&self) -> Option<&str> {
        match self {
            Self::DeletePod { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The pods a job's step removes.
    pub fn stopped_pods(&self) -> Vec<String> {
        match self {
            Self::AdvanceJob { stop, .. } => stop.iter().map(|(pod, _)| pod.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// The pod as the change writes it, if it writes one.
    pub fn written_pod(&self) -> Option<ClusterPod> {
        match self {
            Self::CreatePod { pod, .. } | Self::UpdatePod { pod, .. } => Some(pod.clone()),
            Self::BindPod { pod, node, .. } => Some(bound(pod, node)),
            Self::DeletePod { .. }
            | Self::AdvanceJob { .. }
            | Self::AdvanceCron { .. }
            | Self::DeleteJob { .. }
            | Self::WriteDeployment { .. }
            | Self::RollBack { .. }
            | Self::DeleteDeployment { .. }
            | Self::CreateJob { .. }
            | Self::WriteImageStream { .. }
            | Self::FollowImage { .. }
            | Self::AdvanceBuild { .. }
            | Self::StartBuild { .. }
            | Self::DeleteBuild { .. }
            | Self::UpdateNode { .. } => None,
        }
    }
}

/// `pod` bound to `node`: it has a place, so nothing says it has none.
pub(super) fn bound(pod: &ClusterPod, node: &str) -> ClusterPod {
    let mut pod = pod.clone();
    pod.node = Some(node.to_owned());
    pod.unschedulable_reason = None;
    pod
}

/// An event about pod `pod` at `now_ms`.
pub fn pod_event(
    now_ms: u64,
    kind: EventKind,
    pod: &str,
    node: Option<&str>,
    reason: impl Into<String>,
) -> Event {
    Event {
        time_ms: now_ms,
        kind,
        object: format!("pod/{pod}"),
        node: node.map(str::to_owned),
        reason: reason.into(),
    }
}
