//! Moves with data: a stateful pod's named volumes go with it, streamed
//! from its node's agent to the target's. The master only keeps the move's
//! record on the pod (see [`berth_model::volume_move`]) and advances it; the
//! nodes read their part from their assignments and the source reports
//! back. Pure: [`begin`], [`apply_report`] and [`plan`] return the pod as it
//! is to be written, with the event that tells users.

use berth_model::api::Versioned;
use berth_model::{ClusterPod, Event, EventKind, MovePhase, MoveReport, Node, PodMove};

use super::change::{pod_event, Change};
use super::pods::PodIndex;
use super::Cluster;

/// How long a move may go without news from its source while copying
/// before it is failed back: the pod restarts on its source, data intact.
pub const MOVE_STALL_MS: u64 = 120_000;

/// Whether `pod` has named volumes, whose data a move carries.
pub fn carries_data(pod: &ClusterPod) -> bool {
    pod.spec.volumes.iter().any(berth_model::Volume::is_named)
}

/// The pod with its move begun from `from` to `to`: it stays bound to its
/// source, which stops it (keeping its volumes) and then copies them.
pub fn begin(
    pod: &ClusterPod,
    from: &str,
    to: &Node,
    keep_source: bool,
    now_ms: u64,
) -> (ClusterPod, Event) {
    let mut moving = pod.clone();
    moving.moving = Some(PodMove {
        from: from.to_owned(),
        to: to.name.clone(),
        to_address: to.address.clone(),
        phase: MovePhase::Stopping,
        keep_source,
        started_ms: now_ms,
        updated_ms: now_ms,
        bytes_copied: 0,
        rate_bytes_per_sec: 0,
        attempts: 0,
        checksum: None,
        last_error: None,
    });
    let event = pod_event(
        now_ms,
        EventKind::MoveStarted,
        &pod.spec.name,
        Some(from),
        format!("moving to {} with its data: stopping it on {from}", to.name),
    );
    (moving, event)
}

/// Why a node's report on a move is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The pod is not moving.
    #[error("pod {0} is not moving")]
    NotMoving(String),
    /// The caller is not the move's source.
    #[error("node {node} is not the source of pod {pod}'s move (its source is {from})")]
    NotSource {
        /// The pod.
        pod: String,
        /// Who reported.
        node: String,
        /// The move's source.
        from: String,
    },
}

/// The pod after its source `node` reports `report` at `now_ms`, with the
/// event it is worth; `None` when it changes nothing (a late report of a
/// phase the move has left).
pub fn apply_report(
    pod: &ClusterPod,
    node: &str,
    report: &MoveReport,
    now_ms: u64,
) -> Result<Option<(ClusterPod, Option<Event>)>, ReportError> {
    let name = &pod.spec.name;
    let moving = pod
        .moving
        .as_ref()
        .ok_or_else(|| ReportError::NotMoving(name.clone()))?;
    if moving.from != node {
        return Err(ReportError::NotSource {
            pod: name.clone(),
            node: node.to_owned(),
            from: moving.from.clone(),
        });
    }
    let mut next = pod.clone();
    let record = next.moving.as_mut().expect("checked above");
    let event = match report {
        MoveReport::Copying {
            bytes_copied,
            rate_bytes_per_sec,
            attempt,
        } => {
            if !moving.phase.before_copy_verified() {
                return Ok(None);
            }
            record.phase = MovePhase::Copying;
            record.bytes_copied = *bytes_copied;
            record.rate_bytes_per_sec = *rate_bytes_per_sec;
            record.attempts = record.attempts.max(*attempt);
            record.updated_ms = now_ms;
            // It runs nowhere while its data travels.
            next.status = None;
            next.ready_since_ms = None;
            None
        }
        MoveReport::Copied {
            bytes_copied,
            rate_bytes_per_sec,
            checksum,
        } => {
            if !moving.phase.before_copy_verified() {
                return Ok(None);
            }
            record.phase = MovePhase::Starting;
            record.bytes_copied = *bytes_copied;
            record.rate_bytes_per_sec = *rate_bytes_per_sec;
            record.checksum = Some(checksum.clone());
            record.last_error = None;
            record.updated_ms = now_ms;
            let to = record.to.clone();
            // Bound to the target from now on: it starts there.
            next.node = Some(to.clone());
            next.status = None;
            next.ready_since_ms = None;
            next.unschedulable_reason = None;
            Some(pod_event(
                now_ms,
                EventKind::MoveCopied,
                name,
                Some(&to),
                format!(
                    "{bytes_copied} bytes copied from {node} at {}, {checksum} verified on both ends: starting it on {to}",
                    rate(*rate_bytes_per_sec)
                ),
            ))
        }
        MoveReport::Failed { error } => {
            if !moving.phase.before_copy_verified() {
                return Ok(None);
            }
            // A failure is no news of progress: copies that keep failing
            // are failed back like a silent one.
            record.last_error = Some(error.clone());
            Some(pod_event(
                now_ms,
                EventKind::MoveFailed,
                name,
                Some(node),
                format!("copy to {} failed, retrying: {error}", record.to),
            ))
        }
        MoveReport::Cleaned => {
            if moving.phase != MovePhase::CleaningSource {
                return Ok(None);
            }
            next.moving = None;
            Some(finished(now_ms, name, moving))
        }
    };
    Ok(Some((next, event)))
}

fn finished(now_ms: u64, pod: &str, moving: &PodMove) -> Event {
    let source = if moving.keep_source {
        format!("its copy on {} is kept", moving.from)
    } else {
        format!("its copy on {} is removed", moving.from)
    };
    pod_event(
        now_ms,
        EventKind::MoveFinished,
        pod,
        Some(&moving.to),
        format!(
            "runs on {} with its data ({} bytes, {}); {source}",
            moving.to,
            moving.bytes_copied,
            moving.checksum.as_deref().unwrap_or("no checksum")
        ),
    )
}

/// A rate for people.
pub fn rate(bytes_per_sec: u64) -> String {
    format!("{:.1} MB/s", bytes_per_sec as f64 / 1e6)
}

/// What the moves under way need from the controller: a pod that runs on
/// its target lets the source clean up (or, keeping its copy, ends the
/// move); a copy with no news for [`MOVE_STALL_MS`] is failed back.
pub fn plan(cluster: &Cluster, pods: &PodIndex<'_>) -> Vec<Change> {
    pods.moving
        .iter()
        .filter_map(|(_, p)| step(p, cluster.now_ms))
        .collect()
}

fn step(pod: &Versioned<ClusterPod>, now_ms: u64) -> Option<Change> {
    let moving = pod.object.moving.as_ref()?;
    let name = &pod.object.spec.name;
    let mut next = pod.object.clone();
    let (reason, event) = match moving.phase {
        MovePhase::Starting if pod.object.node.as_deref() == Some(moving.to.as_str()) => {
            let running = pod
                .object
                .status
                .as_ref()
                .is_some_and(|s| s.phase == berth_model::PodPhase::Running);
            if !running {
                return None;
            }
            if moving.keep_source {
                next.moving = None;
                (
                    format!("pod {name} runs on {}: its move is done", moving.to),
                    Some(finished(now_ms, name, moving)),
                )
            } else {
                let record = next.moving.as_mut()?;
                record.phase = MovePhase::CleaningSource;
                record.updated_ms = now_ms;
                (
                    format!(
                        "pod {name} runs on {}: {} removes its copy",
                        moving.to, moving.from
                    ),
                    None,
                )
            }
        }
        phase
            if phase.before_copy_verified()
                && now_ms.saturating_sub(moving.updated_ms) > MOVE_STALL_MS =>
        {
            next.moving = None;
            next.node = Some(moving.from.clone());
            let why = moving
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let reason = format!(
                "no news of the copy to {} for {} s{why}; the pod stays on {} with its data",
                moving.to,
                MOVE_STALL_MS / 1000,
                moving.from
            );
            (
                format!("pod {name}'s move failed back"),
                Some(pod_event(
                    now_ms,
                    EventKind::MoveFailed,
                    name,
                    Some(&moving.from),
                    reason,
                )),
            )
        }
        _ => return None,
    };
    Some(Change::UpdatePod {
        pod: next,
        expected_revision: pod.resource_version,
        reason,
        event,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The moves planner over every pod of `cluster`.
    fn plan(cluster: &Cluster) -> Vec<Change> {
        super::plan(cluster, &PodIndex::of(cluster))
    }

    fn db(node: &str) -> ClusterPod {
        serde_json::from_value(serde_json::json!({
            "spec": {"name": "db-0", "containers": [{"name": "db", "image": "local/busybox",
                "volumeMounts": [{"volume": "data", "path": "/data"}]}],
                "volumes": [{"name": "data"}]},
            "node": node,
        }))
        .expect("a pod")
    }

    fn h3() -> Node {
        serde_json::from_value(serde_json::json!({
            "name": "h3", "address": "10.0.0.3",
            "capacity": {"memoryBytes": 1, "cpuMillis": 1},
        }))
        .expect("a node")
    }

    fn copied() -> MoveReport {
        MoveReport::Copied {
            bytes_copied: 10,
            rate_bytes_per_sec: 5,
            checksum: "sha256:ab".into(),
        }
    }

    #[test]
    fn a_move_stays_on_its_source_until_the_copy_is_verified() {
        let (pod, event) = begin(&db("h2"), "h2", &h3(), false, 1);
        assert_eq!(event.kind, EventKind::MoveStarted);
        assert_eq!(pod.node.as_deref(), Some("h2"));
        let progress = MoveReport::Copying {
            bytes_copied: 4,
            rate_bytes_per_sec: 2,
            attempt: 1,
        };
        let (pod, _) = apply_report(&pod, "h2", &progress, 2).unwrap().unwrap();
        let record = pod.moving.as_ref().unwrap();
        assert_eq!((record.phase, record.bytes_copied), (MovePhase::Copying, 4));
        assert_eq!(pod.node.as_deref(), Some("h2"));
        let (pod, event) = apply_report(&pod, "h2", &copied(), 3).unwrap().unwrap();
        assert_eq!(event.unwrap().kind, EventKind::MoveCopied);
        assert_eq!(pod.node.as_deref(), Some("h3"));
        assert_eq!(pod.moving.as_ref().unwrap().phase, MovePhase::Starting);
        // A late report of the copy changes nothing.
        assert_eq!(apply_report(&pod, "h2", &copied(), 4).unwrap(), None);
    }

    #[test]
    fn only_the_source_reports() {
        let (pod, _) = begin(&db("h2"), "h2", &h3(), false, 1);
        assert!(matches!(
            apply_report(&pod, "h3", &copied(), 2),
            Err(ReportError::NotSource { .. })
        ));
        assert_eq!(
            apply_report(&db("h2"), "h2", &copied(), 2),
            Err(ReportError::NotMoving("db-0".into()))
        );
    }

    fn cluster(pod: ClusterPod, now_ms: u64) -> Cluster {
        Cluster {
            pods: vec![Arc::new(Versioned {
                resource_version: 1,
                object: pod,
            })],
            now_ms,
            ..Cluster::default()
        }
    }

    fn written(changes: &[Change]) -> ClusterPod {
        assert_eq!(changes.len(), 1, "{changes:?}");
        changes[0].written_pod().expect("a pod written")
    }

    #[test]
    fn a_running_target_lets_the_source_clean_up_then_the_move_ends() {
        let (pod, _) = begin(&db("h2"), "h2", &h3(), false, 1);
        let (mut pod, _) = apply_report(&pod, "h2", &copied(), 2).unwrap().unwrap();
        assert!(plan(&cluster(pod.clone(), 3)).is_empty(), "not running yet");
        pod.status = Some(
            serde_json::from_value(serde_json::json!({
                "name": "db-0", "phase": "Running", "slice": "s", "containers": [],
                "spec": pod.spec,
            }))
            .unwrap(),
        );
        let cleaning = written(&plan(&cluster(pod, 4)));
        assert_eq!(
            cleaning.moving.as_ref().unwrap().phase,
            MovePhase::CleaningSource
        );
        let (done, event) = apply_report(&cleaning, "h2", &MoveReport::Cleaned, 5)
            .unwrap()
            .unwrap();
        assert_eq!(done.moving, None);
        assert_eq!(event.unwrap().kind, EventKind::MoveFinished);
    }

    #[test]
    fn a_stalled_copy_fails_back_to_the_source() {
        let (pod, _) = begin(&db("h2"), "h2", &h3(), false, 1);
        assert!(plan(&cluster(pod.clone(), MOVE_STALL_MS)).is_empty());
        let back = written(&plan(&cluster(pod.clone(), MOVE_STALL_MS + 2)));
        assert_eq!(back.moving, None);
        assert_eq!(back.node.as_deref(), Some("h2"));
        // Failing attempts are no progress: they fail back all the same.
        let failed = MoveReport::Failed {
            error: "refused".into(),
        };
        let (failing, _) = apply_report(&pod, "h2", &failed, MOVE_STALL_MS)
            .unwrap()
            .unwrap();
        let back = written(&plan(&cluster(failing, MOVE_STALL_MS + 2)));
        assert_eq!(back.node.as_deref(), Some("h2"));
    }
}
