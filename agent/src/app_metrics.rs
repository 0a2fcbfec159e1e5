//! The application metrics hook: an image declares, with labels, an HTTP
//! endpoint serving Prometheus text,
//!
//! ```text
//! LABEL io.berth.metrics.port=8080 io.berth.metrics.path=/metrics
//! ```
//!
//! and the agent polls it at each sample; the samples appear beside the
//! container's cgroup figures (in `/metrics`, the heartbeat and
//! `berth top`). Docker copies image labels into each container's config,
//! so a label on the container works as well.
//!
//! What the application serves is untrusted: only well-formed sample lines
//! are kept, at most [`MAX_SAMPLES`] per container.

use std::time::Duration;

use berth_model::metrics::AppSample;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The label naming the port.
pub const PORT_LABEL: &str = "io.berth.metrics.port";
/// The label naming the path (default `/metrics`).
pub const PATH_LABEL: &str = "io.berth.metrics.path";

/// Most samples kept per container.
pub const MAX_SAMPLES: usize = 100;

/// Most bytes read from an endpoint.
const MAX_BODY: u64 = 256 * 1024;

/// Where to poll a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's address.
    pub ip: std::net::Ipv4Addr,
    /// The port its labels name.
    pub port: u16,
    /// The path its labels name.
    pub path: String,
}

/// The endpoint a container's labels declare, if any, and valid.
pub fn endpoint_from_labels<'a>(
    mut label: impl FnMut(&str) -> Option<&'a str>,
    ip: std::net::Ipv4Addr,
) -> Option<Endpoint> {
    let port = label(PORT_LABEL)?.trim().parse().ok()?;
    let path = label(PATH_LABEL).unwrap_or("/metrics").trim();
    // A request line must not be forgeable through the label.
    let plain = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    plain.then(|| Endpoint {
        ip,
        port,
        path: path.to_owned(),
    })
}

/// Polls an endpoint: a plain HTTP/1.0 GET (the body ends with the
/// connection), at most `timeout` in all.
pub async fn poll(endpoint: &Endpoint, timeout: Duration) -> Option<Vec<AppSample>> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect((endpoint.ip, endpoint.port))
            .await
            .ok()?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
            endpoint.path, endpoint.ip
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream
            .take(MAX_BODY)
            .read_to_end(&mut response)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head
            .lines()
            .next()
            .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"));
        ok.then(|| parse_samples(body))
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}

/// The well-formed samples of Prometheus text: `name{labels} value`,
/// comments and anything malformed skipped.
pub fn parse_samples(text: &str) -> Vec<AppSample> {
    text.lines()
        .filter_map(parse_sample)
        .take(MAX_SAMPLES)
        .collect()
}

fn parse_sample(line: &str) -> Option<AppSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest = &line[name_end..];
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => {
            let close = inner.find('}')?;
            let labels = &inner[..close];
            // Only simple `key="value"` pairs without escapes survive.
            let simple = labels.split(',').filter(|p| !p.is_empty()).all(|pair| {
                pair.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && v.len() >= 2
                        && v.starts_with('"')
                        && v.ends_with('"')
                        && !v[1..v.len() - 1].contains(['"', '\\'])
                        && !v.chars().any(char::is_control)
                })
            });
            if !simple {
                return None;
            }
            (labels.to_owned(), &inner[close + 1..])
        }
        None => (String::new(), rest),
    };
    let value = rest.split_whitespace().next()?;
    value.parse::<f64>().ok()?;
    Some(AppSample {
        name: name.to_owned(),
        labels,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_well_formed_samples_only() {
        let text = "# HELP requests_total Requests.\n# TYPE requests_total counter\n\
                    requests_total 42\n\
                    latency_seconds{quantile=\"0.5\"} 0.25 1700000000\n\
                    bad{x=\"a\\\"b\"} 1\n\
                    9starts_with_digit 1\n\
                    no_value\n\
                    not_a_number NaNx\n\
                    up{job=\"a\",instance=\"b\"} 1\n";
        let samples = parse_samples(text);
        let shown: Vec<String> = samples
            .iter()
            .map(|s| format!("{}|{}|{}", s.name, s.labels, s.value))
            .collect();
        assert_eq!(
            shown,
            [
                "requests_total||42",
                "latency_seconds|quantile=\"0.5\"|0.25",
                "up|job=\"a\",instance=\"b\"|1"
            ]
        );
    }

    #[test]
    fn caps_the_samples() {
        let text: String = (0..500).map(|i| format!("m{i} {i}\n")).collect();
        assert_eq!(parse_samples(&text).len(), MAX_SAMPLES);
    }

    #[test]
    fn labels_declare_the_endpoint() {
        let ip = std::net::Ipv4Addr::new(172, 17, 0, 2);
        let labels = |port: &'static str, path: Option<&'static str>| {
            move |key: &str| match key {
                PORT_LABEL => Some(port),
                PATH_LABEL => path,
                _ => None,
            }
        };
        assert_eq!(
            endpoint_from_labels(labels("8080", None), ip),
            Some(Endpoint {
                ip,
                port: 8080,
                path: "/metrics".into()
            })
        );
        assert_eq!(
            endpoint_from_labels(labels("8080", Some("/stats")), ip).map(|e| e.path),
            Some("/stats".into())
        );
        assert_eq!(endpoint_from_labels(labels("http", None), ip), None);
        assert_eq!(
            endpoint_from_labels(labels("80", Some("/a b\r\nX: y")), ip),
            None
        );
        assert_eq!(endpoint_from_labels(|_| None, ip), None);
    }
}
