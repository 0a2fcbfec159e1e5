//! Pinning the master's CA at join: its hash as `--ca-hash` spells it, and
//! the one fetch made before anything is trusted.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::Digest;

use crate::Error;

/// `sha256:<hex>` of a PEM certificate's DER, as `--ca-hash` spells it.
pub fn hash(pem: &str) -> Result<String, Error> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(Error::Certificate)?;
    let hex: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

/// Fetches the master's CA (`GET {url}/v1/ca.crt`) and checks it against
/// the `pinned` hash before anything secret is sent. The fetch itself
/// cannot verify the server (the CA is what it fetches); the hash is what
/// makes it safe.
pub async fn fetch_pinned(url: &str, pinned: &str) -> Result<String, Error> {
    let insecure = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(Error::Client)?;
    let response = insecure
        .get(format!("{url}/v1/ca.crt"))
        .send()
        .await
        .map_err(|source| Error::Send {
            url: url.to_owned(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(Error::of_answer(response).await);
    }
    let pem = response.text().await.map_err(Error::Decode)?;
    let found = hash(&pem)?;
    if found != pinned {
        return Err(Error::CaMismatch {
            found,
            pinned: pinned.to_owned(),
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made with `openssl req -x509`; its hash
    /// below is `openssl x509 -outform der | sha256sum`.
    const CA: &str = include_str!("test-ca.pem");
    const CA_HASH: &str = "sha256:42571321d638132f949dd190c59cc7be666ff7bcc2e29a356f2840f88fdb99c5";

    async fn master() -> String {
        let app = axum::Router::new().route("/v1/ca.crt", axum::routing::get(|| async { CA }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[test]
    fn the_hash_is_of_the_der_as_openssl_computes_it() {
        assert_eq!(hash(CA).unwrap(), CA_HASH);
        assert!(matches!(hash("no pem"), Err(Error::Certificate(_))));
    }

    #[tokio::test]
    async fn only_the_pinned_ca_is_accepted() {
        let url = master().await;
        assert_eq!(fetch_pinned(&url, CA_HASH).await.unwrap(), CA);
        let other = format!("sha256:{}", "0".repeat(64));
        let error = fetch_pinned(&url, &other).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("the master's CA is {CA_HASH}, not the pinned {other}: refusing to send the join token")
        );
    }
}
