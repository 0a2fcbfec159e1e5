//! The router's link to berth-master, as the node it runs on: the joined
//! agent's credential (from its 0600 `master.json`) reads the routes this
//! router serves and every service's endpoints, each by long poll, and
//! reports routes HAProxy refused.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use berth_model::endpoints::EndpointsView;
use berth_model::route::{RouteRejection, RoutesView};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::warn;

/// What the agent's join left behind (the fields the router needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The master's URL.
    pub url: String,
    /// This node's name.
    pub node: String,
    /// This node's credential.
    pub credential: String,
    /// The master's CA (PEM), pinned at join.
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// Reads the join state of the agent whose state directory is `dir`.
pub fn load_joined(dir: &Path) -> anyhow::Result<Joined> {
    let path = dir.join("master.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (join this host's berth-agent to the master first)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A client of the master, as this node.
#[derive(Debug, Clone)]
pub struct Master {
    http: reqwest::Client,
    joined: Joined,
}

/// How long one long poll waits at the master.
const POLL_SECS: u64 = 30;

impl Master {
    /// A client trusting exactly the master's pinned CA.
    pub fn new(joined: Joined) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(POLL_SECS + 15));
        if let Some(pem) = &joined.ca_pem {
            builder = builder.tls_built_in_root_certs(false).add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes())
                    .context("reading the master's CA")?,
            );
        }
        Ok(Self {
            http: builder.build()?,
            joined,
        })
    }

    /// This router's node.
    pub fn node(&self) -> &str {
        &self.joined.node
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, after: Option<u64>) -> anyhow::Result<T> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.joined.url))
            .bearer_auth(&self.joined.credential);
        if let Some(after) = after {
            request = request.query(&[("after", after), ("timeout", POLL_SECS)]);
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("GET {path}: {status}: {body}");
        }
        Ok(response.json().await?)
    }

    /// Follows `path` (a view with a `revision`) by long poll, publishing
    /// every new answer; retries with a pause while the master is away.
    async fn follow<T>(self, path: &'static str, out: watch::Sender<Option<T>>)
    where
        T: DeserializeOwned + Revisioned + PartialEq + Send + Sync,
    {
        let mut after = None;
        loop {
            match self.get::<T>(path, after).await {
                Ok(view) => {
                    after = Some(view.revision());
                    out.send_if_modified(|current| {
                        if current.as_ref() == Some(&view) {
                            return false;
                        }
                        *current = Some(view);
                        true
                    });
                }
                Err(e) => {
                    warn!(error = %e, path, "reading from the master failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if out.is_closed() {
                return;
            }
        }
    }

    /// Starts following the routes and the endpoints.
    pub fn watch(
        &self,
    ) -> (
        watch::Receiver<Option<RoutesView>>,
        watch::Receiver<Option<EndpointsView>>,
    ) {
        let (routes_tx, routes) = watch::channel(None);
        let (endpoints_tx, endpoints) = watch::channel(None);
        tokio::spawn(self.clone().follow("/v1/routes", routes_tx));
        tokio::spawn(self.clone().follow("/v1/endpoints", endpoints_tx));
        (routes, endpoints)
    }

    /// Reports that HAProxy refused `route`: the master records a
    /// `RouteRejected` event.
    pub async fn reject(&self, route: &str, reason: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/v1/routes/{route}/rejected", self.joined.url))
            .bearer_auth(&self.joined.credential)
            .json(&RouteRejection {
                reason: reason.to_owned(),
            })
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!("reporting route {route}: {}", response.status());
        }
        Ok(())
    }
}

/// A view that carries the store revision it was read at.
pub trait Revisioned {
    /// The revision.
    fn revision(&self) -> u64;
}

impl Revisioned for RoutesView {
    fn revision(&self) -> u64 {
        self.revision
    }
}

impl Revisioned for EndpointsView {
    fn revision(&self) -> u64 {
        self.revision
    }
}
