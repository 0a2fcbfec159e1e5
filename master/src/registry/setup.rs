//! What the integrated registry (Debian's `docker-registry`, distribution
//! 2.8) runs with: its configuration, written by `berth-master
//! registry-config` before `berth-registry.service` starts it, and the
//! keys it shares with the master. The master keeps the token key and the
//! notification secret in its state; the registry gets the CA (to trust
//! tokens and the master's notification endpoint), a serving certificate
//! from the CA for its address, and the secret it sends with push events.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::token::{ISSUER, SERVICE};
use crate::config::MasterConfig;
use crate::tls;

/// Where `registry-config` writes by default: the unit's runtime directory.
pub const DEFAULT_OUT_DIR: &str = "/run/berth-registry";

/// The master's path that takes the registry's push events.
pub const EVENTS_PATH: &str = "/v1/registry/events";

/// The master's path that issues tokens.
pub const TOKEN_PATH: &str = "/v1/registry/token";

/// The registry's secrets, kept in the master's state directory.
pub struct Keys {
    /// The token signing key, PKCS#8 DER.
    pub token_key: Vec<u8>,
    /// Its certificate from the cluster CA, DER.
    pub token_certificate: Vec<u8>,
    /// What the registry sends as a bearer token with its events.
    pub notify_secret: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

/// Loads the registry's keys from `state_dir`, making them the first
/// time. The CA must exist already (the master makes it at first start).
pub fn ensure_keys(state_dir: &Path) -> anyhow::Result<Keys> {
    let key_path = state_dir.join("registry-token.key");
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).context("reading the registry token key")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate()?;
            tls::write_private_once(&key_path, &key.serialize_pem())?;
            // Another process may have made it first: theirs is the one.
            KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)?
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", key_path.display())),
    };
    let certificate = tls::issue(state_dir, "berth registry token signer", &[], &key)?;
    let secret_path = state_dir.join("registry-notify.secret");
    if !secret_path.exists() {
        tls::write_private_once(&secret_path, &crate::auth::new_secret()?)?;
    }
    let notify_secret = std::fs::read_to_string(&secret_path)
        .with_context(|| format!("reading {}", secret_path.display()))?
        .trim()
        .to_owned();
    Ok(Keys {
        token_key: key.serialize_der(),
        token_certificate: CertificateDer::from_pem_slice(certificate.as_bytes())?
            .as_ref()
            .to_vec(),
        notify_secret,
    })
}

/// Writes the registry's configuration and certificates into `out` (0600
/// files): `config.yml`, `ca.crt`, `tls.crt`, `tls.key`. Returns the
/// configuration's path.
pub fn write_config(config: &MasterConfig, out: &Path) -> anyhow::Result<PathBuf> {
    let state = &config.state_dir;
    if !state.join("ca.key").exists() {
        anyhow::bail!(
            "{} has no CA yet: start berth-master once before the registry",
            state.display()
        );
    }
    let keys = ensure_keys(state)?;
    let address = config.registry_address();
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(host, _)| host);
    let key = KeyPair::generate()?;
    let certificate = tls::issue(
        state,
        "berth-registry",
        &[
            host.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ],
        &key,
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca = std::fs::read_to_string(state.join("ca.crt"))?;
    tls::write_private(&out.join("ca.crt"), &ca)?;
    tls::write_private(&out.join("tls.crt"), &certificate)?;
    tls::write_private(&out.join("tls.key"), &key.serialize_pem())?;
    let storage = storage_root(config);
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let master = config.public_url("https");
    let text = render(&Rendered {
        listen: &config.registry.listen.to_string(),
        storage: &storage,
        out,
        realm: &format!("{master}{TOKEN_PATH}"),
        events: &format!("{master}{EVENTS_PATH}"),
        notify_secret: &keys.notify_secret,
    });
    let path = out.join("config.yml");
    tls::write_private(&path, &text)?;
    Ok(path)
}

struct Rendered<'a> {
    listen: &'a str,
    storage: &'a Path,
    out: &'a Path,
    realm: &'a str,
    events: &'a str,
    notify_secret: &'a str,
}

/// A YAML string: JSON's quoting is YAML's double-quoted style.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The registry's `config.yml`. Deletes are on, for `berth image prune`;
/// only manifest pushes are sent to the master.
fn render(r: &Rendered<'_>) -> String {
    let file = |name: &str| quoted(&r.out.join(name).display().to_string());
    format!(
        "# Written by berth-master registry-config at each start of berth-registry.service.\n\
         version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n\
         http:\n  addr: {listen}\n  tls:\n    certificate: {cert}\n    key: {key}\n  headers:\n    X-Content-Type-Options: [nosniff]\n\
         auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {ca}\n\
         notifications:\n  endpoints:\n    - name: berth-master\n      url: {events}\n      headers:\n        Authorization: [{bearer}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n      ignore:\n        mediatypes: [application/octet-stream]\n        actions: [pull]\n",
        storage = quoted(&r.storage.display().to_string()),
        listen = quoted(r.listen),
        cert = file("tls.crt"),
        key = file("tls.key"),
        realm = quoted(r.realm),
        service = quoted(SERVICE),
        issuer = quoted(ISSUER),
        ca = file("ca.crt"),
        events = quoted(r.events),
        bearer = quoted(&format!("Bearer {}", r.notify_secret)),
    )
}

/// Where the registry keeps its images: `data/` under `[registry] storage`.
pub fn storage_root(config: &MasterConfig) -> PathBuf {
    config.registry.storage.join("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_realm_the_storage_and_the_events_endpoint() {
        let text = render(&Rendered {
            listen: "0.0.0.0:5000",
            storage: Path::new("/var/lib/berth/registry/data"),
            out: Path::new("/run/berth-registry"),
            realm: "https://h1:7443/v1/registry/token",
            events: "https://h1:7443/v1/registry/events",
            notify_secret: "s3cret",
        });
        assert!(text.contains("realm: \"https://h1:7443/v1/registry/token\""));
        assert!(text.contains("rootdirectory: \"/var/lib/berth/registry/data\""));
        assert!(text.contains("Authorization: [\"Bearer s3cret\"]"));
        assert!(text.contains("rootcertbundle: \"/run/berth-registry/ca.crt\""));
        assert!(text.contains("service: \"berth-registry\""));
    }
}
