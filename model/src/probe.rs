//! Health probes of a container: startup, readiness and liveness, each a TCP
//! connect, an HTTP GET or a command run in the container. `berth-shim`
//! runs them inside the container's unit: readiness gates the unit's
//! `READY=1` and the pod's endpoints, a liveness failure ends the unit so
//! that systemd restarts it.

use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// The probes of one container; each is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Runs first; readiness and liveness wait until it has passed once.
    /// Failing `failureThreshold` times in a row ends the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    /// While it fails the container is not ready: its unit is not yet
    /// active (before the first pass) and its endpoints get no traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Failing `failureThreshold` times in a row ends the container, and
    /// systemd restarts it by its restart policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

impl Probes {
    /// Whether no probe is set.
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.readiness.is_none() && self.liveness.is_none()
    }

    /// The probes that are set, with their names (`startup`, `readiness`,
    /// `liveness`), in the order they come into play.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Probe)> {
        [
            ("startup", &self.startup),
            ("readiness", &self.readiness),
            ("liveness", &self.liveness),
        ]
        .into_iter()
        .filter_map(|(name, probe)| probe.as_ref().map(|p| (name, p)))
    }
}

/// One probe: what to check (exactly one of `tcp`, `http`, `exec`) and how
/// often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Connect to a TCP port of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// `GET` a path on a port of the container; 200 to 399 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Run a command in the container; exit status 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    /// Seconds after the container starts before the first check.
    #[serde(default)]
    pub initial_delay_secs: u32,
    /// Seconds between two checks.
    #[serde(default = "default_period_secs")]
    pub period_secs: u32,
    /// Seconds a check may take before it counts as failed.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
    /// Failures in a row that make the probe fail.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Passes in a row that make the probe pass (1 for startup and liveness).
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
}

fn default_period_secs() -> u32 {
    10
}
fn default_timeout_secs() -> u32 {
    1
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    1
}

impl Probe {
    /// A probe of `check` with the default timing.
    pub fn new(check: Check) -> Self {
        let mut probe = Probe {
            tcp: None,
            http: None,
            exec: None,
            initial_delay_secs: 0,
            period_secs: default_period_secs(),
            timeout_secs: default_timeout_secs(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
        };
        match check {
            Check::Tcp(tcp) => probe.tcp = Some(tcp),
            Check::Http(http) => probe.http = Some(http),
            Check::Exec(exec) => probe.exec = Some(exec),
        }
        probe
    }

    /// What the probe checks, if exactly one check is set (see
    /// [`validate`](Probes::validate)).
    pub fn check(&self) -> Option<Check> {
        match (&self.tcp, &self.http, &self.exec) {
            (Some(tcp), None, None) => Some(Check::Tcp(tcp.clone())),
            (None, Some(http), None) => Some(Check::Http(http.clone())),
            (None, None, Some(exec)) => Some(Check::Exec(exec.clone())),
            _ => None,
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect.
    Tcp(TcpCheck),
    /// An HTTP GET.
    Http(HttpCheck),
    /// A command.
    Exec(ExecCheck),
}

/// Connect to `port` in the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    /// The container port, 1 to 65535.
    pub port: u16,
}

/// `GET path` on `port` in the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// The container port, 1 to 65535.
    pub port: u16,
    /// Absolute path with query, printable ASCII without spaces.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/".to_owned()
}

/// Run `command` in the container (like `docker exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecCheck {
    /// The program and its arguments; not run through a shell.
    pub command: Vec<String>,
}

/// Longest HTTP probe path.
pub const MAX_PROBE_PATH_LEN: usize = 1024;
/// Longest interval, delay or timeout, in seconds (one hour).
pub const MAX_PROBE_SECS: u32 = 3600;
/// Largest failure or success threshold.
pub const MAX_PROBE_THRESHOLD: u32 = 1000;

impl Probes {
    /// Records every problem of the probes of the container at `at`
    /// (`containers[0]`), naming fields as `containers[0].probes.readiness.http.path`.
    pub fn validate(&self, errors: &mut ValidationErrors, at: &str) {
        for (name, probe) in self.iter() {
            let at = format!("{at}.probes.{name}");
            check_probe(errors, &at, name, probe);
        }
    }
}

fn check_probe(errors: &mut ValidationErrors, at: &str, name: &str, probe: &Probe) {
    let set = [
        probe.tcp.is_some(),
        probe.http.is_some(),
        probe.exec.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        errors.push(at, "must set exactly one of tcp, http, exec");
    }
    if let Some(tcp) = &probe.tcp {
        check_port(errors, &format!("{at}.tcp.port"), tcp.port);
    }
    if let Some(http) = &probe.http {
        check_port(errors, &format!("{at}.http.port"), http.port);
        // The path goes into the request line as it is: anything that could
        // end or split that line is refused.
        let path_ok = http.path.starts_with('/')
            && http.path.len() <= MAX_PROBE_PATH_LEN
            && http.path.bytes().all(|b| b.is_ascii_graphic());
        if !path_ok {
            errors.push(
                format!("{at}.http.path"),
                format!(
                    "must start with / and be at most {MAX_PROBE_PATH_LEN} printable ASCII characters without spaces"
                ),
            );
        }
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() || exec.command[0].is_empty() {
            errors.push(format!("{at}.exec.command"), "must name a program");
        }
        for (i, word) in exec.command.iter().enumerate() {
            if word.contains('\0') {
                errors.push(format!("{at}.exec.command[{i}]"), "must not contain NUL");
            }
        }
    }
    for (field, value, min) in [
        ("initialDelaySecs", probe.initial_delay_secs, 0),
        ("periodSecs", probe.period_secs, 1),
        ("timeoutSecs", probe.timeout_secs, 1),
    ] {
        if value < min || value > MAX_PROBE_SECS {
            errors.push(
                format!("{at}.{field}"),
                format!("must be between {min} and {MAX_PROBE_SECS}"),
            );
        }
    }
    for (field, value) in [
        ("failureThreshold", probe.failure_threshold),
        ("successThreshold", probe.success_threshold),
    ] {
        if value == 0 || value > MAX_PROBE_THRESHOLD {
            errors.push(
                format!("{at}.{field}"),
                format!("must be between 1 and {MAX_PROBE_THRESHOLD}"),
            );
        }
    }
    // One pass is all startup and liveness can mean: they either let the
    // container go on or end it.
    if name != "readiness" && probe.success_threshold > 1 {
        errors.push(
            format!("{at}.successThreshold"),
            format!("must be 1 for a {name} probe"),
        );
    }
}

fn check_port(errors: &mut ValidationErrors, field: &str, port: u16) {
    if port == 0 {
        errors.push(field, "must be between 1 and 65535");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(probes: &Probes) -> Vec<String> {
        let mut errors = ValidationErrors::new();
        probes.validate(&mut errors, "containers[0]");
        errors.errors().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn json_parses_with_defaults() {
        let probes: Probes = serde_json::from_str(
            r#"{"readiness":{"http":{"port":8080,"path":"/ready"},"periodSecs":1},
                "liveness":{"exec":{"command":["cat","/tmp/ok"]}}}"#,
        )
        .unwrap();
        let readiness = probes.readiness.as_ref().unwrap();
        assert_eq!(
            readiness.check(),
            Some(Check::Http(HttpCheck {
                port: 8080,
                path: "/ready".into()
            }))
        );
        assert_eq!(readiness.period_secs, 1);
        let liveness = probes.liveness.as_ref().unwrap();
        assert_eq!(
            (
                liveness.period_secs,
                liveness.timeout_secs,
                liveness.failure_threshold
            ),
            (10, 1, 3)
        );
        assert!(errors_of(&probes).is_empty());
        let names: Vec<&str> = probes.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["readiness", "liveness"]);
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut bad = Probe::new(Check::Http(HttpCheck {
            port: 0,
            path: "/a b\r\nHost: x".into(),
        }));
        bad.tcp = Some(TcpCheck { port: 0 });
        bad.period_secs = 0;
        bad.success_threshold = 2;
        let mut no_program = Probe::new(Check::Exec(ExecCheck {
            command: Vec::new(),
        }));
        no_program.failure_threshold = 0;
        let probes = Probes {
            startup: None,
            readiness: Some(no_program),
            liveness: Some(bad),
        };
        assert_eq!(
            errors_of(&probes),
            [
                "containers[0].probes.readiness.exec.command: must name a program",
                "containers[0].probes.readiness.failureThreshold: must be between 1 and 1000",
                "containers[0].probes.liveness: must set exactly one of tcp, http, exec",
                "containers[0].probes.liveness.tcp.port: must be between 1 and 65535",
                "containers[0].probes.liveness.http.port: must be between 1 and 65535",
                "containers[0].probes.liveness.http.path: must start with / and be at most 1024 printable ASCII characters without spaces",
                "containers[0].probes.liveness.periodSecs: must be between 1 and 3600",
                "containers[0].probes.liveness.successThreshold: must be 1 for a liveness probe",
            ]
        );
    }

    #[test]
    fn no_check_at_all_is_an_error_and_unknown_fields_are_refused() {
        let probes: Probes = serde_json::from_str(r#"{"startup":{"periodSecs":2}}"#).unwrap();
        assert_eq!(
            errors_of(&probes),
            ["containers[0].probes.startup: must set exactly one of tcp, http, exec"]
        );
        assert!(serde_json::from_str::<Probes>(r#"{"readyness":{}}"#).is_err());
        assert!(serde_json::from_str::<Probes>(r#"{"liveness":{"grpc":{}}}"#).is_err());
    }
}
