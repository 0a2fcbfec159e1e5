//! Nodes: listing, heartbeats (with the node's pod states), the node's own
//! assignments, and cordoning.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::{Assignments, Heartbeat, HeartbeatAnswer, NodeView};
use berth_model::{ClusterPod, Node};
use serde::Deserialize;

use super::extract::{self, Body, Path, Query};
use super::resource::fetch;
use super::watch::{self, WatchQuery};
use super::{parse, require_admin, require_admin_or_node, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller;
use crate::objects::{self, NODES, PODS};
use crate::store::Op;

async fn view(
    state: &AppState,
    node: Node,
    pods: &[berth_model::api::Versioned<ClusterPod>],
) -> NodeView {
    let count = pods
        .iter()
        .filter(|p| p.object.node.as_deref() == Some(node.name.as_str()))
        .count();
    NodeView {
        condition: state.liveness.condition(&node.name),
        last_heartbeat_ms_ago: state.liveness.since_last_ms(&node.name),
        engine_error: state.liveness.engine_error(&node.name),
        pods: u32::try_from(count).unwrap_or(u32::MAX),
        node,
    }
}

/// `GET /v1/nodes` (admin).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiFailure> {
    require_admin(&caller)?;
    query.check()?;
    if query.watch {
        return watch::stream::<Node, _>(&state, NODES, query.after, Some).await;
    }
    let (nodes, _) = objects::list::<Node>(state.store.as_ref(), NODES).await?;
    let (pods, _) = objects::list::<ClusterPod>(state.store.as_ref(), PODS).await?;
    let mut views = Vec::new();
    for node in nodes {
        views.push(view(&state, node.object, &pods).await);
    }
    Ok(Json(views).into_response())
}

/// `GET /v1/nodes/{name}` (admin or the node).
pub async fn get_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, ApiFailure> {
    require_admin_or_node(&caller, &name)?;
    let node = fetch::<Node>(&state, &name).await?;
    let (pods, _) = objects::list::<ClusterPod>(state.store.as_ref(), PODS).await?;
    Ok(Json(view(&state, node.object, &pods).await))
}

/// `PUT /v1/nodes/{name}/heartbeat` (the node): alive, capacity, pod states.
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<HeartbeatAnswer>, ApiFailure> {
    require_admin_or_node(&caller, &name)?;
    let beat: Heartbeat = parse("heartbeat", &body)?;
    state
        .liveness
        .report_engine(&name, beat.engine_unavailable.clone());
    state.liveness.heartbeat(&name);
    if let Some(usage) = beat.usage {
        state
            .liveness
            .report_memory_available(&name, usage.memory_available_bytes);
    }
    if let Some(sharing) = &state.heartbeat_sharing {
        sharing.share(
            &name,
            crate::controller::shared_liveness::HeardHeartbeat {
                memory_available: beat.usage.map(|u| u.memory_available_bytes),
                engine_error: beat.engine_unavailable.clone(),
            },
        );
    }
    if beat.metrics_unchanged {
        state.metrics.record_usage(&name, beat.usage);
    } else {
        state.metrics.record(
            &name,
            crate::metrics::NodeSample {
                usage: beat.usage,
                pods: beat.metrics.clone(),
            },
        );
    }
    // From memory: a heartbeat that changes nothing reads and writes
    // nothing in the store. A write based on a mirror a little behind is a
    // compare-and-swap that fails; the answer then names its pods, and the
    // node reports them again in its next heartbeat.
    let planned = state
        .mirror
        .with(|objects| {
            let pods: Vec<_> = beat
                .pods
                .iter()
                .filter_map(|status| objects.pods.get_shared(&status.name))
                .collect();
            controller::plan_heartbeat(
                &name,
                &beat,
                objects.nodes.get(&name),
                &pods,
                crate::controller::events::now_ms(),
            )
        })
        .await;
    let mut unrecorded = planned.unrecorded.clone();
    if !planned.changes.is_empty()
        && state
            .store
            .apply(controller::commit::ops(&planned.changes))
            .await
            .is_err()
    {
        unrecorded.extend(planned.written_pods().map(str::to_owned));
    }
    Ok(Json(HeartbeatAnswer { unrecorded }))
}

/// Query of `GET /v1/nodes/{name}/assignments`.
#[derive(Debug, Deserialize)]
pub struct AssignmentsQuery {
    /// Wait until the store is past this revision (long poll).
    after: Option<u64>,
    /// How long to wait at most, in seconds (default 30).
    timeout: Option<u64>,
}

/// `GET /v1/nodes/{name}/assignments[?after=REV]` (the node): the pods it
/// should run. With `after`, waits until a pod changes after that revision
/// (or the timeout passes), so an agent learns of changes at once.
pub async fn assignments(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<AssignmentsQuery>,
) -> Result<Json<Assignments>, ApiFailure> {
    require_admin_or_node(&caller, &name)?;
    let wait = extract::long_poll_wait(query.timeout)?;
    extract::int64("after", query.after)?;
    Ok(Json(
        state
            .mirror
            .assignments()
            .assignments(&name, query.after, wait)
            .await,
    ))
}

async fn set_cordon(
    state: &AppState,
    name: &str,
    cordoned: bool,
) -> Result<Json<Node>, ApiFailure> {
    let node = fetch::<Node>(state, name).await?;
    let mut updated = node.object.clone();
    updated.unschedulable = cordoned;
    let op: Op = objects::update(NODES, name, &updated, node.resource_version);
    state.store.apply(vec![op]).await?;
    Ok(Json(updated))
}

/// `POST /v1/nodes/{name}/cordon` (admin): no new pods go there.
pub async fn cordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiFailure> {
    require_admin(&caller)?;
    set_cordon(&state, &name, true).await
}

/// `POST /v1/nodes/{name}/uncordon` (admin).
pub async fn uncordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiFailure> {
    require_admin(&caller)?;
    set_cordon(&state, &name, false).await
}

/// What `drain` did.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drained {
    /// The node, now cordoned.
    pub node: String,
    /// Pods removed from it; their services place them elsewhere.
    pub evicted: Vec<String>,
    /// Pods left on it: stateful ones move only with `berth move`, and
    /// pods of no service have nowhere to be recreated from.
    pub kept: Vec<String>,
}

/// `POST /v1/nodes/{name}/drain` (admin): cordons the node and evicts the
/// pods of its stateless services, which the controller places elsewhere.
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Drained>, ApiFailure> {
    require_admin(&caller)?;
    let _cordoned = set_cordon(&state, &name, true).await?;
    let store = state.store.as_ref();
    let (services, _) =
        objects::list::<berth_model::Service>(store, crate::objects::SERVICES).await?;
    let services: Vec<_> = services.into_iter().map(std::sync::Arc::new).collect();
    let (pods, _) = objects::list::<ClusterPod>(store, PODS).await?;
    let pods: Vec<_> = pods.into_iter().map(std::sync::Arc::new).collect();
    let drain = controller::plan_drain(&name, &pods, &services);
    let ops = controller::commit::ops(&drain.evictions);
    for chunk in ops.chunks(controller::MAX_COMMIT_OPS) {
        store.apply(chunk.to_vec()).await?;
    }
    let (evicted, kept) = (drain.evicted, drain.kept);
    Ok(Json(Drained {
        node: name,
        evicted,
        kept,
    }))
}

/// `POST /v1/nodes/{name}/certificate` (the node, or the admin): a certificate
/// and key from the cluster's CA for the node's name and address, which its
/// agent serves and presents in volume transfers to other nodes. Each call
/// issues a new one; the agent keeps it.
pub async fn certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<berth_model::NodeCertificate>, ApiFailure> {
    require_admin_or_node(&caller, &name)?;
    let (Some(dir), Some(ca_pem)) = (&state.ca_dir, &state.ca_pem) else {
        return Err(ApiFailure::new(
            axum::http::StatusCode::NOT_FOUND,
            "this master serves plain HTTP: there is no CA to issue node certificates",
        ));
    };
    let node = fetch::<Node>(&state, &name).await?;
    let internal = |e: anyhow::Error| {
        ApiFailure::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("issuing a certificate for node {name}: {e:#}"),
        )
    };
    let key = rcgen::KeyPair::generate().map_err(|e| internal(e.into()))?;
    let names = [name.clone(), node.object.address.clone()];
    let certificate_pem = crate::tls::issue(dir, &name, &names, &key).map_err(internal)?;
    Ok(Json(berth_model::NodeCertificate {
        certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: ca_pem.clone(),
    }))
}
