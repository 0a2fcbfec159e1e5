//! Joining: the admin makes a one-time token; an agent trades it for its own
//! node credential. The token's hash is deleted in the same atomic commit
//! that registers the node, so a token works exactly once, and a refused
//! join leaves the token as it was.
//!
//! A plain token registers a new node only: a join under a registered name,
//! or with an address another node has, is refused. Re-registering a node
//! (an agent that lost its credential) is an admin's explicit act: a token
//! bound to that node's name (`berth node rejoin NAME`), whose join replaces
//! the node's credential and keeps the node and its pods.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::{JoinRequest, JoinResponse, JoinToken, JoinTokenRequest, Versioned};
use berth_model::{validate_dns_label, Node, ValidationErrors};
use serde::{Deserialize, Serialize};

use super::extract::Body;
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
    /// The registered node this token re-registers, if bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
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
/// uses it. An optional body `{"node": NAME}` binds the token to a
/// registered node, which it then re-registers.
pub async fn new_join_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<JoinToken>), ApiFailure> {
    require_admin(&caller)?;
    let request: JoinTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        JoinTokenRequest::default()
    } else {
        parse("join token request", &body)?
    };
    if let Some(name) = &request.node {
        validate_dns_label(name).map_err(|e| ApiFailure::field("node", e.to_string()))?;
        if objects::get::<Node>(state.store.as_ref(), NODES, name)
            .await?
            .is_none()
        {
            return Err(ApiFailure::field_with_status(
                StatusCode::NOT_FOUND,
                "node",
                format!("node {name} is not registered; a new host joins with `berth node token`"),
            ));
        }
    }
    let token = auth::new_secret().map_err(internal)?;
    let expires_at = now_secs() + JOIN_TOKEN_TTL_SECS;
    state
        .store
        .apply(vec![objects::create(
            JOIN_TOKENS,
            &auth::hash(&token),
            &StoredJoinToken {
                expires_at,
                node: request.node.clone(),
            },
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
            node: request.node,
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

/// Whether two node addresses name the same place: IP addresses compared
/// as addresses (`fd00::1` is `fd00:0::1`), names without regard to case.
fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// What a valid join token may do with the node it names.
#[derive(Debug, PartialEq, Eq)]
enum Registration {
    /// Register a new node.
    Create,
    /// Re-register the node: replace its credential, keep the node (and
    /// its pods and cordon), updating what it says about itself.
    Replace {
        /// The node's revision, which the update is conditional on.
        revision: u64,
        /// Whether the admin had cordoned it.
        unschedulable: bool,
    },
}

/// Decides what a join may do: `bound` is the node the token is bound to,
/// `existing` the registered node of the joining name, `others` every
/// registered node. Pure, so every refusal is tested without a store.
fn decide(
    node: &Node,
    bound: Option<&str>,
    existing: Option<&Versioned<Node>>,
    others: &[Versioned<Node>],
) -> Result<Registration, ApiFailure> {
    if let Some(bound) = bound {
        if bound != node.name {
            return Err(ApiFailure::field_with_status(
                StatusCode::FORBIDDEN,
                "node.name",
                format!("this join token re-registers node {bound} only"),
            ));
        }
    }
    if let Some(other) = others
        .iter()
        .find(|o| o.object.name != node.name && same_address(&o.object.address, &node.address))
    {
        return Err(ApiFailure::field_with_status(
            StatusCode::CONFLICT,
            "node.address",
            format!(
                "address {} is already used by node {}",
                node.address, other.object.name
            ),
        ));
    }
    match (bound, existing) {
        (None, Some(_)) => Err(ApiFailure::field_with_status(
            StatusCode::CONFLICT,
            "node.name",
            format!(
                "node {0} is already registered; to re-register it, an admin makes a token with `berth node rejoin {0}`",
                node.name
            ),
        )),
        (Some(_), Some(existing)) => Ok(Registration::Replace {
            revision: existing.resource_version,
            unschedulable: existing.object.unschedulable,
        }),
        // A bound token whose node was removed since registers it anew.
        (_, None) => Ok(Registration::Create),
    }
}

/// `POST /v1/join` (no credential; the join token is the credential).
pub async fn join(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<(StatusCode, Json<JoinResponse>), ApiFailure> {
    let request: JoinRequest = parse("join request", &body)?;
    let mut node: Node = request.node;
    if let Err(node_errors) = node.validate() {
        // Named as the request spells them: under `node`.
        let mut errors = ValidationErrors::new();
        for e in node_errors.errors() {
            errors.push(format!("node.{}", e.field), e.message.clone());
        }
        return Err(ApiFailure::invalid("join request", errors));
    }
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
    let (registered, _) = objects::list::<Node>(state.store.as_ref(), NODES).await?;
    let existing = registered.iter().find(|n| n.object.name == node.name);
    let node_op = match decide(&node, stored.node.as_deref(), existing, &registered)? {
        Registration::Create => objects::create(NODES, &node.name, &node),
        Registration::Replace {
            revision,
            unschedulable,
        } => {
            node.unschedulable = unschedulable;
            objects::update(NODES, &node.name, &node, revision)
        }
    };
    let secret = auth::new_secret().map_err(internal)?;
    let credential = format!("{}.{secret}", node.name);
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
    // racing with one token, exactly one commit succeeds. The node's
    // creation (or conditional update) makes two joins racing for one name
    // with two tokens fail the same way, leaving the loser's token unused.
    let consume = Op::Delete {
        key: token_key.clone(),
        expected: Some(entry.revision),
    };
    state
        .store
        .apply(vec![consume, node_op, credential_op])
        .await
        .map_err(|e| {
            use crate::store::StoreError;
            match e {
                StoreError::Conflict { ref key, .. } | StoreError::NotFound(ref key)
                    if *key == token_key =>
                {
                    refused()
                }
                StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => {
                    ApiFailure::field_with_status(
                        StatusCode::CONFLICT,
                        "node.name",
                        format!(
                            "node {} was registered or changed by another join meanwhile",
                            node.name
                        ),
                    )
                }
                other => other.into(),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::Capacity;

    fn node(name: &str, address: &str) -> Node {
        Node {
            name: name.into(),
            address: address.into(),
            labels: Default::default(),
            capacity: Capacity::default(),
            unschedulable: false,
            unit_settings: None,
            volume_classes: Default::default(),
        }
    }

    fn registered(name: &str, address: &str, revision: u64) -> Versioned<Node> {
        Versioned {
            resource_version: revision,
            object: node(name, address),
        }
    }

    fn refusal(result: Result<Registration, ApiFailure>) -> (StatusCode, String) {
        let failure = result.expect_err("the join was allowed");
        (failure.status, failure.body.fields[0].field.clone())
    }

    #[test]
    fn a_plain_token_registers_new_nodes_only() {
        let others = [
            registered("h1", "10.0.0.1", 4),
            registered("h2", "10.0.0.2", 7),
        ];
        assert_eq!(
            decide(&node("h3", "10.0.0.3"), None, None, &others).unwrap(),
            Registration::Create
        );
        assert_eq!(
            refusal(decide(
                &node("h2", "10.0.0.2"),
                None,
                Some(&others[1]),
                &others
            )),
            (StatusCode::CONFLICT, "node.name".to_owned())
        );
    }

    #[test]
    fn an_address_another_node_has_is_refused() {
        let others = [
            registered("h1", "10.0.0.1", 4),
            registered("h2", "H2.lab", 7),
        ];
        for taken in ["10.0.0.1", "h2.LAB"] {
            assert_eq!(
                refusal(decide(&node("h3", taken), None, None, &others)),
                (StatusCode::CONFLICT, "node.address".to_owned()),
                "{taken}"
            );
        }
        let v6 = [registered("h1", "fd00::1", 4)];
        assert_eq!(
            refusal(decide(&node("h3", "fd00:0:0::1"), None, None, &v6)),
            (StatusCode::CONFLICT, "node.address".to_owned())
        );
    }

    #[test]
    fn a_bound_token_re_registers_its_node_only_and_keeps_the_cordon() {
        let mut h2 = registered("h2", "10.0.0.2", 7);
        h2.object.unschedulable = true;
        let others = [registered("h1", "10.0.0.1", 4), h2.clone()];
        assert_eq!(
            decide(&node("h2", "10.0.0.2"), Some("h2"), Some(&h2), &others).unwrap(),
            Registration::Replace {
                revision: 7,
                unschedulable: true
            }
        );
        // Its own address again, or a new one, is fine; another's is not.
        assert!(decide(&node("h2", "10.0.0.9"), Some("h2"), Some(&h2), &others).is_ok());
        assert_eq!(
            refusal(decide(
                &node("h2", "10.0.0.1"),
                Some("h2"),
                Some(&h2),
                &others
            )),
            (StatusCode::CONFLICT, "node.address".to_owned())
        );
        assert_eq!(
            refusal(decide(
                &node("h1", "10.0.0.1"),
                Some("h2"),
                Some(&others[0]),
                &others
            )),
            (StatusCode::FORBIDDEN, "node.name".to_owned())
        );
    }
}
