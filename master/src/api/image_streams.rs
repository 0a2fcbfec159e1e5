//! Image streams' own verbs: pointing a tag (`berth tag`), the webhook
//! through which a third party registers an image, and reading the
//! webhook's address. Listing, creating and removing streams is
//! [`super::resource`]'s; following tags is the controller's.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::image_stream::{
    parse_stream_tag, tagged_event, validate_tag, ScheduledImport, TagAlias, TagCause, TagEvent,
};
use berth_model::project::{qualify, unqualified, DEFAULT_PROJECT};
use berth_model::{validate_dns_label, ImageStream, Role};
use serde::{Deserialize, Serialize};

use super::extract::{Body, Path};
use super::project::Named;
use super::resource::{fetch, shown};
use super::{parse, ApiFailure, AppState};
use crate::controller::events;
use crate::objects::{self, IMAGESTREAMS};
use crate::registry::remote;
use crate::resource::{self, Resource, Settings};
use crate::store::{Op, StoreError};

/// Tries of a write that races another.
const WRITE_TRIES: usize = 5;

/// `POST .../imagestreams/{name}/tags`: point a tag.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagRequest {
    /// The tag of this stream.
    pub tag: String,
    /// An image reference (`registry/repo:tag`, `repo@sha256:...`), or
    /// another stream's tag of the same project as `STREAM:TAG`.
    pub from: String,
    /// With a `STREAM:TAG` source: keep following it.
    #[serde(default)]
    pub alias: bool,
}

/// `POST /v1/imagestreams/{name}/tags`: points the tag at the source's
/// image now (and, as an alias, whenever the source moves). The stream is
/// made if it does not exist, as `oc tag` does.
pub async fn tag(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<ImageStream>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let request: TagRequest = parse("tag", &body)?;
    validate_dns_label(&named.name).map_err(|e| ApiFailure::field("name", e.to_string()))?;
    validate_tag(&request.tag).map_err(|e| ApiFailure::field("tag", e))?;
    let project = named.project.name.clone();
    let shared = state.shared_with(&project).await?;
    let source = match parse_stream_tag(&request.from) {
        // A stream tag when the stream exists; otherwise an image
        // reference (`local/web:v2` reads as a stream tag too).
        Ok((stream, tag)) => {
            let qualified = qualify(&project, stream);
            match resource::get::<ImageStream>(state.store.as_ref(), &qualified).await? {
                Some(found) => {
                    let event = found.object.current(tag).cloned().ok_or_else(|| {
                        ApiFailure::field(
                            "from",
                            format!("tag {} of stream {stream} points at no image yet", tag),
                        )
                    })?;
                    Some((event, format!("{stream}:{tag}")))
                }
                None => None,
            }
        }
        Err(_) => None,
    };
    if request.alias && source.is_none() {
        return Err(ApiFailure::field(
            "alias",
            "only a tag of an existing stream can be followed",
        ));
    }
    let event = match &source {
        Some((event, _)) => TagEvent {
            created_ms: events::now_ms(),
            cause: TagCause::Tag,
            ..event.clone()
        },
        None => external(&state, &project, &shared, &request.from, TagCause::Tag)
            .map_err(|e| ApiFailure::field("from", e))?,
    };
    let name = named.qualified::<ImageStream>();
    let updated = update_stream(&state, &project, &name, true, |stream| {
        stream.aliases.retain(|a| a.tag != request.tag);
        if let (true, Some((_, from))) = (request.alias, &source) {
            stream.aliases.push(TagAlias {
                tag: request.tag.clone(),
                from: from.clone(),
            });
        }
        moved_event(stream, &name, &request.tag, &event)
    })
    .await?;
    Ok(Json(shown(updated)))
}

/// Points `tag` of `stream` (qualified `name`) at `event`: the event that
/// records the move, if it moved.
pub fn moved_event(
    stream: &mut ImageStream,
    name: &str,
    tag: &str,
    event: &TagEvent,
) -> Vec<berth_model::Event> {
    if stream.point(tag, event.clone()) {
        vec![tagged_event(name, tag, event)]
    } else {
        Vec::new()
    }
}

/// Changes image stream `name` (qualified) of `project` by `edit`, which
/// returns the events to record with the change; makes the stream first
/// when `create` and it does not exist (else 404). Retries when another
/// write races; an edit that changes nothing writes nothing.
pub async fn update_stream(
    state: &AppState,
    project: &str,
    name: &str,
    create: bool,
    edit: impl Fn(&mut ImageStream) -> Vec<berth_model::Event>,
) -> Result<Versioned<ImageStream>, ApiFailure> {
    for _ in 0..WRITE_TRIES {
        let current = resource::get::<ImageStream>(state.store.as_ref(), name).await?;
        let mut stream = match &current {
            Some(current) => current.object.clone(),
            None if create => {
                let stream = new_stream(name, state, project);
                super::resource::require_admitted(state, &stream).await?;
                stream
            }
            None => return Err(super::resource::not_found::<ImageStream>(unqualified(name))),
        };
        let events = edit(&mut stream);
        let mut ops: Vec<Op> = match &current {
            Some(current) if current.object == stream => return Ok(current.clone()),
            Some(current) => vec![objects::update(
                IMAGESTREAMS,
                name,
                &stream,
                current.resource_version,
            )],
            None => resource::create_ops(&stream),
        };
        ops.extend(events.iter().map(events::record));
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok(Versioned {
                    resource_version: revision,
                    object: stream,
                })
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiFailure::new(
        StatusCode::CONFLICT,
        format!(
            "image stream {} kept changing; try again",
            unqualified(name)
        ),
    ))
}

/// A new stream named `name` (qualified), as a create would make it.
pub fn new_stream(name: &str, state: &AppState, project: &str) -> ImageStream {
    let stream = ImageStream {
        name: unqualified(name).to_owned(),
        labels: Default::default(),
        aliases: Vec::new(),
        scheduled_imports: Vec::new(),
        docker_image_repository: String::new(),
        webhook_secret: String::new(),
        status: Default::default(),
    };
    let nothing_shared = BTreeSet::new();
    let settings: Settings<'_> = state.settings(project, &nothing_shared);
    stream.complete(&settings).qualified(project)
}

/// A tag event for an image reference from outside: its digest is the
/// part after `@`, when it has one. Another project's image of the
/// integrated registry is refused.
fn external(
    state: &AppState,
    project: &str,
    shared: &BTreeSet<String>,
    reference: &str,
    cause: TagCause,
) -> Result<TagEvent, String> {
    let reference = reference.trim();
    if let Some(problem) = foreign(state, project, shared, reference) {
        return Err(problem);
    }
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{reference:?} is not an image reference"));
    }
    let digest = reference
        .split_once('@')
        .map(|(_, digest)| digest.to_owned())
        .filter(|d| d.starts_with("sha256:"));
    Ok(TagEvent {
        image: reference.to_owned(),
        digest,
        created_ms: events::now_ms(),
        cause,
        build: None,
    })
}

/// Where a stream's webhook is.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The path to `POST` to, secret included, under the master's URL.
    pub path: String,
}

/// `GET /v1/imagestreams/{name}/webhook`: the webhook's path, secret
/// included (editors only: it lets anyone who has it move tags).
pub async fn webhook_path(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Webhook>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let stream = fetch::<ImageStream>(&state, &named.qualified::<ImageStream>()).await?;
    Ok(Json(Webhook {
        path: format!(
            "{}/imagestreams/{}/webhook/{}",
            named.project.api_prefix(),
            named.name,
            stream.object.webhook_secret
        ),
    }))
}

/// What the webhook takes: berth's own payload or Docker Hub's.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WebhookPayload {
    /// `{"tag": "v1", "image": "registry/repo@sha256:..."}`.
    Generic { tag: String, image: String },
    /// Docker Hub's push notification.
    DockerHub {
        push_data: DockerHubPush,
        repository: DockerHubRepository,
    },
}

#[derive(Debug, Deserialize)]
struct DockerHubPush {
    tag: String,
}

#[derive(Debug, Deserialize)]
struct DockerHubRepository {
    repo_name: String,
}

/// `POST /v1/[projects/{project}/]imagestreams/{name}/webhook/{secret}`
/// (no credential: the secret is one): registers an image on a tag. A
/// wrong secret is a 403 and changes nothing; it is compared in constant
/// time.
pub async fn webhook(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Body(body): Body,
) -> Result<Json<Versioned<ImageStream>>, ApiFailure> {
    let project = params
        .get("project")
        .map_or(DEFAULT_PROJECT, String::as_str)
        .to_owned();
    let (Some(name), Some(secret)) = (params.get("name"), params.get("secret")) else {
        return Err(ApiFailure::new(StatusCode::NOT_FOUND, "no such webhook"));
    };
    let qualified = qualify(&project, name);
    let refused = || ApiFailure::new(StatusCode::FORBIDDEN, "wrong webhook secret");
    // An unknown stream answers like a wrong secret: the path tells
    // nothing to whoever guesses.
    let Some(stream) = resource::get::<ImageStream>(state.store.as_ref(), &qualified).await? else {
        return Err(refused());
    };
    if stream.object.webhook_secret.is_empty()
        || !crate::auth::same_secret(&stream.object.webhook_secret, secret)
    {
        return Err(refused());
    }
    let (tag, image) = match parse::<WebhookPayload>("webhook payload", &body)? {
        WebhookPayload::Generic { tag, image } => (tag, image),
        WebhookPayload::DockerHub {
            push_data,
            repository,
        } => {
            let image = format!("{}:{}", repository.repo_name, push_data.tag);
            (push_data.tag, image)
        }
    };
    validate_tag(&tag).map_err(|e| ApiFailure::field("tag", e))?;
    let shared = state.shared_with(&project).await?;
    let event = external(&state, &project, &shared, &image, TagCause::Webhook)
        .map_err(|e| ApiFailure::field("image", e))?;
    let updated = update_stream(&state, &project, &qualified, false, |stream| {
        moved_event(stream, &qualified, &tag, &event)
    })
    .await?;
    Ok(Json(shown(updated)))
}

/// `POST .../imagestreams/{name}/import`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportRequest {
    /// The tag of this stream.
    pub tag: String,
    /// The image reference to ask its registry about.
    pub from: String,
    /// Ask again on the master's schedule, moving the tag when the
    /// reference moves.
    #[serde(default)]
    pub scheduled: bool,
}

/// `POST /v1/imagestreams/{name}/import`: asks `from`'s registry which
/// digest it points at, and points the tag there (`berth import-image`).
/// The stream is made if it does not exist.
pub async fn import(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<ImageStream>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let request: ImportRequest = parse("import", &body)?;
    validate_dns_label(&named.name).map_err(|e| ApiFailure::field("name", e.to_string()))?;
    validate_tag(&request.tag).map_err(|e| ApiFailure::field("tag", e))?;
    let shared = state.shared_with(&named.project.name).await?;
    if let Some(problem) = foreign(&state, &named.project.name, &shared, &request.from) {
        return Err(ApiFailure::field("from", problem));
    }
    let reference =
        remote::Reference::parse(&request.from).map_err(|e| ApiFailure::field("from", e))?;
    let event = resolve(&state, &reference).await.map_err(|e| {
        if e.contains("unreachable") {
            ApiFailure::new(StatusCode::BAD_GATEWAY, e)
        } else {
            ApiFailure::field("from", e)
        }
    })?;
    let name = named.qualified::<ImageStream>();
    let updated = update_stream(&state, &named.project.name, &name, true, |stream| {
        stream.scheduled_imports.retain(|i| i.tag != request.tag);
        if request.scheduled {
            stream.scheduled_imports.push(ScheduledImport {
                tag: request.tag.clone(),
                from: request.from.clone(),
            });
        }
        moved_event(stream, &name, &request.tag, &event)
    })
    .await?;
    Ok(Json(shown(updated)))
}

/// `POST .../imagestreams/{name}/share`: grants another project's
/// services the stream's images, or takes the grant back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShareRequest {
    /// The project that may (or may no longer) use the stream's images.
    pub project: String,
    /// `false` takes the grant back: the project's running pods keep
    /// their images, and new objects naming them are refused.
    #[serde(default = "yes")]
    pub shared: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/imagestreams/{name}/share`: the stream's project's admin
/// lets `project` name its images (and its users pull them), or stops it.
pub async fn share(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<Json<Versioned<ImageStream>>, ApiFailure> {
    named.project.require(Role::Admin)?;
    let request: ShareRequest = parse("share", &body)?;
    let owner = &named.project.name;
    if request.project == *owner {
        return Err(ApiFailure::field(
            "project",
            format!("the stream is project {owner}'s own"),
        ));
    }
    if request.shared
        && resource::get::<berth_model::Project>(state.store.as_ref(), &request.project)
            .await?
            .is_none()
    {
        return Err(ApiFailure::field(
            "project",
            format!("there is no project {}", request.project),
        ));
    }
    let name = named.qualified::<ImageStream>();
    fetch::<ImageStream>(&state, &name).await?;
    let updated = update_stream(&state, owner, &name, false, |stream| {
        let grants = &mut stream.status.shared_with;
        grants.retain(|p| *p != request.project);
        if request.shared {
            grants.push(request.project.clone());
            grants.sort();
        }
        Vec::new()
    })
    .await?;
    Ok(Json(shown(updated)))
}

/// Why `project` may not name `image`: it is another project's image of
/// the integrated registry, not `shared` with it.
fn foreign(
    state: &AppState,
    project: &str,
    shared: &BTreeSet<String>,
    image: &str,
) -> Option<String> {
    let registry = state.registry.as_deref()?;
    crate::registry::foreign_image(&registry.address, project, shared, image)
}

/// Where `reference` points now, as an import's tag event. The integrated
/// registry is asked on this host, with a token the master signs.
async fn resolve(state: &AppState, reference: &remote::Reference) -> Result<TagEvent, String> {
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &state.ca_pem {
        let ca = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|e| e.to_string())?;
        client = client.add_root_certificate(ca);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let ours = state
        .registry
        .as_deref()
        .filter(|r| r.address == reference.registry);
    let (base, bearer) = match ours {
        Some(registry) => {
            let token = registry
                .own_token(&reference.repository, "pull")
                .map_err(|e| e.to_string())?;
            (Some(registry.local_url.as_str()), Some(token))
        }
        None => (None, None),
    };
    let digest = remote::digest_of(&client, reference, base, bearer).await?;
    Ok(TagEvent {
        image: reference.by_digest(&digest),
        digest: Some(digest),
        created_ms: events::now_ms(),
        cause: TagCause::Import,
        build: None,
    })
}

/// Re-imports the scheduled tags every `interval`, moving those whose
/// reference moved. A registry that cannot be asked is logged and asked
/// again next time.
pub async fn import_forever(state: AppState, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let streams = match resource::list::<ImageStream>(state.store.as_ref()).await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled imports: cannot list the streams");
                continue;
            }
        };
        for stream in streams {
            let name = stream.object.name.clone();
            let project = berth_model::project::split_qualified(&name).0.to_owned();
            for import in &stream.object.scheduled_imports {
                let event = match remote::Reference::parse(&import.from) {
                    Ok(reference) => resolve(&state, &reference).await,
                    Err(e) => Err(e),
                };
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(stream = %name, tag = %import.tag, error = %e, "scheduled import failed");
                        continue;
                    }
                };
                let moved = update_stream(&state, &project, &name, false, |s| {
                    // Only while the import is still scheduled.
                    if s.scheduled_imports.iter().any(|i| i == import) {
                        moved_event(s, &name, &import.tag, &event)
                    } else {
                        Vec::new()
                    }
                })
                .await;
                if let Err(e) = moved {
                    tracing::warn!(stream = %name, tag = %import.tag, error = ?e, "scheduled import not written");
                }
            }
        }
    }
}
