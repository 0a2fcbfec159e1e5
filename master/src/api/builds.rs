//! Builds' own verbs: start one (`instantiate`, or `instantiatebinary`
//! with its input as a tar), the GitHub-style and generic webhooks, cancel,
//! and the inputs nodes download. Build configs and builds are otherwise
//! served by the shared resource handlers.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_model::api::Versioned;
use berth_model::build::{Build, BuildCause, BuildConfig, BuildInput, CauseKind};
use berth_model::project::{qualify, DEFAULT_PROJECT};
use berth_model::{ImageStream, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::extract::{Body, Path};
use super::project::Named;
use super::resource::{fetch, shown};
use super::{parse, ApiFailure, AppState};
use crate::auth::Caller;
use crate::controller::events;
use crate::objects::{self, BUILDCONFIGS, BUILDS, IMAGESTREAMS};

use crate::store::StoreError;

/// Most bytes of a binary build's input.
pub const MAX_BUILD_INPUT_BYTES: usize = 512 << 20;

/// Tries at numbering a build before giving up on a config that keeps
/// changing.
const START_TRIES: usize = 5;

/// `POST .../buildconfigs/{name}/instantiate`: what to build.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    /// The commit to build instead of the branch's head.
    #[serde(default)]
    pub commit: Option<String>,
}

/// `POST /v1/buildconfigs/{name}/instantiate`: a new build of a git
/// config (cause `manual`).
pub async fn instantiate(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Build>>), ApiFailure> {
    named.project.require(Role::Edit)?;
    let request: StartRequest = if body.is_empty() {
        StartRequest::default()
    } else {
        parse("start request", &body)?
    };
    let config = fetch::<BuildConfig>(&state, &named.qualified::<BuildConfig>()).await?;
    let Some(git) = &config.object.git else {
        return Err(ApiFailure::field(
            "input",
            format!(
                "build config {} has no git source: start it with its input (berth build start {0} --from-dir DIR)",
                named.name
            ),
        ));
    };
    if let Some(commit) = &request.commit {
        check_commit(commit).map_err(|e| ApiFailure::field("commit", e))?;
    }
    let input = BuildInput::Git {
        url: git.url.clone(),
        git_ref: git.git_ref.clone(),
        commit: request.commit.clone(),
        context_dir: git.context_dir.clone(),
    };
    let cause = BuildCause {
        kind: CauseKind::Manual,
        detail: request.commit.unwrap_or_default(),
    };
    let by = named.project.caller.to_string();
    let build = start(&state, &config.object.name, cause, &by, Some(input)).await?;
    Ok((StatusCode::CREATED, Json(shown(build))))
}

/// `POST /v1/buildconfigs/{name}/instantiatebinary`: a new build of the
/// tar in the body (cause `binary`); the master keeps the tar by its
/// digest for the node that runs the build.
pub async fn instantiate_binary(
    State(state): State<AppState>,
    named: Named,
    Body(body): Body,
) -> Result<(StatusCode, Json<Versioned<Build>>), ApiFailure> {
    named.project.require(Role::Edit)?;
    let config = fetch::<BuildConfig>(&state, &named.qualified::<BuildConfig>()).await?;
    if body.len() < 512 || !looks_like_tar(&body) {
        return Err(ApiFailure::field(
            "body",
            "must be a tar archive of the build's input (berth build start --from-dir DIR)",
        ));
    }
    let digest = keep_input(&state.build_inputs, body)
        .await
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let cause = BuildCause {
        kind: CauseKind::Binary,
        detail: digest.clone(),
    };
    let by = named.project.caller.to_string();
    let input = BuildInput::Archive { digest };
    let build = start(&state, &config.object.name, cause, &by, Some(input)).await?;
    Ok((StatusCode::CREATED, Json(shown(build))))
}

/// Whether `body` has a tar header's `ustar` magic.
fn looks_like_tar(body: &[u8]) -> bool {
    body.get(257..262) == Some(b"ustar".as_slice())
}

/// Writes `body` under `dir` by its digest (once), 0600; its digest.
async fn keep_input(dir: &FsPath, body: Bytes) -> Result<String, String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        let path = input_path(&dir, &digest).ok_or("a digest without hex")?;
        if !path.exists() {
            write_whole(&dir, &path, &body)
                .map_err(|e| format!("keeping the build's input: {e}"))?;
        }
        Ok(digest)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Writes `bytes` to `path` in `dir` (0700) whole or not at all: a
/// temporary file, synced, renamed; owner-only.
fn write_whole(dir: &FsPath, path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Where a build input of `digest` is kept.
fn input_path(dir: &FsPath, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| dir.join(format!("{hex}.tar")))
}

/// `GET /v1/buildinputs/{digest}`: a binary build's input, for the node
/// that runs it (any node's credential, or the admin).
pub async fn input(
    State(state): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
) -> Result<Response, ApiFailure> {
    if !matches!(caller, Caller::Node(_) | Caller::Admin) {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "only nodes read build inputs",
        ));
    }
    let not_found = || ApiFailure::new(StatusCode::NOT_FOUND, "no such build input");
    let path = input_path(&state.build_inputs, &digest).ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok(([("content-type", "application/octet-stream")], bytes).into_response())
}

/// Numbers and writes build `cause` of config `name` (qualified), with
/// the config's new count, in one commit.
pub async fn start(
    state: &AppState,
    name: &str,
    cause: BuildCause,
    by: &str,
    input: Option<BuildInput>,
) -> Result<Versioned<Build>, ApiFailure> {
    for _ in 0..START_TRIES {
        let config = fetch::<BuildConfig>(state, name).await?;
        let (streams, _) = objects::list::<ImageStream>(state.store.as_ref(), IMAGESTREAMS).await?;
        let streams: Vec<ImageStream> = streams.into_iter().map(|s| s.object).collect();
        let number = config.object.last_version + 1;
        let build = Build::begin(
            &config.object,
            number,
            cause.clone(),
            by,
            input.clone(),
            &streams,
            events::now_ms(),
        )
        .map_err(|(field, message)| ApiFailure::field(&field, message))?;
        let mut counted = config.object.clone();
        counted.last_version = number;
        let ops = vec![
            objects::update(BUILDCONFIGS, name, &counted, config.resource_version),
            objects::create(BUILDS, &build.name, &build),
        ];
        match state.store.apply(ops).await {
            Ok(revision) => {
                return Ok(Versioned {
                    resource_version: revision,
                    object: build,
                })
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiFailure::new(
        StatusCode::CONFLICT,
        "the build config kept changing; try again",
    ))
}

/// A commit id: 4 to 64 hex digits.
fn check_commit(commit: &str) -> Result<(), String> {
    let ok = (4..=64).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit());
    ok.then_some(())
        .ok_or_else(|| format!("{commit:?} is not a commit id"))
}

/// `POST /v1/builds/{name}/cancel`: the build as marked; the controller
/// stops its pod (or drops it from the queue) within a round.
pub async fn cancel(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<Versioned<Build>>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let name = named.qualified::<Build>();
    super::resource::cancel::<Build>(&state, &name, |build| {
        (!build.cancelled && !build.phase.is_final()).then(|| Build {
            cancelled: true,
            ..build.clone()
        })
    })
    .await
}

/// Where a build config's webhooks are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildWebhooks {
    /// GitHub's push events, signed: the path to `POST` to, under the
    /// master's URL, secret included.
    pub github: String,
    /// The generic webhook's path.
    pub generic: String,
}

/// `GET /v1/buildconfigs/{name}/webhooks`: the webhooks' paths, secret
/// included (editors only: whoever has them starts builds).
pub async fn webhook_paths(
    State(state): State<AppState>,
    named: Named,
) -> Result<Json<BuildWebhooks>, ApiFailure> {
    named.project.require(Role::Edit)?;
    let config = fetch::<BuildConfig>(&state, &named.qualified::<BuildConfig>()).await?;
    let base = format!(
        "{}/buildconfigs/{}/webhooks/{}",
        named.project.api_prefix(),
        named.name,
        config.object.webhook_secret
    );
    Ok(Json(BuildWebhooks {
        github: format!("{base}/github"),
        generic: format!("{base}/generic"),
    }))
}

/// What a webhook did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAnswer {
    /// The build it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Why it started none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

fn ignored(why: impl Into<String>) -> (StatusCode, Json<WebhookAnswer>) {
    (
        StatusCode::OK,
        Json(WebhookAnswer {
            started: None,
            ignored: Some(why.into()),
        }),
    )
}

/// The GitHub push event's parts berth reads.
#[derive(Debug, Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref", default)]
    git_ref: String,
    #[serde(default)]
    after: String,
}

/// The generic webhook's optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericPayload {
    #[serde(default)]
    git: Option<GenericGit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenericGit {
    #[serde(rename = "ref", default)]
    git_ref: Option<String>,
    #[serde(default)]
    commit: Option<String>,
}

/// `POST /v1/buildconfigs/{name}/webhooks/{secret}/{github|generic}`: no
/// credential but the secret in the path (and, for GitHub, the body's
/// `X-Hub-Signature-256` keyed with it). A push to the config's branch
/// starts a build of the pushed commit; anything else is a 200 saying it
/// was ignored.
pub async fn webhook(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<WebhookAnswer>), ApiFailure> {
    let project = params
        .get("project")
        .map_or(DEFAULT_PROJECT, String::as_str);
    let (Some(name), Some(secret), Some(kind)) =
        (params.get("name"), params.get("secret"), params.get("kind"))
    else {
        return Err(ApiFailure::new(StatusCode::NOT_FOUND, "no such webhook"));
    };
    let refused = || ApiFailure::new(StatusCode::FORBIDDEN, "wrong webhook secret");
    let qualified = qualify(project, name);
    let Some(config) =
        crate::resource::get::<BuildConfig>(state.store.as_ref(), &qualified).await?
    else {
        return Err(refused());
    };
    let config = config.object;
    if config.webhook_secret.is_empty() || !crate::auth::same_secret(&config.webhook_secret, secret)
    {
        return Err(refused());
    }
    let (cause, git_ref, commit) = match kind.as_str() {
        "github" => {
            let signature = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !signed(&config.webhook_secret, &body, signature) {
                return Err(ApiFailure::new(
                    StatusCode::FORBIDDEN,
                    "X-Hub-Signature-256 does not match the body",
                ));
            }
            let event = headers
                .get("x-github-event")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if event != "push" {
                return Ok(ignored(format!(
                    "a {event:?} event: only push events build"
                )));
            }
            let push: GitHubPush = parse("push event", &body)?;
            (CauseKind::GitWebhook, Some(push.git_ref), Some(push.after))
        }
        "generic" => {
            let payload: GenericPayload = if body.is_empty() {
                GenericPayload::default()
            } else {
                parse("generic webhook payload", &body)?
            };
            let git = payload.git.unwrap_or_default();
            (CauseKind::GenericWebhook, git.git_ref, git.commit)
        }
        _ => return Err(ApiFailure::new(StatusCode::NOT_FOUND, "no such webhook")),
    };
    let Some(git) = &config.git else {
        return Ok(ignored(
            "a binary build config: only berth build start --from-dir starts it",
        ));
    };
    if let Some(pushed) = git_ref {
        let branch = pushed.strip_prefix("refs/heads/").unwrap_or(&pushed);
        if branch != git.git_ref {
            return Ok(ignored(format!(
                "a push to {branch}: this config builds {}",
                git.git_ref
            )));
        }
    }
    let commit = commit.filter(|c| !c.is_empty() && !c.chars().all(|c| c == '0'));
    if let Some(commit) = &commit {
        check_commit(commit).map_err(|e| ApiFailure::field("commit", e))?;
    }
    let input = BuildInput::Git {
        url: git.url.clone(),
        git_ref: git.git_ref.clone(),
        commit: commit.clone(),
        context_dir: git.context_dir.clone(),
    };
    let cause = BuildCause {
        kind: cause,
        detail: commit.unwrap_or_default(),
    };
    let build = start(&state, &qualified, cause, "webhook", Some(input)).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookAnswer {
            started: Some(berth_model::project::unqualified(&build.object.name).to_owned()),
            ignored: None,
        }),
    ))
}

/// Whether `signature` (`sha256=HEX`) is the HMAC-SHA256 of `body` keyed
/// with `secret`, compared in constant time.
fn signed(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures_are_hmac_sha256_of_the_body() {
        // From GitHub's documentation of validating webhook deliveries.
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signed(secret, body, good));
        assert!(!signed(secret, b"Hello, World?", good));
        assert!(!signed("another", body, good));
        assert!(!signed(secret, body, "sha1=757107"));
        assert!(!signed(secret, body, "sha256=zz"));
    }

    #[test]
    fn inputs_are_kept_by_a_hex_digest_only() {
        let dir = FsPath::new("/var/lib/berth/build-inputs");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            input_path(dir, &digest),
            Some(dir.join(format!("{}.tar", "a".repeat(64))))
        );
        assert_eq!(input_path(dir, "sha256:../../etc/passwd"), None);
        assert_eq!(input_path(dir, "md5:abc"), None);
    }
}
