//! Image streams' own verbs: pointing a tag (`berth tag`), the webhook
//! through which a third party registers an image, and reading the
//! webhook's address. Listing, creating and removing streams is
//! [`super::resource`]'s; following tags is the controller's.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::image_stream::{
    parse_stream_tag, tagged_event, validate_tag, TagAlias, TagCause, TagEvent,
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
        None => external(&request.from, TagCause::Tag).map_err(|e| ApiFailure::field("from", e))?,
    };
    let name = named.qualified::<ImageStream>();
    for _ in 0..WRITE_TRIES {
        let current = resource::get::<ImageStream>(state.store.as_ref(), &name).await?;
        let mut stream = match &current {
            Some(current) => current.object.clone(),
            None => new_stream(&name, &state, &project),
        };
        stream.aliases.retain(|a| a.tag != request.tag);
        if let (true, Some((_, from))) = (request.alias, &source) {
            stream.aliases.push(TagAlias {
                tag: request.tag.clone(),
                from: from.clone(),
            });
        }
        let moved = stream.point(&request.tag, event.clone());
        let mut ops: Vec<Op> = match &current {
            Some(current) => vec![objects::update(
                IMAGESTREAMS,
                &name,
                &stream,
                current.resource_version,
            )],
            None => resource::create_ops(&stream),
        };
        if moved {
            ops.push(events::record(&tagged_event(&name, &request.tag, &event)));
        }
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok(Json(shown(Versioned {
                    resource_version: revision,
                    object: stream,
                })))
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiFailure::new(
        StatusCode::CONFLICT,
        format!("image stream {} kept changing; try again", named.name),
    ))
}

/// A new stream named `name` (qualified), as a create would make it.
fn new_stream(name: &str, state: &AppState, project: &str) -> ImageStream {
    let stream = ImageStream {
        name: unqualified(name).to_owned(),
        labels: Default::default(),
        aliases: Vec::new(),
        webhook_secret: String::new(),
        status: Default::default(),
    };
    let settings: Settings<'_> = state.settings(project);
    stream.complete(&settings).qualified(project)
}

/// A tag event for an image reference from outside: its digest is the
/// part after `@`, when it has one.
fn external(reference: &str, cause: TagCause) -> Result<TagEvent, String> {
    let reference = reference.trim();
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
    let project = &named.project.name;
    let prefix = if project == DEFAULT_PROJECT {
        "/v1".to_owned()
    } else {
        format!("/v1/projects/{project}")
    };
    Ok(Json(Webhook {
        path: format!(
            "{prefix}/imagestreams/{}/webhook/{}",
            named.name, stream.object.webhook_secret
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
    let event = external(&image, TagCause::Webhook).map_err(|e| ApiFailure::field("image", e))?;
    let mut current = stream;
    for _ in 0..WRITE_TRIES {
        let mut updated = current.object.clone();
        let moved = updated.point(&tag, event.clone());
        if !moved {
            return Ok(Json(shown(current)));
        }
        let ops = vec![
            objects::update(IMAGESTREAMS, &qualified, &updated, current.resource_version),
            events::record(&tagged_event(&qualified, &tag, &event)),
        ];
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok(Json(shown(Versioned {
                    resource_version: revision,
                    object: updated,
                })))
            }
            Err(StoreError::Conflict { .. }) => {
                current = fetch::<ImageStream>(&state, &qualified).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiFailure::new(
        StatusCode::CONFLICT,
        format!("image stream {name} kept changing; try again"),
    ))
}
