//! The integrated registry's side of the API: its address
//! (`berth registry info`), its token realm (what `docker login`, `docker
//! push` and the agents' pulls ask), the push events that move image
//! stream tags, and pruning.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_model::api::ProjectUsage;
use berth_model::image_stream::{validate_tag, TagCause, TagEvent};
use berth_model::project::{qualify, split_qualified, unqualified};
use berth_model::{validate_dns_label, ClusterPod, Deployment, ImageStream, Project, Role};
use serde::{Deserialize, Serialize};

use super::extract::Body;
use super::image_streams::{moved_event, new_stream, update_stream};
use super::project::InProject;
use super::{identify, parse, require_admin, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::registry::prune::{self, Image, PruneReport, StreamImages};
use crate::registry::token::{self, Access, Grantee};
use crate::registry::Registry;
use crate::resource::{self, Resource};

fn registry(state: &AppState) -> Result<&Registry, ApiFailure> {
    state.registry.as_deref().ok_or_else(|| {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            "this master runs no registry: it serves plain HTTP, and the registry needs its CA",
        )
    })
}

/// `GET /v1/registry`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryInfo {
    /// `HOST:PORT`, as image references name it.
    pub address: String,
    /// The CA its certificate chains to (PEM): what Docker must trust,
    /// in `/etc/docker/certs.d/HOST:PORT/` (berth's agents write
    /// `berth-ca.crt`).
    pub ca_certificate: String,
}

/// `GET /v1/registry`: where the registry is (any credential).
pub async fn info(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<RegistryInfo>, ApiFailure> {
    let registry = registry(&state)?;
    Ok(Json(RegistryInfo {
        address: registry.address.clone(),
        ca_certificate: registry.ca_pem.clone(),
    }))
}

/// `GET /v1/usage`: the project's image streams and image bytes
/// (any member).
pub async fn usage(
    State(state): State<AppState>,
    in_project: InProject,
) -> Result<Json<ProjectUsage>, ApiFailure> {
    in_project.require(Role::ViewNoLogs)?;
    let project = in_project.name.clone();
    let image_streams = resource::list::<ImageStream>(state.store.as_ref())
        .await?
        .iter()
        .filter(|s| berth_model::project::in_project(&s.object.name, &project))
        .count() as u64;
    let image_bytes = match state.registry.as_deref() {
        Some(registry) => {
            let storage = registry.storage.clone();
            tokio::task::spawn_blocking(move || {
                crate::registry::usage::image_bytes(&storage, &project)
            })
            .await
            .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                ApiFailure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the registry's storage: {e}"),
                )
            })?
        }
        None => 0,
    };
    Ok(Json(ProjectUsage {
        image_streams,
        image_bytes,
    }))
}

/// A token answer, in the shape distribution's clients read.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenAnswer {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
}

/// The 401 that asks a client for its berth token as a password.
fn unauthorized(message: &str) -> Response {
    let mut response = ApiFailure::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"berth-registry\""),
    );
    response
}

/// The berth token a client sends: as the password of Basic
/// authentication (`docker login -p`), or as a bearer token.
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = crate::auth::bearer(value) {
        return Some(token.to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `GET /v1/registry/token?service=berth-registry&scope=...`: the token
/// realm. Grants what the credential allows of each scope: a node pulls,
/// a project's viewers pull, its editors push, its admins delete. No
/// credential, or a wrong one, is a 401; a scope the caller may not have
/// is left out of the token, and the registry then refuses.
pub async fn token(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    match issue_token(&state, &uri, &headers).await {
        Ok(answer) => Json(answer).into_response(),
        Err(response) => response,
    }
}

async fn issue_token(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<TokenAnswer, Response> {
    let registry = registry(state).map_err(IntoResponse::into_response)?;
    let Some(secret) = credential(headers) else {
        return Err(unauthorized(
            "the registry takes a berth token as the password (berth registry login)",
        ));
    };
    let caller = identify(state, &secret)
        .await
        .map_err(|_| unauthorized("invalid token"))?;
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "service" if value != token::SERVICE => {
                return Err(ApiFailure::field(
                    "service",
                    format!("this realm serves {}, not {value}", token::SERVICE),
                )
                .into_response())
            }
            "scope" => {
                for scope in value.split(' ').filter(|s| !s.is_empty()) {
                    let access = Access::parse(scope).ok_or_else(|| {
                        ApiFailure::field("scope", format!("{scope:?} is not TYPE:NAME:ACTIONS"))
                            .into_response()
                    })?;
                    scopes.push(access);
                }
            }
            _ => {}
        }
    }
    let mut granted = Vec::new();
    for access in &scopes {
        let grantee = grantee(state, &caller, access)
            .await
            .map_err(IntoResponse::into_response)?;
        let access = token::grant(grantee, access);
        if access.actions.iter().any(|a| a == "push") {
            if let Some(full) = push_refused(state, registry, &access).await {
                return Err(full);
            }
        }
        granted.push(access);
    }
    let ttl = match caller {
        Caller::Node(_) => token::NODE_TOKEN_SECS,
        Caller::Admin | Caller::User(_) => token::USER_TOKEN_SECS,
    };
    let now = events::now_ms() / 1000;
    let signed = registry
        .signer
        .sign(&caller.to_string(), granted, now, ttl)
        .map_err(|e| {
            ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        })?;
    Ok(TokenAnswer {
        token: signed.clone(),
        access_token: signed,
        expires_in: ttl,
    })
}

/// What `caller` is to the registry for `access`: a user's role is its
/// role in the repository's project.
async fn grantee(
    state: &AppState,
    caller: &Caller,
    access: &Access,
) -> Result<Grantee, ApiFailure> {
    Ok(match caller {
        Caller::Admin => Grantee::Admin,
        Caller::Node(node) if access.actions.iter().any(|a| a == "push") => {
            if builds_on(state, node, &access.name).await? {
                Grantee::BuildNode
            } else {
                Grantee::Node
            }
        }
        Caller::Node(_) => Grantee::Node,
        Caller::User(user) => {
            let Some(project) = access.project() else {
                return Ok(Grantee::User(None));
            };
            let role = resource::get::<Project>(state.store.as_ref(), project)
                .await?
                .and_then(|p| p.object.role_of(user));
            match role {
                Some(role) => Grantee::User(Some(role)),
                // A stream shared with a project the user belongs to is
                // theirs to pull.
                None if shared_with_member(state, user, &access.name).await? => {
                    Grantee::User(Some(Role::View))
                }
                None => Grantee::User(None),
            }
        }
    })
}

/// Whether `node` runs a build pod whose output is `repository`: only
/// then may its credential push there.
async fn builds_on(state: &AppState, node: &str, repository: &str) -> Result<bool, ApiFailure> {
    let Some(registry) = state.registry.as_deref() else {
        return Ok(false);
    };
    let pods = resource::list::<ClusterPod>(state.store.as_ref()).await?;
    Ok(pods.iter().any(|p| {
        p.object.node.as_deref() == Some(node)
            && p.object.spec.build.as_ref().is_some_and(|task| {
                crate::registry::repository_in(&registry.address, &task.output) == Some(repository)
            })
    }))
}

/// Whether repository `PROJECT/STREAM` is shared with a project `user`
/// has a role in.
async fn shared_with_member(
    state: &AppState,
    user: &str,
    repository: &str,
) -> Result<bool, ApiFailure> {
    let Some((owner, stream)) = repository.split_once('/') else {
        return Ok(false);
    };
    let name = qualify(owner, stream);
    let Some(found) = resource::get::<ImageStream>(state.store.as_ref(), &name).await? else {
        return Ok(false);
    };
    for project in &found.object.status.shared_with {
        let member = resource::get::<Project>(state.store.as_ref(), project)
            .await?
            .is_some_and(|p| p.object.role_of(user).is_some());
        if member {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The realm's refusal of a push its project's quotas do not allow: a
/// push that would make a stream past the `imageStreams` quota, or any
/// push once the project's images take its `imageBytes` quota. The
/// registry cannot tell the realm how big a push will be, so the push
/// that reaches the bytes quota is the last one let in, until images are
/// pruned or the quota raised.
async fn push_refused(state: &AppState, registry: &Registry, access: &Access) -> Option<Response> {
    let project = access.project()?;
    let quota = resource::get::<Project>(state.store.as_ref(), project)
        .await
        .ok()??
        .object
        .quota;
    let refusal = |message: String| {
        let body = serde_json::json!({
            "errors": [{ "code": "DENIED", "message": message }],
            "message": message,
        });
        (StatusCode::FORBIDDEN, Json(body)).into_response()
    };
    if quota.image_streams.is_some() {
        let stream = access.name.split_once('/')?.1;
        let candidate = new_stream(&qualify(project, stream), state, project);
        if let Some(message) = candidate.admit(state.store.as_ref()).await.ok()? {
            return Some(refusal(message));
        }
    }
    let limit = quota.image_bytes?;
    let storage = registry.storage.clone();
    let owner = project.to_owned();
    let used =
        tokio::task::spawn_blocking(move || crate::registry::usage::image_bytes(&storage, &owner))
            .await
            .ok()?
            .ok()?;
    (used >= limit).then(|| {
        refusal(format!(
            "project {project}'s images take {used} bytes of its quota of {limit} image bytes: \
             prune images (berth image prune) or raise the quota (berth project quota {project} --image-bytes SIZE)"
        ))
    })
}

/// The registry's notification envelope (the parts berth reads).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    events: Vec<RegistryEvent>,
}

#[derive(Debug, Deserialize)]
struct RegistryEvent {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    actor: Actor,
}

/// Who pushed: the subject of the token the registry took.
#[derive(Debug, Default, Deserialize)]
struct Actor {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: String,
}

/// `POST /v1/registry/events`: the registry's push events (its own secret
/// as bearer token). A manifest pushed under a tag points the stream's
/// tag at it, by digest, making the stream if the project has none of
/// that name; the controller then rolls out the services that follow the
/// tag. Events berth does not follow are acknowledged and dropped, so that
/// the registry's queue never stalls on them.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<StatusCode, ApiFailure> {
    let registry = registry(&state)?;
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .unwrap_or_default();
    if !registry.is_registry(secret) {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "only the registry sends its events",
        ));
    }
    let envelope: Envelope = parse("registry event envelope", &body)?;
    for event in envelope.events {
        let target = &event.target;
        let manifest =
            target.media_type.contains("manifest") || target.media_type.contains("image.index");
        if event.action != "push" || !manifest || target.tag.is_empty() {
            continue;
        }
        let Some((project, stream)) = target.repository.split_once('/') else {
            continue;
        };
        if validate_dns_label(project).is_err()
            || validate_dns_label(stream).is_err()
            || validate_tag(&target.tag).is_err()
            || !target.digest.starts_with("sha256:")
        {
            tracing::warn!(repository = %target.repository, tag = %target.tag, "a push berth cannot name as a stream tag");
            continue;
        }
        if resource::get::<Project>(state.store.as_ref(), project)
            .await?
            .is_none()
        {
            tracing::warn!(repository = %target.repository, "a push to a repository of no project");
            continue;
        }
        let build = pushing_build(&state, registry, &event).await?;
        let tagged = TagEvent {
            image: format!(
                "{}/{}@{}",
                registry.address, target.repository, target.digest
            ),
            digest: Some(target.digest.clone()),
            created_ms: events::now_ms(),
            cause: if build.is_some() {
                TagCause::Build
            } else {
                TagCause::Push
            },
            build,
        };
        let name = qualify(project, stream);
        update_stream(&state, project, &name, true, |stream| {
            moved_event(stream, &name, &target.tag, &tagged)
        })
        .await?;
    }
    Ok(StatusCode::OK)
}

/// The build whose push `event` is: a node's push to the output of a
/// build running on that node (only build pods' nodes may push).
async fn pushing_build(
    state: &AppState,
    registry: &Registry,
    event: &RegistryEvent,
) -> Result<Option<String>, ApiFailure> {
    let Some(node) = event.actor.name.strip_prefix("node/") else {
        return Ok(None);
    };
    let output = format!(
        "{}/{}:{}",
        registry.address, event.target.repository, event.target.tag
    );
    let builds = resource::list::<berth_model::Build>(state.store.as_ref()).await?;
    let candidates: Vec<berth_model::Build> = builds
        .into_iter()
        .map(|b| b.object)
        .filter(|b| !b.phase.is_final() && b.task.output == output)
        .collect();
    // The controller may not have seen the build's pod placed yet.
    let on_node = candidates.iter().find(|b| b.node.as_deref() == Some(node));
    Ok(match (on_node, candidates.as_slice()) {
        (Some(build), _) => Some(build.name.clone()),
        (None, [only]) => Some(only.name.clone()),
        _ => None,
    })
}

/// `POST /v1/registry/prune`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneRequest {
    /// The newest images of each tag that stay (3 by default).
    #[serde(default = "default_keep")]
    pub keep_tag_revisions: usize,
    /// Delete; without it, only say what would be deleted.
    #[serde(default)]
    pub confirm: bool,
}

fn default_keep() -> usize {
    3
}

/// `POST /v1/registry/prune` (admin): deletes the images nothing needs
/// and collects the registry's garbage.
pub async fn prune(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<PruneReport>, ApiFailure> {
    require_admin(&caller)?;
    let registry = registry(&state)?;
    let request: PruneRequest = parse("prune request", &body)?;
    if request.keep_tag_revisions == 0 {
        return Err(ApiFailure::field(
            "keepTagRevisions",
            "must be at least 1: a tag's current image always stays",
        ));
    }
    let store = state.store.as_ref();
    let mut in_use = BTreeMap::new();
    for pod in resource::list::<ClusterPod>(store).await? {
        for container in &pod.object.spec.containers {
            if let Some(image) = prune::image_of(&registry.address, &container.image) {
                in_use.insert(
                    image,
                    format!("running pod {}", unqualified(&pod.object.spec.name)),
                );
            }
        }
    }
    for deployment in resource::list::<Deployment>(store).await? {
        for container in &deployment.object.template.containers {
            if let Some(image) = prune::image_of(&registry.address, &container.image) {
                in_use.entry(image).or_insert_with(|| {
                    format!("deployment {}", unqualified(&deployment.object.name))
                });
            }
        }
    }
    let streams: Vec<StreamImages> = resource::list::<ImageStream>(store)
        .await?
        .into_iter()
        .map(|stream| {
            let (project, name) = split_qualified(&stream.object.name);
            let repository = crate::registry::repository(project, name);
            let tags = stream
                .object
                .status
                .tags
                .iter()
                .map(|(tag, history)| {
                    let digests = history
                        .iter()
                        .filter_map(|e| prune::image_of(&registry.address, &e.image))
                        .filter(|image| image.repository == repository)
                        .map(|image| image.digest)
                        .collect();
                    (tag.clone(), digests)
                })
                .collect();
            StreamImages {
                repository,
                stream: name.to_owned(),
                tags,
            }
        })
        .collect();
    let (deleted, kept) = prune::plan(&streams, &in_use, request.keep_tag_revisions);
    let mut report = PruneReport {
        dry_run: !request.confirm,
        deleted,
        kept,
        garbage_collection: String::new(),
    };
    if request.confirm {
        delete_manifests(registry, &report.deleted).await?;
        report.garbage_collection = collect_garbage(registry).await?;
    }
    Ok(Json(report))
}

/// Deletes each image's manifest through the registry's API, with a token
/// the master signs itself.
async fn delete_manifests(registry: &Registry, images: &[Image]) -> Result<(), ApiFailure> {
    let unavailable = |e: String| ApiFailure::new(StatusCode::BAD_GATEWAY, e);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(registry.ca_pem.as_bytes())
                .map_err(|e| unavailable(e.to_string()))?,
        )
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    for image in images {
        let bearer = registry
            .own_token(&image.repository, "delete")
            .map_err(|e| unavailable(e.to_string()))?;
        let url = format!(
            "{}/v2/{}/manifests/{}",
            registry.local_url, image.repository, image.digest
        );
        let answer = client
            .delete(&url)
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "deleting {}@{}: {e}",
                    image.repository, image.digest
                ))
            })?;
        let status = answer.status();
        if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
            let text = answer.text().await.unwrap_or_default();
            return Err(unavailable(format!(
                "the registry refused to delete {}@{}: {status} {text}",
                image.repository, image.digest
            )));
        }
    }
    Ok(())
}

/// Runs `docker-registry garbage-collect` on the registry's configuration:
/// layers no manifest names leave the disk. Its last lines are returned.
async fn collect_garbage(registry: &Registry) -> Result<String, ApiFailure> {
    let output = tokio::process::Command::new("docker-registry")
        .arg("garbage-collect")
        .arg(&registry.config_path)
        .output()
        .await
        .map_err(|e| {
            ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("running docker-registry garbage-collect: {e}"),
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if !output.status.success() {
        return Err(ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("docker-registry garbage-collect failed: {tail}"),
        ));
    }
    Ok(tail)
}
