//! The few Docker Engine API calls the shim makes, as plain HTTP/1.1 over
//! Docker's unix socket: one connection per request (`Connection: close`),
//! except attach, whose connection becomes the container's output stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::DOCKER_TIMEOUT;

/// A Docker daemon reachable on a unix socket.
#[derive(Clone)]
pub struct Docker {
    socket: PathBuf,
}

/// What the shim needs from `GET /containers/{id}/json`.
#[derive(Debug, Default)]
pub struct ContainerState {
    pub running: bool,
    pub pid: u64,
    pub oom_killed: bool,
    pub tty: bool,
    /// When the current (or last) run started, as Docker writes it.
    pub started_at: String,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Docker {
    /// Docker at `$DOCKER_HOST` (unix sockets only) or `/run/docker.sock`.
    pub fn from_env() -> Result<Self, String> {
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(host) => match host.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None => {
                    return Err(format!(
                        "DOCKER_HOST={host:?}: only unix:// sockets are supported"
                    ))
                }
            },
            Err(_) => PathBuf::from("/run/docker.sock"),
        };
        Ok(Self { socket })
    }

    fn connect(&self) -> Result<UnixStream, String> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|e| format!("connecting to docker at {}: {e}", self.socket.display()))?;
        Ok(stream)
    }

    fn send(
        &self,
        stream: &mut UnixStream,
        method: &str,
        path: &str,
        upgrade: bool,
        json_body: &str,
    ) -> Result<(), String> {
        let extra = if upgrade {
            "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        } else {
            "Connection: close\r\n"
        };
        let content_type = if json_body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\n{extra}{content_type}Content-Length: {}\r\n\r\n{json_body}",
            json_body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    fn request(&self, method: &str, path: &str) -> Result<Response, String> {
        self.request_with_timeout(method, path, Some(DOCKER_TIMEOUT), "")
    }

    /// One request on a fresh connection; `None` waits as long as Docker takes.
    fn request_with_timeout(
        &self,
        method: &str,
        path: &str,
        timeout: Option<std::time::Duration>,
        json_body: &str,
    ) -> Result<Response, String> {
        let mut stream = self.connect()?;
        stream.set_read_timeout(timeout).ok();
        self.send(&mut stream, method, path, false, json_body)?;
        let mut reader = BufReader::new(stream);
        let (status, headers) =
            read_head(&mut reader).map_err(|e| format!("{method} {path}: {e}"))?;
        let mut raw = Vec::new();
        reader
            .read_to_end(&mut raw)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(&raw) } else { raw };
        if status >= 400 {
            return Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(Response { status, body })
    }

    /// Opens the container's output stream (stdout and stderr, from now on).
    pub fn attach(&self, container: &str) -> Result<impl Read, String> {
        let mut stream = self.connect()?;
        let path = format!(
            "/containers/{}/attach?stream=1&stdout=1&stderr=1",
            escape_path(container)
        );
        self.send(&mut stream, "POST", &path, true, "")?;
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader).map_err(|e| format!("attaching: {e}"))?;
        if status != 101 && status != 200 {
            let mut body = String::new();
            let _ = reader.read_to_string(&mut body);
            return Err(format!("attaching: {status} {}", body.trim()));
        }
        Ok(reader)
    }

    /// Starts the container; one that already runs is adopted as it is.
    pub fn start(&self, container: &str) -> Result<(), String> {
        let response = self.request(
            "POST",
            &format!("/containers/{}/start", escape_path(container)),
        )?;
        debug_assert!(matches!(response.status, 204 | 304));
        Ok(())
    }

    /// Asks Docker to stop the container: its stop signal, then SIGKILL after
    /// `timeout` seconds.
    pub fn stop(&self, container: &str, timeout: u32) -> Result<(), String> {
        self.request(
            "POST",
            &format!("/containers/{}/stop?t={timeout}", escape_path(container)),
        )
        .map(drop)
    }

    /// Blocks until the container is not running and returns its exit code.
    pub fn wait(&self, container: &str) -> Result<i64, String> {
        let path = format!(
            "/containers/{}/wait?condition=not-running",
            escape_path(container)
        );
        // The container may run for months: no timeout on this one.
        let response = self.request_with_timeout("POST", &path, None, "")?;
        let body = String::from_utf8_lossy(&response.body);
        json_number(&body, "StatusCode")
            .ok_or_else(|| format!("waiting: no StatusCode in {body:?}"))
    }

    /// Runs `command` in the container (`docker exec`) and returns its exit
    /// status; a command still running after `timeout` is an error.
    pub fn exec(
        &self,
        container: &str,
        command: &[String],
        timeout: std::time::Duration,
    ) -> Result<i64, String> {
        let words: Vec<String> = command.iter().map(|w| json_string(w)).collect();
        let create = format!(
            r#"{{"Cmd":[{}],"AttachStdout":true,"AttachStderr":true}}"#,
            words.join(",")
        );
        let path = format!("/containers/{}/exec", escape_path(container));
        let response = self.request_with_timeout("POST", &path, Some(timeout), &create)?;
        let body = String::from_utf8_lossy(&response.body);
        let id = json_str(&body, "Id").ok_or_else(|| format!("exec: no Id in {body:?}"))?;
        // Not detached: Docker answers when the command has ended, which
        // the read timeout bounds. Its output is not wanted.
        let start = format!("/exec/{}/start", escape_path(&id));
        self.request_with_timeout(
            "POST",
            &start,
            Some(timeout),
            r#"{"Detach":false,"Tty":false}"#,
        )
        .map_err(|e| {
            if e.contains("timed out") || e.contains("temporarily unavailable") {
                format!("timed out after {}s", timeout.as_secs())
            } else {
                e
            }
        })?;
        let inspect = format!("/exec/{}/json", escape_path(&id));
        let response = self.request_with_timeout("GET", &inspect, Some(timeout), "")?;
        let body = String::from_utf8_lossy(&response.body);
        if json_bool(&body, "Running") == Some(true) {
            return Err(format!("timed out after {}s", timeout.as_secs()));
        }
        json_number(&body, "ExitCode").ok_or_else(|| format!("exec: no ExitCode in {body:?}"))
    }

    /// Whether Docker logged an `oom` event for the container between the
    /// two times (since the Unix epoch). Docker keeps recent events in
    /// memory, so an event it logged after the exit it reported is found.
    /// An `until` in the future would make Docker stream until then.
    pub fn oom_event_between(
        &self,
        container: &str,
        since: Duration,
        until: Duration,
    ) -> Result<bool, String> {
        let path = oom_events_path(container, since, until);
        let response = self.request("GET", &path)?;
        Ok(json_str(&String::from_utf8_lossy(&response.body), "Action").as_deref() == Some("oom"))
    }

    /// The host paths bound into the container (`HostConfig.Binds` whose
    /// source is absolute; named volumes are Docker's own).
    pub fn bind_sources(&self, container: &str) -> Result<Vec<String>, String> {
        let response = self.request(
            "GET",
            &format!("/containers/{}/json", escape_path(container)),
        )?;
        Ok(bind_sources(&String::from_utf8_lossy(&response.body)))
    }

    /// The container's state as far as the shim cares.
    pub fn inspect_state(&self, container: &str) -> Result<ContainerState, String> {
        let response = self.request(
            "GET",
            &format!("/containers/{}/json", escape_path(container)),
        )?;
        let body = String::from_utf8_lossy(&response.body);
        Ok(ContainerState {
            running: json_bool(&body, "Running").unwrap_or(false),
            pid: json_number(&body, "Pid")
                .and_then(|p| u64::try_from(p).ok())
                .unwrap_or(0),
            oom_killed: json_bool(&body, "OOMKilled").unwrap_or(false),
            tty: json_bool(&body, "Tty").unwrap_or(false),
            started_at: json_str(&body, "StartedAt").unwrap_or_default(),
        })
    }
}

/// `GET /events` for the container's `oom` events between two times, which
/// Docker wants as `seconds.nanoseconds`.
fn oom_events_path(container: &str, since: Duration, until: Duration) -> String {
    let time = |t: Duration| format!("{}.{:09}", t.as_secs(), t.subsec_nanos());
    let filters = format!(
        r#"{{"container":[{}],"event":["oom"]}}"#,
        json_string(container)
    );
    format!(
        "/events?since={}&until={}&filters={}",
        time(since),
        time(until),
        escape_path(&filters)
    )
}

/// The absolute sources of `"Binds":["SRC:DST[:MODE]", ...]` in an
/// inspect body.
fn bind_sources(json: &str) -> Vec<String> {
    let Some(mut rest) = json_value(json, "Binds").and_then(|v| v.strip_prefix('[')) else {
        return Vec::new();
    };
    let mut sources = Vec::new();
    while let Some((bind, after)) = json_string_literal(rest.trim_start()) {
        if let Some((source, _)) = bind.split_once(':') {
            if source.starts_with('/') {
                sources.push(source.to_owned());
            }
        }
        rest = after.trim_start().strip_prefix(',').unwrap_or(after);
    }
    sources
}

/// Decodes the JSON string literal at the start of `text`, returning it and
/// what follows it.
fn json_string_literal(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 2..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Reads the status line and headers (names lowercased).
fn read_head(reader: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>), String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

/// Decodes a chunked body (read to the end of the connection).
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        rest = &rest[end + 2..];
        if size == 0 || size > rest.len() {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    body
}

/// Container names and IDs are `[a-zA-Z0-9_.-]`; anything else is
/// percent-encoded so it cannot change the request.
fn escape_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first `"key": <number>` in a JSON text. Docker's fields are unique
/// enough in the objects the shim reads; a full JSON parser would cost RSS.
fn json_number(json: &str, key: &str) -> Option<i64> {
    let value = json_value(json, key)?;
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

fn json_bool(json: &str, key: &str) -> Option<bool> {
    let value = json_value(json, key)?;
    if value.starts_with("true") {
        Some(true)
    } else if value.starts_with("false") {
        Some(false)
    } else {
        None
    }
}

/// The first `"key": "<string>"`, for values without escapes (IDs).
fn json_str(json: &str, key: &str) -> Option<String> {
    let value = json_value(json, key)?.strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].to_owned())
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    Some(json[start..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_from_docker_json() {
        let json = r#"{"Id":"abc","State":{"Status":"running","Running":true,"OOMKilled":false,"Pid":4242,"ExitCode":0},"Config":{"Tty":false}}"#;
        assert_eq!(json_bool(json, "Running"), Some(true));
        assert_eq!(json_bool(json, "OOMKilled"), Some(false));
        assert_eq!(json_number(json, "Pid"), Some(4242));
        assert_eq!(
            json_number(r#"{"StatusCode": 137,"Error":null}"#, "StatusCode"),
            Some(137)
        );
        assert_eq!(json_number("{}", "StatusCode"), None);
    }

    #[test]
    fn writes_and_reads_json_strings() {
        assert_eq!(json_string("a \"b\" \\ \n"), r#""a \"b\" \\ \u000a""#);
        assert_eq!(
            json_str(r#"{"Id": "abc123","Warnings":[]}"#, "Id").as_deref(),
            Some("abc123")
        );
    }

    #[test]
    fn finds_bind_sources_but_not_named_volumes() {
        let json = r#"{"HostConfig":{"Binds":["/srv/berth/data:/x","berth.web.cache:/c:ro", "/srv/a\"b\\c:/y:ro"],"NetworkMode":"default"}}"#;
        assert_eq!(bind_sources(json), ["/srv/berth/data", "/srv/a\"b\\c"]);
        assert!(bind_sources(r#"{"HostConfig":{"Binds":null}}"#).is_empty());
        assert!(bind_sources(r#"{"HostConfig":{}}"#).is_empty());
    }

    #[test]
    fn decodes_chunked_bodies() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }

    #[test]
    fn asks_for_oom_events_between_two_times() {
        let path = oom_events_path(
            "berth.hog.hog",
            Duration::new(1_795_569_276, 5),
            Duration::new(1_795_569_280, 250_000_000),
        );
        assert_eq!(
            path,
            "/events?since=1795569276.000000005&until=1795569280.250000000&filters=\
             %7B%22container%22%3A%5B%22berth.hog.hog%22%5D%2C%22event%22%3A%5B%22oom%22%5D%7D"
        );
    }

    #[test]
    fn escapes_path_segments() {
        assert_eq!(escape_path("berth-web-app"), "berth-web-app");
        assert_eq!(escape_path("a/../b?x"), "a%2F..%2Fb%3Fx");
    }
}
