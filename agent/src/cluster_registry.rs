//! The cluster's integrated registry, as this node pulls from it. Once the
//! agent reaches the master it learns the registry's address and CA, and
//! installs the CA where dockerd trusts it for that address
//! (`/etc/docker/certs.d/HOST:PORT/berth-ca.crt`: dockerd trusts every
//! `*.crt` there, and the name tells a purge which file is berth's), so
//! that no registry needs to be insecure. Each pull from it carries a pull-only token for the one
//! repository, got from the master with the node's credential and kept
//! until it nears expiry: pods start through a master outage as long as
//! their tokens last.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_client::NodeClient;
use serde::Deserialize;
use tracing::{info, warn};

use crate::docker::PullAuth;

/// Where dockerd looks for a registry's CA.
pub const DOCKER_CERTS_DIR: &str = "/etc/docker/certs.d";

/// berth's CA file in a registry's directory of [`DOCKER_CERTS_DIR`].
pub const CA_FILE: &str = "berth-ca.crt";

/// What the master says of its registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryInfo {
    pub address: String,
    pub ca_certificate: String,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: String,
    expires_in: u64,
}

struct Token {
    token: String,
    /// When to fetch a new one: half its life.
    renew_at: Instant,
    expires_at: Instant,
}

#[derive(Default)]
struct Known {
    master: Option<NodeClient>,
    address: Option<String>,
    tokens: HashMap<String, Token>,
}

/// The cluster registry's address, and this node's tokens for it.
#[derive(Default)]
pub struct ClusterRegistry {
    known: tokio::sync::Mutex<Known>,
    certs_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRegistry").finish_non_exhaustive()
    }
}

impl ClusterRegistry {
    /// A registry that installs its CA under `certs_dir` (dockerd's
    /// [`DOCKER_CERTS_DIR`] on a host; `None` in tests).
    pub fn new(certs_dir: Option<PathBuf>) -> Self {
        ClusterRegistry {
            known: tokio::sync::Mutex::default(),
            certs_dir,
        }
    }

    /// Asks the master where its registry is, until it answers, and trusts
    /// the registry's CA. A master without a registry (plain HTTP) is
    /// asked no more.
    pub async fn learn(&self, master: &NodeClient) {
        let mut wait = Duration::from_secs(1);
        let info = loop {
            match master.get::<RegistryInfo>("/v1/registry", None).await {
                Ok(info) => break info,
                Err(berth_client::Error::Answered { status, .. })
                    if status == reqwest::StatusCode::NOT_FOUND =>
                {
                    info!("the master runs no registry");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "asking the master where its registry is; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        };
        if let Some(dir) = &self.certs_dir {
            if let Err(e) = install_ca(dir, &info) {
                warn!(error = %e, address = %info.address, "cannot install the registry's CA for dockerd");
            }
        }
        info!(address = %info.address, "the cluster registry");
        let mut known = self.known.lock().await;
        known.master = Some(master.clone());
        known.address = Some(info.address);
    }

    /// How to pull `image`: with a pull token when it is the cluster
    /// registry's. A token the master cannot renew is used until it
    /// expires.
    pub async fn auth_for(&self, image: &str) -> Option<PullAuth> {
        let mut known = self.known.lock().await;
        let repository = repository_of(known.address.as_deref()?, image)?.to_owned();
        let now = Instant::now();
        let fresh = known
            .tokens
            .get(&repository)
            .is_some_and(|t| t.renew_at > now);
        if !fresh {
            if let Some(master) = known.master.clone() {
                let path = format!(
                    "/v1/registry/token?service=berth-registry&scope=repository:{repository}:pull"
                );
                match master.get::<TokenAnswer>(&path, None).await {
                    Ok(answer) => {
                        let life = Duration::from_secs(answer.expires_in.max(2));
                        known.tokens.insert(
                            repository.clone(),
                            Token {
                                token: answer.token,
                                renew_at: now + life / 2,
                                expires_at: now + life,
                            },
                        );
                    }
                    Err(e) => warn!(error = %e, %repository, "no new pull token from the master"),
                }
            }
        }
        known
            .tokens
            .get(&repository)
            .filter(|t| t.expires_at > now)
            .map(|t| PullAuth::Token(t.token.clone()))
    }
}

impl ClusterRegistry {
    /// The master, as this node reaches it, once it has told where its
    /// registry is.
    pub async fn master(&self) -> Option<NodeClient> {
        self.known.lock().await.master.clone()
    }

    /// A token that may pull and push `image`'s repository, for a build
    /// assigned here; the master grants push only for its output. Never
    /// kept: each build asks afresh.
    pub async fn push_token(&self, image: &str) -> Result<String, String> {
        let (master, address) = {
            let known = self.known.lock().await;
            (known.master.clone(), known.address.clone())
        };
        let (Some(master), Some(address)) = (master, address) else {
            return Err("the cluster has no registry this node knows of".to_owned());
        };
        let repository = repository_of(&address, image)
            .ok_or_else(|| format!("{image} is not in the cluster registry {address}"))?;
        let path = format!(
            "/v1/registry/token?service=berth-registry&scope=repository:{repository}:pull,push"
        );
        let answer = master
            .get::<TokenAnswer>(&path, None)
            .await
            .map_err(|e| format!("asking the master for a push token: {e}"))?;
        if !grants_push(&answer.token, repository) {
            return Err(format!(
                "the master grants this node no push to {repository}"
            ));
        }
        Ok(answer.token)
    }
}

/// Whether a registry token (a JWT) grants push to `repository`: its
/// claims' `access` lists what the realm granted, and leaves out the rest.
pub fn grants_push(token: &str, repository: &str) -> bool {
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        access: Vec<Access>,
    }
    #[derive(Deserialize)]
    struct Access {
        #[serde(rename = "type")]
        kind: String,
        name: String,
        #[serde(default)]
        actions: Vec<String>,
    }
    use base64::Engine as _;
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return false;
    };
    let Ok(claims) = serde_json::from_slice::<Claims>(&bytes) else {
        return false;
    };
    claims.access.iter().any(|a| {
        a.kind == "repository" && a.name == repository && a.actions.iter().any(|x| x == "push")
    })
}

/// The repository of `image` (`HOST:PORT/PROJECT/STREAM@sha256:...` or
/// `...:TAG`) when it is in the registry at `address`.
pub fn repository_of<'a>(address: &str, image: &'a str) -> Option<&'a str> {
    let rest = image.strip_prefix(address)?.strip_prefix('/')?;
    let name = rest.split('@').next()?;
    let name = match name.rsplit_once(':') {
        Some((name, _tag)) => name,
        None => name,
    };
    (!name.is_empty()).then_some(name)
}

/// Writes the registry's CA where dockerd reads it for that address.
fn install_ca(dir: &Path, info: &RegistryInfo) -> std::io::Result<()> {
    if info.address.contains('/') || info.address.starts_with('.') {
        return Err(std::io::Error::other(format!(
            "{:?} is not HOST:PORT",
            info.address
        )));
    }
    let dir = dir.join(&info.address);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(CA_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(info.ca_certificate.as_str()) {
        return Ok(());
    }
    let partial = dir.join(".berth-ca.partial");
    std::fs::write(&partial, &info.ca_certificate)?;
    std::fs::rename(partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cluster_registrys_images_have_a_repository() {
        let at = "h1:5000";
        assert_eq!(
            repository_of(at, "h1:5000/shop/web@sha256:ab"),
            Some("shop/web")
        );
        assert_eq!(repository_of(at, "h1:5000/shop/web:v1"), Some("shop/web"));
        assert_eq!(repository_of(at, "h1:5000/shop/web"), Some("shop/web"));
        assert_eq!(repository_of(at, "h1:50000/shop/web"), None);
        assert_eq!(repository_of(at, "busybox:1"), None);
    }

    #[test]
    fn a_token_grants_push_only_when_its_claims_say_so() {
        use base64::Engine as _;
        let token = |claims: &str| {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.sig", b64.encode("{}"), b64.encode(claims))
        };
        let both = token(
            r#"{"access":[{"type":"repository","name":"a/site","actions":["pull","push"]}]}"#,
        );
        assert!(grants_push(&both, "a/site"));
        assert!(!grants_push(&both, "a/other"));
        let pull =
            token(r#"{"access":[{"type":"repository","name":"a/site","actions":["pull"]}]}"#);
        assert!(!grants_push(&pull, "a/site"));
        assert!(!grants_push("garbage", "a/site"));
    }

    #[test]
    fn the_ca_lands_where_dockerd_reads_it() {
        let dir = std::env::temp_dir().join(format!("berth-certs-{}", std::process::id()));
        let info = RegistryInfo {
            address: "h1:5000".into(),
            ca_certificate: "PEM".into(),
        };
        install_ca(&dir, &info).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("h1:5000/berth-ca.crt")).unwrap(),
            "PEM"
        );
        let bad = RegistryInfo {
            address: "../etc".into(),
            ca_certificate: "PEM".into(),
        };
        assert!(install_ca(&dir, &bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
