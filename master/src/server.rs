//! Accepting API connections: TLS handshakes, a cap on open connections and
//! timeouts on reading requests, so that slow or idle clients cannot pin
//! the master's sockets, file descriptors or memory.
//!
//! - A connection must finish its TLS handshake within
//!   `tls-handshake-timeout-secs`.
//! - Each request's headers must arrive within `header-read-timeout-secs`
//!   of the connection being ready for them (a new connection, or a
//!   keep-alive connection after its last answer), so a client sending
//!   headers a byte a second, or holding an idle connection, is closed.
//! - Each request's body must arrive within `request-body-timeout-secs` of
//!   its headers.
//! - At most `max-connections` are open; more are answered 503 and closed.
//!
//! Answers are never timed: a watch or a long poll streams as long as it
//! needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::ConnectionsConfig;

/// Connections over the cap being answered 503 at once; beyond that they
/// are closed without an answer.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long answering a refused connection may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a refusal is logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The most a connection's read buffer (a request's headers, a chunk of
/// its body) may hold. The API's headers are small (a bearer token).
const MAX_READ_BUFFER_BYTES: usize = 64 * 1024;

/// File descriptors the master needs besides its API connections: the
/// store, the log database, etcd and webhook clients, refusals in flight.
pub const RESERVED_FILES: u64 = 512;

/// Serves `router` on `listener` (over TLS with `tls`) within `limits`
/// until `stop` turns true, then lets the open connections finish their
/// requests and returns once they are closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: ConnectionsConfig,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut refusals = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: wait for some to
                    // be closed rather than spin.
                    warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        match Arc::clone(&open).try_acquire_owned() {
            Ok(permit) => {
                let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
                tokio::spawn(async move {
                    connection(stream, acceptor, router, limits, stop).await;
                    drop(permit);
                    debug!(%peer, "api connection closed");
                });
            }
            Err(_) => {
                refusals.note(limits.max_connections);
                if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let answer = refuse(stream, acceptor, limits.max_connections);
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    // Every permit back means every connection is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// Logs refused connections, at most once per [`REFUSAL_LOG_INTERVAL`],
/// so that a flood does not flood the journal too.
#[derive(Debug, Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn note(&mut self, max_connections: usize) {
        self.since_last += 1;
        if self
            .last
            .is_none_or(|last| last.elapsed() >= REFUSAL_LOG_INTERVAL)
        {
            warn!(
                refused = self.since_last,
                max_connections, "API connections refused: the connection cap is reached"
            );
            self.since_last = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// One accepted connection: its TLS handshake, then its requests.
async fn connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionsConfig,
    stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        return serve_requests(stream, router, limits, stop).await;
    };
    let handshake = Duration::from_secs(limits.tls_handshake_timeout_secs);
    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_requests(tls, router, limits, stop).await,
        Ok(Err(e)) => debug!(error = %e, "tls handshake failed"),
        Err(_) => debug!("tls handshake timed out"),
    }
}

/// Serves HTTP/1.1 requests on `io` until the client closes it, a timeout
/// closes it, or the master stops (then the request in flight finishes).
async fn serve_requests<S>(
    io: S,
    router: Router,
    limits: ConnectionsConfig,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body_timeout = Duration::from_secs(limits.request_body_timeout_secs);
    let router = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        router.call(request.map(|body| Body::new(DeadlineBody::new(body, body_timeout))))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        // Headers past this are refused (431): with the connection cap, it
        // bounds what slow or bloated requests can make the master hold.
        .max_buf_size(MAX_READ_BUFFER_BYTES)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        debug!(error = %e, "api connection ended");
    }
}

/// Answers a connection over the cap with a 503 (after the TLS handshake,
/// so the client can read it) and closes it.
async fn refuse(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    max_connections: usize,
) -> std::io::Result<()> {
    let answer = refusal(max_connections);
    match acceptor {
        Some(acceptor) => {
            let mut tls = acceptor.accept(stream).await?;
            tls.write_all(answer.as_bytes()).await?;
            tls.shutdown().await
        }
        None => {
            let mut stream = stream;
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await
        }
    }
}

/// The whole HTTP answer to a connection over the cap.
fn refusal(max_connections: usize) -> String {
    let body = serde_json::json!({
        "error": format!(
            "the master has {max_connections} API connections open, its limit (connections.max-connections): try again later"
        ),
        "fields": [],
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A request body that fails if it has not fully arrived within its
/// timeout: a client sending a body a byte a second cannot hold a request
/// (and its connection) open.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The error a [`DeadlineBody`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (connections.request-body-timeout-secs)")]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let answer = refusal(8192);
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(body["error"]
            .as_str()
            .is_some_and(|e| e.contains("8192") && e.contains("max-connections")));
    }

    #[test]
    fn the_open_file_limit_is_read() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
