//! Registry tokens: distribution's `token` authentication, with the master
//! as its realm. A client asks the realm for access to repositories
//! (`repository:PROJECT/STREAM:pull,push`); the master grants what the
//! caller's credential allows and signs it as an ES256 JWT whose `x5c`
//! header carries the signing certificate, which chains to berth's CA (the
//! registry's `rootcertbundle`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use berth_model::{validate_dns_label, Role};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

/// The `service` the registry names itself as (the token's audience).
pub const SERVICE: &str = "berth-registry";

/// The issuer the registry expects.
pub const ISSUER: &str = "berth-master";

/// Seconds a user's token lives: one push or pull.
pub const USER_TOKEN_SECS: u64 = 300;

/// Seconds a node's pull token lives: agents keep it, so that pods can
/// pull through a master outage this long.
pub const NODE_TOKEN_SECS: u64 = 3600;

/// What a token grants on one resource, as distribution spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository`, or `registry` (the catalog).
    #[serde(rename = "type")]
    pub kind: String,
    /// `PROJECT/STREAM`, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

impl Access {
    /// Parses a `scope` parameter: `TYPE:NAME:ACTION[,ACTION...]` (the name
    /// may hold a `:`, as a registry's `host:port` prefix does).
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The project of a repository named `PROJECT/STREAM`, both DNS labels.
    pub fn project(&self) -> Option<&str> {
        if self.kind != "repository" {
            return None;
        }
        let (project, stream) = self.name.split_once('/')?;
        (validate_dns_label(project).is_ok() && validate_dns_label(stream).is_ok())
            .then_some(project)
    }
}

/// Who asks, as far as the registry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    /// The cluster's admin (and the master itself): everything.
    Admin,
    /// A node: pulls only.
    Node,
    /// A node running a build whose output is the repository: pushes it.
    BuildNode,
    /// A user, with its role in the repository's project, if any.
    User(Option<Role>),
}

/// What of `requested` a `grantee` gets: the actions its credential
/// allows, which may be none (the registry then answers 401/denied).
pub fn grant(grantee: Grantee, requested: &Access) -> Access {
    let allowed: &[&str] = match (grantee, requested.project(), requested.kind.as_str()) {
        (Grantee::Admin, _, "registry") if requested.name == "catalog" => &["*"],
        (_, None, _) => &[],
        (Grantee::Admin, Some(_), _) => &["pull", "push", "delete", "*"],
        (Grantee::Node, Some(_), _) => &["pull"],
        (Grantee::BuildNode, Some(_), "repository") => &["pull", "push"],
        (Grantee::BuildNode, Some(_), _) => &["pull"],
        (Grantee::User(Some(Role::Admin)), Some(_), _) => &["pull", "push", "delete"],
        (Grantee::User(Some(Role::Edit)), Some(_), _) => &["pull", "push"],
        (Grantee::User(Some(_)), Some(_), _) => &["pull"],
        (Grantee::User(None), Some(_), _) => &[],
    };
    Access {
        kind: requested.kind.clone(),
        name: requested.name.clone(),
        actions: requested
            .actions
            .iter()
            .filter(|a| allowed.contains(&a.as_str()))
            .cloned()
            .collect(),
    }
}

/// The claims distribution reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
}

/// Signs tokens with the master's registry key.
pub struct Signer {
    key: EcdsaKeyPair,
    /// The signing certificate, DER, base64 (the `x5c` header's entry).
    certificate: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a P-256 key (PKCS#8 DER) and its certificate (DER).
    pub fn new(pkcs8: &[u8], certificate_der: &[u8]) -> anyhow::Result<Signer> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("the registry token key is not a P-256 key: {e}"))?;
        Ok(Signer {
            key,
            certificate: STANDARD.encode(certificate_der),
            rng,
        })
    }

    /// A token for `subject` granting `access`, valid `ttl_secs` from
    /// `now_secs` (and a little before, for clocks that lag).
    pub fn sign(
        &self,
        subject: &str,
        access: Vec<Access>,
        now_secs: u64,
        ttl_secs: u64,
    ) -> anyhow::Result<String> {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [self.certificate],
        });
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: SERVICE.to_owned(),
            exp: now_secs + ttl_secs,
            nbf: now_secs.saturating_sub(60),
            iat: now_secs,
            jti: crate::auth::new_secret()?[..32].to_owned(),
            access,
        };
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing a registry token failed"))?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// The claims of a token, unverified: for tests and for reading back what
/// was granted.
pub fn claims_of(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Access {
        Access::parse(text).expect(text)
    }

    #[test]
    fn scopes_parse_as_distribution_writes_them() {
        let access = scope("repository:shop/web:push,pull");
        assert_eq!(access.kind, "repository");
        assert_eq!(access.name, "shop/web");
        assert_eq!(access.actions, vec!["push", "pull"]);
        assert_eq!(access.project(), Some("shop"));
        assert_eq!(scope("registry:catalog:*").name, "catalog");
        assert!(Access::parse("repository").is_none());
        assert_eq!(scope("repository:web:pull").project(), None, "no project");
        assert_eq!(scope("repository:a/b/c:pull").project(), None, "nested");
    }

    #[test]
    fn grants_follow_the_credential_and_the_role() {
        let wanted = scope("repository:shop/web:pull,push,delete");
        let actions = |grantee| grant(grantee, &wanted).actions;
        assert_eq!(actions(Grantee::Admin), vec!["pull", "push", "delete"]);
        assert_eq!(actions(Grantee::Node), vec!["pull"]);
        assert_eq!(
            actions(Grantee::User(Some(Role::Edit))),
            vec!["pull", "push"]
        );
        assert_eq!(actions(Grantee::User(Some(Role::View))), vec!["pull"]);
        assert!(actions(Grantee::User(None)).is_empty());
        let catalog = scope("registry:catalog:*");
        assert_eq!(grant(Grantee::Admin, &catalog).actions, vec!["*"]);
        assert!(grant(Grantee::Node, &catalog).actions.is_empty());
        assert!(grant(Grantee::User(Some(Role::Admin)), &catalog)
            .actions
            .is_empty());
    }

    #[test]
    fn a_token_is_an_es256_jwt_with_its_certificate_and_verifies() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["signer".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let signer = Signer::new(&key.serialize_der(), cert.der()).unwrap();
        let token = signer
            .sign("alice", vec![scope("repository:shop/web:pull")], 1000, 300)
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap(),
            cert.der().to_vec()
        );
        let claims = claims_of(&token).unwrap();
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, SERVICE)
        );
        assert_eq!((claims.exp, claims.sub.as_str()), (1300, "alice"));
        assert_eq!(claims.access[0].actions, vec!["pull"]);
        // The signature is P-256 over the first two parts, r||s.
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.public_key_raw(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &signature).is_ok());
    }
}
