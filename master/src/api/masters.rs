//! The masters: which run, which is healthy and which one leads.

use axum::extract::State;
use axum::Json;
use berth_model::api::MasterView;

use super::{require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::store::etcd::election::{Member, KNOWN, LEADER_KEY, LIVE};
use crate::store::{Entry, StoreError};

/// `GET /v1/masters` (admin): every master that ever registered, by name.
/// With the embedded store there is one master, this one, which leads.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<MasterView>>, ApiFailure> {
    require_admin(&caller)?;
    // No heartbeats to share: the embedded store, which one master owns.
    if state.heartbeat_sharing.is_none() {
        return Ok(Json(vec![MasterView {
            name: state.master_name.clone(),
            url: state.public_url.clone(),
            healthy: true,
            leader: true,
        }]));
    }
    let store = state.store.as_ref();
    let (known, _) = store.list(KNOWN).await?;
    let (live, _) = store.list(LIVE).await?;
    let leader = store
        .get(LEADER_KEY)
        .await?
        .map(|entry| String::from_utf8_lossy(&entry.value).into_owned());
    let live: Vec<Member> = live.iter().map(member).collect::<Result<_, _>>()?;
    let views = known
        .iter()
        .map(|entry| {
            let known = member(entry)?;
            Ok(MasterView {
                healthy: live.iter().any(|m| m.name == known.name),
                leader: leader.as_deref() == Some(known.name.as_str()),
                name: known.name,
                url: known.url,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Json(views))
}

fn member(entry: &Entry) -> Result<Member, StoreError> {
    serde_json::from_slice(&entry.value)
        .map_err(|e| StoreError::Backend(format!("decoding {}: {e}", entry.key)))
}
