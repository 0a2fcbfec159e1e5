//! Routes: checked completely before they are stored (hostname, path,
//! certificate against key), so a bad route is refused here and never
//! reaches a router; each holds a claim on its host and path, so two
//! routes never serve the same one.

use berth_model::{FieldError, Route, ValidationErrors};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Resource, Scope, Settings, Update};
use crate::objects::{self, ROUTES, ROUTE_CLAIMS};

impl Resource for Route {
    const KIND: &'static str = "route";
    const PREFIX: &'static str = ROUTES;
    /// Routers must never see a route missing, and `berth route
    /// --replace` sends the route without a revision.
    const SCOPE: Scope = Scope::Project;
    const UPDATE: Update = Update::Replace;
    const CONFLICT_HINT: &'static str = " (replace it with --replace)";

    fn name(&self) -> &str {
        &self.name
    }

    /// Fills in the generated hostname.
    fn complete(mut self, settings: &Settings<'_>) -> Self {
        if self.host.is_empty() {
            self.host =
                Route::generated_host(&self.service, settings.project, settings.route_suffix);
        }
        self
    }

    fn qualified(self, project: &str) -> Self {
        Route::qualified(self, project)
    }

    fn unqualified(self) -> Self {
        Route::unqualified(self)
    }

    /// The model's rules, then whether the certificate and key belong
    /// together.
    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        let mut errors = Route::validate(self).err().unwrap_or_default();
        if let Some(tls) = &self.tls {
            if let (Some(certificate), Some(key)) = (&tls.certificate, &tls.key) {
                if errors.is_empty() {
                    if let Err((field, message)) = check_key_pair(certificate, key) {
                        errors.push(field, message);
                    }
                }
            }
        }
        errors.into_result()
    }

    fn redacted(self) -> Self {
        Route::redacted(self)
    }

    fn with_secrets_from(self, stored: &Self) -> Self {
        Route::with_secrets_from(self, stored)
    }

    fn claims(&self) -> Vec<String> {
        vec![objects::key(
            ROUTE_CLAIMS,
            &format!("{}{}", self.host, self.path),
        )]
    }

    fn claim_taken(&self, _claim: &str, _holder: Option<&str>) -> FieldError {
        FieldError {
            field: "host".to_owned(),
            message: format!("another route already serves {}{}", self.host, self.path),
        }
    }
}

/// Whether `key` is the private key of the first certificate in
/// `certificate` (both PEM): the router would otherwise serve a TLS
/// handshake no client can complete.
fn check_key_pair(certificate: &str, key: &str) -> Result<(), (&'static str, String)> {
    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("tls.certificate", format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(("tls.certificate", "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| ("tls.key", format!("not a PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ("tls.key", format!("unsupported private key: {e}")))?;
    match rustls::sign::CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err((
            "tls.key",
            "does not match the certificate's public key".into(),
        )),
        Err(e) => Err(("tls.certificate", format!("cannot be used: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use berth_model::HostPortPolicy;

    use super::*;

    fn pair(name: &str) -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("test certificate");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let (cert_a, key_a) = pair("a.example.test");
        let (_, key_b) = pair("b.example.test");
        assert_eq!(check_key_pair(&cert_a, &key_a), Ok(()));
        let (field, message) = check_key_pair(&cert_a, &key_b).expect_err("mismatch");
        assert_eq!(field, "tls.key");
        assert!(message.contains("does not match"), "{message}");
        let (field, _) = check_key_pair("-----BEGIN CERTIFICATE-----\nxx\n", &key_a)
            .expect_err("garbage certificate");
        assert_eq!(field, "tls.certificate");
    }

    #[test]
    fn routes_without_a_host_get_a_generated_one() {
        let route: Route =
            serde_json::from_str(r#"{"name":"web","service":"web"}"#).expect("route");
        let settings = Settings {
            host_ports: &HostPortPolicy::default(),
            network_volume_servers: &[],
            route_suffix: "apps.example.test",
            project: "default",
            registry: None,
            shared: &Default::default(),
        };
        assert_eq!(
            route.complete(&settings).host,
            "web-default.apps.example.test"
        );
    }
}
