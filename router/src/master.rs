//! The router's link to berth-master, as the node it runs on: the joined
//! agent's credential (its 0600 `master.json`, read through berth-client)
//! reads the routes this router serves and every service's endpoints, each
//! by long poll, and reports routes HAProxy refused.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use berth_client::{Backoff, Joined, NodeClient, Timeouts};
use berth_model::endpoints::EndpointsView;
use berth_model::route::{RouteRejection, RoutesView};
use tokio::sync::watch;
use tracing::warn;

/// Reads the join state of the agent whose state directory is `dir`.
pub fn load_joined(dir: &Path) -> anyhow::Result<Joined> {
    Joined::load(dir)?.with_context(|| {
        format!(
            "reading {} (join this host's berth-agent to the master first)",
            Joined::path(dir).display()
        )
    })
}

/// A client of the master, as this node.
#[derive(Debug, Clone)]
pub struct Master {
    client: NodeClient,
}

/// How long one long poll waits at the master, and any request in all.
const TIMEOUTS: Timeouts = Timeouts {
    request: Duration::from_secs(45),
    long_poll: Duration::from_secs(30),
};

/// The pause after a failed read.
const RETRY: Backoff = Backoff::fixed(Duration::from_secs(1));

impl Master {
    /// A client trusting exactly the master's pinned CA.
    pub fn new(joined: Joined) -> anyhow::Result<Self> {
        Ok(Self {
            client: NodeClient::new(joined, TIMEOUTS)?,
        })
    }

    /// This router's node.
    pub fn node(&self) -> &str {
        self.client.node()
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

    /// Follows the view at `path` until nobody receives it; retries with a
    /// pause while the master is away.
    async fn follow<T>(self, path: &'static str, out: watch::Sender<Option<T>>)
    where
        T: serde::de::DeserializeOwned + berth_client::Revisioned + PartialEq,
    {
        self.client
            .follow(path, RETRY, &out, |e| {
                warn!(error = %berth_client::error::report(e), path, "reading from the master failed; retrying");
            })
            .await;
    }

    /// Reports that HAProxy refused `route`: the master records a
    /// `RouteRejected` event.
    pub async fn reject(&self, route: &str, reason: &str) -> anyhow::Result<()> {
        let rejection = RouteRejection {
            reason: reason.to_owned(),
        };
        self.client
            .post(&format!("/v1/routes/{route}/rejected"), &rejection)
            .await
            .with_context(|| format!("reporting route {route}"))
    }
}
