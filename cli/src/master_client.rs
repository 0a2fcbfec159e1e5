//! A client for berth-master's API v1: JSON over HTTP(S), every request
//! carrying the admin token as `Authorization: Bearer`. Error responses carry
//! an [`ApiError`] body, which [`Error::Api`] hands back whole so that the
//! caller can show the fields at fault.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use berth_model::api::{
    JoinToken, JoinTokenRequest, MasterView, Move, NodeView, ProjectUsage, Scale, Versioned,
};
use berth_model::route::RoutesView;
use berth_model::{
    ApiError, Build, BuildConfig, ClusterPod, CronJob, Deployment, Event, EventKind, ImageStream,
    Job, Node, Project, Route, Service, User, UserToken, WhoAmI,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Config;

/// How long one request may take, from connecting to the end of the body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response body read into memory: a list of ten thousand pods,
/// with room to spare.
pub const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How long a watch may stream: in effect forever. reqwest can only replace
/// the client's [`REQUEST_TIMEOUT`] for one request, not lift it.
const WATCH_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Longest piece of an unexpected, non-JSON response body shown to the user.
const MAX_SHOWN_BODY_CHARS: usize = 200;

/// What went wrong talking to the master.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master's URL cannot be a base for API paths.
    #[error("invalid master URL {0}")]
    Url(String),
    /// The HTTP client could not be set up (no TLS backend, for one).
    #[error("cannot set up the HTTP client")]
    Client(#[source] berth_client::Error),
    /// No answer: the master is unreachable, refused the connection, timed
    /// out, or the connection broke.
    #[error("cannot reach the berth master at {url}{}", send_problem(error))]
    Send {
        /// The master's base URL.
        url: String,
        /// What reqwest reported.
        #[source]
        error: reqwest::Error,
    },
    /// The master did not accept the token.
    #[error(
        "the berth master refused the token ({}); run `berth login URL --token TOKEN` \
         with the master's admin token",
        error.error
    )]
    Unauthorized {
        /// The master's explanation.
        error: ApiError,
    },
    /// The master refused the request and said why.
    #[error("{}", error.error)]
    Api {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The master's explanation, with the fields at fault.
        error: ApiError,
    },
    /// The master answered with an error status but no readable explanation.
    #[error("the berth master answered {status}{}", body_suffix(body))]
    Status {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The start of the body, as text.
        body: String,
    },
    /// The answer's body was not the JSON expected.
    #[error("cannot read the berth master's answer ({status})")]
    Decode {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// What serde_json reported.
        #[source]
        error: serde_json::Error,
    },
    /// The answer's body was larger than [`MAX_RESPONSE_BODY_BYTES`].
    #[error("the berth master's answer is larger than {MAX_RESPONSE_BODY_BYTES} bytes")]
    TooLarge,
    /// The master accepted the connection but did not answer in time.
    #[error("cannot reach the berth master at {url} (timed out)")]
    TimedOut {
        /// The master's base URL.
        url: String,
    },
}

/// A hint for the failures a user can do something about; reqwest's own
/// chain of causes follows in the report either way.
fn send_problem(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        " (timed out)"
    } else if error.is_connect() {
        " (is berth-master running there?)"
    } else {
        ""
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// A service just created, or found to exist already.
#[derive(Debug, Clone)]
pub struct CreatedService {
    /// The service as the master stored it.
    pub service: Versioned<Service>,
    /// `false` when an identical service already existed and nothing changed.
    pub created: bool,
}

/// The master's API, on behalf of one token.
#[derive(Clone)]
pub struct MasterClient {
    /// The first master's URL: request URLs are built on it, then moved to
    /// whichever master [`Self::masters`] sends them to.
    base: Url,
    /// Every master (`berth login URL1,URL2,...`) and the one that answered.
    masters: berth_client::Masters,
    token: String,
    http: reqwest::Client,
    /// The project its requests are in; `None` for `default`.
    project: Option<String>,
}

/// The first path segments of a project's objects: requests for them go
/// under `/v1/projects/{project}` (the master's `PROJECT_PATHS`).
const PROJECT_KINDS: [&str; 17] = [
    "usage",
    "buildconfigs",
    "builds",
    "templates",
    "export",
    "batch",
    "services",
    "deployments",
    "imagestreams",
    "jobs",
    "cronjobs",
    "pods",
    "routes",
    "endpoints",
    "events",
    "logs",
    "metrics",
];

impl Error {
    /// Whether the master answered 404: the object (or project) does not
    /// exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Api { status, .. } | Error::Status { status, .. } if *status == StatusCode::NOT_FOUND
        )
    }
}

impl fmt::Debug for MasterClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// What `POST /v1/nodes/{name}/drain` did.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drained {
    /// The node, now cordoned.
    pub node: String,
    /// Pods evicted from it.
    pub evicted: Vec<String>,
    /// Pods left on it (stateful, or of no service).
    pub kept: Vec<String>,
}

impl MasterClient {
    /// A client for the master at `config.url`, authenticating with
    /// `config.token`.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let urls = berth_client::masters::split_list(&config.url);
        let first = urls.first().ok_or_else(|| Error::Url(config.url.clone()))?;
        for url in &urls {
            if Url::parse(url).map_or(true, |url| url.cannot_be_a_base()) {
                return Err(Error::Url(url.clone()));
            }
        }
        let base = Url::parse(first).map_err(|_| Error::Url(config.url.clone()))?;
        // A master with its own CA: trust that CA, and only it.
        let http = berth_client::pinned(config.ca_pem.as_deref())
            .map_err(Error::Client)?
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Client(berth_client::Error::Client(e)))?;
        Ok(Self {
            base,
            masters: berth_client::Masters::new(urls),
            token: config.token.clone(),
            http,
            project: config
                .project
                .clone()
                .filter(|p| p != berth_model::DEFAULT_PROJECT),
        })
    }

    /// The project requests are in.
    pub fn project(&self) -> &str {
        self.project
            .as_deref()
            .unwrap_or(berth_model::DEFAULT_PROJECT)
    }

    /// The same client, working in `project`.
    pub fn in_project(&self, project: &str) -> MasterClient {
        MasterClient {
            project: (project != berth_model::DEFAULT_PROJECT).then(|| project.to_owned()),
            ..self.clone()
        }
    }

    /// `POST /v1/batch`: creates every object (each with its `kind`) in
    /// one commit, or none.
    pub async fn create_batch(&self, objects: &[serde_json::Value]) -> Result<BatchCreated, Error> {
        let body = serde_json::json!({ "objects": objects });
        self.call(Method::POST, &["batch"], Some(&body)).await
    }

    /// `POST /v1/templates`: stores `template`, or confirms an identical one.
    pub async fn create_template(
        &self,
        template: &berth_model::Template,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::POST, &["templates"], Some(template))
            .await
    }

    /// `GET /v1/templates`.
    pub async fn list_templates(&self) -> Result<Vec<Versioned<berth_model::Template>>, Error> {
        self.call(Method::GET, &["templates"], None::<&()>).await
    }

    /// `GET /v1/templates/{name}`.
    pub async fn get_template(
        &self,
        name: &str,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::GET, &["templates", name], None::<&()>)
            .await
    }

    /// `DELETE /v1/templates/{name}`.
    pub async fn delete_template(
        &self,
        name: &str,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::DELETE, &["templates", name], None::<&()>)
            .await
    }

    /// `POST /v1/export`: `services` with their links and routes as
    /// template `name`, every secret a generated parameter.
    pub async fn export_template(
        &self,
        name: &str,
        services: &[String],
        parameterize: &[String],
    ) -> Result<berth_model::Template, Error> {
        let body = serde_json::json!({
            "name": name,
            "services": services,
            "parameterize": parameterize,
        });
        self.call(Method::POST, &["export"], Some(&body)).await
    }

    /// `POST /v1/shared/templates`: stores `template` in the shared
    /// library (the admin only).
    pub async fn create_shared_template(
        &self,
        template: &berth_model::Template,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::POST, &["shared", "templates"], Some(template))
            .await
    }

    /// `GET /v1/shared/templates`.
    pub async fn list_shared_templates(
        &self,
    ) -> Result<Vec<Versioned<berth_model::Template>>, Error> {
        self.call(Method::GET, &["shared", "templates"], None::<&()>)
            .await
    }

    /// `GET /v1/shared/templates/{name}`.
    pub async fn get_shared_template(
        &self,
        name: &str,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::GET, &["shared", "templates", name], None::<&()>)
            .await
    }

    /// `DELETE /v1/shared/templates/{name}` (the admin only).
    pub async fn delete_shared_template(
        &self,
        name: &str,
    ) -> Result<Versioned<berth_model::Template>, Error> {
        self.call(Method::DELETE, &["shared", "templates", name], None::<&()>)
            .await
    }

    /// `POST /v1/volumes`: defines a network volume (the admin only).
    pub async fn create_network_volume(
        &self,
        volume: &berth_model::NetworkVolume,
    ) -> Result<Versioned<berth_model::NetworkVolume>, Error> {
        self.call(Method::POST, &["volumes"], Some(volume)).await
    }

    /// `GET /v1/volumes`: the network volumes an admin defined.
    pub async fn list_network_volumes(
        &self,
    ) -> Result<Vec<Versioned<berth_model::NetworkVolume>>, Error> {
        self.call(Method::GET, &["volumes"], None::<&()>).await
    }

    /// `DELETE /v1/volumes/{name}` (the admin only).
    pub async fn delete_network_volume(
        &self,
        name: &str,
    ) -> Result<Versioned<berth_model::NetworkVolume>, Error> {
        self.call(Method::DELETE, &["volumes", name], None::<&()>)
            .await
    }

    /// `GET /v1/services`.
    pub async fn list_services(&self) -> Result<Vec<Versioned<Service>>, Error> {
        self.call(Method::GET, &["services"], None::<&()>).await
    }

    /// `POST /v1/jobs`: creates `job`, or confirms an identical one.
    pub async fn create_job(&self, job: &Job) -> Result<Versioned<Job>, Error> {
        self.call(Method::POST, &["jobs"], Some(job)).await
    }

    /// `GET /v1/jobs`.
    pub async fn list_jobs(&self) -> Result<Vec<Versioned<Job>>, Error> {
        self.call(Method::GET, &["jobs"], None::<&()>).await
    }

    /// `GET /v1/jobs/{name}[?wait=SECS]`: with `wait`, once it has ended
    /// or after that long.
    pub async fn get_job(&self, name: &str, wait: Option<u64>) -> Result<Versioned<Job>, Error> {
        self.get_waiting(&["jobs", name], wait).await
    }

    /// `POST /v1/jobs/{name}/cancel`.
    pub async fn cancel_job(&self, name: &str) -> Result<Versioned<Job>, Error> {
        self.call(Method::POST, &["jobs", name, "cancel"], None::<&()>)
            .await
    }

    /// `POST /v1/buildconfigs`.
    pub async fn create_build_config(
        &self,
        config: &BuildConfig,
    ) -> Result<Versioned<BuildConfig>, Error> {
        self.call(Method::POST, &["buildconfigs"], Some(config))
            .await
    }

    /// `GET /v1/buildconfigs`.
    pub async fn list_build_configs(&self) -> Result<Vec<Versioned<BuildConfig>>, Error> {
        self.call(Method::GET, &["buildconfigs"], None::<&()>).await
    }

    /// `PUT /v1/buildconfigs/{name}` at the revision read.
    pub async fn replace_build_config(
        &self,
        config: &Versioned<BuildConfig>,
    ) -> Result<Versioned<BuildConfig>, Error> {
        self.call(
            Method::PUT,
            &["buildconfigs", &config.object.name],
            Some(config),
        )
        .await
    }

    /// `GET /v1/buildconfigs/{name}`.
    pub async fn get_build_config(&self, name: &str) -> Result<Versioned<BuildConfig>, Error> {
        self.call(Method::GET, &["buildconfigs", name], None::<&()>)
            .await
    }

    /// `DELETE /v1/buildconfigs/{name}`.
    pub async fn delete_build_config(&self, name: &str) -> Result<Versioned<BuildConfig>, Error> {
        self.call(Method::DELETE, &["buildconfigs", name], None::<&()>)
            .await
    }

    /// `POST /v1/buildconfigs/{name}/instantiate`.
    pub async fn start_build(
        &self,
        name: &str,
        commit: Option<&str>,
    ) -> Result<Versioned<Build>, Error> {
        let body = serde_json::json!({ "commit": commit });
        self.call(
            Method::POST,
            &["buildconfigs", name, "instantiate"],
            Some(&body),
        )
        .await
    }

    /// `POST /v1/buildconfigs/{name}/instantiatebinary` with `tar`.
    pub async fn start_binary_build(
        &self,
        name: &str,
        tar: Vec<u8>,
    ) -> Result<Versioned<Build>, Error> {
        let url = self.url(&["buildconfigs", name, "instantiatebinary"]);
        let response = self
            .failover(Method::POST, &url, |request| {
                request
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .timeout(REQUEST_TIMEOUT * 10)
                    .body(tar.clone())
            })
            .await?;
        read_json(response).await
    }

    /// `GET /v1/buildconfigs/{name}/webhooks`: the paths, secret included.
    pub async fn build_webhooks(&self, name: &str) -> Result<BuildWebhooks, Error> {
        self.call(
            Method::GET,
            &["buildconfigs", name, "webhooks"],
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/builds`.
    pub async fn list_builds(&self) -> Result<Vec<Versioned<Build>>, Error> {
        self.call(Method::GET, &["builds"], None::<&()>).await
    }

    /// `GET /v1/builds/{name}`.
    pub async fn get_build(&self, name: &str) -> Result<Versioned<Build>, Error> {
        self.call(Method::GET, &["builds", name], None::<&()>).await
    }

    /// `POST /v1/builds/{name}/cancel`.
    pub async fn cancel_build(&self, name: &str) -> Result<Versioned<Build>, Error> {
        self.call(Method::POST, &["builds", name, "cancel"], None::<&()>)
            .await
    }

    /// `DELETE /v1/jobs/{name}`.
    pub async fn delete_job(&self, name: &str) -> Result<Versioned<Job>, Error> {
        self.call(Method::DELETE, &["jobs", name], None::<&()>)
            .await
    }

    /// `POST /v1/cronjobs`.
    pub async fn create_cron_job(&self, cron: &CronJob) -> Result<Versioned<CronJob>, Error> {
        self.call(Method::POST, &["cronjobs"], Some(cron)).await
    }

    /// `GET /v1/cronjobs`.
    pub async fn list_cron_jobs(&self) -> Result<Vec<Versioned<CronJob>>, Error> {
        self.call(Method::GET, &["cronjobs"], None::<&()>).await
    }

    /// `GET /v1/cronjobs/{name}`.
    pub async fn get_cron_job(&self, name: &str) -> Result<Versioned<CronJob>, Error> {
        self.call(Method::GET, &["cronjobs", name], None::<&()>)
            .await
    }

    /// `PUT /v1/cronjobs/{name}`, if nobody changed it since it was read.
    pub async fn replace_cron_job(
        &self,
        cron: &Versioned<CronJob>,
    ) -> Result<Versioned<CronJob>, Error> {
        let name = cron.object.name.clone();
        self.call(Method::PUT, &["cronjobs", &name], Some(cron))
            .await
    }

    /// `DELETE /v1/cronjobs/{name}`.
    pub async fn delete_cron_job(&self, name: &str) -> Result<Versioned<CronJob>, Error> {
        self.call(Method::DELETE, &["cronjobs", name], None::<&()>)
            .await
    }

    /// `POST /v1/cronjobs/{name}/trigger`: the job made.
    pub async fn trigger_cron_job(&self, name: &str) -> Result<Versioned<Job>, Error> {
        self.call(Method::POST, &["cronjobs", name, "trigger"], None::<&()>)
            .await
    }

    /// `GET /v1/whoami`: who this login is, and its roles.
    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.call(Method::GET, &["whoami"], None::<&()>).await
    }

    /// `GET /v1/registry`: the integrated registry's address and CA.
    pub async fn registry(&self) -> Result<serde_json::Value, Error> {
        self.call(Method::GET, &["registry"], None::<&()>).await
    }

    /// `GET /v1/usage`: what the project's images take.
    pub async fn project_usage(&self) -> Result<ProjectUsage, Error> {
        self.call(Method::GET, &["usage"], None::<&()>).await
    }

    /// `POST /v1/registry/prune`.
    pub async fn prune_registry(
        &self,
        keep_tag_revisions: usize,
        confirm: bool,
    ) -> Result<serde_json::Value, Error> {
        let body =
            serde_json::json!({ "keepTagRevisions": keep_tag_revisions, "confirm": confirm });
        self.call(Method::POST, &["registry", "prune"], Some(&body))
            .await
    }

    /// The token this client carries: `berth registry login` hands it to
    /// docker as a password.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET /v1/users`.
    pub async fn list_users(&self) -> Result<Vec<Versioned<User>>, Error> {
        self.call(Method::GET, &["users"], None::<&()>).await
    }

    /// `POST /v1/users`: the user and its first token.
    pub async fn create_user(&self, user: &User) -> Result<UserToken, Error> {
        self.call(Method::POST, &["users"], Some(user)).await
    }

    /// `POST /v1/users/{name}/token`: a new token, replacing the old.
    pub async fn new_user_token(&self, name: &str) -> Result<UserToken, Error> {
        self.call(Method::POST, &["users", name, "token"], None::<&()>)
            .await
    }

    /// `DELETE /v1/users/{name}`.
    pub async fn delete_user(&self, name: &str) -> Result<Versioned<User>, Error> {
        self.call(Method::DELETE, &["users", name], None::<&()>)
            .await
    }

    /// `GET /v1/projects`.
    pub async fn list_projects(&self) -> Result<Vec<Versioned<Project>>, Error> {
        self.call(Method::GET, &["projects"], None::<&()>).await
    }

    /// `GET /v1/projects/{name}`.
    pub async fn get_project(&self, name: &str) -> Result<Versioned<Project>, Error> {
        self.call(Method::GET, &["projects", name], None::<&()>)
            .await
    }

    /// `POST /v1/projects`: creates `project`, or confirms an identical one.
    pub async fn create_project(&self, project: &Project) -> Result<Versioned<Project>, Error> {
        self.call(Method::POST, &["projects"], Some(project)).await
    }

    /// `PUT /v1/projects/{name}`, if nobody changed it since it was read.
    pub async fn replace_project(
        &self,
        project: &Versioned<Project>,
    ) -> Result<Versioned<Project>, Error> {
        let name = project.object.name.clone();
        self.call(Method::PUT, &["projects", &name], Some(project))
            .await
    }

    /// `DELETE /v1/projects/{name}`: the project as it was; what was in it
    /// goes too.
    pub async fn delete_project(&self, name: &str) -> Result<Versioned<Project>, Error> {
        self.call(Method::DELETE, &["projects", name], None::<&()>)
            .await
    }

    /// `GET /v1/nodes`.
    pub async fn list_nodes(&self) -> Result<Vec<NodeView>, Error> {
        self.call(Method::GET, &["nodes"], None::<&()>).await
    }

    /// `GET /v1/masters`.
    pub async fn list_masters(&self) -> Result<Vec<MasterView>, Error> {
        self.call(Method::GET, &["masters"], None::<&()>).await
    }

    /// `GET /v1/nodes/{name}`.
    pub async fn get_node(&self, name: &str) -> Result<NodeView, Error> {
        self.call(Method::GET, &["nodes", name], None::<&()>).await
    }

    /// `POST /v1/nodes/{name}/cordon`, or `uncordon` when `cordoned` is false.
    pub async fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<Node, Error> {
        let action = if cordoned { "cordon" } else { "uncordon" };
        self.call(Method::POST, &["nodes", name, action], None::<&()>)
            .await
    }

    /// `POST /v1/nodes/{name}/drain`: cordon, and evict stateless pods.
    pub async fn drain(&self, name: &str) -> Result<Drained, Error> {
        self.call(Method::POST, &["nodes", name, "drain"], None::<&()>)
            .await
    }

    /// `POST /v1/join-tokens`: a one-time token for a new node.
    pub async fn create_join_token(&self) -> Result<JoinToken, Error> {
        self.call(Method::POST, &["join-tokens"], None::<&()>).await
    }

    /// `POST /v1/join-tokens` with `{"node": node}`: a one-time token that
    /// re-registers the registered node `node`, replacing its credential.
    pub async fn create_rejoin_token(&self, node: &str) -> Result<JoinToken, Error> {
        let request = JoinTokenRequest {
            node: Some(node.to_owned()),
        };
        self.call(Method::POST, &["join-tokens"], Some(&request))
            .await
    }

    /// `POST /v1/services`: creates `service`, or confirms that an identical
    /// one exists.
    pub async fn create_service(&self, service: &Service) -> Result<CreatedService, Error> {
        let response = self
            .send(Method::POST, &["services"], Some(service))
            .await?;
        let created = response.status() == StatusCode::CREATED;
        let service = read_json(response).await?;
        Ok(CreatedService { service, created })
    }

    /// `GET /v1/services/{name}`.
    pub async fn get_service(&self, name: &str) -> Result<Versioned<Service>, Error> {
        self.call(Method::GET, &["services", name], None::<&()>)
            .await
    }

    /// `PUT /v1/services/{name}`, if nobody changed it since it was read;
    /// secret values sent blank keep their stored values, a service equal
    /// to the stored one is answered unwritten (same revision), and
    /// `force` replaces it even if it breaks a route or link.
    pub async fn replace_service(
        &self,
        service: &Versioned<Service>,
        force: bool,
    ) -> Result<Versioned<Service>, Error> {
        let mut url = self.url(&["services", &service.object.name]);
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        let response = self
            .failover(Method::PUT, &url, |request| request.json(service))
            .await?;
        read_json(response).await
    }

    /// `GET /v1/services/{name}/deployments`: its revisions, oldest first.
    pub async fn list_deployments(
        &self,
        service: &str,
    ) -> Result<Vec<Versioned<Deployment>>, Error> {
        self.call(
            Method::GET,
            &["services", service, "deployments"],
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/services/{name}/deployments/{revision}[?wait=SECS]`: with
    /// `wait`, once the rollout is over or after that long.
    pub async fn get_deployment(
        &self,
        service: &str,
        revision: u64,
        wait: Option<u64>,
    ) -> Result<Versioned<Deployment>, Error> {
        let revision = revision.to_string();
        self.get_waiting(&["services", service, "deployments", &revision], wait)
            .await
    }

    /// `POST /v1/imagestreams`.
    pub async fn create_image_stream(
        &self,
        stream: &ImageStream,
    ) -> Result<Versioned<ImageStream>, Error> {
        self.call(Method::POST, &["imagestreams"], Some(stream))
            .await
    }

    /// `GET /v1/imagestreams`.
    pub async fn list_image_streams(&self) -> Result<Vec<Versioned<ImageStream>>, Error> {
        self.call(Method::GET, &["imagestreams"], None::<&()>).await
    }

    /// `GET /v1/imagestreams/{name}`.
    pub async fn get_image_stream(&self, name: &str) -> Result<Versioned<ImageStream>, Error> {
        self.call(Method::GET, &["imagestreams", name], None::<&()>)
            .await
    }

    /// `DELETE /v1/imagestreams/{name}`.
    pub async fn delete_image_stream(&self, name: &str) -> Result<Versioned<ImageStream>, Error> {
        self.call(Method::DELETE, &["imagestreams", name], None::<&()>)
            .await
    }

    /// `GET /v1/imagestreams/{name}/webhook`: the webhook's path.
    pub async fn image_stream_webhook(&self, name: &str) -> Result<String, Error> {
        let answer: serde_json::Value = self
            .call(Method::GET, &["imagestreams", name, "webhook"], None::<&()>)
            .await?;
        Ok(answer["path"].as_str().unwrap_or_default().to_owned())
    }

    /// `POST /v1/imagestreams/{stream}/tags`: points `tag` at `from`.
    pub async fn tag_image(
        &self,
        stream: &str,
        tag: &str,
        from: &str,
        alias: bool,
    ) -> Result<Versioned<ImageStream>, Error> {
        let body = serde_json::json!({ "tag": tag, "from": from, "alias": alias });
        self.call(Method::POST, &["imagestreams", stream, "tags"], Some(&body))
            .await
    }

    /// `POST /v1/imagestreams/{name}/share`.
    pub async fn share_image_stream(
        &self,
        stream: &str,
        project: &str,
        shared: bool,
    ) -> Result<Versioned<ImageStream>, Error> {
        let body = serde_json::json!({ "project": project, "shared": shared });
        self.call(
            Method::POST,
            &["imagestreams", stream, "share"],
            Some(&body),
        )
        .await
    }

    /// `POST /v1/imagestreams/{name}/import`.
    pub async fn import_image(
        &self,
        stream: &str,
        tag: &str,
        from: &str,
        scheduled: bool,
    ) -> Result<Versioned<ImageStream>, Error> {
        let body = serde_json::json!({ "tag": tag, "from": from, "scheduled": scheduled });
        self.call(
            Method::POST,
            &["imagestreams", stream, "import"],
            Some(&body),
        )
        .await
    }

    /// The master's URL, as the login gave it.
    pub fn base(&self) -> String {
        self.base_url()
    }

    /// `POST /v1/services/{name}/rollback`.
    pub async fn roll_back(
        &self,
        service: &str,
        to_revision: Option<u64>,
    ) -> Result<RolledBack, Error> {
        let body = serde_json::json!({ "toRevision": to_revision });
        self.call(
            Method::POST,
            &["services", service, "rollback"],
            Some(&body),
        )
        .await
    }

    /// `POST /v1/services/{name}/{verb}`: `restart`, `pause`, `resume`,
    /// `promote` or `cancel`; the deployment it made or changed.
    pub async fn rollout_verb(
        &self,
        service: &str,
        verb: &str,
    ) -> Result<Versioned<Deployment>, Error> {
        self.call(Method::POST, &["services", service, verb], None::<&()>)
            .await
    }

    /// `DELETE /v1/services/{name}`: the service as it was; its pods go too.
    pub async fn delete_service(&self, name: &str) -> Result<Versioned<Service>, Error> {
        self.call(Method::DELETE, &["services", name], None::<&()>)
            .await
    }

    /// `POST /v1/services/{name}/scale`.
    pub async fn scale_service(
        &self,
        name: &str,
        replicas: u32,
    ) -> Result<Versioned<Service>, Error> {
        let body = Scale { replicas };
        self.call(Method::POST, &["services", name, "scale"], Some(&body))
            .await
    }

    /// `POST /v1/services/{name}/links`.
    pub async fn add_link(
        &self,
        name: &str,
        link: &berth_model::Link,
    ) -> Result<Versioned<Service>, Error> {
        self.call(Method::POST, &["services", name, "links"], Some(link))
            .await
    }

    /// `DELETE /v1/services/{name}/links/{target}`.
    pub async fn remove_link(&self, name: &str, target: &str) -> Result<Versioned<Service>, Error> {
        self.call(
            Method::DELETE,
            &["services", name, "links", target],
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/routes`: creates `route`, or confirms an identical one.
    pub async fn create_route(&self, route: &Route) -> Result<Versioned<Route>, Error> {
        self.call(Method::POST, &["routes"], Some(route)).await
    }

    /// `PUT /v1/routes/{name}`: replaces a route in one step.
    pub async fn replace_route(&self, route: &Route) -> Result<Versioned<Route>, Error> {
        self.call(Method::PUT, &["routes", &route.name], Some(route))
            .await
    }

    /// `GET /v1/routes/{name}`.
    pub async fn get_route(&self, name: &str) -> Result<Versioned<Route>, Error> {
        self.call(Method::GET, &["routes", name], None::<&()>).await
    }

    /// `GET /v1/routes`: every route, private keys blanked.
    pub async fn list_routes(&self) -> Result<RoutesView, Error> {
        self.call(Method::GET, &["routes"], None::<&()>).await
    }

    /// `DELETE /v1/routes/{name}`: the route as it was.
    pub async fn delete_route(&self, name: &str) -> Result<Versioned<Route>, Error> {
        self.call(Method::DELETE, &["routes", name], None::<&()>)
            .await
    }

    /// `GET /v1/pods`.
    pub async fn list_pods(&self) -> Result<Vec<Versioned<ClusterPod>>, Error> {
        self.call(Method::GET, &["pods"], None::<&()>).await
    }

    /// `POST /v1/pods/{name}/move`: reassigns the pod to node `to` (with
    /// its named volumes' data, the old node's copy kept on request).
    pub async fn move_pod(
        &self,
        name: &str,
        to: &str,
        keep_source: bool,
    ) -> Result<Versioned<ClusterPod>, Error> {
        let body = Move {
            to: to.to_owned(),
            keep_source,
        };
        self.call(Method::POST, &["pods", name, "move"], Some(&body))
            .await
    }

    /// `GET /v1/logs`: one page of a service's or pod's log lines; `query`
    /// holds the query string's pairs.
    pub async fn read_logs(
        &self,
        query: &[(&str, String)],
        wait: Duration,
    ) -> Result<berth_model::logs::LogPage, Error> {
        let mut url = self.url(&["logs"]);
        url.query_pairs_mut().extend_pairs(query);
        let response = self
            .failover(Method::GET, &url, |request| {
                request
                    .header(reqwest::header::ACCEPT, "application/json")
                    .timeout(REQUEST_TIMEOUT + wait)
            })
            .await?;
        read_json(response).await
    }

    /// `GET /v1/metrics`: the latest resource figures of nodes and pods.
    pub async fn read_metrics(&self) -> Result<berth_model::metrics::ClusterMetrics, Error> {
        self.call(Method::GET, &["metrics"], None::<&()>).await
    }

    /// `GET /v1/events`: the events the master keeps, oldest first, of one
    /// kind and about one node when given.
    pub async fn list_events(
        &self,
        kind: Option<EventKind>,
        node: Option<&str>,
    ) -> Result<Vec<Event>, Error> {
        let mut url = self.url(&["events"]);
        add_event_filter(&mut url, kind, node);
        let response = self
            .failover(Method::GET, &url, |request| {
                request.header(reqwest::header::ACCEPT, "application/json")
            })
            .await?;
        read_json(response).await
    }

    /// `GET /v1/events?watch=true`: the events committed from now on, as
    /// they come, until the master ends the stream.
    pub async fn watch_events(
        &self,
        kind: Option<EventKind>,
        node: Option<&str>,
    ) -> Result<EventWatch, Error> {
        let mut url = self.url(&["events"]);
        url.query_pairs_mut().append_pair("watch", "true");
        add_event_filter(&mut url, kind, node);
        let request = self.failover(Method::GET, &url, |request| {
            request
                .header(reqwest::header::ACCEPT, "application/x-ndjson")
                .timeout(WATCH_TIMEOUT)
        });
        // The answer's head comes at once; only the body is open-ended.
        let response = tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .map_err(|_| Error::TimedOut {
                url: self.base_url(),
            })??;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response).await?;
            return Err(error_from(status, &body));
        }
        Ok(EventWatch {
            url: self.masters.current().to_owned(),
            status,
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        })
    }

    /// Sends a request and decodes the answer.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, Error> {
        let response = self.send(method, segments, body).await?;
        read_json(response).await
    }

    /// `GET /v1/<segments...>[?wait=SECS]`: a long poll the master answers
    /// within `wait`, which the client's own timeout must not cut short.
    async fn get_waiting<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        wait: Option<u64>,
    ) -> Result<T, Error> {
        let mut url = self.url(segments);
        if let Some(wait) = wait {
            url.query_pairs_mut().append_pair("wait", &wait.to_string());
        }
        let response = self
            .failover(Method::GET, &url, |request| {
                request.timeout(Duration::from_secs(wait.unwrap_or(0)) + REQUEST_TIMEOUT)
            })
            .await?;
        read_json(response).await
    }

    /// Sends `method /v1/<segments...>` with the token and, if given, a JSON
    /// body; the answer's body may still be arriving.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Response, Error> {
        let url = self.url(segments);
        self.failover(method, &url, |request| {
            let request = request.header(reqwest::header::ACCEPT, "application/json");
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        })
        .await
    }

    /// Sends `method url` with the token, shaped by `finish`, to a master
    /// that answers: `url` is built on the first master's URL and moved to
    /// each master in turn while the one tried is gone (see
    /// [`berth_client::Masters::send`]).
    async fn failover(
        &self,
        method: Method,
        url: &Url,
        finish: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let first = self.base_url();
        let tail = url
            .as_str()
            .strip_prefix(first.as_str())
            .unwrap_or_default();
        let idempotent = berth_client::masters::idempotent(&method);
        self.masters
            .send(idempotent, |master| {
                let request = self
                    .http
                    .request(method.clone(), format!("{master}{tail}"))
                    .bearer_auth(&self.token);
                finish(request)
            })
            .await
            .map_err(|e| Error::Send {
                url: e.url,
                error: e.source.without_url(),
            })
    }

    /// The master's URL as users wrote it, for messages.
    fn base_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// The base URL with `v1` and `segments` appended, each segment
    /// percent-encoded so that a name typed by the user stays one segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1");
            if let Some(project) = &self.project {
                if segments.first().is_some_and(|s| PROJECT_KINDS.contains(s)) {
                    path.push("projects").push(project);
                }
            }
            path.extend(segments);
        }
        url
    }
}

/// What `GET /v1/buildconfigs/{name}/webhooks` answers.
#[derive(Debug, serde::Deserialize)]
pub struct BuildWebhooks {
    /// The GitHub webhook's path.
    pub github: String,
    /// The generic webhook's path.
    pub generic: String,
}

/// What `POST /v1/batch` answers.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCreated {
    /// Each object as `kind/name`, in the order sent.
    pub created: Vec<String>,
}

/// What `POST /v1/services/{name}/rollback` answers.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The new revision.
    pub deployment: Versioned<Deployment>,
    /// Image triggers turned off.
    pub triggers_disabled: Vec<String>,
}

/// Adds `type` and `node` to an events URL, when given.
fn add_event_filter(url: &mut Url, kind: Option<EventKind>, node: Option<&str>) {
    if let Some(kind) = kind {
        url.query_pairs_mut().append_pair("type", kind.as_str());
    }
    if let Some(node) = node {
        url.query_pairs_mut().append_pair("node", node);
    }
}

/// A stream of events from the master: one JSON object per line.
pub struct EventWatch {
    url: String,
    status: StatusCode,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Bytes received after the last whole line.
    buffer: Vec<u8>,
}

impl fmt::Debug for EventWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWatch")
            .field("url", &self.url)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl EventWatch {
    /// The next event, or `None` once the master ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if let Some(event) = next_line(&mut self.buffer, self.status)? {
                return Ok(Some(event));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    if self.buffer.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
                        return Err(Error::TooLarge);
                    }
                    self.buffer.extend_from_slice(&chunk);
                }
                Some(Err(error)) => {
                    return Err(Error::Send {
                        url: self.url.clone(),
                        error: error.without_url(),
                    })
                }
                None => return Ok(None),
            }
        }
    }
}

/// Takes the first whole line off `buffer` and decodes it; blank lines are
/// skipped.
fn next_line(buffer: &mut Vec<u8>, status: StatusCode) -> Result<Option<Event>, Error> {
    while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=end).collect();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return serde_json::from_slice(&line)
            .map(Some)
            .map_err(|error| Error::Decode { status, error });
    }
    Ok(None)
}

/// Reads a whole (capped) body and decodes it, or the error it explains.
async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, Error> {
    let status = response.status();
    let body = read_capped(response).await?;
    if !status.is_success() {
        return Err(error_from(status, &body));
    }
    serde_json::from_slice(&body).map_err(|error| Error::Decode { status, error })
}

/// Reads a body of at most [`MAX_RESPONSE_BODY_BYTES`].
async fn read_capped(mut response: Response) -> Result<Vec<u8>, Error> {
    let url = response.url().origin().ascii_serialization();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
                    return Err(Error::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(Error::Send {
                    url,
                    error: error.without_url(),
                })
            }
        }
    }
}

/// The error an unsuccessful answer stands for: the master's [`ApiError`]
/// when the body is one, otherwise the status and the start of the body.
fn error_from(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(error) if status == StatusCode::UNAUTHORIZED => Error::Unauthorized { error },
        Ok(error) => Error::Api { status, error },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let shown = match text.char_indices().nth(MAX_SHOWN_BODY_CHARS) {
                Some((end, _)) => format!("{}...", &text[..end]),
                None => text.to_owned(),
            };
            Error::Status {
                status,
                body: shown,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_model::FieldError;

    use super::*;

    fn client(url: &str) -> MasterClient {
        MasterClient::new(&Config {
            url: url.to_owned(),
            token: "secret".to_owned(),
            ca_pem: None,
            project: None,
        })
        .unwrap()
    }

    #[test]
    fn a_projects_objects_go_under_the_project() {
        let mut master = client("http://127.0.0.1:7070");
        master.project = Some("a".to_owned());
        assert_eq!(
            master.url(&["services", "web"]).as_str(),
            "http://127.0.0.1:7070/v1/projects/a/services/web"
        );
        assert_eq!(
            master.url(&["nodes", "h1"]).as_str(),
            "http://127.0.0.1:7070/v1/nodes/h1",
            "nodes are the cluster's"
        );
        assert_eq!(
            master.url(&["projects", "a"]).as_str(),
            "http://127.0.0.1:7070/v1/projects/a"
        );
    }

    #[test]
    fn paths_go_under_v1_with_names_encoded() {
        let master = client("http://127.0.0.1:7070");
        assert_eq!(
            master.url(&["services", "web", "scale"]).as_str(),
            "http://127.0.0.1:7070/v1/services/web/scale"
        );
        assert_eq!(
            master.url(&["pods", "../x y"]).as_str(),
            "http://127.0.0.1:7070/v1/pods/..%2Fx%20y"
        );
        let behind_a_proxy = client("https://proxy.example/berth");
        assert_eq!(
            behind_a_proxy.url(&["nodes"]).as_str(),
            "https://proxy.example/berth/v1/nodes"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let debug = format!("{:?}", client("http://m:1"));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":"invalid service","fields":[{"field":"replicas","message":"must be at most 10000"}]}"#;
        match error_from(StatusCode::BAD_REQUEST, body) {
            Error::Api { status, error } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(error.error, "invalid service");
                assert_eq!(
                    error.fields,
                    [FieldError {
                        field: "replicas".to_owned(),
                        message: "must be at most 10000".to_owned()
                    }]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn event_filters_go_in_the_query() {
        let master = client("http://127.0.0.1:7070");
        let mut url = master.url(&["events"]);
        add_event_filter(&mut url, Some(EventKind::PodEvicted), Some("h 1"));
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/v1/events?type=PodEvicted&node=h+1"
        );
        let mut url = master.url(&["events"]);
        add_event_filter(&mut url, None, None);
        assert_eq!(url.as_str(), "http://127.0.0.1:7070/v1/events");
    }

    #[test]
    fn watched_events_are_whole_lines() {
        let line =
            br#"{"timeMs":5,"kind":"NodeReady","object":"node/h1","node":"h1","reason":"r"}"#;
        let mut buffer = line[..10].to_vec();
        assert!(next_line(&mut buffer, StatusCode::OK).unwrap().is_none());
        buffer.extend_from_slice(&line[10..]);
        buffer.extend_from_slice(b"\n\n");
        buffer.extend_from_slice(&line[..3]);
        let event = next_line(&mut buffer, StatusCode::OK).unwrap().unwrap();
        assert_eq!((event.kind, event.time_ms), (EventKind::NodeReady, 5));
        assert!(
            next_line(&mut buffer, StatusCode::OK).unwrap().is_none(),
            "the blank line is skipped"
        );
        assert_eq!(buffer, &line[..3]);
        buffer.extend_from_slice(b"nonsense\n");
        assert!(matches!(
            next_line(&mut buffer, StatusCode::OK),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn a_refused_token_says_to_log_in_again() {
        let error = error_from(StatusCode::UNAUTHORIZED, br#"{"error":"invalid token"}"#);
        let message = error.to_string();
        assert!(
            message.starts_with("the berth master refused the token (invalid token)"),
            "{message}"
        );
        assert!(message.contains("berth login"), "{message}");
    }

    #[test]
    fn other_error_bodies_are_shown_shortened() {
        let error = error_from(StatusCode::BAD_GATEWAY, "x".repeat(500).as_bytes());
        let message = error.to_string();
        assert!(
            message.starts_with("the berth master answered 502 Bad Gateway: xxx"),
            "{message}"
        );
        assert!(message.len() < 260, "{message}");
        assert_eq!(
            error_from(StatusCode::NOT_FOUND, b"").to_string(),
            "the berth master answered 404 Not Found"
        );
    }
}
