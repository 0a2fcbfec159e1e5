//! Cron jobs' own verb: trigger, a run now, outside the schedule, made as
//! the next slot's would be. Listing, creating, changing (suspend,
//! resume) and removing are [`super::resource`]'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::{CronJob, Job, Role};

use super::project::Named;
use super::resource::{fetch, written};
use super::{ApiFailure, AppState};
use crate::controller::events::now_ms;
use crate::resource;

/// `POST /v1/cronjobs/{name}/trigger`: the job made, now.
pub async fn trigger(
    State(state): State<AppState>,
    named: Named,
) -> Result<(StatusCode, Json<Versioned<Job>>), ApiFailure> {
    named.project.require(Role::Edit)?;
    let cron = fetch::<CronJob>(&state, &named.qualified::<CronJob>()).await?;
    let job = cron.object.job_at(now_ms());
    let revision = state
        .store
        .apply(resource::create_ops(&job))
        .await
        .map_err(|e| match e {
            crate::store::StoreError::AlreadyExists(_) => ApiFailure::new(
                StatusCode::CONFLICT,
                "a run of this second exists already: trigger again in a second",
            ),
            e => e.into(),
        })?;
    Ok((StatusCode::CREATED, written(job, revision)))
}
