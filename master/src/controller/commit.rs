//! The one step from typed [`Change`]s to the store: each change becomes a
//! compare-and-swap of its object, committed together with the event that
//! records it.

use berth_model::EventKind;
use tracing::{info, warn};

use super::change::{bound, Change};
use super::events;
use crate::instruments::Instruments;
use crate::objects::{
    self, BUILDCONFIGS, BUILDS, CRONJOBS, DEPLOYMENTS, IMAGESTREAMS, JOBS, NODES, PODS, SERVICES,
};
use crate::store::{Op, Store, StoreError};

/// Most operations in one commit: etcd refuses transactions of more than
/// 128 by default (`--max-txn-ops`), and one huge transaction would hold up
/// other writers anyway.
pub const MAX_COMMIT_OPS: usize = 100;

/// The store operations of a change, without its event: one, but for a
/// job's step, whose parts commit together.
pub fn encode(change: &Change) -> Vec<Op> {
    let op = match change {
        Change::AdvanceJob {
            job,
            expected_revision,
            stop,
            start,
            ..
        } => {
            let mut ops = vec![objects::update(JOBS, &job.name, job, *expected_revision)];
            ops.extend(
                stop.iter()
                    .map(|(pod, revision)| objects::delete(PODS, pod, Some(*revision))),
            );
            ops.extend(
                start
                    .iter()
                    .map(|pod| objects::create(PODS, &pod.spec.name, pod)),
            );
            return ops;
        }
        Change::AdvanceCron {
            cron,
            expected_revision,
            start,
            cancel,
            forget,
            ..
        } => {
            let mut ops = vec![objects::update(
                CRONJOBS,
                &cron.name,
                cron,
                *expected_revision,
            )];
            ops.extend(
                start
                    .iter()
                    .map(|job| objects::create(JOBS, &job.name, job)),
            );
            ops.extend(
                cancel
                    .iter()
                    .map(|(job, revision)| objects::update(JOBS, &job.name, job, *revision)),
            );
            ops.extend(
                forget
                    .iter()
                    .map(|(job, revision)| objects::delete(JOBS, job, Some(*revision))),
            );
            return ops;
        }
        Change::DeleteJob {
            name,
            expected_revision,
            ..
        } => objects::delete(JOBS, name, Some(*expected_revision)),
        Change::WriteDeployment {
            deployment,
            expected_revision: Some(revision),
            ..
        } => objects::update(DEPLOYMENTS, &deployment.name, deployment, *revision),
        Change::WriteDeployment { deployment, .. } => {
            objects::create(DEPLOYMENTS, &deployment.name, deployment)
        }
        Change::RollBack {
            failed,
            failed_revision,
            service,
            service_revision,
            revision,
            ..
        } => {
            return vec![
                objects::update(DEPLOYMENTS, &failed.name, failed, *failed_revision),
                objects::update(SERVICES, &service.name, service, *service_revision),
                objects::create(DEPLOYMENTS, &revision.name, revision),
            ];
        }
        Change::DeleteDeployment {
            name,
            expected_revision,
            ..
        } => objects::delete(DEPLOYMENTS, name, Some(*expected_revision)),
        Change::CreateJob { job, .. } => objects::create(JOBS, &job.name, job),
        Change::AdvanceBuild {
            build,
            expected_revision,
            create_job,
            update_job,
            delete_job,
            ..
        } => {
            let mut ops = vec![objects::update(
                BUILDS,
                &build.name,
                build,
                *expected_revision,
            )];
            ops.extend(
                create_job
                    .iter()
                    .map(|job| objects::create(JOBS, &job.name, job)),
            );
            ops.extend(
                update_job
                    .iter()
                    .map(|(job, revision)| objects::update(JOBS, &job.name, job, *revision)),
            );
            ops.extend(
                delete_job
                    .iter()
                    .map(|(job, revision)| objects::delete(JOBS, job, Some(*revision))),
            );
            return ops;
        }
        Change::StartBuild {
            config,
            config_revision,
            build,
            ..
        } => {
            return vec![
                objects::update(BUILDCONFIGS, &config.name, config, *config_revision),
                objects::create(BUILDS, &build.name, build),
            ];
        }
        Change::DeleteBuild {
            name,
            expected_revision,
            ..
        } => objects::delete(BUILDS, name, Some(*expected_revision)),
        Change::WriteImageStream {
            stream,
            expected_revision,
            ..
        } => objects::update(IMAGESTREAMS, &stream.name, stream, *expected_revision),
        Change::FollowImage {
            service,
            service_revision,
            deployment,
            ..
        } => {
            return vec![
                objects::update(SERVICES, &service.name, service, *service_revision),
                objects::create(DEPLOYMENTS, &deployment.name, deployment),
            ];
        }
        Change::CreatePod { pod, .. } => objects::create(PODS, &pod.spec.name, pod),
        Change::BindPod {
            pod,
            node,
            expected_revision,
            ..
        } => objects::update(PODS, &pod.spec.name, &bound(pod, node), *expected_revision),
        Change::UpdatePod {
            pod,
            expected_revision,
            ..
        } => objects::update(PODS, &pod.spec.name, pod, *expected_revision),
        Change::DeletePod {
            name,
            expected_revision,
            ..
        } => objects::delete(PODS, name, Some(*expected_revision)),
        Change::UpdateNode {
            node,
            expected_revision,
            ..
        } => objects::update(NODES, &node.name, node, *expected_revision),
    };
    vec![op]
}

/// The store operations of `changes`, in order: each change, then the
/// record of its event.
pub fn ops(changes: &[Change]) -> Vec<Op> {
    changes
        .iter()
        .flat_map(|change| {
            encode(change)
                .into_iter()
                .chain(change.event().map(events::record))
        })
        .collect()
}

/// Commits planned changes with their events, each change in the same
/// commit as its event, in commits of at most [`MAX_COMMIT_OPS`]. Every
/// change is a compare-and-swap of its own, so splitting a plan loses
/// nothing: a change that conflicts is planned again next round.
pub async fn commit(store: &dyn Store, changes: Vec<Change>, instruments: &Instruments) {
    for change in &changes {
        info!(reason = %change.reason(), "controller");
    }
    for batch in batches(&changes) {
        batch.apply(store, instruments).await;
    }
}

/// `changes` split into commits of at most [`MAX_COMMIT_OPS`], in order,
/// each change with its event.
fn batches(changes: &[Change]) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut batch = Batch::default();
    for change in changes {
        let part = Part::of(change);
        if !batch.parts.is_empty() && batch.len() + part.ops.len() > MAX_COMMIT_OPS {
            batches.push(std::mem::take(&mut batch));
        }
        batch.parts.push(part);
    }
    if !batch.parts.is_empty() {
        batches.push(batch);
    }
    batches
}

/// One commit: the parts of its changes.
#[derive(Debug, Default)]
struct Batch {
    parts: Vec<Part>,
}

/// One change's ops with its event's, and the scheduler decision in it:
/// counted once committed, since a conflicting commit decided nothing.
#[derive(Debug)]
struct Part {
    ops: Vec<Op>,
    placed: u64,
    unschedulable: u64,
}

impl Part {
    fn of(change: &Change) -> Self {
        let mut part = Part {
            ops: encode(change),
            placed: 0,
            unschedulable: 0,
        };
        if let Some(event) = change.event() {
            match event.kind {
                EventKind::PodScheduled => part.placed = 1,
                EventKind::PodUnschedulable => part.unschedulable = 1,
                _ => {}
            }
            part.ops.push(events::record(event));
        }
        part
    }

    async fn apply(self, store: &dyn Store, instruments: &Instruments) -> Result<(), StoreError> {
        store.apply(self.ops).await?;
        instruments.scheduler_decisions(self.placed, self.unschedulable);
        Ok(())
    }
}

impl Batch {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.ops.len()).sum()
    }

    /// Commits the batch at once; if one of its changes lost a race, each
    /// change alone. Without that, one change that keeps losing (a pod whose
    /// status its node rewrites every second) would hold back every other
    /// change planned beside it, round after round: a cron slot's job
    /// would never be made.
    async fn apply(self, store: &dyn Store, instruments: &Instruments) {
        if self.parts.len() == 1 {
            if let Some(part) = self.parts.into_iter().next() {
                if let Err(e) = part.apply(store, instruments).await {
                    warn!(error = %e, "controller commit failed; planning again");
                }
            }
            return;
        }
        let ops: Vec<Op> = self.parts.iter().flat_map(|p| p.ops.clone()).collect();
        match store.apply(ops).await {
            Ok(_) => {
                let placed = self.parts.iter().map(|p| p.placed).sum();
                let unschedulable = self.parts.iter().map(|p| p.unschedulable).sum();
                instruments.scheduler_decisions(placed, unschedulable);
            }
            Err(
                e @ (StoreError::Conflict { .. }
                | StoreError::AlreadyExists(_)
                | StoreError::NotFound(_)),
            ) => {
                warn!(error = %e, "controller commit lost a race; committing its changes one by one");
                for part in self.parts {
                    if let Err(e) = part.apply(store, instruments).await {
                        warn!(error = %e, "controller commit failed; planning again");
                    }
                }
            }
            Err(e) => warn!(error = %e, "controller commit failed; planning again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::api::Versioned;
    use berth_model::{ClusterPod, Event, EventKind, Node, NodeCondition};

    use super::*;
    use crate::controller::change::pod_event;
    use crate::controller::testing::{cluster, ready, service, step, NOW};

    /// A placed pod of a fresh cluster of one service on one node.
    fn placed() -> Versioned<ClusterPod> {
        let mut cluster = cluster(vec![service("web", 1, false)], ready(&["h1"]));
        step(&mut cluster);
        Arc::unwrap_or_clone(cluster.pods.remove(0))
    }

    fn scheduled(pod: &str, node: &str) -> Event {
        pod_event(
            NOW,
            EventKind::PodScheduled,
            pod,
            Some(node),
            "1/1 nodes fit",
        )
    }

    /// An op as it reads: verb, key, decoded value and expected revision.
    /// An event's key carries a process-wide sequence number, so only its
    /// prefix is kept.
    fn read(op: &Op) -> (&'static str, String, Option<serde_json::Value>, Option<u64>) {
        let key = |key: &str| match key.strip_prefix(objects::EVENTS) {
            Some(_) => objects::EVENTS.to_owned(),
            None => key.to_owned(),
        };
        let value = |value: &[u8]| serde_json::from_slice(value).ok();
        match op {
            Op::Create { key: k, value: v } => ("create", key(k), value(v), None),
            Op::Update {
                key: k,
                value: v,
                expected,
            } => ("update", key(k), value(v), Some(*expected)),
            Op::Delete { key: k, expected } => ("delete", key(k), None, *expected),
        }
    }

    fn read_all(ops: &[Op]) -> Vec<(&'static str, String, Option<serde_json::Value>, Option<u64>)> {
        ops.iter().map(read).collect()
    }

    #[test]
    fn each_change_is_a_compare_and_swap_followed_by_its_event() {
        let pod = placed().object;
        let mut unbound = pod.clone();
        unbound.node = None;
        unbound.unschedulable_reason = Some("0/1 nodes fit: 1 cordoned".to_owned());
        let event = scheduled("web-0", "h2");
        let changes = vec![
            Change::CreatePod {
                pod: pod.clone(),
                reason: "new".to_owned(),
                event: Some(scheduled("web-0", "h1")),
            },
            Change::BindPod {
                pod: unbound,
                node: "h2".to_owned(),
                expected_revision: 7,
                reason: "bind".to_owned(),
                event: Some(event.clone()),
            },
            Change::UpdatePod {
                pod: pod.clone(),
                expected_revision: 8,
                reason: "links".to_owned(),
                event: None,
            },
            Change::DeletePod {
                name: "web-0".to_owned(),
                expected_revision: 9,
                reason: "gone".to_owned(),
                event: None,
            },
        ];
        let encoded = ops(&changes);
        let mut bound = pod.clone();
        bound.node = Some("h2".to_owned());
        assert_eq!(
            read_all(&encoded),
            read_all(&[
                objects::create(PODS, "web-0", &pod),
                events::record(&scheduled("web-0", "h1")),
                objects::update(PODS, "web-0", &bound, 7),
                events::record(&event),
                objects::update(PODS, "web-0", &pod, 8),
                objects::delete(PODS, "web-0", Some(9)),
            ])
        );
        assert_eq!(
            changes[1].written_pod(),
            Some(bound),
            "a bound pod has its node and no unschedulable reason"
        );
    }

    #[test]
    fn a_node_update_is_a_compare_and_swap_of_the_node() {
        let (node, _): (Node, NodeCondition) = ready(&["h1"]).remove(0);
        let change = Change::UpdateNode {
            node: node.clone(),
            expected_revision: 3,
            reason: "capacity".to_owned(),
        };
        assert_eq!(change.event(), None);
        assert_eq!(ops(&[change]), [objects::update(NODES, "h1", &node, 3)]);
    }

    #[test]
    fn planned_changes_become_the_ops_a_round_commits() {
        let mut cluster = cluster(vec![service("web", 2, false)], ready(&["h1", "h2"]));
        let changes = crate::controller::plan(&cluster);
        let planned = ops(&changes);
        // Two new pods, each created with its node and followed by its event.
        assert_eq!(planned.len(), 4, "{planned:?}");
        for pair in planned.chunks(2) {
            let (Op::Create { key, value }, Op::Create { key: event_key, .. }) =
                (&pair[0], &pair[1])
            else {
                panic!("{pair:?}");
            };
            assert!(key.starts_with(PODS), "{key}");
            assert!(event_key.starts_with(objects::EVENTS), "{event_key}");
            let pod: ClusterPod = serde_json::from_slice(value).unwrap();
            assert!(pod.node.is_some(), "{pod:?}");
        }
        step(&mut cluster);
        cluster.services.clear();
        let deletes = ops(&crate::controller::plan(&cluster));
        assert_eq!(
            deletes
                .iter()
                .filter(|op| matches!(
                    op,
                    Op::Delete {
                        expected: Some(2),
                        ..
                    }
                ))
                .count(),
            2,
            "{deletes:?}"
        );
    }

    #[test]
    fn batches_stay_under_the_limit_with_each_event_beside_its_change() {
        let change = Change::DeletePod {
            name: "web-0".to_owned(),
            expected_revision: 1,
            reason: "gone".to_owned(),
            event: Some(scheduled("web-0", "h1")),
        };
        let changes = vec![change; MAX_COMMIT_OPS];
        let batches = batches(&changes);
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| b.len() <= MAX_COMMIT_OPS));
        assert_eq!(
            batches
                .iter()
                .map(|b| b.parts.iter().map(|p| p.placed).sum::<u64>())
                .collect::<Vec<_>>(),
            [50, 50],
            "scheduling decisions are counted in the batch that commits them"
        );
        let committed: Vec<Op> = batches
            .into_iter()
            .flat_map(|b| b.parts)
            .flat_map(|p| p.ops)
            .collect();
        assert_eq!(read_all(&committed), read_all(&ops(&changes)));
    }

    #[tokio::test]
    async fn a_change_that_lost_its_race_holds_back_none_planned_beside_it() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/commit-unit-test");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory");
        let store = crate::store::embedded::EmbeddedStore::open(&dir.join("state.db"))
            .expect("an embedded store");
        let mut revisions = Vec::new();
        for name in ["stale-0", "gone-0"] {
            let pod: ClusterPod = serde_json::from_value(serde_json::json!({
                "spec": {"name": name, "containers": []}
            }))
            .expect("a pod");
            let revision = store
                .apply(vec![objects::create(PODS, name, &pod)])
                .await
                .expect("a pod");
            revisions.push(revision);
        }
        let delete = |name: &str, expected_revision| Change::DeletePod {
            name: name.to_owned(),
            expected_revision,
            reason: "gone".to_owned(),
            event: None,
        };
        // stale-0 changed since it was read; gone-0 did not.
        let changes = vec![
            delete("stale-0", revisions[0] - 1),
            delete("gone-0", revisions[1]),
        ];
        commit(&store, changes, &Instruments::default()).await;
        let left = |name: &'static str| {
            let store = &store;
            async move { store.get(&objects::key(PODS, name)).await.expect("a read") }
        };
        assert!(
            left("stale-0").await.is_some(),
            "a stale change writes nothing"
        );
        assert!(
            left("gone-0").await.is_none(),
            "the change beside it is made"
        );
        std::fs::remove_dir_all(&dir).expect("cleaning up");
    }
}
