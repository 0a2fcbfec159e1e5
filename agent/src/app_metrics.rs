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
//! What the application serves is untrusted: [`parse`] keeps well-formed
//! samples only, at most [`MAX_SAMPLES`] per container, and renames what
//! would clash with the agent's own labels and metrics; [`exposition`]
//! merges every application's families into one valid page.

use std::time::Duration;

use std::collections::HashSet;
use std::fmt::Write as _;

use berth_model::metrics::{AppFamily, AppSample, PodMetrics};
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
pub async fn poll(endpoint: &Endpoint, timeout: Duration) -> Option<Scrape> {
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
        ok.then(|| parse(body))
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}

/// Label names the agent puts on every application sample. An application's
/// own label of such a name is kept as `exported_<name>`, as Prometheus does
/// with `honor_labels: false`.
pub const AGENT_LABELS: [&str; 2] = ["pod", "container"];

/// The prefix of the agent's own metric names. An application's metric
/// under it is kept as `exported_berth_…`, so it can never pass for one of
/// the agent's.
pub const AGENT_PREFIX: &str = "berth_";

/// What a clashing label or metric name is prefixed with.
const EXPORTED: &str = "exported_";

/// Most characters kept of a HELP text.
const MAX_HELP: usize = 1024;

/// Most families described per endpoint; later HELP and TYPE lines are
/// ignored (their samples are then shown untyped).
const MAX_FAMILIES: usize = 1000;

/// What an endpoint served, made safe to show on the agent's page: the
/// samples, and the HELP and TYPE of their families.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrape {
    /// Well-formed samples, renamed where they clash, no series twice.
    pub samples: Vec<AppSample>,
    /// The families of `samples` that the endpoint described.
    pub families: Vec<AppFamily>,
}

/// Sanitises Prometheus text from an application:
///
/// - only well-formed samples are kept, at most [`MAX_SAMPLES`], and a
///   series served twice is kept once (the first);
/// - a label named like one the agent adds (`pod`, `container`) becomes
///   `exported_pod`, … (Prometheus' `honor_labels: false`);
/// - a metric named `berth_…` becomes `exported_berth_…`;
/// - `# HELP` and `# TYPE` are kept (the first of each per family), and a
///   histogram's or summary's samples must fit their type (`le` on buckets,
///   `quantile` on quantiles) or they are dropped.
pub fn parse(text: &str) -> Scrape {
    let mut declared: Vec<AppFamily> = Vec::new();
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(meta) = parse_metadata(comment) {
                describe(&mut declared, meta);
            }
            continue;
        }
        if samples.len() == MAX_SAMPLES {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        if series.insert(series_key(&sample.name, &sample.labels)) {
            samples.push(sample);
        }
    }
    samples.retain(|sample| {
        let (_, family) = family_of(&sample.name, &declared);
        fits_family(sample, family)
    });
    for family in &mut declared {
        if family.kind.is_empty() {
            family.kind = "untyped".to_owned();
        }
    }
    let families = declared
        .into_iter()
        .filter(|family| {
            samples
                .iter()
                .any(|s| family_of(&s.name, std::slice::from_ref(family)).1.is_some())
        })
        .collect();
    Scrape { samples, families }
}

/// The family a sample belongs to, with its description when there is
/// one: `x_bucket` belongs to `x` if `x` is a histogram, `x_sum` and
/// `x_count` to `x` if it is a histogram or a summary (as Prometheus' own
/// parser decides); any other sample is its own family.
pub fn family_of<'a, 'f>(
    name: &'a str,
    declared: &'f [AppFamily],
) -> (&'a str, Option<&'f AppFamily>) {
    const PARTS: [(&str, &[&str]); 3] = [
        ("_bucket", &["histogram"]),
        ("_sum", &["histogram", "summary"]),
        ("_count", &["histogram", "summary"]),
    ];
    for (suffix, kinds) in PARTS {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        if let Some(family) = declared
            .iter()
            .find(|f| f.name == base && kinds.contains(&f.kind.as_str()))
        {
            return (base, Some(family));
        }
    }
    (name, declared.iter().find(|f| f.name == name))
}

/// Whether a sample can stand in its family: a histogram has `_bucket`
/// samples with a numeric `le`, `_sum` and `_count`; a summary has its
/// quantiles with a numeric `quantile`, `_sum` and `_count`.
fn fits_family(sample: &AppSample, family: Option<&AppFamily>) -> bool {
    let Some(family) = family else {
        return true;
    };
    let label = |key: &str| {
        label_pairs(&sample.labels)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    let numeric = |value: Option<&str>| value.is_some_and(|v| v.parse::<f64>().is_ok());
    let total = sample.name.ends_with("_sum") || sample.name.ends_with("_count");
    match family.kind.as_str() {
        "histogram" if sample.name.ends_with("_bucket") && sample.name != family.name => {
            numeric(label("le"))
        }
        "histogram" => sample.name != family.name && label("le").is_none(),
        "summary" if sample.name == family.name => numeric(label("quantile")),
        "summary" => total && label("quantile").is_none(),
        _ => true,
    }
}

/// `key="value"` pairs of a sanitised label string (values never hold a
/// comma, a quote or a backslash).
fn label_pairs(labels: &str) -> impl Iterator<Item = (&str, &str)> {
    labels.split(',').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        Some((key, value.trim_matches('"')))
    })
}

/// A series' identity: its name and its label set in any order.
fn series_key(name: &str, labels: &str) -> String {
    let mut pairs: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    format!("{name}{{{}}}", pairs.join(","))
}

/// One `# HELP` or `# TYPE` line.
enum Metadata {
    Help(String, String),
    Type(String, String),
}

fn parse_metadata(comment: &str) -> Option<Metadata> {
    let comment = comment.trim_start();
    let (keyword, rest) = comment.split_once(' ')?;
    let rest = rest.trim_start();
    let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_metric_name(name) {
        return None;
    }
    let name = rename_metric(name);
    match keyword {
        "HELP" => Some(Metadata::Help(name, unescape_help(text))),
        "TYPE" => {
            let kind = text.trim();
            let known = ["counter", "gauge", "histogram", "summary", "untyped"];
            known
                .contains(&kind)
                .then(|| Metadata::Type(name, kind.to_owned()))
        }
        _ => None,
    }
}

/// Records a HELP or TYPE line; the first of each per family counts.
fn describe(declared: &mut Vec<AppFamily>, meta: Metadata) {
    let (name, help, kind) = match meta {
        Metadata::Help(name, help) => (name, Some(help), None),
        Metadata::Type(name, kind) => (name, None, Some(kind)),
    };
    let index = match declared.iter().position(|f| f.name == name) {
        Some(index) => index,
        None if declared.len() == MAX_FAMILIES => return,
        None => {
            declared.push(AppFamily {
                name,
                kind: String::new(),
                help: String::new(),
            });
            declared.len() - 1
        }
    };
    let family = &mut declared[index];
    if let (Some(help), true) = (help, family.help.is_empty()) {
        family.help = help;
    }
    // A family with HELP but no TYPE yet may still get one below; `parse`
    // calls what stays without one untyped.
    if let (Some(kind), true) = (kind, family.kind.is_empty()) {
        family.kind = kind;
    }
}

/// HELP text as plain text: `\\` and `\n` unescaped, any other backslash
/// kept as it is, control characters dropped, at most [`MAX_HELP`]
/// characters.
fn unescape_help(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.trim_end().chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('\\')) => {
                chars.next();
                plain.push('\\');
            }
            ('\\', Some('n')) => {
                chars.next();
                plain.push('\n');
            }
            (c, _) if c.is_control() => {}
            (c, _) => plain.push(c),
        }
    }
    plain.chars().take(MAX_HELP).collect()
}

/// A metric name per Prometheus: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A label name per Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An application's metric name as the agent shows it: out of the agent's
/// own `berth_` namespace.
fn rename_metric(name: &str) -> String {
    if name.starts_with(AGENT_PREFIX) {
        format!("{EXPORTED}{name}")
    } else {
        name.to_owned()
    }
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
    if !is_metric_name(name) {
        return None;
    }
    let rest = &line[name_end..];
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => {
            let close = inner.find('}')?;
            (parse_labels(&inner[..close])?, &inner[close + 1..])
        }
        None => (Vec::new(), rest),
    };
    let value = rest.split_whitespace().next()?;
    value.parse::<f64>().ok()?;
    let labels = resolve_label_clashes(labels)?;
    Some(AppSample {
        name: rename_metric(name),
        labels: labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(","),
        value: value.to_owned(),
    })
}

/// Simple `key="value"` pairs without escapes; anything else refuses the
/// sample.
fn parse_labels(labels: &str) -> Option<Vec<(String, String)>> {
    labels
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let plain = !value.contains(['"', '\\']) && !value.chars().any(char::is_control);
            (is_label_name(key) && plain).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Renames the application's labels that clash with the agent's own to
/// `exported_…` (again while that name is taken too); a sample that names
/// one label twice is refused.
fn resolve_label_clashes(labels: Vec<(String, String)>) -> Option<Vec<(String, String)>> {
    let mut names: HashSet<String> = HashSet::new();
    if !labels.iter().all(|(k, _)| names.insert(k.clone())) {
        return None;
    }
    let mut resolved = Vec::with_capacity(labels.len());
    for (key, value) in labels {
        if !AGENT_LABELS.contains(&key.as_str()) {
            resolved.push((key, value));
            continue;
        }
        let mut renamed = format!("{EXPORTED}{key}");
        while names.contains(&renamed) {
            renamed = format!("{EXPORTED}{renamed}");
        }
        names.insert(renamed.clone());
        resolved.push((renamed, value));
    }
    Some(resolved)
}

/// The applications' samples of every pod as Prometheus text: each sample
/// labelled with its pod and container, one HELP and TYPE per family (a
/// family several applications serve is shown once, with the first one's
/// description), each family's samples together, no series twice.
///
/// An application whose family clashes with another's (a different
/// TYPE, or a family that would swallow a histogram's or summary's
/// `_bucket`, `_sum` or `_count`) loses those samples: the page stays valid.
pub fn exposition(pods: &[PodMetrics]) -> String {
    struct PageFamily {
        name: String,
        kind: String,
        help: String,
        lines: Vec<String>,
    }
    let mut page: Vec<PageFamily> = Vec::new();
    let mut series = HashSet::new();
    for pod in pods {
        for container in &pod.containers {
            for sample in &container.app {
                let (family_name, family) = family_of(&sample.name, &container.app_families);
                let kind = family
                    .map(|f| f.kind.as_str())
                    .filter(|k| !k.is_empty())
                    .unwrap_or("untyped");
                let own = format!(
                    "pod=\"{}\",container=\"{}\"",
                    escape_label_value(&pod.pod),
                    escape_label_value(&container.name)
                );
                let labels = if sample.labels.is_empty() {
                    own
                } else {
                    format!("{own},{}", sample.labels)
                };
                if !series.insert(series_key(&sample.name, &labels)) {
                    continue;
                }
                let line = format!("{}{{{labels}}} {}", sample.name, sample.value);
                match page.iter_mut().find(|f| f.name == family_name) {
                    Some(existing) if existing.kind != kind => {}
                    Some(existing) => {
                        if existing.help.is_empty() {
                            existing.help = family.map(|f| f.help.clone()).unwrap_or_default();
                        }
                        existing.lines.push(line);
                    }
                    None => page.push(PageFamily {
                        name: family_name.to_owned(),
                        kind: kind.to_owned(),
                        help: family.map(|f| f.help.clone()).unwrap_or_default(),
                        lines: vec![line],
                    }),
                }
            }
        }
    }
    let composite: Vec<AppFamily> = page
        .iter()
        .filter(|f| f.kind == "histogram" || f.kind == "summary")
        .map(|f| AppFamily {
            name: f.name.clone(),
            kind: f.kind.clone(),
            help: String::new(),
        })
        .collect();
    let mut out = String::new();
    for family in &page {
        if family_of(&family.name, &composite).0 != family.name {
            continue;
        }
        let help = if family.help.is_empty() {
            "Served by an application, which gave no HELP."
        } else {
            &family.help
        };
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            family.name,
            escape_help(help),
            family.name,
            family.kind
        );
        for line in &family.lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A label value escaped as the text format requires.
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escaped as the text format requires.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
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
        let samples = parse(text).samples;
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
        assert_eq!(parse(&text).samples.len(), MAX_SAMPLES);
    }

    fn shown(scrape: &Scrape) -> Vec<String> {
        scrape
            .samples
            .iter()
            .map(|s| format!("{}{{{}}} {}", s.name, s.labels, s.value))
            .collect()
    }

    #[test]
    fn clashing_labels_become_exported_as_prometheus_does() {
        let scrape = parse(
            "up{pod=\"evil\",container=\"x\",job=\"a\"} 1\n\
             up{pod=\"p\",exported_pod=\"q\"} 2\n\
             up{job=\"a\",job=\"b\"} 3\n",
        );
        assert_eq!(
            shown(&scrape),
            [
                "up{exported_pod=\"evil\",exported_container=\"x\",job=\"a\"} 1",
                "up{exported_exported_pod=\"p\",exported_pod=\"q\"} 2",
            ],
            "a label named twice refuses the sample"
        );
    }

    #[test]
    fn the_agents_own_names_are_taken_out_of_the_apps_reach() {
        let scrape = parse(
            "# HELP berth_node_memory_available_bytes Fake.\n\
             # TYPE berth_node_memory_available_bytes gauge\n\
             berth_node_memory_available_bytes 1\n",
        );
        assert_eq!(
            shown(&scrape),
            ["exported_berth_node_memory_available_bytes{} 1"]
        );
        assert_eq!(
            scrape.families,
            [AppFamily {
                name: "exported_berth_node_memory_available_bytes".into(),
                kind: "gauge".into(),
                help: "Fake.".into(),
            }]
        );
    }

    #[test]
    fn a_series_served_twice_is_kept_once() {
        let scrape = parse(
            "hits_total{a=\"1\",b=\"2\"} 1\n\
             hits_total{b=\"2\",a=\"1\"} 2\n\
             hits_total{a=\"1\",b=\"2\",} 3\n\
             hits_total{a=\"1\"} 4\n",
        );
        assert_eq!(
            shown(&scrape),
            ["hits_total{a=\"1\",b=\"2\"} 1", "hits_total{a=\"1\"} 4"]
        );
    }

    #[test]
    fn help_and_type_are_kept_first_one_wins_and_help_is_unescaped() {
        let scrape = parse(
            "# HELP hits_total Hits, \\\\ and\\nmore \\q.\n\
             # TYPE hits_total counter\n\
             # TYPE hits_total gauge\n\
             # HELP hits_total Second.\n\
             # TYPE unused gauge\n\
             # TYPE odd_total bogus\n\
             # HELP only_help Described, not typed.\n\
             hits_total 1\n\
             odd_total 2\n\
             only_help 3\n",
        );
        assert_eq!(
            scrape.families,
            [
                AppFamily {
                    name: "hits_total".into(),
                    kind: "counter".into(),
                    help: "Hits, \\ and\nmore \\q.".into(),
                },
                AppFamily {
                    name: "only_help".into(),
                    kind: "untyped".into(),
                    help: "Described, not typed.".into(),
                }
            ],
            "unused and unknown types are not kept"
        );
    }

    #[test]
    fn histogram_and_summary_samples_must_fit_their_type() {
        let scrape = parse(
            "# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.5\"} 1\n\
             lat_seconds_bucket{le=\"+Inf\"} 2\n\
             lat_seconds_bucket{le=\"x\"} 2\n\
             lat_seconds_bucket 2\n\
             lat_seconds_sum 0.7\n\
             lat_seconds_count{le=\"1\"} 2\n\
             lat_seconds_count 2\n\
             lat_seconds 9\n\
             # TYPE rpc_seconds summary\n\
             rpc_seconds{quantile=\"0.9\"} 0.1\n\
             rpc_seconds 0.1\n\
             rpc_seconds_count 4\n",
        );
        assert_eq!(
            shown(&scrape),
            [
                "lat_seconds_bucket{le=\"0.5\"} 1",
                "lat_seconds_bucket{le=\"+Inf\"} 2",
                "lat_seconds_sum{} 0.7",
                "lat_seconds_count{} 2",
                "rpc_seconds{quantile=\"0.9\"} 0.1",
                "rpc_seconds_count{} 4",
            ]
        );
    }

    fn pod(name: &str, text: &str) -> PodMetrics {
        let scrape = parse(text);
        PodMetrics {
            pod: name.into(),
            time_ms: 0,
            containers: vec![berth_model::metrics::ContainerMetrics {
                name: "app".into(),
                app: scrape.samples,
                app_families: scrape.families,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn two_apps_serving_one_family_give_one_description_and_grouped_samples() {
        let text = "# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 1\nqueue 3\n";
        let page = exposition(&[pod("a-0", text), pod("b-0", text)]);
        assert_eq!(
            page,
            "# HELP hits_total Hits.\n\
             # TYPE hits_total counter\n\
             hits_total{pod=\"a-0\",container=\"app\"} 1\n\
             hits_total{pod=\"b-0\",container=\"app\"} 1\n\
             # HELP queue Served by an application, which gave no HELP.\n\
             # TYPE queue untyped\n\
             queue{pod=\"a-0\",container=\"app\"} 3\n\
             queue{pod=\"b-0\",container=\"app\"} 3\n"
        );
    }

    #[test]
    fn a_family_clashing_with_another_apps_is_left_out() {
        let first = "# TYPE hits_total counter\nhits_total 1\n\
                     # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 1\nlat_count 1\n";
        // A gauge of the same name, and a family that would swallow the
        // histogram's `_count`.
        let second = "# TYPE hits_total gauge\nhits_total 2\nlat_count 5\n";
        let page = exposition(&[pod("a-0", first), pod("b-0", second)]);
        assert!(!page.contains("b-0"), "{page}");
        assert_eq!(page.matches("# TYPE").count(), 2, "{page}");
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
