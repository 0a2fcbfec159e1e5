//! Links: service A reaches service B at `127.0.0.1:<local port>` inside
//! its own network namespace, wherever B's pods run. A link lives on A's
//! service; the master copies it onto A's pods and the agent that runs
//! them turns it into NAT rules in the pod's namespace.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::pod::{EnvVar, Pod};
use crate::validation::ValidationErrors;

/// Most links one service may have.
pub const MAX_LINKS: usize = 256;

/// The address a link listens on inside the linking pod's namespace,
/// unless it names a stable address of its own.
pub const LINK_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A link from the service that holds it to `service` on `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Link {
    /// The service linked to (B), a DNS-1123 label.
    pub service: String,
    /// B's container port the link reaches (one of the ports B publishes
    /// on its hosts).
    pub port: u16,
    /// The port A connects to on 127.0.0.1; `port` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// A stable address of the link's own, in 169.254.0.0/16, that A
    /// connects to instead of 127.0.0.1. Connections from 127.0.0.1 leave
    /// through the pod's interface only after a rewrite of their source
    /// (which needs `route_localnet`); from this address they need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Start order: A's new pods start only once B has a ready endpoint,
    /// waiting (placed nowhere, with an event) until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_ready: bool,
}

impl Link {
    /// The port A connects to.
    pub fn local_port(&self) -> u16 {
        self.local_port.unwrap_or(self.port)
    }

    /// The address A connects to.
    pub fn local_address(&self) -> Ipv4Addr {
        self.address.unwrap_or(LINK_HOST)
    }
}

/// What a pod may reach outside its own namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EgressPolicy {
    /// Anything (the default).
    #[default]
    Open,
    /// Only its links: every other new outbound connection is refused
    /// inside the pod's namespace.
    LinksOnly,
}

impl EgressPolicy {
    /// Whether this is the default, open policy.
    pub fn is_open(&self) -> bool {
        *self == EgressPolicy::Open
    }
}

/// `POST /v1/services/{name}/links`: `service` is the linked-to service.
pub type LinkRequest = Link;

/// Checks a service's links: `prefix` is where they sit in the request
/// (e.g. `links`), `own_name` the linking service's name.
pub fn validate_links(prefix: &str, own_name: &str, links: &[Link], errors: &mut ValidationErrors) {
    if links.len() > MAX_LINKS {
        errors.push(prefix, format!("at most {MAX_LINKS} links"));
    }
    for (i, link) in links.iter().enumerate() {
        let field = format!("{prefix}[{i}]");
        // Another project's service is `project.service`.
        if let Err(e) = crate::project::validate_qualified_name(&link.service) {
            errors.push(format!("{field}.service"), e.to_string());
        } else if link.service == own_name {
            errors.push(
                format!("{field}.service"),
                "a service cannot link to itself",
            );
        }
        if link.port == 0 {
            errors.push(format!("{field}.port"), "must be between 1 and 65535");
        }
        if link.local_port == Some(0) {
            errors.push(format!("{field}.localPort"), "must be between 1 and 65535");
        }
        if let Some(address) = link.address {
            if !address.is_link_local() {
                errors.push(
                    format!("{field}.address"),
                    "must be in 169.254.0.0/16 (link-local), which no pod reaches otherwise",
                );
            }
        }
        if let Some(j) = links[..i].iter().position(|other| {
            other.local_port() == link.local_port() && other.local_address() == link.local_address()
        }) {
            errors.push(
                format!("{field}.localPort"),
                format!(
                    "{}:{} is already used by {prefix}[{j}]",
                    link.local_address(),
                    link.local_port()
                ),
            );
        }
    }
}

/// The prefix of a linked service's variables: `db-main` gives `DB_MAIN`,
/// and so does another project's `b.db-main`.
pub fn env_prefix(service: &str) -> String {
    crate::project::unqualified(service)
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// The variables a link gives the linking pod: `<B>_HOST`, `<B>_PORT`
/// (plain) and `<B>_<NAME>` for everything B publishes (secret: B may
/// publish a password).
pub fn link_env(link: &Link, published: &[EnvVar]) -> (Vec<EnvVar>, Vec<EnvVar>) {
    let prefix = env_prefix(&link.service);
    let plain = vec![
        EnvVar::new(format!("{prefix}_HOST"), link.local_address().to_string()),
        EnvVar::new(format!("{prefix}_PORT"), link.local_port().to_string()),
    ];
    let secret = published
        .iter()
        .map(|var| EnvVar::new(format!("{prefix}_{}", var.name), var.value.clone()))
        .collect();
    (plain, secret)
}

/// Adds variables to every container of `pod` that does not set them
/// itself. Called with the service's values first, then each link's, it
/// gives the seed's precedence: container > service > link; and since a
/// pod is made afresh from its service, removing a user value brings the
/// link's back in the next pod.
pub fn add_link_env(pod: &mut Pod, plain: &[EnvVar], secret: &[EnvVar]) {
    for container in &mut pod.containers {
        let user_set = |name: &str| {
            container.env.iter().any(|v| v.name == name)
                || container.secret_env.iter().any(|v| v.name == name)
        };
        let new_plain: Vec<EnvVar> = plain
            .iter()
            .filter(|v| !user_set(&v.name))
            .cloned()
            .collect();
        let new_secret: Vec<EnvVar> = secret
            .iter()
            .filter(|v| !user_set(&v.name))
            .cloned()
            .collect();
        container.env.extend(new_plain);
        container.secret_env.extend(new_secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Container;

    fn link(service: &str, port: u16, local_port: Option<u16>) -> Link {
        Link {
            service: service.into(),
            port,
            local_port,
            address: None,
            wait_ready: false,
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut errors = ValidationErrors::new();
        let links = [
            link("db", 3306, None),
            link("Bad_Name", 0, Some(0)),
            link("cache", 6379, Some(3306)),
            link("web", 80, None),
        ];
        validate_links("links", "web", &links, &mut errors);
        let mut stable = link("db", 3306, None);
        stable.address = Some(Ipv4Addr::new(169, 254, 1, 1));
        let mut public = stable.clone();
        public.address = Some(Ipv4Addr::new(10, 0, 0, 1));
        let mut fine = ValidationErrors::new();
        validate_links("links", "web", &[link("db", 3306, None), stable], &mut fine);
        assert!(fine.is_empty(), "{fine}");
        let mut bad = ValidationErrors::new();
        validate_links("links", "web", &[public], &mut bad);
        assert!(bad.message_for("links[0].address").is_some());
        assert!(errors.message_for("links[1].service").is_some());
        assert!(errors.message_for("links[1].port").is_some());
        assert!(errors.message_for("links[1].localPort").is_some());
        assert_eq!(
            errors.message_for("links[2].localPort"),
            Some("127.0.0.1:3306 is already used by links[0]")
        );
        assert_eq!(
            errors.message_for("links[3].service"),
            Some("a service cannot link to itself")
        );
        assert_eq!(errors.len(), 5);
    }

    fn pod_with_env(env: &[(&str, &str)]) -> Pod {
        let json = serde_json::json!({
            "name": "web-0",
            "containers": [{"name": "app", "image": "local/busybox"}],
        });
        let mut pod: Pod = serde_json::from_value(json).expect("pod");
        let container: &mut Container = &mut pod.containers[0];
        container.env = env.iter().map(|(n, v)| EnvVar::new(*n, *v)).collect();
        pod
    }

    #[test]
    fn user_values_win_and_their_removal_brings_the_link_value_back() {
        let (plain, secret) = link_env(
            &link("db-main", 3306, Some(13306)),
            &[EnvVar::new("PASSWORD", "s3cret")],
        );
        let mut overridden = pod_with_env(&[("DB_MAIN_HOST", "db.example")]);
        add_link_env(&mut overridden, &plain, &secret);
        let env = &overridden.containers[0].env;
        assert_eq!(env[0], EnvVar::new("DB_MAIN_HOST", "db.example"));
        assert_eq!(env[1], EnvVar::new("DB_MAIN_PORT", "13306"));
        assert_eq!(env.len(), 2);
        assert_eq!(
            overridden.containers[0].secret_env,
            vec![EnvVar::new("DB_MAIN_PASSWORD", "s3cret")]
        );

        let mut plain_pod = pod_with_env(&[]);
        add_link_env(&mut plain_pod, &plain, &secret);
        assert_eq!(
            plain_pod.containers[0].env[0],
            EnvVar::new("DB_MAIN_HOST", "127.0.0.1")
        );
    }
}
