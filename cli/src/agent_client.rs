//! A client for the local berth-agent's HTTP API, spoken as HTTP/1.1 over the
//! agent's root-only unix socket.
//!
//! Each call opens its own connection: a command makes one request, and a
//! fresh connection cannot be left half-used by an earlier one. Error
//! responses carry an [`ApiError`] body, which [`Error::Api`] hands back whole
//! so that the caller can show the fields at fault.

use std::io;
use std::path::{Path, PathBuf};

use berth_model::{ApiError, Pod, PodStatus};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/berth/agent.sock";

/// Largest response body read into memory. Log streams are not buffered and
/// not capped; everything else is a pod status or a list of them.
pub const MAX_RESPONSE_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Longest piece of an unexpected, non-JSON response body shown to the user.
const MAX_SHOWN_BODY_CHARS: usize = 200;

/// What went wrong talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be connected to: the agent is not running, or
    /// the caller is not allowed to use its socket.
    #[error("cannot connect to the berth agent at {}: {}", socket.display(), connect_problem(error))]
    Connect {
        /// The socket tried.
        socket: PathBuf,
        /// Why connecting failed.
        error: io::Error,
    },
    /// The connection broke, or the agent did not speak HTTP.
    #[error("talking to the berth agent at {}", socket.display())]
    Http {
        /// The socket connected to.
        socket: PathBuf,
        /// What hyper reported.
        #[source]
        error: hyper::Error,
    },
    /// The agent refused the request and said why.
    #[error("{}", error.error)]
    Api {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The agent's explanation, with the fields at fault.
        error: ApiError,
    },
    /// The agent answered with an error status but no readable explanation.
    #[error("the berth agent answered {status}{}", body_suffix(body))]
    Status {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The start of the body, as text.
        body: String,
    },
    /// The answer's body was not the JSON expected.
    #[error("cannot read the berth agent's answer ({status})")]
    Decode {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// What serde_json reported.
        #[source]
        error: serde_json::Error,
    },
    /// The answer's body was larger than [`MAX_RESPONSE_BODY_BYTES`].
    #[error("the berth agent's answer is larger than {MAX_RESPONSE_BODY_BYTES} bytes")]
    TooLarge,
    /// The request could not be encoded.
    #[error("cannot encode the request")]
    Encode(#[source] serde_json::Error),
    /// The request could not be built (a bug: every part of it is ours).
    #[error("cannot build the request")]
    Request(#[source] hyper::http::Error),
}

/// Why a connect failed, with what to do about it.
fn connect_problem(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "no such socket; is the agent running? see `systemctl status berth-agent`".to_owned()
        }
        io::ErrorKind::ConnectionRefused => {
            "connection refused; is the agent running? see `systemctl status berth-agent`"
                .to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied; the agent's socket is root-only, run berth as root".to_owned()
        }
        _ => format!("{error}; see `systemctl status berth-agent`"),
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// The answer to a pod creation.
#[derive(Debug, Clone)]
pub struct CreatedPod {
    /// The pod as the agent now reports it.
    pub status: PodStatus,
    /// `false` when an identical pod already existed and nothing changed.
    pub created: bool,
}

/// What `POST /v1/pods/{name}/{action}` does to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAction {
    /// Start its containers' units.
    Start,
    /// Stop them; they stay stopped until started.
    Stop,
    /// Stop, then start them.
    Restart,
}

impl PodAction {
    /// The last segment of the action's path.
    pub fn as_str(self) -> &'static str {
        match self {
            PodAction::Start => "start",
            PodAction::Stop => "stop",
            PodAction::Restart => "restart",
        }
    }
}

/// Which logs `GET /v1/pods/{name}/logs` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the client disconnects.
    pub follow: bool,
    /// Only the last lines, this many.
    pub tail: Option<u32>,
    /// Only this container's logs; the agent's default otherwise.
    pub container: Option<String>,
    /// The bytes each line was, instead of escaped text.
    pub raw: bool,
}

/// A log body as it arrives, chunk by chunk.
#[derive(Debug)]
pub struct LogStream {
    socket: PathBuf,
    body: Incoming,
}

impl LogStream {
    /// The next piece of the logs, or `None` once the agent ends the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|error| Error::Http {
                socket: self.socket.clone(),
                error,
            })?;
            // Trailers carry nothing for us; skip them.
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// The local agent's API.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

impl AgentClient {
    /// A client for the agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// `POST /v1/pods`: creates `pod`, or confirms that an identical one exists.
    pub async fn create_pod(&self, pod: &Pod) -> Result<CreatedPod, Error> {
        let body = serde_json::to_vec(pod).map_err(Error::Encode)?;
        let response = self.send(Method::POST, "/v1/pods", Some(body)).await?;
        let created = response.status() == StatusCode::CREATED;
        let status = self.read_json(response).await?;
        Ok(CreatedPod { status, created })
    }

    /// `GET /v1/pods`: the pods that are pending, running or restarting, or
    /// every pod when `all` is set.
    pub async fn list_pods(&self, all: bool) -> Result<Vec<PodStatus>, Error> {
        let path = if all { "/v1/pods?all=true" } else { "/v1/pods" };
        let response = self.send(Method::GET, path, None).await?;
        self.read_json(response).await
    }

    /// `GET /v1/pods/{name}`.
    pub async fn get_pod(&self, name: &str) -> Result<PodStatus, Error> {
        let response = self.send(Method::GET, &pod_path(name), None).await?;
        self.read_json(response).await
    }

    /// `DELETE /v1/pods/{name}`: removes the pod and returns its last state.
    pub async fn delete_pod(&self, name: &str) -> Result<PodStatus, Error> {
        let response = self.send(Method::DELETE, &pod_path(name), None).await?;
        self.read_json(response).await
    }

    /// `POST /v1/pods/{name}/{start,stop,restart}`.
    pub async fn pod_action(&self, name: &str, action: PodAction) -> Result<PodStatus, Error> {
        let path = format!("{}/{}", pod_path(name), action.as_str());
        let response = self.send(Method::POST, &path, None).await?;
        self.read_json(response).await
    }

    /// `GET /v1/pods/{name}/logs`: the logs, streamed as they arrive.
    pub async fn logs(&self, name: &str, options: &LogOptions) -> Result<LogStream, Error> {
        let path = logs_path(name, options);
        let response = self.send(Method::GET, &path, None).await?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response.into_body(), &self.socket).await?;
            return Err(error_from(status, &body));
        }
        Ok(LogStream {
            socket: self.socket.clone(),
            body: response.into_body(),
        })
    }

    /// Sends one request on a new connection and returns the response, whose
    /// body may still be arriving.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, Error> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|error| Error::Connect {
                socket: self.socket.clone(),
                error,
            })?;
        let http = |error| Error::Http {
            socket: self.socket.clone(),
            error,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        // The connection is driven by its own task; its failures also fail
        // the request or the body, which is where they are reported.
        tokio::spawn(async move {
            let _ = connection.await;
        });

        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, "localhost")
            .header(ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(Error::Request)?;
        sender.send_request(request).await.map_err(http)
    }

    /// Reads a whole (capped) body and decodes it, or the error it explains.
    async fn read_json<T: DeserializeOwned>(
        &self,
        response: Response<Incoming>,
    ) -> Result<T, Error> {
        let status = response.status();
        let body = read_capped(response.into_body(), &self.socket).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        serde_json::from_slice(&body).map_err(|error| Error::Decode { status, error })
    }
}

/// Reads a body of at most [`MAX_RESPONSE_BODY_BYTES`].
async fn read_capped(body: Incoming, socket: &Path) -> Result<Bytes, Error> {
    match Limited::new(body, MAX_RESPONSE_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => match error.downcast::<hyper::Error>() {
            Ok(error) => Err(Error::Http {
                socket: socket.to_owned(),
                error: *error,
            }),
            // The only other error `Limited` raises is its length limit.
            Err(_) => Err(Error::TooLarge),
        },
    }
}

/// The error an unsuccessful answer stands for: the agent's [`ApiError`]
/// when the body is one, otherwise the status and the start of the body.
fn error_from(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ApiError>(body) {
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

fn pod_path(name: &str) -> String {
    format!("/v1/pods/{}", encode_component(name))
}

fn logs_path(name: &str, options: &LogOptions) -> String {
    let mut query = Vec::new();
    if options.follow {
        query.push("follow=true".to_owned());
    }
    if let Some(tail) = options.tail {
        query.push(format!("tail={tail}"));
    }
    if let Some(container) = &options.container {
        query.push(format!("container={}", encode_component(container)));
    }
    if options.raw {
        query.push("raw=true".to_owned());
    }
    let mut path = format!("{}/logs", pod_path(name));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that
/// a name typed by the user stays one path segment or one query value
/// (valid names are DNS labels and pass through unchanged).
fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use berth_model::FieldError;

    use super::*;

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(pod_path("web-1"), "/v1/pods/web-1");
        assert_eq!(pod_path("../x y/é"), "/v1/pods/..%2Fx%20y%2F%C3%A9");
    }

    #[test]
    fn log_paths_carry_only_the_options_given() {
        assert_eq!(
            logs_path("web", &LogOptions::default()),
            "/v1/pods/web/logs"
        );
        let options = LogOptions {
            follow: true,
            tail: Some(20),
            container: Some("app&x".to_owned()),
            raw: true,
        };
        assert_eq!(
            logs_path("web", &options),
            "/v1/pods/web/logs?follow=true&tail=20&container=app%26x&raw=true"
        );
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body =
            br#"{"error":"invalid pod","fields":[{"field":"name","message":"must not be empty"}]}"#;
        match error_from(StatusCode::BAD_REQUEST, body) {
            Error::Api { status, error } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(error.error, "invalid pod");
                assert_eq!(
                    error.fields,
                    [FieldError {
                        field: "name".to_owned(),
                        message: "must not be empty".to_owned()
                    }]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn other_error_bodies_are_shown_shortened() {
        let error = error_from(StatusCode::BAD_GATEWAY, "x".repeat(500).as_bytes());
        let message = error.to_string();
        assert!(
            message.starts_with("the berth agent answered 502 Bad Gateway: xxx"),
            "{message}"
        );
        assert!(message.len() < 260, "{message}");
        assert_eq!(
            error_from(StatusCode::NOT_FOUND, b"").to_string(),
            "the berth agent answered 404 Not Found"
        );
    }

    #[test]
    fn connect_errors_name_the_socket_and_what_to_do() {
        let error = Error::Connect {
            socket: PathBuf::from("/run/berth/agent.sock"),
            error: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(
            error.to_string(),
            "cannot connect to the berth agent at /run/berth/agent.sock: no such socket; \
             is the agent running? see `systemctl status berth-agent`"
        );
        let error = Error::Connect {
            socket: PathBuf::from("/run/berth/agent.sock"),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(error.to_string().contains("run berth as root"), "{error}");
    }
}
