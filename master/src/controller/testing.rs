//! What the controller's planner tests share: nodes, services, clusters
//! at a fixed clock, and a commit that applies planned changes to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_model::api::Versioned;
use berth_model::deployment::{Cause, DeploymentPhase};
use berth_model::{Capacity, ClusterPod, Deployment, EventKind, Node, NodeCondition, Service};

use super::commit::ops as commit_ops;
use super::{plan, Change, Cluster};
use crate::objects::{DEPLOYMENTS, IMAGESTREAMS, JOBS, PODS, SERVICES};
use crate::store::Op;

/// The clock of every planned event.
pub const NOW: u64 = 1_700_000_000_000;

pub fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        address: format!("{name}.lab"),
        labels: BTreeMap::new(),
        capacity: Capacity {
            memory_bytes: 8 << 30,
            cpu_millis: 8000,
        },
        unschedulable: false,
        unit_settings: None,
        volume_classes: Default::default(),
    }
}

pub fn service(name: &str, replicas: u32, stateful: bool) -> Versioned<Service> {
    let template = serde_json::from_str(
        r#"{"name":"t","containers":[{"name":"app","image":"local/busybox"}]}"#,
    )
    .unwrap();
    Versioned {
        resource_version: 1,
        object: Service {
            name: name.into(),
            labels: Default::default(),
            replicas,
            stateful,
            node_selector: BTreeMap::new(),
            template,
            env: Vec::new(),
            links: Vec::new(),
            egress: Default::default(),
            publish: Vec::new(),
            generated_env: Vec::new(),
            strategy: Default::default(),
            triggers: berth_model::deployment::default_triggers(),
        },
    }
}

/// A cluster of `services` and `nodes` at [`NOW`], with no pods yet.
pub fn cluster(services: Vec<Versioned<Service>>, nodes: Vec<(Node, NodeCondition)>) -> Cluster {
    Cluster {
        deployments: services
            .iter()
            .map(|s| Arc::new(complete(&s.object, 1)))
            .collect(),
        services: services.into_iter().map(Arc::new).collect(),
        jobs: vec![],
        build_configs: vec![],
        builds: vec![],
        image_streams: vec![],
        cron_jobs: vec![],
        pods: vec![],
        nodes,
        now_ms: NOW,
        memory_available: BTreeMap::new(),
        silence_ms: BTreeMap::new(),
        evictions_held: false,
        quotas: BTreeMap::new(),
    }
}

/// The cluster's first service, to change in place (copied first if the
/// cluster shares it).
pub fn first_service(cluster: &mut Cluster) -> &mut Service {
    &mut Arc::make_mut(&mut cluster.services[0]).object
}

/// The cluster's revision record at `index`, to change in place.
pub fn deployment_at(cluster: &mut Cluster, index: usize) -> &mut Deployment {
    &mut Arc::make_mut(&mut cluster.deployments[index]).object
}

/// Plans and applies the changes to the cluster, as a commit would.
pub fn step(cluster: &mut Cluster) {
    let changes = plan(cluster);
    commit(cluster, &changes);
}

/// Revision `revision` of `service`, complete.
pub fn complete(service: &Service, revision: u64) -> Versioned<Deployment> {
    let mut deployment = Deployment::begin(service, revision, Cause::ConfigChange, "test", NOW);
    deployment.status.phase = DeploymentPhase::Complete;
    Versioned {
        resource_version: 1,
        object: deployment,
    }
}

/// Applies planned creates, updates and deletes of pods to the cluster
/// through the store operations [`commit_ops`] makes of them, as a commit
/// would.
pub fn commit(cluster: &mut Cluster, changes: &[Change]) {
    for op in commit_ops(changes) {
        match &op {
            Op::Create { key, value } | Op::Update { key, value, .. } if key.starts_with(PODS) => {
                let pod: ClusterPod = serde_json::from_slice(value).unwrap();
                cluster.pods.retain(|p| p.object.spec.name != pod.spec.name);
                cluster.pods.push(Arc::new(Versioned {
                    resource_version: 2,
                    object: pod,
                }));
            }
            Op::Create { key, value } | Op::Update { key, value, .. }
                if key.starts_with(DEPLOYMENTS) =>
            {
                let deployment: Deployment = serde_json::from_slice(value).unwrap();
                let deployments = &mut cluster.deployments;
                deployments.retain(|d| d.object.name != deployment.name);
                deployments.push(Arc::new(Versioned {
                    resource_version: 2,
                    object: deployment,
                }));
                deployments.sort_by_key(|d| d.object.revision);
            }
            Op::Create { key, value } if key.starts_with(JOBS) => {
                cluster.jobs.push(Versioned {
                    resource_version: 1,
                    object: serde_json::from_slice(value).unwrap(),
                });
            }
            Op::Update { key, value, .. } if key.starts_with(IMAGESTREAMS) => {
                let stream: berth_model::ImageStream = serde_json::from_slice(value).unwrap();
                for s in &mut cluster.image_streams {
                    if s.object.name == stream.name {
                        s.object = stream.clone();
                    }
                }
            }
            Op::Update { key, value, .. } if key.starts_with(SERVICES) => {
                let service: Service = serde_json::from_slice(value).unwrap();
                for s in &mut cluster.services {
                    if s.object.name == service.name {
                        let s = Arc::make_mut(s);
                        s.object = service.clone();
                        s.resource_version += 1;
                    }
                }
            }
            Op::Delete { key, .. } if key.starts_with(DEPLOYMENTS) => cluster
                .deployments
                .retain(|d| format!("{DEPLOYMENTS}{}", d.object.name) != *key),
            Op::Delete { key, .. } => cluster
                .pods
                .retain(|p| format!("{PODS}{}", p.object.spec.name) != *key),
            _ => {}
        }
    }
}

pub fn placement(cluster: &Cluster) -> BTreeMap<String, Option<String>> {
    cluster
        .pods
        .iter()
        .map(|p| (p.object.spec.name.clone(), p.object.node.clone()))
        .collect()
}

pub fn ready(names: &[&str]) -> Vec<(Node, NodeCondition)> {
    names
        .iter()
        .map(|n| (node(n), NodeCondition::Ready))
        .collect()
}

/// The events of planned changes: kind, object and node.
pub fn events(changes: &[Change]) -> Vec<(EventKind, String, Option<String>)> {
    changes
        .iter()
        .filter_map(|c| c.event())
        .map(|e| (e.kind, e.object.clone(), e.node.clone()))
        .collect()
}

pub fn event(
    kind: EventKind,
    object: &str,
    node: Option<&str>,
) -> (EventKind, String, Option<String>) {
    (kind, object.to_owned(), node.map(str::to_owned))
}
