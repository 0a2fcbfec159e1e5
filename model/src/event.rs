//! Cluster events: what happened to which object, when and why. The master
//! records them as it acts (a pod placed, evicted or deleted, a node gone
//! silent) so that `berth events` can tell the story afterwards, or follow
//! it live.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum EventKind {
    /// A node's heartbeats arrive (again).
    NodeReady,
    /// A node sent no heartbeat within the grace period.
    NodeNotReady,
    /// A node's heartbeats arrive but its container engine does not answer
    /// (Docker restarting): its pods are kept, not evicted.
    NodeEngineUnavailable,
    /// More than the configured share of nodes went silent at once: the
    /// master is more likely cut off than they are dead, so no pod is
    /// evicted until they are back.
    EvictionsHeld,
    /// Evictions are allowed again after being held back.
    EvictionsResumed,
    /// A pod was assigned to a node.
    PodScheduled,
    /// A pod fits on no node; the reason says why.
    PodUnschedulable,
    /// A pod was taken off a node that is not ready, to be replaced
    /// elsewhere.
    PodEvicted,
    /// A pod was deleted because its service shrank or went away.
    PodDeleted,
    /// A service's replica count was changed.
    ServiceScaled,
    /// The endpoints behind a link changed and the linking pods were
    /// rewired (without a restart).
    LinkRewired,
    /// A container started (its unit's main process started it).
    ContainerStarted,
    /// A container ended on its own; the reason carries the exit status.
    ContainerExited,
    /// A container was killed for going over its memory limit.
    #[serde(rename = "ContainerOOMKilled")]
    ContainerOomKilled,
    /// A container's liveness or startup probe failed; it is being ended.
    ContainerUnhealthy,
    /// systemd restarted a container's unit; the reason says why.
    ContainerRestarted,
    /// A pod's image could not be pulled on its node; the reason carries
    /// the registry's message and when the node tries again.
    ImagePullFailed,
    /// A pod's fixed host port is held on its node (by another pod or a
    /// process of the host).
    HostPortConflict,
    /// A pod's container could not be created or started on its node; the
    /// reason carries Docker's or systemd's message.
    StartFailed,
    /// A node refused a pod it was assigned (a host path through a
    /// symlink, a host port outside its range); the reason says why.
    PodRefused,
    /// A policy webhook could not be delivered, retries included.
    WebhookFailed,
    /// A router could not serve a route (HAProxy refused its part of the
    /// configuration); the other routes keep being served.
    RouteRejected,
    /// A project was removed, with everything in it.
    ProjectDeleted,
    /// A job ended: `completions` pods succeeded.
    JobSucceeded,
    /// A job ended without succeeding: too many failed attempts, its
    /// deadline, or a failed prerequisite; the reason says which.
    JobFailed,
    /// A job was cancelled.
    JobCancelled,
    /// A cron job's slot was skipped: its last run still ran (`forbid`).
    CronJobSkipped,
    /// Cron job slots were missed: past their starting deadline when the
    /// master got to them.
    CronJobMissed,
    /// The admin or a user changed something through the API: who, the
    /// method and route in the reason.
    Audit,
    /// Every replica of a service runs its new revision and is available.
    RolloutComplete,
    /// A rollout failed (no progress, or a hook aborted it); the reason
    /// says why and whether it was rolled back.
    RolloutFailed,
    /// A rollout waits: for a canary's promotion, or while paused.
    RolloutWaiting,
    /// A pod waits to be placed until a service it links to with
    /// `--wait-ready` has a ready endpoint.
    PodWaiting,
    /// An image stream's tag points at a new image (tag, webhook, alias).
    ImageTagged,
    /// A build's pod started (its job placed and running).
    BuildStarted,
    /// A build pushed its image.
    BuildComplete,
    /// A build failed: its step, its input or its push; the reason says.
    BuildFailed,
    /// A build was cancelled, or superseded by a newer one.
    BuildCancelled,
    /// A move with data began: the pod stops on its node.
    MoveStarted,
    /// A move's volumes arrived on the target, checksum verified.
    MoveCopied,
    /// A moved pod runs on its new node (and the source's copy is gone,
    /// or kept on request).
    MoveFinished,
    /// A move's copy attempt failed (retried), or the move was failed
    /// back: the pod stays on its node with its data.
    MoveFailed,
}

impl EventKind {
    /// Every kind, in declaration order (for help texts and errors).
    pub const ALL: [EventKind; 42] = [
        EventKind::NodeReady,
        EventKind::NodeNotReady,
        EventKind::NodeEngineUnavailable,
        EventKind::EvictionsHeld,
        EventKind::EvictionsResumed,
        EventKind::PodScheduled,
        EventKind::PodUnschedulable,
        EventKind::PodEvicted,
        EventKind::PodDeleted,
        EventKind::ServiceScaled,
        EventKind::LinkRewired,
        EventKind::ContainerStarted,
        EventKind::ContainerExited,
        EventKind::ContainerOomKilled,
        EventKind::ContainerUnhealthy,
        EventKind::ContainerRestarted,
        EventKind::ImagePullFailed,
        EventKind::HostPortConflict,
        EventKind::StartFailed,
        EventKind::PodRefused,
        EventKind::WebhookFailed,
        EventKind::RouteRejected,
        EventKind::ProjectDeleted,
        EventKind::JobSucceeded,
        EventKind::JobFailed,
        EventKind::JobCancelled,
        EventKind::CronJobSkipped,
        EventKind::CronJobMissed,
        EventKind::Audit,
        EventKind::RolloutComplete,
        EventKind::RolloutFailed,
        EventKind::RolloutWaiting,
        EventKind::PodWaiting,
        EventKind::ImageTagged,
        EventKind::BuildStarted,
        EventKind::BuildComplete,
        EventKind::BuildFailed,
        EventKind::BuildCancelled,
        EventKind::MoveStarted,
        EventKind::MoveCopied,
        EventKind::MoveFinished,
        EventKind::MoveFailed,
    ];

    /// The kind as the API spells it (`PodScheduled`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeReady => "NodeReady",
            EventKind::NodeNotReady => "NodeNotReady",
            EventKind::NodeEngineUnavailable => "NodeEngineUnavailable",
            EventKind::EvictionsHeld => "EvictionsHeld",
            EventKind::EvictionsResumed => "EvictionsResumed",
            EventKind::PodScheduled => "PodScheduled",
            EventKind::PodUnschedulable => "PodUnschedulable",
            EventKind::PodEvicted => "PodEvicted",
            EventKind::PodDeleted => "PodDeleted",
            EventKind::ServiceScaled => "ServiceScaled",
            EventKind::LinkRewired => "LinkRewired",
            EventKind::ContainerStarted => "ContainerStarted",
            EventKind::ContainerExited => "ContainerExited",
            EventKind::ContainerOomKilled => "ContainerOOMKilled",
            EventKind::ContainerUnhealthy => "ContainerUnhealthy",
            EventKind::ContainerRestarted => "ContainerRestarted",
            EventKind::ImagePullFailed => "ImagePullFailed",
            EventKind::HostPortConflict => "HostPortConflict",
            EventKind::StartFailed => "StartFailed",
            EventKind::PodRefused => "PodRefused",
            EventKind::WebhookFailed => "WebhookFailed",
            EventKind::RouteRejected => "RouteRejected",
            EventKind::ProjectDeleted => "ProjectDeleted",
            EventKind::JobSucceeded => "JobSucceeded",
            EventKind::JobFailed => "JobFailed",
            EventKind::JobCancelled => "JobCancelled",
            EventKind::CronJobSkipped => "CronJobSkipped",
            EventKind::CronJobMissed => "CronJobMissed",
            EventKind::Audit => "Audit",
            EventKind::RolloutComplete => "RolloutComplete",
            EventKind::RolloutFailed => "RolloutFailed",
            EventKind::RolloutWaiting => "RolloutWaiting",
            EventKind::PodWaiting => "PodWaiting",
            EventKind::ImageTagged => "ImageTagged",
            EventKind::BuildStarted => "BuildStarted",
            EventKind::BuildComplete => "BuildComplete",
            EventKind::BuildFailed => "BuildFailed",
            EventKind::BuildCancelled => "BuildCancelled",
            EventKind::MoveStarted => "MoveStarted",
            EventKind::MoveCopied => "MoveCopied",
            EventKind::MoveFinished => "MoveFinished",
            EventKind::MoveFailed => "MoveFailed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {:?}; expected one of {}", .0, kind_list())]
pub struct UnknownEventKind(pub String);

fn kind_list() -> String {
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    /// Parses a kind; case does not matter, so `podscheduled` works on the
    /// command line.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownEventKind(text.to_owned()))
    }
}

/// One thing that happened in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When, in milliseconds since the Unix epoch (the master's clock).
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The object it happened to, as `kind/name`: `pod/web-1`, `node/h3`,
    /// `service/web`.
    pub object: String,
    /// The node involved, if any: where a pod was placed or evicted from,
    /// or the node itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why, in words.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_camel_case_json_without_an_absent_node() {
        let event = Event {
            time_ms: 1_700_000_000_000,
            kind: EventKind::PodScheduled,
            object: "pod/web-1".to_owned(),
            node: None,
            reason: "1/1 nodes fit".to_owned(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "timeMs": 1_700_000_000_000u64,
                "kind": "PodScheduled",
                "object": "pod/web-1",
                "reason": "1/1 nodes fit"
            })
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    #[test]
    fn kinds_parse_as_they_print_in_any_case() {
        for kind in EventKind::ALL {
            assert_eq!(kind.to_string().parse::<EventKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.to_string())
            );
        }
        assert_eq!("nodenotready".parse(), Ok(EventKind::NodeNotReady));
        let error = "Exploded".parse::<EventKind>().unwrap_err().to_string();
        assert!(
            error.starts_with("unknown event type \"Exploded\""),
            "{error}"
        );
        assert!(error.contains("PodEvicted"), "{error}");
    }
}
