//! berth's node-side client of the master, shared by the agent, the router
//! and the CLI: the node's joined credential ([`Joined`]), the HTTP client
//! that trusts exactly the master's pinned CA ([`pinned`]), requests as
//! this node with typed errors ([`NodeClient`], [`Error`]), and a long-poll
//! follower that resumes after the last revision read ([`follow`]). The agent
//! pins the master's CA at join through [`ca`].
#![forbid(unsafe_code)]

pub mod build_context;
pub mod ca;
pub mod error;
pub mod follow;
pub mod joined;
pub mod masters;
pub mod private_file;

use std::time::Duration;

use berth_model::api::{Heartbeat, HeartbeatAnswer, JoinRequest, JoinResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

pub use crate::error::Error;
pub use crate::follow::{Backoff, Revisioned};
pub use crate::joined::{Joined, JoinedError};
pub use crate::masters::Masters;

/// An HTTP client builder over rustls that, given the master's CA (PEM),
/// trusts that CA and only it; without one, the usual roots (a plain-HTTP
/// master, or one with a public certificate).
pub fn pinned(ca_pem: Option<&str>) -> Result<reqwest::ClientBuilder, Error> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(pem) = ca_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(Error::Ca)?;
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
    }
    Ok(builder)
}

/// `POST {url}/v1/join`: trades a one-time join token for this node's
/// credential, trusting only `ca_pem` (already checked against the pinned
/// hash) when given. The caller saves what it returns.
pub async fn join(
    url: &str,
    ca_pem: Option<&str>,
    request: &JoinRequest,
    timeout: Duration,
) -> Result<Joined, Error> {
    let http = pinned(ca_pem)?
        .timeout(timeout)
        .build()
        .map_err(Error::Client)?;
    let response = http
        .post(format!("{url}/v1/join"))
        .json(request)
        .send()
        .await
        .map_err(|source| Error::Send {
            url: url.to_owned(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(Error::of_answer(response).await);
    }
    let answer: JoinResponse = response.json().await.map_err(Error::Decode)?;
    Ok(Joined {
        url: url.to_owned(),
        urls: Vec::new(),
        node: answer.node,
        credential: answer.credential,
        ca_pem: ca_pem.map(str::to_owned),
    })
}

/// How long requests of a [`NodeClient`] may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Any one request, from connecting to the end of the body.
    pub request: Duration,
    /// How long the master holds a long poll with nothing new (shorter
    /// than `request`).
    pub long_poll: Duration,
}

/// The least time a heartbeat gives one master before trying the next: a
/// loaded master still answers within it.
const HEARTBEAT_ATTEMPT_AT_LEAST: Duration = Duration::from_millis(800);

/// How long a heartbeat given `timeout` waits for each of `masters`.
fn heartbeat_attempt(timeout: Duration, masters: usize) -> Duration {
    let masters = u32::try_from(masters).unwrap_or(u32::MAX).max(1);
    (timeout / masters).max(HEARTBEAT_ATTEMPT_AT_LEAST.min(timeout))
}

/// The master's API as this node, with its credential.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    joined: Joined,
    masters: Masters,
    long_poll: Duration,
}

impl NodeClient {
    /// A client trusting exactly the master's pinned CA.
    pub fn new(joined: Joined, timeouts: Timeouts) -> Result<Self, Error> {
        let http = pinned(joined.ca_pem.as_deref())?
            .timeout(timeouts.request)
            .build()
            .map_err(Error::Client)?;
        Ok(Self {
            http,
            masters: joined.masters(),
            joined,
            long_poll: timeouts.long_poll,
        })
    }

    /// The HTTP client, for requests this crate does not type (log and
    /// event shipping).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The credential this client asks with.
    pub fn joined(&self) -> &Joined {
        &self.joined
    }

    /// The masters this client fails over between.
    pub fn masters(&self) -> &Masters {
        &self.masters
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.joined.node
    }

    /// `GET {path}` as this node; with `after`, a long poll for a view
    /// newer than that revision.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        after: Option<u64>,
    ) -> Result<T, Error> {
        // On another master the poll goes on after the same revision: the
        // masters share one store, and so its revisions.
        let response = self
            .checked(true, |url| {
                let request = self
                    .http
                    .get(format!("{url}{path}"))
                    .bearer_auth(&self.joined.credential);
                match after {
                    Some(after) => {
                        request.query(&[("after", after), ("timeout", self.long_poll.as_secs())])
                    }
                    None => request,
                }
            })
            .await?;
        response.json().await.map_err(Error::Decode)
    }

    /// `POST {path}` as this node with a JSON body; the answer's body is
    /// not read.
    pub async fn post<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<(), Error> {
        self.checked(false, |url| {
            self.http
                .post(format!("{url}{path}"))
                .bearer_auth(&self.joined.credential)
                .json(body)
        })
        .await
        .map(drop)
    }

    /// `PUT /v1/nodes/{node}/heartbeat`, given at most `timeout`: the
    /// heartbeat is the node's liveness and must not queue behind a slow
    /// master. With several masters the time is shared between them, so
    /// that a master cut off mid-request (which never answers) leaves the
    /// others time to hear the node within their grace period, though each
    /// gets at least 800 ms. A master older than
    /// [`HeartbeatAnswer`] answers `null`: read as an answer that recorded
    /// everything.
    pub async fn heartbeat(
        &self,
        beat: &Heartbeat,
        timeout: Duration,
    ) -> Result<HeartbeatAnswer, Error> {
        let attempt = heartbeat_attempt(timeout, self.masters.urls().len());
        let response = self
            .checked(true, |url| {
                self.http
                    .put(format!("{url}/v1/nodes/{}/heartbeat", self.joined.node))
                    .bearer_auth(&self.joined.credential)
                    .timeout(attempt)
                    .json(beat)
            })
            .await?;
        Ok(response
            .json::<Option<HeartbeatAnswer>>()
            .await
            .ok()
            .flatten()
            .unwrap_or_default())
    }

    /// Follows the view at `path` by long poll into `out`, pausing by
    /// `backoff` while the master is away and telling `failed` why; returns
    /// once nobody receives from `out`.
    pub async fn follow<T>(
        &self,
        path: &str,
        backoff: Backoff,
        out: &watch::Sender<Option<T>>,
        failed: impl FnMut(&Error),
    ) where
        T: DeserializeOwned + Revisioned + PartialEq,
    {
        follow::follow(backoff, |after| self.get(path, after), out, failed).await;
    }

    /// Sends `build(master_url)` to a master that answers (see
    /// [`Masters::send`]), turning an error status into
    /// [`Error::Answered`].
    async fn checked(
        &self,
        idempotent: bool,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let response = self
            .masters
            .send(idempotent, build)
            .await
            .map_err(|e| Error::Send {
                url: e.url,
                source: e.source,
            })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(Error::of_answer(response).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::Json;
    use berth_model::route::RoutesView;

    use super::*;

    #[test]
    fn a_heartbeat_shares_its_time_between_masters_but_gives_each_enough() {
        let two = Duration::from_secs(2);
        assert_eq!(heartbeat_attempt(two, 1), two);
        assert_eq!(heartbeat_attempt(two, 2), Duration::from_secs(1));
        assert_eq!(heartbeat_attempt(two, 3), HEARTBEAT_ATTEMPT_AT_LEAST);
        assert_eq!(heartbeat_attempt(two, 0), two);
        let short = Duration::from_millis(300);
        assert_eq!(
            heartbeat_attempt(short, 3),
            short,
            "never more than the whole"
        );
    }

    /// What the test master saw: each request's `after` and credential.
    type Seen = Arc<Mutex<Vec<(Option<u64>, String)>>>;

    #[derive(Debug, serde::Deserialize)]
    struct Poll {
        after: Option<u64>,
        timeout: Option<u64>,
    }

    /// A master whose `/v1/routes` fails once, then answers revision 1
    /// twice (nothing new), then revision 2 from then on.
    async fn routes(
        State(seen): State<Seen>,
        headers: HeaderMap,
        Query(poll): Query<Poll>,
    ) -> Result<Json<RoutesView>, (StatusCode, Json<serde_json::Value>)> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(poll.timeout, poll.after.map(|_| 7), "long polls wait 7s");
        let call = {
            let mut seen = seen.lock().unwrap();
            seen.push((poll.after, auth));
            seen.len()
        };
        let revision = match call {
            1 => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"error": "store unavailable"})),
                ))
            }
            2 | 3 => 1,
            _ => {
                // A long poll with nothing new, shortened.
                tokio::time::sleep(Duration::from_millis(5)).await;
                2
            }
        };
        Ok(Json(RoutesView {
            revision,
            routes: Vec::new(),
        }))
    }

    async fn master(seen: Seen) -> String {
        let app = axum::Router::new()
            .route("/v1/routes", axum::routing::get(routes))
            .with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn the_follower_retries_resumes_after_the_last_revision_and_publishes_changes_once() {
        let seen = Seen::default();
        let joined = Joined {
            url: master(Arc::clone(&seen)).await,
            urls: Vec::new(),
            node: "h2".into(),
            credential: "secret".into(),
            ca_pem: None,
        };
        let client = NodeClient::new(
            joined,
            Timeouts {
                request: Duration::from_secs(10),
                long_poll: Duration::from_secs(7),
            },
        )
        .unwrap();
        let (tx, mut rx) = watch::channel(None::<RoutesView>);
        let errors = Arc::new(Mutex::new(Vec::new()));
        let follower = {
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let backoff = Backoff::fixed(Duration::from_millis(1));
                client
                    .follow("/v1/routes", backoff, &tx, |e| {
                        errors.lock().unwrap().push(e.to_string());
                    })
                    .await;
            })
        };
        let mut published = Vec::new();
        while published.last() != Some(&2) {
            rx.changed().await.unwrap();
            published.push(rx.borrow_and_update().as_ref().unwrap().revision);
        }
        assert_eq!(
            published,
            [1, 2],
            "an unchanged view is not published again"
        );
        assert_eq!(
            *errors.lock().unwrap(),
            ["master answered 503 Service Unavailable: store unavailable"]
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follower stops once nobody listens")
            .unwrap();
        let seen = seen.lock().unwrap();
        let afters: Vec<_> = seen.iter().take(4).map(|(after, _)| *after).collect();
        assert_eq!(afters, [None, None, Some(1), Some(1)]);
        assert!(seen.iter().all(|(_, auth)| auth == "Bearer secret"));
    }

    #[tokio::test]
    async fn a_long_poll_resumes_on_another_master_after_the_last_revision() {
        // The first master answers revision 5 once, then is gone (503, as
        // a master without its store); the second one sees the poll.
        let calls = Arc::new(Mutex::new(0));
        let first = {
            let calls = Arc::clone(&calls);
            let app = axum::Router::new().route(
                "/v1/routes",
                axum::routing::get(move || {
                    let calls = Arc::clone(&calls);
                    async move {
                        *calls.lock().unwrap() += 1;
                        if *calls.lock().unwrap() == 1 {
                            Ok(Json(RoutesView {
                                revision: 5,
                                routes: Vec::new(),
                            }))
                        } else {
                            Err(StatusCode::SERVICE_UNAVAILABLE)
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            url
        };
        let seen = Seen::default();
        let second = master(Arc::clone(&seen)).await;
        // The second master's script starts with a failure: skip it.
        seen.lock().unwrap().push((None, String::new()));
        let joined = Joined {
            url: first.clone(),
            urls: vec![first, second.clone()],
            node: "h2".into(),
            credential: "secret".into(),
            ca_pem: None,
        };
        let timeouts = Timeouts {
            request: Duration::from_secs(10),
            long_poll: Duration::from_secs(7),
        };
        let client = NodeClient::new(joined, timeouts).unwrap();
        let view: RoutesView = client.get("/v1/routes", None).await.unwrap();
        assert_eq!(view.revision, 5);
        let view: RoutesView = client.get("/v1/routes", Some(5)).await.unwrap();
        assert_eq!(view.revision, 1, "the second master's answer");
        assert_eq!(seen.lock().unwrap()[1].0, Some(5), "polled after 5 there");
        assert_eq!(client.masters().current(), second, "and stays there");
    }
}
