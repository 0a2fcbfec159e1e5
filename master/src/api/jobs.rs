//! Jobs' own verbs: reading one can wait until it ends (the blocking API
//! behind `berth job wait`), and cancelling one asks the controller to
//! stop its pods and end it `Cancelled`. Listing, creating and removing
//! are [`super::resource`]'s.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::{Job, Role};
use serde::Deserialize;

use super::extract::Query;
use super::project::Named;
use super::resource::{fetch, shown};
use super::{ApiFailure, AppState};

/// Longest `?wait=`: a job's long poll is answered within this.
pub const MAX_WAIT_SECS: u64 = 30;

/// `?wait=SECS`: answer once the job has ended, or after SECS.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    wait: Option<u64>,
}

/// `GET /v1/jobs/{name}[?wait=SECS]`.
pub async fn get(
    State(state): State<AppState>,
    named: Named,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Versioned<Job>>, ApiFailure> {
    named.project.require(Role::ViewNoLogs)?;
    let name = named.qualified::<Job>();
    let wait = Duration::from_secs(query.wait.unwrap_or(0));
    if wait.as_secs() > MAX_WAIT_SECS {
        return Err(ApiFailure::field(
            "wait",
            format!(
                "must be at most {MAX_WAIT_SECS} seconds, got {}",
                wait.as_secs()
            ),
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let job = fetch::<Job>(&state, &name).await?;
        if job.object.status.phase.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(shown(job)));
        }
        // The controller writes the end within its round; a short poll
        // keeps this simple and the wait within a fraction of a second.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /v1/jobs/{name}/cancel`: the job as marked; the controller stops
/// its pods and ends it `Cancelled` within a round. An ended job stays as
/// it ended.
pub async fn cancel(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Job>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let name = named.qualified::<Job>();
    super::resource::cancel::<Job>(&state, &name, |job| {
        (!job.cancelled && !job.status.phase.is_final()).then(|| Job {
            cancelled: true,
            ..job.clone()
        })
    })
    .await
}
