//! What a registry says an image reference points at: `berth
//! import-image` asks for the manifest's digest (a `HEAD`, so nothing is
//! downloaded), following distribution's anonymous token flow when the
//! registry asks for one. The integrated registry is asked with a token
//! the master signs itself.

use std::time::Duration;

use serde::Deserialize;

/// Docker Hub's registry, for references that name none.
const DOCKER_HUB: &str = "registry-1.docker.io";

/// The manifest types asked for: a list or index first, so that a
/// multi-platform image keeps the digest `docker pull` would resolve.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// An image reference, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]` as the user wrote it (`docker.io` when none).
    pub registry: String,
    /// `library/busybox`, `shop/web`.
    pub repository: String,
    /// A tag, or a `sha256:` digest.
    pub reference: String,
}

impl Reference {
    /// Parses `[HOST[:PORT]/]REPO[:TAG|@DIGEST]`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let text = text.trim();
        if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?} is not an image reference"));
        }
        let (registry, rest) = match text.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), text.to_owned()),
        };
        let (repository, reference) = match rest.split_once('@') {
            Some((repository, digest)) => (repository.to_owned(), digest.to_owned()),
            None => match rest.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') => {
                    (repository.to_owned(), tag.to_owned())
                }
                _ => (rest.clone(), "latest".to_owned()),
            },
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid_name =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty() || !repository.chars().all(valid_name) {
            return Err(format!("{text:?}: {repository:?} is not a repository name"));
        }
        if reference.is_empty() {
            return Err(format!("{text:?} has an empty tag"));
        }
        Ok(Reference {
            registry,
            repository,
            reference,
        })
    }

    /// The reference by `digest`: what pods run.
    pub fn by_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }

    fn host(&self) -> &str {
        if self.registry == "docker.io" {
            DOCKER_HUB
        } else {
            &self.registry
        }
    }
}

/// Asks the registry for the digest `reference` points at. `base` replaces
/// `https://HOST` (the integrated registry is reached on this host), and
/// `bearer` is a token to start with.
pub async fn digest_of(
    client: &reqwest::Client,
    reference: &Reference,
    base: Option<&str>,
    bearer: Option<String>,
) -> Result<String, String> {
    let base = base.map_or_else(|| format!("https://{}", reference.host()), str::to_owned);
    let url = format!(
        "{base}/v2/{}/manifests/{}",
        reference.repository, reference.reference
    );
    let head = |token: Option<&str>| {
        let mut request = client
            .head(&url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .timeout(Duration::from_secs(10));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let unreachable = |e: reqwest::Error| format!("{}: unreachable: {e}", reference.registry);
    let mut answer = head(bearer.as_deref()).await.map_err(unreachable)?;
    if answer.status() == reqwest::StatusCode::UNAUTHORIZED && bearer.is_none() {
        let challenge = answer
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let token = anonymous_token(client, &challenge).await?;
        answer = head(Some(&token)).await.map_err(unreachable)?;
    }
    match answer.status() {
        s if s.is_success() => answer
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: the answer names no digest", reference.registry)),
        reqwest::StatusCode::NOT_FOUND => Err(format!(
            "{}: not found: {}:{}",
            reference.registry, reference.repository, reference.reference
        )),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(format!(
            "{}: unauthorized for {}",
            reference.registry, reference.repository
        )),
        status => Err(format!("{}: answered {status}", reference.registry)),
    }
}

#[derive(Debug, Deserialize)]
struct Token {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// An anonymous token from the realm a `Bearer` challenge names.
async fn anonymous_token(client: &reqwest::Client, challenge: &str) -> Result<String, String> {
    let params = challenge_params(challenge).ok_or_else(|| {
        format!("the registry asks for credentials berth has none of ({challenge:?})")
    })?;
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or("the registry's challenge names no realm")?;
    let query: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "realm").collect();
    let answer = client
        .get(&realm)
        .query(&query)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{realm}: unreachable: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{realm}: answered {}", answer.status()));
    }
    let token: Token = answer
        .json()
        .await
        .map_err(|e| format!("{realm}: not a token: {e}"))?;
    Ok(if token.token.is_empty() {
        token.access_token
    } else {
        token.token
    })
}

/// `Bearer realm="...",service="...",scope="..."` as key-value pairs.
fn challenge_params(challenge: &str) -> Option<Vec<(String, String)>> {
    let rest = challenge.strip_prefix("Bearer ")?;
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        params.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start_matches(',').trim();
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_docker_reads_them() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("docker.io", "library/busybox", "latest")
        );
        let r = Reference::parse("h1:5000/shop/web:v1").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("h1:5000", "shop/web", "v1")
        );
        let r = Reference::parse("registry.example/web@sha256:ab").unwrap();
        assert_eq!(r.reference, "sha256:ab");
        assert_eq!(r.by_digest("sha256:cd"), "registry.example/web@sha256:cd");
        assert!(Reference::parse("Bad/Name").is_err());
        assert!(Reference::parse("a b").is_err());
    }

    #[test]
    fn challenges_give_the_realm_and_its_parameters() {
        let params = challenge_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            params[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(params[2].1, "repository:library/busybox:pull");
        assert!(challenge_params("Basic realm=\"x\"").is_none());
    }
}
