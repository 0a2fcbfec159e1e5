//! What the live pages show, and their updates as server-sent events:
//! the API's own watches (`?watch=true`, the store's gap-free watch) say
//! when something changed; the fragments are then read and rendered
//! again, as the session's caller, and sent if they differ from what the
//! page has. The browser's `EventSource` reconnects by itself when a
//! stream ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_model::api::{NodeView, Versioned};
use berth_model::logs::LogPage;
use berth_model::{ClusterPod, Deployment, Event, Project, Service};
use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::FutureExt as _;
use serde::Deserialize;
use tower::ServiceExt as _;

use super::session::Session;
use super::{api_prefix, failed, may_edit, name, pages, Console, LoggedIn, Refusal};

/// How many of the latest events the overview lists.
const RECENT_EVENTS: usize = 15;

/// How often the overview is read again without a change in the store:
/// nodes' conditions and heartbeats live in the master's memory, not in
/// the store, so no watch reports them.
const OVERVIEW_TICK: Duration = Duration::from_secs(2);

/// Changes that come together (a scale writes pods one by one) are
/// rendered once.
const SETTLE: Duration = Duration::from_millis(100);

/// What the overview shows. A part the caller may not read says why.
#[derive(Debug)]
pub struct OverviewData {
    /// The nodes (the cluster admin's to read).
    pub nodes: Result<Vec<NodeView>, String>,
    /// The latest events of the default project (which takes in the
    /// nodes' own), newest first.
    pub events: Result<Vec<Event>, String>,
    /// The projects the caller has a role in.
    pub projects: Vec<Versioned<Project>>,
}

/// Reads the overview: a 401 fails it; anything else the caller may not
/// read is shown as the API's reason.
pub async fn overview_data(console: &Console, session: &Session) -> Result<OverviewData, Refusal> {
    let nodes = allowed(console.read(session, "/v1/nodes").await)?;
    let events = allowed(console.read::<Vec<Event>>(session, "/v1/events").await)?
        .map(|events| events.into_iter().rev().take(RECENT_EVENTS).collect());
    let projects = console.read(session, "/v1/projects").await?;
    Ok(OverviewData {
        nodes,
        events,
        projects,
    })
}

/// A part of a page the caller may not read says why; a token the API
/// no longer takes fails the page.
fn allowed<T>(read: Result<T, Refusal>) -> Result<Result<T, String>, Refusal> {
    match read {
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => Err(refusal),
        Err(refusal) => Ok(Err(refusal.message)),
        Ok(value) => Ok(Ok(value)),
    }
}

/// What a service's page shows.
#[derive(Debug)]
pub struct ServiceData {
    /// The project.
    pub project: String,
    /// The service.
    pub service: Versioned<Service>,
    /// Its pods, by name.
    pub pods: Vec<Versioned<ClusterPod>>,
    /// Its revisions, oldest first.
    pub deployments: Vec<Versioned<Deployment>>,
    /// Whether the caller's role lets it scale and roll back (the API
    /// decides either way; this only hides what would be refused).
    pub may_edit: bool,
}

/// Reads a service's page.
pub async fn service_data(
    console: &Console,
    session: &Session,
    project: &str,
    service: &str,
) -> Result<ServiceData, Refusal> {
    let prefix = api_prefix(project);
    let found: Versioned<Service> = console
        .read(session, &format!("{prefix}/services/{service}"))
        .await?;
    let mut pods: Vec<Versioned<ClusterPod>> =
        console.read(session, &format!("{prefix}/pods")).await?;
    pods.retain(|p| p.object.service.as_deref() == Some(service));
    pods.sort_by(|a, b| natural(&a.object.spec.name).cmp(&natural(&b.object.spec.name)));
    let deployments = console
        .read(session, &format!("{prefix}/services/{service}/deployments"))
        .await?;
    Ok(ServiceData {
        project: project.to_owned(),
        service: found,
        pods,
        deployments,
        may_edit: may_edit(console, session, project).await?,
    })
}

/// `web-10` after `web-9`.
fn natural(name: &str) -> (&str, u64) {
    match name.rsplit_once('-') {
        Some((base, n)) => (base, n.parse().unwrap_or(u64::MAX)),
        None => (name, 0),
    }
}

/// `GET /ui/live/overview`.
pub async fn overview(State(console): State<Console>, logged_in: LoggedIn) -> Response {
    // The default project's events (where nodes' are) say when to look
    // again; the tick covers what the store does not hold.
    let watches = watch_all(&console, &logged_in.session, &["/v1/events?watch=true"]).await;
    let session = logged_in.session.clone();
    let render = move |console: Console| {
        let session = session.clone();
        async move {
            let data = overview_data(&console, &session).await?;
            Ok(pages::overview_fragments(&data))
        }
    };
    updates(console, watches, Some(OVERVIEW_TICK), render)
}

/// `GET /ui/live/projects/{project}/services/{service}`.
pub async fn service(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path((project, service)): Path<(String, String)>,
) -> Response {
    let (project, service) = match (name(&project), name(&service)) {
        (Ok(p), Ok(s)) => (p.to_owned(), s.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let prefix = api_prefix(&project);
    let paths = [
        format!("{prefix}/pods?watch=true"),
        format!("{prefix}/deployments?watch=true"),
        format!("{prefix}/services?watch=true"),
    ];
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let watches = watch_all(&console, &logged_in.session, &paths).await;
    // A page whose service cannot be read (gone, or the role taken away)
    // gets no stream: the browser's retries then fail until it reloads.
    if let Err(refusal) = service_data(&console, &logged_in.session, &project, &service).await {
        return failed(&console, &logged_in, refusal);
    }
    let session = logged_in.session.clone();
    let render = move |console: Console| {
        let (session, project, service) = (session.clone(), project.clone(), service.clone());
        async move {
            let data = service_data(&console, &session, &project, &service).await?;
            Ok(pages::service_fragments(&session, &data))
        }
    };
    updates(console, watches, None, render)
}

/// The API's watch streams at `paths`, as one stream of "something
/// changed"; a watch the caller may not open is left out.
async fn watch_all(console: &Console, session: &Session, paths: &[&str]) -> BoxStream<'static, ()> {
    let mut streams = Vec::new();
    for path in paths {
        let request = Request::builder()
            .method(Method::GET)
            .uri(*path)
            .header(header::AUTHORIZATION, format!("Bearer {}", session.token))
            .body(axum::body::Body::empty());
        let Ok(request) = request else { continue };
        let response = match console.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if response.status().is_success() {
            // The end of a watch (or its error) ends the whole stream.
            let body = response.into_body().into_data_stream();
            streams.push(
                body.map(|chunk: Result<Bytes, axum::Error>| chunk.is_ok())
                    .take_while(|ok| std::future::ready(*ok))
                    .map(|_| ())
                    .chain(stream::once(async {}))
                    .boxed(),
            );
        }
    }
    stream::select_all(streams).boxed()
}

/// The server-sent events of one page: its fragments, rendered by
/// `render` at once and after each change (or tick), each sent when it
/// differs from the last sent.
fn updates<R, F>(
    console: Console,
    mut changes: BoxStream<'static, ()>,
    tick: Option<Duration>,
    render: R,
) -> Response
where
    R: Fn(Console) -> F + Send + 'static,
    F: std::future::Future<Output = Result<Vec<(&'static str, super::html::Html)>, Refusal>> + Send,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<SseEvent>(16);
    tokio::spawn(async move {
        let mut sent: HashMap<&'static str, String> = HashMap::new();
        let mut watching = true;
        loop {
            let fragments = match render(console.clone()).await {
                Ok(fragments) => fragments,
                // The page says why, and the stream ends: the browser
                // reconnects, and a session that ended goes to the login.
                Err(refusal) => {
                    let gone = SseEvent::default().event("gone").data(refusal.message);
                    let _ = sender.send(gone).await;
                    return;
                }
            };
            for (id, html) in fragments {
                let html = html.finish();
                if sent.get(id) != Some(&html) {
                    let event = SseEvent::default().event(id).data(html.as_str());
                    if sender.send(event).await.is_err() {
                        return;
                    }
                    sent.insert(id, html);
                }
            }
            let wait = tick.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                change = changes.next(), if watching => {
                    if change.is_none() {
                        // A watch ended: the browser opens a new stream.
                        watching = false;
                        if tick.is_none() {
                            return;
                        }
                    }
                    tokio::time::sleep(SETTLE).await;
                    // Take in what came meanwhile, without waiting.
                    while let Some(Some(())) = changes.next().now_or_never() {}
                }
                () = tokio::time::sleep(wait) => {}
                () = sender.closed() => return,
            }
        }
    });
    sse_response(receiver)
}

/// How many of a service's latest lines its page's log tail starts with.
pub const LOG_TAIL: usize = 100;

/// How long one follow request waits at the API for new lines (the API
/// takes at most 30 s).
const LOG_WAIT: Duration = Duration::from_secs(25);

/// The API's log lines of `service`, with `query` added (`tail=N`,
/// `newer-than=ID&wait=S`). The names are checked DNS labels, so they
/// need no encoding.
fn logs_path(project: &str, service: &str, query: &str) -> String {
    format!("{}/logs?target={service}&{query}", api_prefix(project))
}

/// The start of a service page's log tail: its latest lines, or why the
/// caller may not read them (a `view-no-logs` role gets the API's 403).
pub async fn log_tail(
    console: &Console,
    session: &Session,
    project: &str,
    service: &str,
) -> Result<Result<LogPage, String>, Refusal> {
    let path = logs_path(project, service, &format!("tail={LOG_TAIL}"));
    allowed(console.read(session, &path).await)
}

/// Where a log stream starts: after the line the page ended with.
#[derive(Debug, Deserialize)]
pub struct LogsFrom {
    /// The page's `last_id`.
    after: Option<u64>,
}

/// `GET /ui/live/projects/{project}/services/{service}/logs?after=ID`:
/// the service's new lines as they arrive, each batch one `lines` event
/// of escaped HTML whose id is where to go on from. The API's own
/// follow (`newer-than` with `wait`) is called as the session's caller,
/// so the role that may not read logs gets nothing here either.
pub async fn logs(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path((project, service)): Path<(String, String)>,
    Query(from): Query<LogsFrom>,
    headers: HeaderMap,
) -> Response {
    let (project, service) = match (name(&project), name(&service)) {
        (Ok(p), Ok(s)) => (p.to_owned(), s.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // A browser that reconnects says which batch it had last.
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let Some(mut after) = resumed.or(from.after) else {
        return super::refused(StatusCode::BAD_REQUEST, "after: required");
    };
    // What arrived since the page was read, and the check that the
    // caller may read these logs at all, in one.
    let first = logs_path(&project, &service, &format!("newer-than={after}"));
    let first: LogPage = match console.read(&logged_in.session, &first).await {
        Ok(page) => page,
        Err(refusal) => return failed(&console, &logged_in, refusal),
    };
    let session = logged_in.session.clone();
    let (sender, receiver) = tokio::sync::mpsc::channel::<SseEvent>(16);
    tokio::spawn(async move {
        let mut page = first;
        loop {
            after = after.max(page.last_id);
            if !page.lines.is_empty() {
                let html = pages::log_lines(&page.lines).finish();
                let event = SseEvent::default()
                    .event("lines")
                    .id(after.to_string())
                    .data(html);
                if sender.send(event).await.is_err() {
                    return;
                }
            }
            let path = logs_path(
                &project,
                &service,
                &format!("newer-than={after}&wait={}", LOG_WAIT.as_secs()),
            );
            tokio::select! {
                read = console.read::<LogPage>(&session, &path) => match read {
                    Ok(next) => page = next,
                    // The stream ends; the browser's reconnection meets
                    // the refusal (or the login) and stops.
                    Err(_) => return,
                },
                () = sender.closed() => return,
            }
        }
    });
    sse_response(receiver)
}

/// The server-sent events a page's task sends into `receiver`, until it
/// ends or the browser goes.
fn sse_response(receiver: tokio::sync::mpsc::Receiver<SseEvent>) -> Response {
    let events = stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((Ok::<_, Infallible>(event), receiver))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
