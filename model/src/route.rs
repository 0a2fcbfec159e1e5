//! Routes: a DNS name (and optionally a path) that routers send to a
//! service's ready endpoints, in plain HTTP, with TLS ended at the router
//! (edge) or passed through to the pods (passthrough), websockets allowed.
//!
//! Every string here ends up in an HAProxy configuration, so hostnames are
//! held to DNS subdomains and paths to a small, quote-free character set.

use serde::{Deserialize, Serialize};

use crate::name::validate_dns_label;
use crate::validation::ValidationErrors;

/// Longest hostname DNS allows.
pub const MAX_HOSTNAME_LEN: usize = 253;

/// What a route's private key reads as for everyone but routers.
pub const REDACTED_KEY: &str = "(redacted)";

/// Longest path a route may match on.
pub const MAX_PATH_LEN: usize = 1024;

/// How a route handles TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsTermination {
    /// The router ends TLS with the route's certificate (chosen by SNI) and
    /// talks plain HTTP to the pods.
    Edge,
    /// The router reads only the SNI name and passes the TLS stream to the
    /// pods untouched.
    Passthrough,
}

impl TlsTermination {
    /// The name the API and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsTermination::Edge => "edge",
            TlsTermination::Passthrough => "passthrough",
        }
    }
}

/// A route's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTls {
    /// Edge or passthrough.
    pub termination: TlsTermination,
    /// PEM certificate chain (edge only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// PEM private key of the certificate (edge only). A secret: only
    /// routers read it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A DNS name (and path) served by routers, sent to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// The route's name, a DNS-1123 label.
    pub name: String,
    /// Free `key: value` pairs, e.g. for `berth apply --prune -l KEY=VALUE`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// The service whose ready endpoints receive the traffic.
    pub service: String,
    /// The DNS name clients use. Empty when creating means "generate
    /// `<service>-<namespace>.<suffix>`"; the master fills it in.
    #[serde(default)]
    pub host: String,
    /// Only requests under this path (HTTP and edge routes); `/` is all.
    #[serde(default = "root_path")]
    pub path: String,
    /// The service's container port to send to; `None` is its first
    /// published port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// TLS, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// Upgraded connections (websockets) stay open as long as they are used.
    #[serde(default)]
    pub websocket: bool,
}

fn root_path() -> String {
    "/".to_owned()
}

impl Route {
    /// The hostname of a route that names none.
    /// It carries the service's project, so that two projects' `web`
    /// routes get hosts of their own.
    pub fn generated_host(service: &str, project: &str, suffix: &str) -> String {
        format!("{service}-{project}.{suffix}")
    }

    /// Whether the route is served as a TLS passthrough (TCP, by SNI).
    pub fn is_passthrough(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.termination == TlsTermination::Passthrough)
    }

    /// Whether the router ends TLS for it.
    pub fn is_edge(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.termination == TlsTermination::Edge)
    }

    /// The same route with its private key blanked, for everyone but
    /// routers.
    pub fn redacted(mut self) -> Self {
        if let Some(key) = self.tls.as_mut().and_then(|t| t.key.as_mut()) {
            *key = REDACTED_KEY.to_owned();
        }
        self
    }

    /// The route with the key [`Route::redacted`] blanked taken from
    /// `stored`, so a shown route sent back keeps its key.
    pub fn with_secrets_from(mut self, stored: &Route) -> Self {
        if let (Some(key), Some(old)) = (
            self.tls.as_mut().and_then(|t| t.key.as_mut()),
            stored.tls.as_ref().and_then(|t| t.key.as_ref()),
        ) {
            if key == REDACTED_KEY {
                key.clone_from(old);
            }
        }
        self
    }

    /// Checks everything that needs no other object: names, hostname,
    /// path and the shape of the TLS settings (whether certificate and key
    /// match is the master's check: it needs cryptography). A route whose
    /// host is still empty passes; the master generates one.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        if let Err(e) = validate_dns_label(&self.service) {
            errors.push("service", e.to_string());
        }
        if !self.host.is_empty() {
            if let Err(message) = validate_hostname(&self.host) {
                errors.push("host", message);
            }
        }
        if let Err(message) = validate_path(&self.path) {
            errors.push("path", message);
        }
        if self.port == Some(0) {
            errors.push("port", "must be 1 to 65535");
        }
        match &self.tls {
            None => {}
            Some(tls) => match tls.termination {
                TlsTermination::Edge => {
                    let pem_blocks = [
                        ("tls.certificate", &tls.certificate, "CERTIFICATE"),
                        ("tls.key", &tls.key, "PRIVATE KEY"),
                    ];
                    for (field, value, label) in pem_blocks {
                        match value {
                            None => errors.push(field, "edge termination needs it"),
                            Some(pem) if !pem.contains(&format!("{label}-----")) => {
                                errors.push(field, format!("must be PEM ({label})"))
                            }
                            Some(_) => {}
                        }
                    }
                }
                TlsTermination::Passthrough => {
                    if tls.certificate.is_some() || tls.key.is_some() {
                        errors.push(
                            "tls",
                            "passthrough routes carry no certificate: the pods end TLS",
                        );
                    }
                    // The router sees only the SNI name of a TLS stream.
                    if self.path != "/" {
                        errors.push("path", "passthrough routes cannot match on a path");
                    }
                }
            },
        }
        crate::labels::validate_labels("labels", &self.labels, &mut errors);
        errors.into_result()
    }
}

/// Checks that `host` is a DNS subdomain: dot-separated DNS-1123 labels,
/// at most 253 characters in all.
pub fn validate_hostname(host: &str) -> Result<(), String> {
    if host.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "must be at most {MAX_HOSTNAME_LEN} characters, got {}",
            host.len()
        ));
    }
    for label in host.split('.') {
        validate_dns_label(label)
            .map_err(|e| format!("must be a DNS subdomain: label {label:?} {e}"))?;
    }
    Ok(())
}

/// Checks that `path` starts with `/` and holds only visible ASCII other
/// than `#` (a fragment never reaches a server), quotes and backslashes.
pub fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("must start with '/', got {path:?}"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("must be at most {MAX_PATH_LEN} characters"));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '#' | '"' | '\'' | '\\'))
    {
        return Err(format!(
            "must not contain spaces, control characters, '#', quotes or '\\', found {bad:?}"
        ));
    }
    Ok(())
}

/// The routes a router asks for: which it should serve, and the store
/// revision they were read at (to long-poll from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutesView {
    /// The store revision of this answer.
    pub revision: u64,
    /// The routes.
    pub routes: Vec<Route>,
}

/// `POST /v1/routes/{name}/rejected`: a router could not serve a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRejection {
    /// Why, in words (HAProxy's own message when its check failed).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            name: "www".into(),
            labels: Default::default(),
            service: "web".into(),
            host: "www.example.test".into(),
            path: "/".into(),
            port: None,
            tls: None,
            websocket: false,
        }
    }

    #[test]
    fn a_plain_route_is_valid_and_defaults_to_the_root_path() {
        assert_eq!(route().validate(), Ok(()));
        let parsed: Route =
            serde_json::from_str(r#"{"name":"www","service":"web"}"#).expect("minimal route");
        assert_eq!(parsed.path, "/");
        assert_eq!(parsed.host, "");
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn hostnames_with_newlines_quotes_or_bad_labels_are_refused() {
        for host in [
            "www.example.test\nbackend x",
            "www\".example.test",
            "www'.example.test",
            "WWW.example.test",
            "a..b",
            "-a.b",
            "a b.test",
        ] {
            let mut bad = route();
            bad.host = host.into();
            let errors = bad.validate().expect_err(host);
            assert!(errors.message_for("host").is_some(), "{host}: {errors}");
        }
        let mut long = route();
        long.host = format!("{}.test", ["a"; 130].join("."));
        assert!(long.validate().is_err());
    }

    #[test]
    fn paths_with_spaces_hashes_or_quotes_are_refused() {
        for path in ["/a b", "/a#b", "a", "/a\"b", "/a\nb", "/a\\b", ""] {
            let mut bad = route();
            bad.path = path.into();
            let errors = bad.validate().expect_err(path);
            assert!(errors.message_for("path").is_some(), "{path:?}: {errors}");
        }
        let mut ok = route();
        ok.path = "/api/v1/items?x=1&y=%20".into();
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn tls_settings_must_fit_the_termination() {
        let mut edge = route();
        edge.tls = Some(RouteTls {
            termination: TlsTermination::Edge,
            certificate: None,
            key: Some("garbage".into()),
        });
        let errors = edge.validate().expect_err("edge without certificate");
        assert!(errors.message_for("tls.certificate").is_some());
        assert!(errors.message_for("tls.key").is_some());

        let mut passthrough = route();
        passthrough.path = "/x".into();
        passthrough.tls = Some(RouteTls {
            termination: TlsTermination::Passthrough,
            certificate: Some("-----BEGIN CERTIFICATE-----".into()),
            key: None,
        });
        let errors = passthrough.validate().expect_err("passthrough with path");
        assert!(errors.message_for("tls").is_some());
        assert!(errors.message_for("path").is_some());
    }

    #[test]
    fn generated_hosts_name_service_and_namespace_and_keys_are_redacted() {
        assert_eq!(
            Route::generated_host("web", "default", "apps.example.test"),
            "web-default.apps.example.test"
        );
        assert_eq!(
            Route::generated_host("web", "a", "apps.example.test"),
            "web-a.apps.example.test"
        );
        let mut edge = route();
        edge.tls = Some(RouteTls {
            termination: TlsTermination::Edge,
            certificate: Some("cert".into()),
            key: Some("secret".into()),
        });
        let shown = edge.redacted();
        let tls = shown.tls.expect("tls kept");
        assert_eq!(tls.key.as_deref(), Some("(redacted)"));
        assert_eq!(tls.certificate.as_deref(), Some("cert"));
    }
}
