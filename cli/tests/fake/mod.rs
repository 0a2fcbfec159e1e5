//! The fake servers the CLI's tests run `berth` against: a small hyper
//! server, on loopback TCP (a master) or on a unix socket (an agent), that
//! answers each request with what the test's handler returns and records
//! what it was sent. Each serves from a thread of its own, so tests stay
//! plain `#[test]` functions that run `berth` as a process.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// A response body: whole, or streamed by the handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// One request as the fake server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Answers one request.
pub type Handler = Arc<dyn Fn(&Received) -> Response<Body> + Send + Sync>;

/// A JSON answer.
pub fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

/// A fake server and what it received.
#[derive(Debug)]
pub struct FakeServer {
    /// `http://127.0.0.1:PORT` for a TCP server.
    pub url: String,
    /// The socket of a unix-socket server.
    pub socket: PathBuf,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeServer {
    /// Serves on a free port of 127.0.0.1.
    pub fn tcp(handler: Handler) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        in_thread(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                tokio::spawn(serve(stream, Arc::clone(&handler), Arc::clone(&log)));
            }
        });
        FakeServer {
            url,
            socket: PathBuf::new(),
            received,
        }
    }

    /// Serves on a fresh unix socket under cargo's scratch directory,
    /// named after the test.
    pub fn unix(test: &str, handler: Handler) -> FakeServer {
        let socket = socket_path(test);
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", socket.display()));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        in_thread(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                tokio::spawn(serve(stream, Arc::clone(&handler), Arc::clone(&log)));
            }
        });
        FakeServer {
            url: String::new(),
            socket,
            received,
        }
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("request log").clone()
    }

    /// The URI of every request so far, in order.
    pub fn uris(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.uri).collect()
    }
}

/// Runs the server's accept loop on a runtime in a thread of its own.
fn in_thread(server: impl Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake server runtime")
            .block_on(server);
    });
}

/// Serves one connection: records each request, then answers it.
async fn serve(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    handler: Handler,
    log: Arc<Mutex<Vec<Received>>>,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = request.into_parts();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().expect("ascii header").to_owned())
            };
            let received = Received {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                body: body.collect().await?.to_bytes().to_vec(),
            };
            log.lock().expect("request log").push(received.clone());
            Ok::<_, hyper::Error>(handler(&received))
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A fresh socket path under cargo's scratch directory for this test.
pub fn socket_path(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir.join("agent.sock")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}
