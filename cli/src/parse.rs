//! Parsers for flag values (`--memory 64M`, `-p 8080:80/udp`, `-v /srv:/data:ro`).
//!
//! They only turn text into typed values; whether the resulting pod is
//! acceptable is for [`berth_model::Pod::validate`] to judge, so the command
//! line and the agent reject the same things with the same words. Error
//! messages never repeat the value, because clap already quotes it and
//! because some values (`--secret-env`) must not be echoed at all.

use std::fmt;

use berth_model::{Check, EnvVar, ExecCheck, HttpCheck, Port, Protocol, TcpCheck};

/// A duration: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`,
/// `12h`, `30d`).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| "no unit: add s, m, h or d".to_owned())?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| "must start with a whole number".to_owned())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("the unit is s, m, h or d".to_owned()),
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| "too long".to_owned())
}

/// A replica count: 0 up to the master's limit. Negative numbers reach
/// here too (the flag allows them), so the message can say what is allowed.
pub fn replicas(text: &str) -> Result<u32, String> {
    let max = berth_model::limits::MAX_REPLICAS;
    match text.trim().parse::<i64>() {
        Ok(n) if (0..=i64::from(max)).contains(&n) => Ok(u32::try_from(n).unwrap_or(max)),
        Ok(_) => Err(format!("must be from 0 to {max}")),
        Err(_) => Err(format!("expected a whole number from 0 to {max}")),
    }
}

/// A memory size in bytes: a plain number, or one with a `K`, `M` or `G`
/// suffix (powers of 1024; `Ki`, `Mi`, `Gi` and lowercase are accepted too).
pub fn memory_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a number of bytes, optionally followed by K, M or G".to_owned());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kb" | "kib" => 10,
        "m" | "mi" | "mb" | "mib" => 20,
        "g" | "gi" | "gb" | "gib" => 30,
        _ => return Err("unknown unit: use K, M or G (powers of 1024)".to_owned()),
    };
    let number: u64 = digits.parse().map_err(|_| "number too large".to_owned())?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| "size too large".to_owned())
}

/// What a probe checks: `tcp:PORT`, `http:PORT[/PATH]` or `exec:COMMAND`
/// (words split at whitespace, no shell).
pub fn probe_check(text: &str) -> Result<Check, String> {
    let (kind, target) = text
        .split_once(':')
        .ok_or_else(|| "expected tcp:PORT, http:PORT[/PATH] or exec:COMMAND".to_owned())?;
    let port = |text: &str| -> Result<u16, String> {
        text.parse()
            .map_err(|_| "the port must be a number from 1 to 65535".to_owned())
    };
    match kind {
        "tcp" => Ok(Check::Tcp(TcpCheck {
            port: port(target)?,
        })),
        "http" => {
            let (number, path) = match target.find('/') {
                Some(slash) => target.split_at(slash),
                None => (target, "/"),
            };
            Ok(Check::Http(HttpCheck {
                port: port(number)?,
                path: path.to_owned(),
            }))
        }
        "exec" => Ok(Check::Exec(ExecCheck {
            command: target.split_whitespace().map(str::to_owned).collect(),
        })),
        _ => Err("unknown probe: use tcp:, http: or exec:".to_owned()),
    }
}

/// A CPU limit as a decimal number of CPUs (`0.5`, `2`, at most three
/// decimals) or as thousandths with an `m` suffix (`250m`), in thousandths.
pub fn cpu_millis(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if let Some(millis) = text.strip_suffix('m') {
        if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected thousandths of a CPU before 'm', e.g. 250m".to_owned());
        }
        return millis.parse().map_err(|_| "too many CPUs".to_owned());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err("expected a number of CPUs, e.g. 0.5 or 2".to_owned());
    }
    // Exact decimal arithmetic: 0.1 + 0.2 must not become 299 millis.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 3 {
        return Err("at most three decimals: the limit is in thousandths of a CPU".to_owned());
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too many CPUs".to_owned())?
    };
    let fraction_millis: u32 = format!("{fraction:0<3}")
        .parse()
        .map_err(|_| "expected a number of CPUs, e.g. 0.5 or 2".to_owned())?;
    whole
        .checked_mul(1000)
        .and_then(|millis| millis.checked_add(fraction_millis))
        .ok_or_else(|| "too many CPUs".to_owned())
}

/// A published port: `[HOSTPORT:]PORT[/tcp|/udp]`. Without `HOSTPORT` (or
/// with `0`) the agent picks a free host port from its range.
pub fn port(text: &str) -> Result<Port, String> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some(_) => return Err("unknown protocol: use tcp or udp".to_owned()),
        None => (text, Protocol::Tcp),
    };
    let (host, container) = match ports.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, ports),
    };
    let container_port = match port_number(container, "container port")? {
        0 => return Err("container port must be between 1 and 65535".to_owned()),
        number => number,
    };
    let host_port = match host {
        Some(host) => port_number(host, "host port")?,
        None => 0,
    };
    Ok(Port {
        container_port,
        protocol,
        host_port: Some(host_port),
    })
}

fn port_number(text: &str, what: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected [HOSTPORT:]PORT[/tcp|/udp], {what} is not a number"
        ));
    }
    text.parse()
        .map_err(|_| format!("{what} must be between 0 and 65535"))
}

/// An environment variable `NAME=VALUE`; the value may be empty. The name is
/// checked later, by pod validation.
pub fn env_var(text: &str) -> Result<EnvVar, String> {
    match text.split_once('=') {
        Some((name, value)) => Ok(EnvVar::new(name, value)),
        None => Err("expected NAME=VALUE (the value may be empty: NAME=)".to_owned()),
    }
}

/// `NAME=EXPRESSION` of `--generate-env`: a variable name and a generator
/// expression (`[a-zA-Z0-9]{16}`), both checked by the model's rules.
pub fn generated_env(text: &str) -> Result<(String, String), String> {
    let Some((name, from)) = text.split_once('=') else {
        return Err("expected NAME=EXPRESSION, e.g. PASSWORD='[a-zA-Z0-9]{16}'".to_owned());
    };
    berth_model::validate_env_name(name).map_err(|why| format!("name {name:?} {why}"))?;
    berth_model::template::Expression::parse(from)
        .map_err(|why| format!("{name}: bad expression {from:?}: {why}"))?;
    Ok((name.to_owned(), from.to_owned()))
}

/// A node label `KEY=VALUE`, as `--node-selector` takes it; the value may be
/// empty, the key may not.
pub fn label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// A secret environment variable: `NAME=VALUE`, or `NAME` alone to take the
/// value from this process's own environment variable `NAME` (which keeps
/// the secret out of the command line and the shell history).
pub fn secret_env_var(text: &str) -> Result<SecretEnvVar, String> {
    secret_env_var_from(text, |name| std::env::var(name).ok())
}

/// [`secret_env_var`] with the environment lookup passed in, for tests.
fn secret_env_var_from(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<SecretEnvVar, String> {
    // Never put `text` in an error past the '=': it holds the secret.
    if let Some((name, value)) = text.split_once('=') {
        return Ok(SecretEnvVar(EnvVar::new(name, value)));
    }
    match lookup(text) {
        Some(value) => Ok(SecretEnvVar(EnvVar::new(text, value))),
        None => Err(
            "expected NAME=VALUE, or NAME alone with NAME set in berth's environment".to_owned(),
        ),
    }
}

/// A secret environment variable from the command line. Its `Debug` hides
/// the value, so that the parsed arguments can be printed safely.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEnvVar(pub EnvVar);

impl fmt::Debug for SecretEnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}=<redacted>", self.0.name)
    }
}

/// A `-v SRC:DST[:OPTIONS]` flag before it becomes a pod volume and a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFlag {
    /// Where the data comes from.
    pub source: VolumeSource,
    /// Absolute path inside the container.
    pub path: String,
    /// Mount read-only (`:ro`).
    pub read_only: bool,
    /// The volume class of a named volume (`:class=NAME`).
    pub class: Option<String>,
}

/// The `SRC` of a `-v` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute `SRC`: a directory of the host, bound into the container.
    HostPath(String),
    /// `glusterfs://SERVER/VOLUME[/SUBDIR]` or `nfs://SERVER/EXPORT`: a
    /// network file system the node mounts.
    Network {
        /// GlusterFS or NFS.
        kind: berth_model::NetworkKind,
        /// The server.
        server: String,
        /// The absolute path on it.
        path: String,
    },
    /// `volume://NAME`: a network volume an admin defined (`berth volume
    /// create`); the master fills in its source.
    Defined(String),
    /// Any other `SRC`: the name of a Docker volume.
    Named(String),
}

/// A volume flag: `SRC:DST` with options `ro`, `rw` and `class=NAME`
/// after another `:`, separated by commas (`data:/db:ro,class=fast`). An
/// absolute `SRC` is a host directory, `glusterfs://SERVER/VOLUME[/SUBDIR]`
/// and `nfs://SERVER/EXPORT` are network file systems, `volume://NAME` a
/// network volume an admin defined, anything else a named volume.
pub fn volume(text: &str) -> Result<VolumeFlag, String> {
    const USAGE: &str = "expected SRC:DST or SRC:DST:OPTIONS (ro, rw, class=NAME)";
    let network = [
        berth_model::NetworkKind::Glusterfs,
        berth_model::NetworkKind::Nfs,
    ]
    .into_iter()
    .find_map(|kind| {
        let rest = text.strip_prefix(kind.as_str())?.strip_prefix("://")?;
        Some((kind, rest))
    });
    let defined = text.strip_prefix("volume://").map(|rest| {
        let (name, rest) = rest.split_once(':').unwrap_or((rest, ""));
        (VolumeSource::Defined(name.to_owned()), rest)
    });
    let (source, rest) = match (defined, network) {
        (Some((VolumeSource::Defined(name), _)), _) if name.is_empty() => {
            return Err("volume://NAME: name the network volume (berth volume ls)".to_owned())
        }
        (Some(defined), _) => defined,
        (None, Some((kind, rest))) => {
            let (location, rest) = rest.split_once(':').ok_or(USAGE)?;
            let (server, path) = location
                .split_once('/')
                .ok_or_else(|| format!("{kind}://{location}: expected {kind}://SERVER/PATH"))?;
            if server.is_empty() || path.is_empty() {
                return Err(format!(
                    "{kind}://{location}: expected {kind}://SERVER/PATH"
                ));
            }
            let source = VolumeSource::Network {
                kind,
                server: server.to_owned(),
                path: format!("/{}", path.trim_end_matches('/')),
            };
            (source, rest)
        }
        (None, None) => {
            let (source, rest) = text.split_once(':').ok_or(USAGE)?;
            if source.is_empty() {
                return Err(USAGE.to_owned());
            }
            let source = if source.starts_with('/') {
                VolumeSource::HostPath(source.to_owned())
            } else {
                VolumeSource::Named(source.to_owned())
            };
            (source, rest)
        }
    };
    let (path, options) = match rest.split_once(':') {
        Some((path, options)) => (path, Some(options)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(USAGE.to_owned());
    }
    let mut read_only = false;
    let mut class = None;
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            _ => match option.strip_prefix("class=") {
                Some(name) if !name.is_empty() => class = Some(name.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown mount option {option:?}: use ro, rw or class=NAME"
                    ))
                }
            },
        }
    }
    if class.is_some() && !matches!(source, VolumeSource::Named(_)) {
        return Err("class=NAME applies to named volumes only".to_owned());
    }
    Ok(VolumeFlag {
        source,
        path: path.to_owned(),
        read_only,
        class,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(duration("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            duration("30d"),
            Ok(std::time::Duration::from_secs(30 * 86_400))
        );
        assert!(duration("30").is_err());
        assert!(duration("1w").is_err());
        assert!(duration("h").is_err());
    }

    #[test]
    fn replicas_are_bounded_by_the_masters_limit_with_negatives_named() {
        assert_eq!(replicas("3"), Ok(3));
        assert_eq!(replicas("0"), Ok(0));
        assert_eq!(replicas("-1"), Err("must be from 0 to 10000".to_owned()));
        assert_eq!(
            replicas("100000"),
            Err("must be from 0 to 10000".to_owned())
        );
        assert!(replicas("x").is_err());
    }

    use super::*;

    #[test]
    fn probe_checks_parse() {
        assert_eq!(
            probe_check("http:8080/ready?x=1"),
            Ok(Check::Http(HttpCheck {
                port: 8080,
                path: "/ready?x=1".into()
            }))
        );
        assert_eq!(
            probe_check("http:80"),
            Ok(Check::Http(HttpCheck {
                port: 80,
                path: "/".into()
            }))
        );
        assert_eq!(
            probe_check("tcp:5432"),
            Ok(Check::Tcp(TcpCheck { port: 5432 }))
        );
        assert_eq!(
            probe_check("exec:cat  /tmp/ok"),
            Ok(Check::Exec(ExecCheck {
                command: vec!["cat".into(), "/tmp/ok".into()]
            }))
        );
        assert!(probe_check("grpc:1").is_err());
        assert!(probe_check("tcp:http").is_err());
        assert!(probe_check("8080").is_err());
    }

    #[test]
    fn memory_accepts_bytes_and_binary_units() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("512K", 512 << 10),
            ("512k", 512 << 10),
            ("64M", 64 << 20),
            ("64Mi", 64 << 20),
            ("64mi", 64 << 20),
            ("64MiB", 64 << 20),
            ("2G", 2 << 30),
            ("2Gi", 2 << 30),
            ("100b", 100),
        ] {
            assert_eq!(memory_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn memory_rejects_nonsense() {
        for text in [
            "",
            "M",
            "-1",
            "1.5G",
            "64X",
            "64 M",
            "1T",
            "18446744073709551616",
        ] {
            assert!(memory_bytes(text).is_err(), "{text}");
        }
        assert_eq!(
            memory_bytes("17179869184G"),
            Err("size too large".to_owned())
        );
    }

    #[test]
    fn cpus_become_thousandths() {
        for (text, millis) in [
            ("0.5", 500),
            (".5", 500),
            ("1", 1000),
            ("2.", 2000),
            ("1.25", 1250),
            ("0.010", 10),
            ("0.1000", 100),
            ("250m", 250),
            ("0", 0),
        ] {
            assert_eq!(cpu_millis(text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn cpus_reject_nonsense() {
        for text in [
            "", ".", "-1", "0.0005", "1e3", "half", "m", "1.5m", "4294968",
        ] {
            assert!(cpu_millis(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ports_parse_with_defaults() {
        let port_of = |container_port, protocol, host_port| Port {
            container_port,
            protocol,
            host_port: Some(host_port),
        };
        assert_eq!(port("8080"), Ok(port_of(8080, Protocol::Tcp, 0)));
        assert_eq!(port("80:8080"), Ok(port_of(8080, Protocol::Tcp, 80)));
        assert_eq!(port("53/udp"), Ok(port_of(53, Protocol::Udp, 0)));
        assert_eq!(port("5353:53/udp"), Ok(port_of(53, Protocol::Udp, 5353)));
        assert_eq!(port("0:22/tcp"), Ok(port_of(22, Protocol::Tcp, 0)));
    }

    #[test]
    fn ports_reject_nonsense() {
        for text in [
            "",
            "0",
            "65536",
            "http",
            "80:",
            ":80",
            "80/sctp",
            "1.2.3.4:80:8080",
            "-1",
        ] {
            assert!(port(text).is_err(), "{text}");
        }
    }

    #[test]
    fn env_vars_split_at_the_first_equals_sign() {
        assert_eq!(env_var("A=b"), Ok(EnvVar::new("A", "b")));
        assert_eq!(env_var("A="), Ok(EnvVar::new("A", "")));
        assert_eq!(env_var("A=b=c"), Ok(EnvVar::new("A", "b=c")));
        assert!(env_var("A").is_err());
    }

    #[test]
    fn labels_need_a_key() {
        assert_eq!(label("zone=a"), Ok(("zone".to_owned(), "a".to_owned())));
        assert_eq!(label("ssd="), Ok(("ssd".to_owned(), String::new())));
        assert!(label("zone").is_err());
        assert!(label("=a").is_err());
    }

    #[test]
    fn secret_env_vars_come_from_the_flag_or_the_environment() {
        let lookup = |name: &str| (name == "TOKEN").then(|| "from-env".to_owned());
        assert_eq!(
            secret_env_var_from("PW=hunter2", lookup),
            Ok(SecretEnvVar(EnvVar::new("PW", "hunter2")))
        );
        assert_eq!(
            secret_env_var_from("TOKEN", lookup),
            Ok(SecretEnvVar(EnvVar::new("TOKEN", "from-env")))
        );
        assert!(secret_env_var_from("MISSING", lookup).is_err());
    }

    #[test]
    fn secret_env_debug_hides_the_value() {
        let var = SecretEnvVar(EnvVar::new("PW", "hunter2"));
        assert_eq!(format!("{var:?}"), "\"PW\"=<redacted>");
    }

    #[test]
    fn volumes_are_host_paths_when_absolute() {
        assert_eq!(
            volume("/srv/data:/data"),
            Ok(VolumeFlag {
                class: None,
                source: VolumeSource::HostPath("/srv/data".to_owned()),
                path: "/data".to_owned(),
                read_only: false,
            })
        );
        assert_eq!(
            volume("cache:/var/cache:ro"),
            Ok(VolumeFlag {
                class: None,
                source: VolumeSource::Named("cache".to_owned()),
                path: "/var/cache".to_owned(),
                read_only: true,
            })
        );
        assert_eq!(
            volume("cache:/var/cache:rw").map(|v| v.read_only),
            Ok(false)
        );
    }

    #[test]
    fn volumes_reject_nonsense() {
        for text in [
            "",
            "/srv",
            ":/data",
            "/srv:",
            "a:/b:rx",
            "a:/b:ro:x",
            "a:/b:class=",
            "/srv:/b:class=fast",
            "glusterfs://h1:/data",
            "glusterfs:///v1:/data",
            "nfs://h1/x:/data:class=fast",
            "volume://:/data",
            "volume://shared",
            "volume://shared:/data:class=fast",
        ] {
            assert!(volume(text).is_err(), "{text}");
        }
    }

    #[test]
    fn volumes_take_classes_and_network_sources() {
        assert_eq!(
            volume("data:/var/lib/db:class=fast"),
            Ok(VolumeFlag {
                source: VolumeSource::Named("data".to_owned()),
                path: "/var/lib/db".to_owned(),
                read_only: false,
                class: Some("fast".to_owned()),
            })
        );
        assert_eq!(
            volume("log:/var/log:ro,class=bulk").map(|v| (v.read_only, v.class)),
            Ok((true, Some("bulk".to_owned())))
        );
        assert_eq!(
            volume("glusterfs://h1/v1/sub:/data:ro"),
            Ok(VolumeFlag {
                source: VolumeSource::Network {
                    kind: berth_model::NetworkKind::Glusterfs,
                    server: "h1".to_owned(),
                    path: "/v1/sub".to_owned(),
                },
                path: "/data".to_owned(),
                read_only: true,
                class: None,
            })
        );
        assert_eq!(
            volume("nfs://nas.example/exports/a:/data").map(|v| v.source),
            Ok(VolumeSource::Network {
                kind: berth_model::NetworkKind::Nfs,
                server: "nas.example".to_owned(),
                path: "/exports/a".to_owned(),
            })
        );
        assert_eq!(
            volume("volume://shared:/data:ro").map(|v| (v.source, v.read_only)),
            Ok((VolumeSource::Defined("shared".to_owned()), true))
        );
    }

    #[test]
    fn generated_env_takes_a_name_and_an_expression() {
        assert_eq!(
            generated_env("PASSWORD=[a-zA-Z0-9]{16}"),
            Ok(("PASSWORD".into(), "[a-zA-Z0-9]{16}".into()))
        );
        let no_value = generated_env("PASSWORD").expect_err("no expression");
        assert!(
            no_value.starts_with("expected NAME=EXPRESSION"),
            "{no_value}"
        );
        let bad_name = generated_env("PASS-WORD=[a-z]").expect_err("bad name");
        assert!(bad_name.starts_with("name \"PASS-WORD\""), "{bad_name}");
        let bad = generated_env("PASSWORD=[z-a]").expect_err("bad expression");
        assert!(bad.starts_with("PASSWORD: bad expression"), "{bad}");
    }
}
