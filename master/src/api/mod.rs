//! The master's HTTP API, v1: JSON in and out, errors as `ApiError` with the
//! field at fault, bodies capped. Handlers read and write the store; the
//! controller does the rest.

mod admin_written;
mod audit;
mod batch;
mod builds;
mod cron;
mod deployments;
mod endpoints;
mod events;
mod export;
mod extract;
pub mod image_streams;
mod jobs;
mod join;
mod links;
mod logs;
mod masters;
mod metrics;
mod nodes;
mod openapi;
mod pods;
mod project;
mod projects;
mod prometheus;
mod registry;
pub mod resource;
mod routes;
mod services;
mod users;
mod watch;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use berth_model::{
    ApiError, Build, BuildConfig, ClusterPod, CronJob, Deployment, FieldError, ImageStream, Job,
    NetworkVolume, Project, Route, Service, Template, ValidationErrors, MAX_REQUEST_BODY_BYTES,
};

use crate::auth::{self, Caller};
use crate::controller::liveness::Liveness;
use crate::objects::{self, NODE_CREDENTIALS, USER_CREDENTIALS};
use crate::resource::template::SharedTemplate;
use crate::store::{Store, StoreError};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The cluster state.
    pub store: Arc<dyn Store>,
    /// Heartbeats.
    pub liveness: Arc<Liveness>,
    /// With etcd: shares the heartbeats this master hears with the leader.
    pub heartbeat_sharing: Option<Arc<crate::controller::shared_liveness::HeartbeatSharing>>,
    /// The objects the controller, heartbeats and long polls read, kept in
    /// memory (each node's assignments among them).
    pub mirror: Arc<crate::mirror::ClusterMirror>,
    /// Hash of the admin token.
    pub admin_token_hash: String,
    /// The URL agents join (printed in join commands).
    pub public_url: String,
    /// This master's name among several (its host name).
    pub master_name: String,
    /// The CA certificate (PEM) when serving TLS.
    pub ca_pem: Option<String>,
    /// Its `sha256:` hash, which join commands pin.
    pub ca_hash: Option<String>,
    /// DNS suffix of generated route hostnames.
    pub route_suffix: String,
    /// The fixed host ports pods may publish.
    pub host_ports: berth_model::HostPortPolicy,
    /// Servers pods may mount network volumes from.
    pub network_volume_servers: Vec<String>,
    /// Container logs.
    pub logs: Arc<crate::logs::LogStore>,
    /// The latest resource sample of each node and pod.
    pub metrics: Arc<crate::metrics::MetricsCache>,
    /// The master's own figures, served at `/metrics`.
    pub instruments: Arc<crate::instruments::Instruments>,
    /// The integrated registry's keys and address (when serving TLS).
    pub registry: Option<Arc<crate::registry::Registry>>,
    /// Where binary builds' inputs are kept, by digest.
    pub build_inputs: std::path::PathBuf,
    /// Where the cluster CA is kept (when serving TLS): it issues nodes
    /// the certificates of their agents' volume transfers.
    pub ca_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/join", post(join::join))
        .route("/v1/join-tokens", post(join::new_join_token))
        .route("/v1/ca.crt", get(join::ca_certificate))
        .route("/v1/masters", get(masters::list))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{name}", get(nodes::get_node))
        .route("/v1/nodes/{name}/heartbeat", put(nodes::heartbeat))
        .route("/v1/nodes/{name}/assignments", get(nodes::assignments))
        .route("/v1/nodes/{name}/events", post(events::report))
        .route("/v1/nodes/{name}/certificate", post(nodes::certificate))
        .route("/v1/nodes/{name}/moves/{pod}", post(pods::move_report))
        .route(
            "/v1/nodes/{name}/logs",
            post(logs::ship).layer(DefaultBodyLimit::max(
                berth_model::logs::MAX_LOG_BATCH_BYTES,
            )),
        )
        .route("/v1/nodes/{name}/cordon", post(nodes::cordon))
        .route("/v1/nodes/{name}/uncordon", post(nodes::uncordon))
        .route("/v1/nodes/{name}/drain", post(nodes::drain))
        .route("/v1/projects", get(projects::list).post(projects::create))
        .route(
            "/v1/projects/{project}",
            get(resource::get::<Project>)
                .put(projects::update)
                .delete(projects::delete),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{name}", get(users::get).delete(users::delete))
        .route("/v1/users/{name}/token", post(users::new_user_token))
        .route("/v1/whoami", get(users::whoami))
        .route("/v1/registry", get(registry::info))
        .route("/v1/registry/token", get(registry::token))
        .route("/v1/buildinputs/{digest}", get(builds::input))
        .route("/v1/registry/events", post(registry::events))
        .route("/v1/registry/prune", post(registry::prune))
        .route(
            "/v1/shared/templates",
            get(admin_written::list::<SharedTemplate>)
                .post(admin_written::create::<SharedTemplate>),
        )
        .route(
            "/v1/shared/templates/{name}",
            get(admin_written::get::<SharedTemplate>)
                .put(admin_written::update::<SharedTemplate>)
                .delete(admin_written::delete::<SharedTemplate>),
        )
        .route(
            "/v1/volumes",
            get(admin_written::list::<NetworkVolume>).post(admin_written::create::<NetworkVolume>),
        )
        .route(
            "/v1/volumes/{name}",
            get(admin_written::get::<NetworkVolume>).delete(admin_written::delete::<NetworkVolume>),
        )
        .merge(in_project("/v1"))
        .merge(in_project("/v1/projects/{project}"))
        .route("/v1/routes/{name}/rejected", post(routes::rejected))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(prometheus::page))
        .fallback(|uri: axum::http::Uri| async move {
            ApiFailure::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {}", uri.path()),
            )
        })
        // axum adds the `Allow` header to this answer.
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiFailure::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} does not answer {method}", uri.path()),
                )
            },
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            prometheus::count_request,
        ))
        .with_state(state)
}

/// The paths of a project's objects, after `/v1` (the default project's)
/// and after `/v1/projects/{project}`: [`in_project`] serves them, and the
/// OpenAPI document copies their description.
pub const PROJECT_PATHS: [&str; 50] = [
    "/batch",
    "/export",
    "/services",
    "/services/{name}",
    "/services/{name}/scale",
    "/services/{name}/deployments",
    "/services/{name}/deployments/{revision}",
    "/services/{name}/rollback",
    "/services/{name}/restart",
    "/services/{name}/pause",
    "/services/{name}/resume",
    "/services/{name}/promote",
    "/services/{name}/cancel",
    "/deployments",
    "/imagestreams",
    "/imagestreams/{name}",
    "/imagestreams/{name}/tags",
    "/imagestreams/{name}/import",
    "/imagestreams/{name}/share",
    "/usage",
    "/imagestreams/{name}/webhook",
    "/imagestreams/{name}/webhook/{secret}",
    "/services/{name}/links",
    "/services/{name}/links/{target}",
    "/pods",
    "/pods/{name}",
    "/pods/{name}/move",
    "/routes",
    "/routes/{name}",
    "/templates",
    "/templates/{name}",
    "/jobs",
    "/jobs/{name}",
    "/jobs/{name}/cancel",
    "/cronjobs",
    "/cronjobs/{name}",
    "/cronjobs/{name}/trigger",
    "/buildconfigs",
    "/buildconfigs/{name}",
    "/buildconfigs/{name}/instantiate",
    "/buildconfigs/{name}/instantiatebinary",
    "/buildconfigs/{name}/webhooks",
    "/buildconfigs/{name}/webhooks/{secret}/{kind}",
    "/builds",
    "/builds/{name}",
    "/builds/{name}/cancel",
    "/endpoints",
    "/events",
    "/logs",
    "/metrics",
];

/// The routes of a project's objects under `prefix`: `/v1` serves the
/// default project, as before projects existed.
fn in_project(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/batch"), post(batch::create))
        .route(&format!("{prefix}/export"), post(export::export))
        .route(
            &format!("{prefix}/templates"),
            get(resource::list::<Template>).post(resource::create::<Template>),
        )
        .route(
            &format!("{prefix}/templates/{{name}}"),
            get(resource::get::<Template>)
                .put(resource::update::<Template>)
                .delete(resource::delete::<Template>),
        )
        .route(
            &format!("{prefix}/services"),
            get(resource::list::<Service>).post(resource::create::<Service>),
        )
        .route(
            &format!("{prefix}/services/{{name}}"),
            get(resource::get::<Service>)
                .put(resource::update::<Service>)
                .delete(resource::delete::<Service>),
        )
        .route(
            &format!("{prefix}/services/{{name}}/scale"),
            post(services::scale),
        )
        .route(
            &format!("{prefix}/services/{{name}}/deployments"),
            get(deployments::list),
        )
        .route(
            &format!("{prefix}/services/{{name}}/deployments/{{revision}}"),
            get(deployments::get),
        )
        .route(
            &format!("{prefix}/services/{{name}}/rollback"),
            post(deployments::rollback),
        )
        .route(
            &format!("{prefix}/services/{{name}}/restart"),
            post(deployments::restart),
        )
        .route(
            &format!("{prefix}/services/{{name}}/pause"),
            post(deployments::pause),
        )
        .route(
            &format!("{prefix}/services/{{name}}/resume"),
            post(deployments::resume),
        )
        .route(
            &format!("{prefix}/services/{{name}}/promote"),
            post(deployments::promote),
        )
        .route(
            &format!("{prefix}/services/{{name}}/cancel"),
            post(deployments::cancel),
        )
        .route(
            &format!("{prefix}/deployments"),
            get(resource::list::<Deployment>),
        )
        .route(
            &format!("{prefix}/imagestreams"),
            get(resource::list::<ImageStream>).post(resource::create::<ImageStream>),
        )
        .route(
            &format!("{prefix}/imagestreams/{{name}}"),
            get(resource::get::<ImageStream>)
                .put(resource::update::<ImageStream>)
                .delete(resource::delete::<ImageStream>),
        )
        .route(
            &format!("{prefix}/imagestreams/{{name}}/tags"),
            post(image_streams::tag),
        )
        .route(
            &format!("{prefix}/imagestreams/{{name}}/import"),
            post(image_streams::import),
        )
        .route(
            &format!("{prefix}/imagestreams/{{name}}/share"),
            post(image_streams::share),
        )
        .route(&format!("{prefix}/usage"), get(registry::usage))
        .route(
            &format!("{prefix}/imagestreams/{{name}}/webhook"),
            get(image_streams::webhook_path),
        )
        .route(
            &format!("{prefix}/imagestreams/{{name}}/webhook/{{secret}}"),
            post(image_streams::webhook),
        )
        .route(
            &format!("{prefix}/services/{{name}}/links"),
            post(links::add),
        )
        .route(
            &format!("{prefix}/services/{{name}}/links/{{target}}"),
            delete(links::remove),
        )
        .route(&format!("{prefix}/pods"), get(resource::list::<ClusterPod>))
        .route(
            &format!("{prefix}/pods/{{name}}"),
            get(resource::get::<ClusterPod>).delete(resource::delete::<ClusterPod>),
        )
        .route(
            &format!("{prefix}/pods/{{name}}/move"),
            post(pods::move_pod),
        )
        .route(
            &format!("{prefix}/routes"),
            get(routes::list).post(resource::create::<Route>),
        )
        .route(
            &format!("{prefix}/routes/{{name}}"),
            get(resource::get::<Route>)
                .put(resource::update::<Route>)
                .delete(resource::delete::<Route>),
        )
        .route(
            &format!("{prefix}/jobs"),
            get(resource::list::<Job>).post(resource::create::<Job>),
        )
        .route(
            &format!("{prefix}/jobs/{{name}}"),
            get(jobs::get).delete(resource::delete::<Job>),
        )
        .route(
            &format!("{prefix}/jobs/{{name}}/cancel"),
            post(jobs::cancel),
        )
        .route(
            &format!("{prefix}/cronjobs"),
            get(resource::list::<CronJob>).post(resource::create::<CronJob>),
        )
        .route(
            &format!("{prefix}/cronjobs/{{name}}"),
            get(resource::get::<CronJob>)
                .put(resource::update::<CronJob>)
                .delete(resource::delete::<CronJob>),
        )
        .route(
            &format!("{prefix}/cronjobs/{{name}}/trigger"),
            post(cron::trigger),
        )
        .route(
            &format!("{prefix}/buildconfigs"),
            get(resource::list::<BuildConfig>).post(resource::create::<BuildConfig>),
        )
        .route(
            &format!("{prefix}/buildconfigs/{{name}}"),
            get(resource::get::<BuildConfig>)
                .put(resource::update::<BuildConfig>)
                .delete(resource::delete::<BuildConfig>),
        )
        .route(
            &format!("{prefix}/buildconfigs/{{name}}/instantiate"),
            post(builds::instantiate),
        )
        .route(
            &format!("{prefix}/buildconfigs/{{name}}/instantiatebinary"),
            post(builds::instantiate_binary)
                .layer(DefaultBodyLimit::max(builds::MAX_BUILD_INPUT_BYTES)),
        )
        .route(
            &format!("{prefix}/buildconfigs/{{name}}/webhooks"),
            get(builds::webhook_paths),
        )
        .route(
            &format!("{prefix}/buildconfigs/{{name}}/webhooks/{{secret}}/{{kind}}"),
            post(builds::webhook),
        )
        .route(&format!("{prefix}/builds"), get(resource::list::<Build>))
        .route(
            &format!("{prefix}/builds/{{name}}"),
            get(resource::get::<Build>),
        )
        .route(
            &format!("{prefix}/builds/{{name}}/cancel"),
            post(builds::cancel),
        )
        .route(&format!("{prefix}/endpoints"), get(endpoints::list))
        .route(&format!("{prefix}/events"), get(events::list))
        .route(&format!("{prefix}/logs"), get(logs::read))
        .route(&format!("{prefix}/metrics"), get(metrics::read))
}

/// An error answer: status, message and the fields at fault.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    body: ApiError,
}

impl ApiFailure {
    /// An error without fields.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: message.into(),
                fields: Vec::new(),
            },
        }
    }

    /// A 400 naming the fields.
    pub fn invalid(what: &str, errors: ValidationErrors) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: ApiError {
                error: format!("invalid {what}"),
                fields: errors.errors().to_vec(),
            },
        }
    }

    /// A 409: the request conflicts with other objects, each problem
    /// naming its field.
    pub fn conflicts(errors: ValidationErrors) -> Self {
        let fields = errors.errors().to_vec();
        let first = fields
            .first()
            .map(|f| format!("{}: {}", f.field, f.message))
            .unwrap_or_default();
        Self {
            status: StatusCode::CONFLICT,
            body: ApiError {
                error: first,
                fields,
            },
        }
    }

    /// A 400 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::field_with_status(StatusCode::BAD_REQUEST, field, message)
    }

    /// An error of `status` about one field (a 409 naming what conflicts).
    pub fn field_with_status(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            body: ApiError {
                error: format!("{field}: {message}"),
                fields: vec![FieldError {
                    field: field.into(),
                    message,
                }],
            },
        }
    }

    /// The same failure, said of `what` (`objects[1] (service db)`).
    pub fn about(mut self, what: &str) -> Self {
        self.body.error = format!("{what}: {}", self.body.error);
        self
    }

    fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "this credential may not do that")
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => StatusCode::CONFLICT,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Compacted { .. } => StatusCode::GONE,
            StoreError::Backend(_) | StoreError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

/// Parses a JSON body, naming the position of a parse error.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(body)
        .map_err(|e| ApiFailure::field("body", format!("not a valid {what}: {e}")))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .ok_or_else(|| ApiFailure::new(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
        identify(state, token).await
    }
}

/// Who carries `token`: the admin, a user, or a node; 401 for anything
/// else.
pub async fn identify(state: &AppState, token: &str) -> Result<Caller, ApiFailure> {
    let hash = auth::hash(token);
    if auth::same_secret(&hash, &state.admin_token_hash) {
        return Ok(Caller::Admin);
    }
    if let Some(user) = auth::user_of_token(token) {
        return user_caller(state, user, &hash).await;
    }
    // Node credentials are `<node>.<secret>`, so the lookup needs no scan.
    if let Some((node, _)) = token.split_once('.') {
        if let Some(entry) = state
            .store
            .get(&objects::key(NODE_CREDENTIALS, node))
            .await?
        {
            if auth::same_secret(&hash, &String::from_utf8_lossy(&entry.value)) {
                return Ok(Caller::Node(node.to_owned()));
            }
        }
    }
    Err(ApiFailure::new(StatusCode::UNAUTHORIZED, "invalid token"))
}

/// The user whose token hashes to `hash`, unless it was revoked (its hash
/// is gone or replaced) or has expired. Read from the store on every
/// request, so a revocation holds at once.
async fn user_caller(state: &AppState, user: &str, hash: &str) -> Result<Caller, ApiFailure> {
    let refused = |why: &str| ApiFailure::new(StatusCode::UNAUTHORIZED, why.to_owned());
    let stored = state
        .store
        .get(&objects::key(USER_CREDENTIALS, user))
        .await?
        .ok_or_else(|| refused("invalid token"))?;
    if !auth::same_secret(hash, &String::from_utf8_lossy(&stored.value)) {
        return Err(refused("invalid token"));
    }
    let account = crate::resource::get::<berth_model::User>(state.store.as_ref(), user)
        .await?
        .ok_or_else(|| refused("invalid token"))?;
    if account
        .object
        .expires_ms
        .is_some_and(|expiry| crate::controller::events::now_ms() >= expiry)
    {
        return Err(refused(
            "this token has expired: ask for a new one (berth user token)",
        ));
    }
    Ok(Caller::User(user.to_owned()))
}

/// The cluster's admin only.
pub fn require_admin(caller: &Caller) -> Result<(), ApiFailure> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Node(_) | Caller::User(_) => Err(ApiFailure::forbidden()),
    }
}

/// The admin, or the node `node` itself.
pub fn require_admin_or_node(caller: &Caller, node: &str) -> Result<(), ApiFailure> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Node(own) if own == node => Ok(()),
        Caller::Node(_) | Caller::User(_) => Err(ApiFailure::forbidden()),
    }
}
