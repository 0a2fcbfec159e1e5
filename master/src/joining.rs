//! `berth-master init` and `berth-master join`: how several masters come
//! to share what one master makes at its first start (the CA and its key,
//! the admin token, the registry's token key and notification secret).
//!
//! `init`, on the first master, seals those files with a new random key
//! (AES-256-GCM) and keeps them in the store, which every master shares;
//! the key is printed once, inside a join token, and kept nowhere. `join
//! URL --token T`, on each other master, reads them back from the store,
//! opens them with the token's key, checks that the master at URL serves
//! the same CA (so a token pasted against the wrong cluster fails before
//! anything is written), and writes them 0600 into its state directory.
//! Each master then issues its own server certificate from the shared CA,
//! for its own names, at every start.
//!
//! The store keeps the CA certificate beside the sealed files, in clear: a
//! master that holds the same CA may seal them again under a new key (`init
//! --new-token`), which makes every earlier token useless; a host with
//! another CA may not replace a cluster's secrets.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::MasterConfig;
use crate::store::{self, Op, Store, StoreError};

/// The files every master of a cluster must hold the same.
pub const SHARED_FILES: [&str; 5] = [
    "ca.crt",
    "ca.key",
    "admin.token",
    "registry-token.key",
    "registry-notify.secret",
];

/// Where the sealed files live in the store.
const SECRETS_KEY: &str = "/cluster-secrets";

/// What a join token starts with: its format's version.
const TOKEN_PREFIX: &str = "bjt1.";

/// The stored record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sealed {
    /// The cluster's CA certificate, PEM, in clear: public, and what tells
    /// a master of this cluster from another.
    ca_pem: String,
    /// The nonce, base64url.
    nonce: String,
    /// The files as JSON (name to content), sealed, base64url.
    sealed: String,
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes)
}

fn cipher(key: &[u8; 32]) -> anyhow::Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("a bad key"))?;
    Ok(LessSafeKey::new(key))
}

/// Seals `files` under `key`, binding the CA certificate as associated
/// data: a record whose clear CA was swapped does not open.
fn seal(key: &[u8; 32], files: &BTreeMap<String, String>) -> anyhow::Result<Sealed> {
    let ca_pem = files
        .get("ca.crt")
        .context("no CA certificate to share")?
        .clone();
    let nonce = random::<NONCE_LEN>()?;
    let mut data = serde_json::to_vec(files)?;
    cipher(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ca_pem.as_bytes()),
            &mut data,
        )
        .map_err(|_| anyhow::anyhow!("sealing the cluster's secrets failed"))?;
    Ok(Sealed {
        ca_pem,
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        sealed: URL_SAFE_NO_PAD.encode(data),
    })
}

fn open(key: &[u8; 32], sealed: &Sealed) -> anyhow::Result<BTreeMap<String, String>> {
    let refused = || {
        anyhow::anyhow!(
            "the join token does not open this cluster's secrets: it is wrong, or `berth-master \
             init --new-token` replaced it; ask the first master for a new one"
        )
    };
    let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(&sealed.nonce)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored nonce is malformed"))?;
    let mut data = URL_SAFE_NO_PAD.decode(&sealed.sealed)?;
    let opened = cipher(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(sealed.ca_pem.as_bytes()),
            &mut data,
        )
        .map_err(|_| refused())?;
    Ok(serde_json::from_slice(opened)?)
}

/// The join token for `key`.
fn token_of(key: &[u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(key))
}

/// The key a join token carries.
fn key_of(token: &str) -> anyhow::Result<[u8; 32]> {
    let malformed = || {
        anyhow::anyhow!("--token: not a join token (it starts with {TOKEN_PREFIX}, as `berth-master init` prints it)")
    };
    let encoded = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or_else(malformed)?;
    URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(malformed)
}

/// Opens the store the configuration names; init and join need the one
/// every master shares.
async fn shared_store(config: &MasterConfig) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if config.store.backend != crate::store::StoreBackend::Etcd {
        bail!(
            "[store] backend is not etcd: several masters share one etcd cluster; a single \
             master with the embedded store needs no init or join"
        );
    }
    store::open_store(&config.store, &config.state_dir)
        .await
        .with_context(|| {
            format!(
                "reaching etcd at {}",
                config.store.etcd_endpoints.join(", ")
            )
        })
}

fn read_shared(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    SHARED_FILES
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(((*name).to_owned(), text))
        })
        .collect()
}

/// `berth-master init [--new-token]`: makes this master's CA and keys if
/// it has none, keeps them sealed in the store, and returns the join
/// token. Without `new_token`, a cluster already initialised is an error.
pub async fn init(config: &MasterConfig, new_token: bool) -> anyhow::Result<String> {
    let store = shared_store(config).await?;
    let dir = &config.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // What the first start makes: the same code, so nothing differs.
    crate::tls::ensure(dir, &crate::server_names(config))?;
    crate::ensure_admin_token(&dir.join("admin.token"))?;
    crate::registry::setup::ensure_keys(dir)?;
    let files = read_shared(dir)?;
    let key = random::<32>()?;
    let value = serde_json::to_vec(&seal(&key, &files)?)?;
    let op = match store.get(SECRETS_KEY).await? {
        None => Op::Create {
            key: SECRETS_KEY.into(),
            value,
        },
        Some(existing) => {
            let stored: Sealed = serde_json::from_slice(&existing.value)
                .context("the store's cluster secrets are malformed")?;
            if stored.ca_pem != files["ca.crt"] {
                bail!(
                    "this cluster was initialised by another master, with another CA: join it \
                     with `berth-master join URL --token TOKEN` instead (move {} away first)",
                    dir.display()
                );
            }
            if !new_token {
                bail!(
                    "this cluster is initialised already; `berth-master init --new-token` makes \
                     a new join token (earlier ones stop working)"
                );
            }
            Op::Update {
                key: SECRETS_KEY.into(),
                value,
                expected: existing.revision,
            }
        }
    };
    match store.apply(vec![op]).await {
        Ok(_) => Ok(token_of(&key)),
        Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => {
            bail!("another master initialised the cluster at the same moment: run init again")
        }
        Err(e) => Err(e).context("keeping the cluster's secrets in the store"),
    }
}

/// Fetches `url`/v1/ca.crt trusting only `ca_pem`: the master there must
/// hold this cluster's CA.
async fn serves_ca(url: &str, ca_pem: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let answer = http
        .get(format!("{}/v1/ca.crt", url.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| {
            format!("{url} does not serve with this cluster's CA (is it a master of this cluster?)")
        })?;
    let served = answer.error_for_status()?.text().await?;
    if served.trim() != ca_pem.trim() {
        bail!("{url} serves another CA than this cluster's");
    }
    Ok(())
}

/// `berth-master join URL --token TOKEN`: writes the cluster's shared
/// files into this master's state directory. Returns the files written.
pub async fn join(config: &MasterConfig, url: &str, token: &str) -> anyhow::Result<Vec<String>> {
    let key = key_of(token)?;
    let store = shared_store(config).await?;
    let Some(entry) = store.get(SECRETS_KEY).await? else {
        bail!(
            "etcd at {} holds no cluster secrets under {}: run `berth-master init` on the first \
             master",
            config.store.etcd_endpoints.join(", "),
            config.store.etcd_prefix
        );
    };
    let sealed: Sealed = serde_json::from_slice(&entry.value)
        .context("the store's cluster secrets are malformed")?;
    let files = open(&key, &sealed)?;
    serves_ca(url, &sealed.ca_pem).await?;
    let dir = &config.state_dir;
    // Nothing is written if any file would be replaced: a host with its
    // own CA is a master of another cluster.
    for (name, text) in &files {
        let path = dir.join(name);
        if let Ok(present) = std::fs::read_to_string(&path) {
            if present != *text {
                bail!(
                    "{} differs from the cluster's: this host has secrets of its own (a master \
                     of another cluster?); move {} away to join",
                    path.display(),
                    dir.display()
                );
            }
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in &files {
        crate::tls::write_private(&dir.join(name), text)?;
    }
    Ok(files.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, String> {
        SHARED_FILES
            .iter()
            .map(|name| ((*name).to_owned(), format!("{name} contents\n")))
            .collect()
    }

    #[test]
    fn sealed_files_open_with_the_token_and_only_with_it() {
        let key = random::<32>().expect("a key");
        let sealed = seal(&key, &files()).expect("sealed");
        assert!(!sealed.sealed.contains("admin.token contents"));
        let token = token_of(&key);
        assert_eq!(
            open(&key_of(&token).expect("a token"), &sealed).expect("opened"),
            files()
        );

        let other = random::<32>().expect("a key");
        let refused = open(&other, &sealed).expect_err("another key");
        assert!(refused.to_string().contains("does not open"), "{refused}");

        // The clear CA is bound to the sealed files.
        let swapped = Sealed {
            ca_pem: "another CA".into(),
            ..sealed
        };
        assert!(open(&key, &swapped).is_err());
    }

    #[test]
    fn a_malformed_token_is_an_error_naming_the_flag() {
        for token in ["", "abc", "bjt1.", "bjt1.!!!", "bjt1.AAAA"] {
            let error = key_of(token).expect_err(token).to_string();
            assert!(error.starts_with("--token:"), "{token}: {error}");
        }
    }
}
