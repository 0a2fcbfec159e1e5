//! Streaming watches of a kind (`?watch=true[&after=REV]`): newline-
//! delimited JSON, one change per line, `{"type":"Put"|"Delete","object":
//! ...,"resourceVersion":N}`, from the store's gap-free watch. A client that
//! lost its stream resumes with the last `resourceVersion` it saw.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{ApiFailure, AppState};
use crate::objects;
use crate::store::{self, StoreError};

/// The query of a list that may watch instead.
#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    /// Stream changes instead of listing.
    #[serde(default)]
    pub watch: bool,
    /// Changes after this revision (default: from now).
    pub after: Option<u64>,
}

impl WatchQuery {
    /// Refuses an `after` past the document's `int64`.
    pub fn check(&self) -> Result<(), ApiFailure> {
        super::extract::int64("after", self.after)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Change<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    object: T,
    resource_version: u64,
}

/// Streams the changes of every object under `prefix`, each passed through
/// `shape` (to redact secrets, and to keep a project's own) before it is
/// sent; what `shape` turns into `None` is not sent.
pub async fn stream<T, F>(
    state: &AppState,
    prefix: &'static str,
    after: Option<u64>,
    shape: F,
) -> Result<Response, ApiFailure>
where
    T: DeserializeOwned + Serialize + Send + 'static,
    F: Fn(T) -> Option<T> + Send + Sync + 'static,
{
    let after = match after {
        Some(after) => after,
        None => state.store.revision().await?,
    };
    let changes = state.store.watch(prefix, after).await?;
    let lines = changes.filter_map(move |change| {
        let line = match change {
            Ok(change) => match objects::decode::<T>(&change.entry) {
                Ok(versioned) => shape(versioned.object).map(|object| {
                    let kind = if change.kind == store::EventKind::Delete {
                        "Delete"
                    } else {
                        "Put"
                    };
                    let change = Change {
                        kind,
                        object,
                        resource_version: change.entry.revision,
                    };
                    let mut line = objects::encode(&change);
                    line.push(b'\n');
                    Ok(Bytes::from(line))
                }),
                Err(e) => {
                    warn!(error = %e, "skipping an object that does not decode");
                    None
                }
            },
            Err(e) => Some(Err::<Bytes, StoreError>(e)),
        };
        std::future::ready(line)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
