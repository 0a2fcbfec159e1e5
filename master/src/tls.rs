//! TLS for the API. At first start the master makes its own CA (kept 0600
//! in its state directory); at every start it issues itself a server
//! certificate for its names. Agents pin the CA through the hash printed in
//! the join command, so a token never travels to an impostor.

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

const CA_NAME: &str = "berth cluster CA";

/// The master's CA and server certificate.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

/// The CA's fixed parameters: an issuer rebuilt from them and the stored
/// key signs certificates that chain to the stored CA certificate.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Writes `text` to `path`, readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    write_owner_only(path, text, false)
}

/// Writes `text` to `path` (owner only) unless the file exists: of two
/// processes making the same secret, the first one's stays.
pub fn write_private_once(path: &Path, text: &str) -> anyhow::Result<()> {
    write_owner_only(path, text, true)
}

fn write_owner_only(path: &Path, text: &str, only_new: bool) -> anyhow::Result<()> {
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(!only_new)
        .truncate(!only_new)
        .create_new(only_new)
        .mode(0o600)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if only_new && e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
    };
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Loads the CA from `dir` (making it at first start) and issues a server
/// certificate for `names` (DNS names or IP addresses).
pub fn ensure(dir: &Path, names: &[String]) -> anyhow::Result<Pki> {
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca_key = if ca_key_path.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?).context("reading the CA key")?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        write_private(&ca_cert_path, &cert.pem())?;
        key
    };
    let ca_pem = std::fs::read_to_string(&ca_cert_path)
        .with_context(|| format!("reading {}", ca_cert_path.display()))?;
    let issuer = Issuer::new(ca_params()?, &ca_key);

    let server_key = KeyPair::generate()?;
    let server_cert = issue_with(&issuer, "berth-master", names, &server_key)?;
    Ok(Pki {
        ca_pem,
        server_cert_pem: server_cert,
        server_key_pem: server_key.serialize_pem(),
    })
}

/// A certificate (PEM) for `key`, named `common_name` and covering
/// `names` (DNS names or IP addresses), from the CA kept in `dir`.
pub fn issue(
    dir: &Path,
    common_name: &str,
    names: &[String],
    key: &KeyPair,
) -> anyhow::Result<String> {
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(dir.join("ca.key")).context("reading the CA key")?,
    )
    .context("reading the CA key")?;
    issue_with(&Issuer::new(ca_params()?, &ca_key), common_name, names, key)
}

fn issue_with(
    issuer: &Issuer<'_, &KeyPair>,
    common_name: &str,
    names: &[String],
    key: &KeyPair,
) -> anyhow::Result<String> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                name.as_str()
                    .try_into()
                    .with_context(|| format!("{name} is not a DNS name"))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    Ok(params.signed_by(key, issuer)?.pem())
}

/// `sha256:<hex>` of the CA certificate's DER: what `--ca-hash` pins.
pub fn ca_hash(ca_pem: &str) -> anyhow::Result<String> {
    let der =
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parsing the CA certificate")?;
    Ok(format!(
        "sha256:{}",
        Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// The rustls configuration serving `pki`'s server certificate.
pub fn server_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = vec![CertificateDer::from_pem_slice(
        pki.server_cert_pem.as_bytes(),
    )?];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_server_certificates_chain_to_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tls-unit-test");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = ensure(&dir, &["h1".into(), "127.0.0.1".into()]).unwrap();
        let second = ensure(&dir, &["h1".into()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem, "the CA changed across starts");
        assert!(ca_hash(&first.ca_pem).unwrap().starts_with("sha256:"));
        assert!(server_config(&first).is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
