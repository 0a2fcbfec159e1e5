//! Joining: the admin makes a one-time token; an agent trades it for its own
//! node credential. The token's hash is deleted in the same atomic commit
//! that registers the node, so a token works exactly once.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::{JoinRequest, JoinResponse, JoinToken};
use berth_model::{validate_dns_label, Node};
use serde::{Deserialize, Serialize};

use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::{self, Caller};
use crate::objects::{self, JOIN_TOKENS, NODES, NODE_CREDENTIALS};
use crate::store::Op;

/// How long a join token is valid.
const JOIN_TOKEN_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredJoinToken {
    expires_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// `POST /v1/join-tokens` (admin): a new one-time token and the command that
/// uses it.
pub async fn new_join_token(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<JoinToken>), ApiFailure> {
    require_admin(&caller)?;
    let token = auth::new_secret().map_err(internal)?;
    let expires_at = now_secs() + JOIN_TOKEN_TTL_SECS;
    state
        .store
        .apply(vec![objects::create(
            JOIN_TOKENS,
            &auth::hash(&token),
            &StoredJoinToken { expires_at },
        )])
        .await?;
    let command = match &state.ca_hash {
        Some(hash) => format!(
            "berth-agent join {} --token {token} --ca-hash {hash}",
            state.public_url
        ),
        None => format!("berth-agent join {} --token {token}", state.public_url),
    };
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            token,
            expires_at,
            command,
        }),
    ))
}

/// `GET /v1/ca.crt` (no credential): the CA certificate. A joining agent
/// checks it against the hash in its join command before trusting it.
pub async fn ca_certificate(State(state): State<AppState>) -> Result<String, ApiFailure> {
    state.ca_pem.clone().ok_or_else(|| {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            "this master serves plain HTTP: there is no CA",
        )
    })
}

/// `POST /v1/join` (no credential; the join token is the credential).
pub async fn join(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JoinResponse>), ApiFailure> {
    let request: JoinRequest = parse("join request", &body)?;
    let node: Node = request.node;
    validate_dns_label(&node.name).map_err(|e| ApiFailure::field("node.name", e.to_string()))?;
    let token_key = objects::key(JOIN_TOKENS, &auth::hash(&request.token));
    let refused = || {
        ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "join token is unknown, used or expired",
        )
    };
    let entry = state.store.get(&token_key).await?.ok_or_else(refused)?;
    let stored: StoredJoinToken = serde_json::from_slice(&entry.value).map_err(internal)?;
    if stored.expires_at < now_secs() {
        return Err(refused());
    }
    let secret = auth::new_secret().map_err(internal)?;
    let credential = format!("{}.{secret}", node.name);
    let node_op = match objects::get::<Node>(state.store.as_ref(), NODES, &node.name).await? {
        Some(existing) => objects::update(NODES, &node.name, &node, existing.resource_version),
        None => objects::create(NODES, &node.name, &node),
    };
    let credential_key = objects::key(NODE_CREDENTIALS, &node.name);
    let credential_op = match state.store.get(&credential_key).await? {
        Some(existing) => Op::Update {
            key: credential_key,
            value: auth::hash(&credential).into_bytes(),
            expected: existing.revision,
        },
        None => Op::Create {
            key: credential_key,
            value: auth::hash(&credential).into_bytes(),
        },
    };
    // The token's deletion is conditional on its revision: of two joins
    // racing with one token, exactly one commit succeeds.
    let consume = Op::Delete {
        key: token_key,
        expected: Some(entry.revision),
    };
    state
        .store
        .apply(vec![consume, node_op, credential_op])
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } | crate::store::StoreError::NotFound(_) => {
                refused()
            }
            other => other.into(),
        })?;
    state.liveness.heartbeat(&node.name);
    Ok((
        StatusCode::CREATED,
        Json(JoinResponse {
            node: node.name,
            credential,
        }),
    ))
}
