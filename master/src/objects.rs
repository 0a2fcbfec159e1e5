//! The API objects in the store: where each kind lives and how it is
//! encoded (JSON), with its revision for optimistic concurrency.

use berth_model::api::Versioned;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Entry, Op, Store, StoreError};

/// Where nodes live.
pub const NODES: &str = "/nodes/";
/// Where projects live.
pub const PROJECTS: &str = "/projects/";
/// Where services live.
pub const SERVICES: &str = "/services/";
/// Where cron jobs live.
pub const CRONJOBS: &str = "/cronjobs/";
/// Where deployments live, as `<service>-<revision>`.
pub const DEPLOYMENTS: &str = "/deployments/";
/// Where image streams live.
pub const IMAGESTREAMS: &str = "/imagestreams/";
/// Where build configs live.
pub const BUILDCONFIGS: &str = "/buildconfigs/";
/// Where builds (each run of a build config) live.
pub const BUILDS: &str = "/builds/";
/// Where jobs live.
pub const JOBS: &str = "/jobs/";
/// Where pods live.
pub const PODS: &str = "/pods/";
/// Where routes live.
pub const ROUTES: &str = "/routes/";
/// Where templates live.
pub const TEMPLATES: &str = "/templates/";
/// Where the shared library's templates live.
pub const SHARED_TEMPLATES: &str = "/shared-templates/";
/// Network volumes an admin defined, by name.
pub const NETWORK_VOLUMES: &str = "/network-volumes/";
/// Which service writes each network volume, as `<kind>/<server><path>`:
/// created in the same commit as the service, so two services never
/// write one volume.
pub const VOLUME_WRITERS: &str = "/volume-writers/";
/// Which route claims each `<host><path>`: created in the same commit as
/// the route, so two routes can never claim the same host and path.
pub const ROUTE_CLAIMS: &str = "/route-claims/";
/// Where events live, as `<time ms>-<sequence>`, both zero-padded so that
/// key order is time order.
pub const EVENTS: &str = "/events/";
/// Users and robot accounts.
pub const USERS: &str = "/users/";
/// Hashes of users' tokens.
pub const USER_CREDENTIALS: &str = "/user-credentials/";
/// Hashes of nodes' credentials.
pub const NODE_CREDENTIALS: &str = "/node-credentials/";
/// Hashes of unused join tokens, with their expiry.
pub const JOIN_TOKENS: &str = "/join-tokens/";

/// The key of object `name` of a kind.
pub fn key(kind: &str, name: &str) -> String {
    format!("{kind}{name}")
}

/// Encodes an object.
pub fn encode<T: Serialize>(object: &T) -> Vec<u8> {
    // Serializing plain data structs to JSON cannot fail.
    serde_json::to_vec(object).unwrap_or_default()
}

/// Decodes an entry into an object with its revision.
pub fn decode<T: DeserializeOwned>(entry: &Entry) -> Result<Versioned<T>, StoreError> {
    let object = serde_json::from_slice(&entry.value)
        .map_err(|e| StoreError::Backend(format!("decoding {}: {e}", entry.key)))?;
    Ok(Versioned {
        resource_version: entry.revision,
        object,
    })
}

/// Every object of a kind, and the revision they were read at.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    kind: &str,
) -> Result<(Vec<Versioned<T>>, u64), StoreError> {
    let (entries, revision) = store.list(kind).await?;
    let objects = entries.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((objects, revision))
}

/// One object, if it exists.
pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    kind: &str,
    name: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    store
        .get(&key(kind, name))
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

/// Creates an object; fails if it exists.
pub fn create<T: Serialize>(kind: &str, name: &str, object: &T) -> Op {
    Op::Create {
        key: key(kind, name),
        value: encode(object),
    }
}

/// Replaces an object if it is still at `expected`.
pub fn update<T: Serialize>(kind: &str, name: &str, object: &T, expected: u64) -> Op {
    Op::Update {
        key: key(kind, name),
        value: encode(object),
        expected,
    }
}

/// Deletes an object if it is still at `expected`.
pub fn delete(kind: &str, name: &str, expected: Option<u64>) -> Op {
    Op::Delete {
        key: key(kind, name),
        expected,
    }
}
