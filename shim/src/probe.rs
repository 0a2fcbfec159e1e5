//! Health probes, run by the shim inside its unit: TCP and HTTP checks from
//! within the container's network namespace (to `127.0.0.1:PORT`), exec
//! checks through Docker's exec API. [`Counter`] and [`Schedule`] are the
//! pure part (thresholds and timing); [`Prober`] does the checking.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::docker::Docker;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Must pass once before the others run.
    Startup,
    /// Gates READY=1 and the endpoints.
    Readiness,
    /// Failing ends the container.
    Liveness,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "startup" => Some(Role::Startup),
            "readiness" => Some(Role::Readiness),
            "liveness" => Some(Role::Liveness),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Startup => "startup",
            Role::Readiness => "readiness",
            Role::Liveness => "liveness",
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Tcp { port: u16 },
    Http { port: u16, path: String },
    Exec { command: Vec<String> },
}

impl Check {
    /// The check in a few words, for STATUS= and events.
    pub fn describe(&self) -> String {
        match self {
            Check::Tcp { port } => format!("tcp :{port}"),
            Check::Http { port, path } => format!("http GET :{port}{path}"),
            Check::Exec { command } => format!("exec {}", command.join(" ")),
        }
    }
}

/// One probe as the unit's command line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub role: Role,
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl ProbeSpec {
    /// A probe with the model's default timing.
    pub fn new(role: Role, check: Check) -> Self {
        Self {
            role,
            check,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// Consecutive passes and failures against the thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counter {
    passes: u32,
    failures: u32,
}

/// What a result did to a probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The probe now passes (enough passes in a row).
    Passing,
    /// The probe now fails (enough failures in a row).
    Failing,
    /// Not enough in a row yet to change anything.
    Undecided,
}

impl Counter {
    /// Counts one result.
    pub fn record(&mut self, passed: bool, spec: &ProbeSpec) -> Verdict {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if self.passes >= spec.success_threshold {
                return Verdict::Passing;
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= spec.failure_threshold {
                return Verdict::Failing;
            }
        }
        Verdict::Undecided
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When each of several probes is due next.
#[derive(Debug)]
pub struct Schedule {
    due: Vec<Instant>,
}

impl Schedule {
    /// The first checks, each after its initial delay from `start`.
    pub fn new(specs: &[&ProbeSpec], start: Instant) -> Self {
        Self {
            due: specs.iter().map(|s| start + s.initial_delay).collect(),
        }
    }

    /// The probe due first, and when.
    pub fn next(&self) -> Option<(usize, Instant)> {
        self.due
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, due)| *due)
    }

    /// Probe `index` ran at `now`: it is due again a period later.
    pub fn ran(&mut self, index: usize, now: Instant, period: Duration) {
        if let Some(due) = self.due.get_mut(index) {
            *due = now + period;
        }
    }
}

/// Runs checks against one container.
pub struct Prober {
    pub docker: Docker,
    pub container: String,
}

impl Prober {
    /// Runs `check` once; `Err` says why it failed.
    pub fn check(&self, check: &Check, timeout: Duration) -> Result<(), String> {
        match check {
            Check::Tcp { port } => connect(*port, timeout).map(drop),
            Check::Http { port, path } => http_get(*port, path, timeout),
            Check::Exec { command } => {
                let code = self.docker.exec(&self.container, command, timeout)?;
                if code == 0 {
                    Ok(())
                } else {
                    Err(format!("exit status {code}"))
                }
            }
        }
    }
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    Ok(stream)
}

/// `GET path`; a status of 200 to 399 passes.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(port, timeout)?;
    // The path was validated as printable ASCII without spaces.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no HTTP status line in the answer".to_string())?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(failures: u32, successes: u32) -> ProbeSpec {
        let mut spec = ProbeSpec::new(Role::Readiness, Check::Tcp { port: 1 });
        spec.failure_threshold = failures;
        spec.success_threshold = successes;
        spec
    }

    #[test]
    fn verdicts_need_enough_results_in_a_row() {
        let spec = spec(3, 2);
        let mut counter = Counter::default();
        assert_eq!(counter.record(true, &spec), Verdict::Undecided);
        assert_eq!(counter.record(true, &spec), Verdict::Passing);
        assert_eq!(counter.record(false, &spec), Verdict::Undecided);
        assert_eq!(counter.record(false, &spec), Verdict::Undecided);
        assert_eq!(counter.record(true, &spec), Verdict::Undecided, "resets");
        for _ in 0..2 {
            counter.record(false, &spec);
        }
        assert_eq!(counter.failures(), 2);
        assert_eq!(counter.record(false, &spec), Verdict::Failing);
    }

    #[test]
    fn the_schedule_runs_each_probe_a_period_after_its_last_run() {
        let start = Instant::now();
        let mut slow = spec(1, 1);
        slow.initial_delay = Duration::from_secs(5);
        slow.period = Duration::from_secs(10);
        let fast = spec(1, 1);
        let mut schedule = Schedule::new(&[&slow, &fast], start);
        assert_eq!(schedule.next(), Some((1, start)));
        schedule.ran(1, start, Duration::from_secs(1));
        assert_eq!(schedule.next(), Some((1, start + Duration::from_secs(1))));
        schedule.ran(1, start + Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(schedule.next(), Some((0, start + Duration::from_secs(5))));
    }

    #[test]
    fn http_checks_read_the_status_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 503 Busy\r\n\r\n",
            ] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = [0u8; 512];
                let n = conn.read(&mut request).unwrap();
                assert!(request[..n].starts_with(b"GET /ready?x=1 HTTP/1.0\r\n"));
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let timeout = Duration::from_secs(2);
        assert_eq!(http_get(port, "/ready?x=1", timeout), Ok(()));
        assert_eq!(
            http_get(port, "/ready?x=1", timeout),
            Err("status 503".into())
        );
        server.join().unwrap();
        assert!(connect(port, timeout).is_err(), "nobody listens any more");
    }
}
