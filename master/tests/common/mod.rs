//! A master running in-process on 127.0.0.1:0 with the embedded store, for
//! the API tests. Each test file uses what it needs of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use berth_master::config::MasterConfig;
use serde_json::Value;

/// A running master: its URL, admin token and an HTTP client.
pub struct Master {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token it made at start.
    pub admin: String,
    /// A client for it.
    pub http: reqwest::Client,
}

/// Starts a master whose state lives in `<target tmp>/<dir>` (emptied
/// first), with `node_grace_secs` and a fast controller, and waits until it
/// has made its admin token.
pub async fn start(dir: &str, node_grace_secs: u64) -> Master {
    start_with(dir, |config| config.node_grace_secs = node_grace_secs).await
}

/// Starts a master as [`start`] does, with its configuration changed by
/// `configure` first.
pub async fn start_with(dir: &str, configure: impl FnOnce(&mut MasterConfig)) -> Master {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = MasterConfig {
        state_dir: dir.clone(),
        controller_interval_ms: 50,
        ..Default::default()
    };
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(berth_master::run(config, listener, std::future::pending()));
    let token_path = dir.join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !token_path.exists() {
        assert!(Instant::now() < deadline, "master did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let admin = std::fs::read_to_string(token_path)
        .expect("reading the admin token")
        .trim()
        .to_owned();
    Master {
        url,
        admin,
        http: reqwest::Client::new(),
    }
}

impl Master {
    /// Calls the API with an optional token and JSON body; the status and
    /// the body as JSON (or as a JSON string when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sending a request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("reading the answer");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// [`Master::call`] with the admin token.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, path, Some(&self.admin.clone()), body)
            .await
    }
}

impl Master {
    /// Joins `node` with a fresh join token; the node's credential.
    pub async fn join_node(&self, node: &str) -> String {
        let (status, token) = self
            .admin(reqwest::Method::POST, "/v1/join-tokens", None)
            .await;
        assert_eq!(status, 201, "{token}");
        let body = serde_json::json!({"token": token["token"], "node": {"name": node, "address": format!("{node}.lab"), "capacity": {"memoryBytes": 8u64 << 30, "cpuMillis": 8000}}});
        let (status, joined) = self
            .call(reqwest::Method::POST, "/v1/join", None, Some(body))
            .await;
        assert_eq!(status, 201, "{joined}");
        joined["credential"]
            .as_str()
            .expect("credential")
            .to_owned()
    }
}

/// The fields an error answer names, in order.
pub fn fields(error: &Value) -> Vec<String> {
    error["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
