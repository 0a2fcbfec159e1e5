//! haproxy.cfg and the crt-list, rendered by pure functions from a
//! [`Layout`] and the servers in its slots. Every value from a route is
//! quoted and escaped; one that cannot be (a control character) is an
//! error, never pasted.

use std::fmt::Write as _;
use std::path::Path;

use crate::layout::{Layout, Mode, Server};
use crate::plan::Slots;

/// Where the rendered configuration points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths<'a> {
    /// HAProxy's runtime directory (admin socket, the edge socket).
    pub runtime_dir: &'a Path,
    /// The crt-list file.
    pub crt_list: &'a Path,
    /// Where the edge certificates are (`<route>.pem`).
    pub certificates_dir: &'a Path,
}

/// The listening ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Plain HTTP.
    pub http: u16,
    /// TLS (edge and passthrough).
    pub https: u16,
}

/// A value that cannot go into an HAProxy configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot be written into haproxy.cfg: it holds a control character")]
pub struct RenderError {
    /// What the value is.
    pub what: &'static str,
    /// The value.
    pub value: String,
}

/// `value` as one HAProxy word: in double quotes, with `\`, `"`, `$`
/// (environment expansion) and `'` escaped, so nothing in it can end the
/// word, start a comment or expand a variable.
pub fn quote(what: &'static str, value: &str) -> Result<String, RenderError> {
    if value.chars().any(char::is_control) {
        return Err(RenderError {
            what,
            value: value.to_owned(),
        });
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// The server line of slot `index` of a backend: its server, or a disabled
/// placeholder the runtime API can fill later.
fn server_line(index: usize, server: Option<&Server>) -> String {
    match server {
        Some(s) => format!(
            "    server s{index} {}\n",
            std::net::SocketAddr::new(s.address, s.port)
        ),
        None => format!("    server s{index} 127.0.0.1:1 disabled\n"),
    }
}

/// The HTTP `use_backend` lines of host rules.
fn host_rules(out: &mut String, rules: &[crate::layout::HostRule]) -> Result<(), RenderError> {
    for rule in rules {
        let host = quote("hostname", &rule.host)?;
        let path = quote("path", &rule.path)?;
        writeln!(
            out,
            "    use_backend {} if {{ req.hdr(host),field(1,:),lower -m str {host} }} {{ path_beg {path} }}",
            rule.backend
        )
        .ok();
    }
    Ok(())
}

/// haproxy.cfg for `layout` with the servers in `slots`. `reload_mark`
/// (letters, digits and `-`) becomes its `description`, which `show info`
/// tells: which reload a worker answering the runtime API runs.
pub fn render(
    layout: &Layout,
    slots: &Slots,
    ports: Ports,
    paths: &Paths<'_>,
    reload_mark: &str,
) -> Result<String, RenderError> {
    debug_assert!(reload_mark
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let runtime = paths.runtime_dir.display();
    let mut out = String::new();
    writeln!(
        out,
        "# Written by berth-router from the master's routes and endpoints;\n\
         # rewritten on every change: do not edit.\n\
         global\n    \
         stats socket {runtime}/admin.sock mode 600 level admin expose-fd listeners\n    \
         description {reload_mark}\n    \
         stats timeout 30s\n    \
         # Old workers finish their connections (websockets too) after a\n    \
         # reload, for at most an hour.\n    \
         hard-stop-after 1h\n    \
         maxconn 4000\n\n\
         defaults\n    \
         mode http\n    \
         timeout connect 1s\n    \
         timeout client 60s\n    \
         # A replica has 10 s of silence before its answer counts as lost:\n    \
         # a request caught in flight by a dying host is then retried on\n    \
         # another replica (retry-on response-timeout) within a client's\n    \
         # patience. Websockets and TLS streams have their own timeouts.\n    \
         timeout server 10s\n    \
         timeout http-request 10s\n    \
         timeout http-keep-alive 10s\n    \
         timeout queue 5s\n    \
         # A server that vanished (its host died) costs a retry on another\n    \
         # server, not a failed request.\n    \
         retries 5\n    \
         option redispatch 1\n"
    )
    .ok();

    writeln!(
        out,
        "frontend http\n    bind :{}\n    mode http",
        ports.http
    )
    .ok();
    host_rules(&mut out, &layout.http)?;
    out.push('\n');

    let has_edge = !layout.certificates.is_empty();
    if has_edge || !layout.passthrough.is_empty() {
        // One TLS port: passthrough routes by SNI, everything else to the
        // edge frontend, which ends TLS with the certificate of the SNI name.
        writeln!(
            out,
            "frontend https\n    bind :{}\n    mode tcp\n    timeout client 1h\n    \
             tcp-request inspect-delay 5s\n    \
             tcp-request content accept if {{ req.ssl_hello_type 1 }}",
            ports.https
        )
        .ok();
        for rule in &layout.passthrough {
            let host = quote("hostname", &rule.host)?;
            writeln!(
                out,
                "    use_backend {} if {{ req.ssl_sni,lower -m str {host} }}",
                rule.backend
            )
            .ok();
        }
        if has_edge {
            writeln!(out, "    default_backend berth_edge\n").ok();
            let crt_list = quote("crt-list path", &paths.crt_list.display().to_string())?;
            writeln!(
                out,
                "backend berth_edge\n    mode tcp\n    timeout server 1h\n    \
                 server edge unix@{runtime}/edge.sock send-proxy-v2\n\n\
                 frontend edge\n    \
                 bind unix@{runtime}/edge.sock accept-proxy ssl crt-list {crt_list} alpn http/1.1\n    \
                 mode http"
            )
            .ok();
            host_rules(&mut out, &layout.edge)?;
        }
        out.push('\n');
    }

    for backend in &layout.backends {
        writeln!(out, "backend {}", backend.name).ok();
        match backend.mode {
            Mode::Http => {
                out.push_str("    mode http\n");
                out.push_str("    retry-on conn-failure empty-response response-timeout\n");
                if backend.websocket {
                    out.push_str("    timeout tunnel 1h\n");
                }
            }
            Mode::Tcp => out.push_str("    mode tcp\n    timeout server 1h\n"),
        }
        // Least connections: a server whose host died piles up pending
        // connects and stops being chosen at once; three failed checks
        // take it out of rotation. A failure under load is retried
        // elsewhere, never turned into a 503 for a healthy backend.
        out.push_str("    balance leastconn\n    default-server check inter 1s fall 3 rise 1\n");
        let filled = slots.get(&backend.name);
        for index in 0..backend.slots {
            let server = filled.and_then(|s| s.get(index)).and_then(Option::as_ref);
            out.push_str(&server_line(index, server));
        }
        out.push('\n');
    }
    Ok(out)
}

/// The crt-list: one line per edge route, its PEM file and SNI name.
pub fn render_crt_list(layout: &Layout, certificates_dir: &Path) -> Result<String, RenderError> {
    let mut out = String::new();
    for certificate in &layout.certificates {
        let file = certificates_dir.join(format!("{}.pem", certificate.route));
        // crt-list lines are split on spaces; hostnames and route names
        // (DNS names and labels) hold none, and are checked again here.
        let host = &certificate.host;
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RenderError {
                what: "hostname",
                value: host.clone(),
            });
        }
        writeln!(out, "{} {host}", file.display()).ok();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Backend, EdgeCertificate, HostRule};
    use std::collections::BTreeMap;

    fn paths() -> Paths<'static> {
        Paths {
            runtime_dir: Path::new("/run/h"),
            crt_list: Path::new("/var/lib/berth/router/crt-list"),
            certificates_dir: Path::new("/var/lib/berth/router/certs"),
        }
    }

    const PORTS: Ports = Ports {
        http: 80,
        https: 443,
    };

    #[test]
    fn quoting_escapes_what_haproxy_would_interpret() {
        assert_eq!(
            quote("x", "www.example.test"),
            Ok("\"www.example.test\"".into())
        );
        assert_eq!(
            quote("x", "a\"b$HOME\\c'd #e"),
            Ok(r#""a\"b\$HOME\\c\'d #e""#.into())
        );
        assert!(quote("hostname", "a\nbackend evil").is_err());
    }

    #[test]
    fn a_plain_route_renders_rules_and_slots() {
        let layout = Layout {
            http: vec![HostRule {
                host: "www.example.test".into(),
                path: "/".into(),
                backend: "be_www".into(),
            }],
            backends: vec![Backend {
                name: "be_www".into(),
                mode: Mode::Http,
                websocket: true,
                slots: 2,
            }],
            ..Layout::default()
        };
        let slots = BTreeMap::from([(
            "be_www".to_owned(),
            vec![Some(Server {
                address: "10.231.0.12".parse().unwrap(),
                port: 30001,
            })],
        )]);
        let text = render(&layout, &slots, PORTS, &paths(), "reload-1").unwrap();
        assert!(text.contains("frontend http\n    bind :80\n"), "{text}");
        assert!(text.contains(
            "use_backend be_www if { req.hdr(host),field(1,:),lower -m str \"www.example.test\" } { path_beg \"/\" }"
        ), "{text}");
        assert!(
            text.contains("    server s0 10.231.0.12:30001\n    server s1 127.0.0.1:1 disabled\n"),
            "{text}"
        );
        assert!(text.contains("timeout tunnel 1h"));
        assert!(
            !text.contains("frontend https"),
            "no TLS routes, no TLS port: {text}"
        );
    }

    #[test]
    fn tls_routes_share_one_port_by_sni() {
        let layout = Layout {
            edge: vec![HostRule {
                host: "a.example.test".into(),
                path: "/".into(),
                backend: "be_a".into(),
            }],
            passthrough: vec![HostRule {
                host: "p.example.test".into(),
                path: "/".into(),
                backend: "be_p".into(),
            }],
            certificates: vec![EdgeCertificate {
                route: "a".into(),
                host: "a.example.test".into(),
                pem: "PEM".into(),
            }],
            ..Layout::default()
        };
        let text = render(&layout, &BTreeMap::new(), PORTS, &paths(), "reload-1").unwrap();
        assert!(
            text.contains("use_backend be_p if { req.ssl_sni,lower -m str \"p.example.test\" }"),
            "{text}"
        );
        assert!(text.contains("default_backend berth_edge"));
        assert!(
            text.contains("crt-list \"/var/lib/berth/router/crt-list\""),
            "{text}"
        );
        assert_eq!(
            render_crt_list(&layout, paths().certificates_dir).unwrap(),
            "/var/lib/berth/router/certs/a.pem a.example.test\n"
        );
    }

    #[test]
    fn a_control_character_is_an_error_not_a_line() {
        let layout = Layout {
            http: vec![HostRule {
                host: "a\nfrontend evil".into(),
                path: "/".into(),
                backend: "be_a".into(),
            }],
            ..Layout::default()
        };
        let error = render(&layout, &BTreeMap::new(), PORTS, &paths(), "reload-1").unwrap_err();
        assert_eq!(error.what, "hostname");
    }
}
