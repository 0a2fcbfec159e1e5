//! The web console at `/ui/`: server-rendered pages, a little JavaScript,
//! and live updates over server-sent events.
//!
//! The console is a client of the API, in process: every page is read
//! and every action is made by calling the API's own router with the
//! session's token. Roles, redaction, validation and audit are the API's,
//! applied exactly as for the CLI; the console adds sessions (a cookie),
//! CSRF tokens on every form, and HTML.

mod html;
mod live;
mod pages;
mod session;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_model::api::Versioned;
use berth_model::{ApiError, Role, WhoAmI};
use serde::de::DeserializeOwned;
use tower::ServiceExt as _;

use self::session::{Session, Sessions};

/// The largest form the console takes (a token, a number, a CSRF token).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's routes, served beside the API's `api` router (which
/// they call).
pub fn router(api: Router, tls: bool) -> Router {
    let console = Console {
        api,
        sessions: Arc::new(Sessions::default()),
        tls,
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/console.js", get(script))
        .route("/ui/console.css", get(stylesheet))
        .route("/ui/projects/{project}", get(project_page))
        .route(
            "/ui/projects/{project}/services/{service}",
            get(service_page),
        )
        .route(
            "/ui/projects/{project}/services/{service}/scale",
            post(scale),
        )
        .route(
            "/ui/projects/{project}/services/{service}/rollback",
            post(rollback),
        )
        .route("/ui/live/overview", get(live::overview))
        .route(
            "/ui/live/projects/{project}/services/{service}",
            get(live::service),
        )
        .route(
            "/ui/live/projects/{project}/services/{service}/logs",
            get(live::logs),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// What the console's handlers share.
#[derive(Clone)]
struct Console {
    /// The API, called in process.
    api: Router,
    sessions: Arc<Sessions>,
    /// Served over TLS: cookies are `Secure`.
    tls: bool,
}

/// An API answer other than success, as the console shows it.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Console {
    /// Calls the API as the holder of `token`.
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, Refusal> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let request = request.body(body).map_err(|e| Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("bad request: {e}"),
        })?;
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("reading the API's answer: {e}"),
            })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ApiError>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes).into_owned(),
            |e| e.error,
        );
        Err(Refusal { status, message })
    }

    /// Reads `path` from the API as the session's caller.
    async fn read<T: DeserializeOwned>(&self, session: &Session, path: &str) -> Result<T, Refusal> {
        let bytes = self.call(&session.token, Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the API's answer to {path} did not decode: {e}"),
        })
    }
}

/// A request with a live session; without one, pages go to the login form.
struct LoggedIn {
    id: String,
    session: Session,
}

impl FromRequestParts<Console> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let id = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(session::id_from_cookies);
        match id.and_then(|id| Some((id, console.sessions.find(id)?))) {
            Some((id, session)) => Ok(LoggedIn {
                id: id.to_owned(),
                session,
            }),
            None if parts.method == Method::GET => Err(Redirect::to("/ui/login").into_response()),
            None => Err(refused(
                StatusCode::UNAUTHORIZED,
                "not logged in, or the session expired: log in again",
            )),
        }
    }
}

/// A page or fragment read failed: a token the API no longer takes ends
/// the session.
fn failed(console: &Console, logged_in: &LoggedIn, refusal: Refusal) -> Response {
    if refusal.status == StatusCode::UNAUTHORIZED {
        console.sessions.close(&logged_in.id);
        return Redirect::to("/ui/login").into_response();
    }
    refused(refusal.status, &refusal.message)
}

/// An error page.
fn refused(status: StatusCode, message: &str) -> Response {
    (status, page(pages::error(status, message))).into_response()
}

/// A whole HTML page.
fn page(html: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Headers every console answer carries: nothing from elsewhere runs or
/// loads (no inline script either), the console is framed nowhere, and
/// pages with a CSRF token are not cached.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with forms,
    // which the origin check refuses.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Refuses a POST whose `Origin` is another site's: with SameSite=Strict
/// cookies and CSRF tokens this also covers the login form, which has no
/// session yet.
fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return Ok(());
    };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host == host {
        Ok(())
    } else {
        Err(refused(
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        ))
    }
}

/// The fields of a form body.
fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Checks the form's CSRF token (and origin) before any action.
fn checked_form(
    logged_in: &LoggedIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<std::collections::HashMap<String, String>, Response> {
    same_origin(headers)?;
    let fields = form(body);
    if !logged_in
        .session
        .csrf_matches(fields.get("csrf").map(String::as_str))
    {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "this form carries no valid CSRF token: reload the page and try again",
        ));
    }
    Ok(fields)
}

/// A project or service name from the console's path, checked before it
/// goes into an API path.
fn name(name: &str) -> Result<&str, Response> {
    berth_model::validate_dns_label(name)
        .map(|()| name)
        .map_err(|e| {
            refused(
                StatusCode::NOT_FOUND,
                &format!("no such name {name:?}: {e}"),
            )
        })
}

/// Where a project's objects are in the API.
fn api_prefix(project: &str) -> String {
    format!("/v1/projects/{project}")
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn login_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let logged_in = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::id_from_cookies)
        .and_then(|id| console.sessions.find(id));
    if logged_in.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    page(pages::login(None))
}

/// `POST /ui/login`: the field `token`, checked by the API itself.
async fn login(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refusal) = same_origin(&headers) {
        return refusal;
    }
    let fields = form(&body);
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    if token.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            page(pages::login(Some("token: required"))),
        )
            .into_response();
    }
    let whoami = match console.call(token, Method::GET, "/v1/whoami", None).await {
        Ok(bytes) => serde_json::from_slice::<WhoAmI>(&bytes),
        Err(refusal) => {
            return (refusal.status, page(pages::login(Some(&refusal.message)))).into_response()
        }
    };
    let who = match whoami {
        Ok(who) if who.kind != "node" => who.name,
        Ok(_) => {
            return (
                StatusCode::FORBIDDEN,
                page(pages::login(Some("a node's credential cannot log in"))),
            )
                .into_response()
        }
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match console.sessions.open(token, &who) {
        Ok((id, _)) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, session::set_cookie(&id, console.tls)),
                (header::LOCATION, "/ui/".to_owned()),
            ],
        )
            .into_response(),
        Err(e) => refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /ui/logout`.
async fn logout(
    State(console): State<Console>,
    logged_in: LoggedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = checked_form(&logged_in, &headers, &body) {
        return refusal;
    }
    console.sessions.close(&logged_in.id);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::clear_cookie(console.tls)),
            (header::LOCATION, "/ui/login".to_owned()),
        ],
    )
        .into_response()
}

/// Whether the session's caller has a role in `project` that may scale
/// and roll back (edit or more; the admin everywhere), as `/v1/whoami`
/// says. Only for hiding controls: the API decides each action.
async fn may_edit(console: &Console, session: &Session, project: &str) -> Result<bool, Refusal> {
    let whoami: WhoAmI = console.read(session, "/v1/whoami").await?;
    Ok(whoami.kind == "admin"
        || whoami
            .roles
            .get(project)
            .is_some_and(|role| *role >= Role::Edit))
}

/// `GET /ui/`.
async fn overview(State(console): State<Console>, logged_in: LoggedIn) -> Response {
    let data = match live::overview_data(&console, &logged_in.session).await {
        Ok(data) => data,
        Err(refusal) => return failed(&console, &logged_in, refusal),
    };
    page(pages::overview(&logged_in.session, &data))
}

/// `GET /ui/projects/{project}`: its services.
async fn project_page(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path(project): Path<String>,
) -> Response {
    let project = match name(&project) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format!("{}/services", api_prefix(project));
    let services: Vec<Versioned<berth_model::Service>> =
        match console.read(&logged_in.session, &path).await {
            Ok(services) => services,
            Err(refusal) => return failed(&console, &logged_in, refusal),
        };
    let pods: Vec<Versioned<berth_model::ClusterPod>> = match console
        .read(&logged_in.session, &format!("{}/pods", api_prefix(project)))
        .await
    {
        Ok(pods) => pods,
        Err(refusal) => return failed(&console, &logged_in, refusal),
    };
    page(pages::project(
        &logged_in.session,
        project,
        &services,
        &pods,
    ))
}

/// `GET /ui/projects/{project}/services/{service}`.
async fn service_page(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path((project, service)): Path<(String, String)>,
) -> Response {
    let (project, service) = match (name(&project), name(&service)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let data = match live::service_data(&console, &logged_in.session, project, service).await {
        Ok(data) => data,
        Err(refusal) => return failed(&console, &logged_in, refusal),
    };
    match live::log_tail(&console, &logged_in.session, project, service).await {
        Ok(logs) => page(pages::service(&logged_in.session, &data, &logs)),
        Err(refusal) => failed(&console, &logged_in, refusal),
    }
}

/// How an action answers: the console's script asks for a short text
/// (and stays on the page, which the live updates keep current); a plain
/// form post goes back to the service page.
fn acted(headers: &HeaderMap, back: String, result: Result<String, Refusal>) -> Response {
    let from_script = headers
        .get("x-berth-console")
        .is_some_and(|v| v.as_bytes() == b"fetch");
    match (result, from_script) {
        (Ok(done), true) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], done).into_response()
        }
        (Ok(_), false) => Redirect::to(&back).into_response(),
        (Err(refusal), true) => (
            refusal.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            refusal.message,
        )
            .into_response(),
        (Err(refusal), false) => refused(refusal.status, &refusal.message),
    }
}

/// `POST .../scale`: `replicas=N`, or `delta=+1|-1` from the current count.
async fn scale(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path((project, service)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match checked_form(&logged_in, &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return refusal,
    };
    let (project, service) = match (name(&project), name(&service)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let back = pages::service_url(project, service);
    let path = format!("{}/services/{service}", api_prefix(project));
    let session = &logged_in.session;
    let result = async {
        let replicas = match (fields.get("replicas"), fields.get("delta")) {
            (Some(n), _) => n.trim().parse::<u32>().map_err(|_| Refusal {
                status: StatusCode::BAD_REQUEST,
                message: format!("replicas: must be a whole number, got {n:?}"),
            })?,
            (None, Some(delta)) => {
                let delta: i64 = delta.trim().parse().map_err(|_| Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("delta: must be a whole number, got {delta:?}"),
                })?;
                let current: Versioned<berth_model::Service> = console.read(session, &path).await?;
                u32::try_from((i64::from(current.object.replicas) + delta).max(0)).unwrap_or(0)
            }
            (None, None) => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: "replicas: required".to_owned(),
                })
            }
        };
        let body = serde_json::json!({ "replicas": replicas });
        console
            .call(
                &session.token,
                Method::POST,
                &format!("{path}/scale"),
                Some(body),
            )
            .await?;
        Ok(format!("{service} scaled to {replicas}"))
    }
    .await;
    acted(&headers, back, result)
}

/// `POST .../rollback`: `toRevision=N`, made by the session's caller.
async fn rollback(
    State(console): State<Console>,
    logged_in: LoggedIn,
    Path((project, service)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match checked_form(&logged_in, &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return refusal,
    };
    let (project, service) = match (name(&project), name(&service)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let back = pages::service_url(project, service);
    let result = async {
        let revision = fields.get("toRevision").map(|r| {
            r.trim().parse::<u64>().map_err(|_| Refusal {
                status: StatusCode::BAD_REQUEST,
                message: format!("toRevision: must be a revision number, got {r:?}"),
            })
        });
        let body = match revision.transpose()? {
            Some(revision) => serde_json::json!({ "toRevision": revision }),
            None => serde_json::json!({}),
        };
        let path = format!("{}/services/{service}/rollback", api_prefix(project));
        let bytes = console
            .call(&logged_in.session.token, Method::POST, &path, Some(body))
            .await?;
        let revision = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["deployment"]["revision"].as_u64());
        Ok(match revision {
            Some(r) => format!("{service}: revision {r} rolls back"),
            None => format!("{service}: rolling back"),
        })
    }
    .await;
    acted(&headers, back, result)
}
