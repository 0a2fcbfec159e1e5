//! The cluster's objects as the master keeps them: nodes, services and the
//! pods it assigns to nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::deployment::{Strategy, Trigger};
use crate::limits::MAX_REPLICAS;
use crate::link::{add_link_env, link_env, validate_links, EgressPolicy, Link};
use crate::name::{validate_dns_label, validate_env_name};
use crate::pod::{EnvVar, Pod};
use crate::status::PodStatus;
use crate::validation::ValidationErrors;

/// Longest service name: its pods are named `<service>-<n>`, and must stay
/// DNS labels.
pub const MAX_SERVICE_NAME_LEN: usize = 50;

/// What a node offers to pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// CPU in thousandths of a CPU.
    pub cpu_millis: u64,
}

/// A host running berth-agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's name (its hostname), a DNS-1123 label.
    pub name: String,
    /// Address other hosts reach it on: an IPv4 or IPv6 address or a DNS
    /// name ([`crate::validate_node_address`]), used by no other node.
    pub address: String,
    /// Labels pods can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: Capacity,
    /// Cordoned: no new pods are placed on it.
    #[serde(default)]
    pub unschedulable: bool,
    /// The agent's settings that shape its pods' unit files, as its last
    /// heartbeat reported them; `None` from an agent too old to report
    /// them. `berth diff` renders the node's unit files with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_settings: Option<UnitSettings>,
    /// The volume classes its agent offers (`[volume-classes]` of its
    /// agent.toml), each with its directory, as its last heartbeat
    /// reported them: pods asking for a class go only to nodes that have it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_classes: BTreeMap<String, String>,
}

/// What an agent's configuration puts into every unit file it writes:
/// with a pod's spec, all that is needed to render them exactly as the
/// agent does. Never secret: anyone on the host can read unit settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitSettings {
    /// The berth-shim the units run (`ExecStart=`).
    pub shim_path: String,
    /// The shim's environment (`Environment=`): `DOCKER_HOST` when
    /// Docker's socket is not the default one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shim_environment: Vec<EnvVar>,
    /// The berth-agent a build pod's unit runs (`ExecStart=... build
    /// DIR`); empty for [`DEFAULT_AGENT_PATH`]. Empty is what an agent at
    /// the defaults sends, so that a master older than builds, which
    /// refuses fields it does not know, still takes its heartbeats.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_path: String,
    /// Where build pods' directories are; empty for
    /// [`DEFAULT_BUILDS_DIR`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub builds_dir: String,
    /// The container engine's systemd unit, which container units require;
    /// empty for [`DEFAULT_ENGINE_UNIT`] (dockerd), for the same reason as
    /// `agent_path`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine_unit: String,
    /// The directory the shim runs in as its root (`RootDirectory=`), or
    /// `/` for the host's own; empty for [`DEFAULT_SHIM_ROOT`], for the
    /// same reason as `agent_path`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shim_root: String,
}

/// The container engine's unit when none is named: dockerd's.
pub const DEFAULT_ENGINE_UNIT: &str = "docker.service";

/// The shim's root directory on an agent at its default state directory:
/// a skeleton the agent makes, where the shim's unit sees only `/usr`,
/// `/run` and the API file systems.
pub const DEFAULT_SHIM_ROOT: &str = "/var/lib/berth/shim-root";

/// Where packages install berth-agent.
pub const DEFAULT_AGENT_PATH: &str = "/usr/bin/berth-agent";

/// Where an agent at its default state directory keeps build pods'
/// directories.
pub const DEFAULT_BUILDS_DIR: &str = "/var/lib/berth/builds";

impl UnitSettings {
    /// The berth-agent build units run.
    pub fn agent_path(&self) -> &str {
        if self.agent_path.is_empty() {
            DEFAULT_AGENT_PATH
        } else {
            &self.agent_path
        }
    }

    /// The unit of the container engine that container units require.
    pub fn engine_unit(&self) -> &str {
        if self.engine_unit.is_empty() {
            DEFAULT_ENGINE_UNIT
        } else {
            &self.engine_unit
        }
    }

    /// The directory the shim runs in as its root; `/` for the host's.
    pub fn shim_root(&self) -> &str {
        if self.shim_root.is_empty() {
            DEFAULT_SHIM_ROOT
        } else {
            &self.shim_root
        }
    }

    /// Where build pods' directories are.
    pub fn builds_dir(&self) -> &str {
        if self.builds_dir.is_empty() {
            DEFAULT_BUILDS_DIR
        } else {
            &self.builds_dir
        }
    }
}

impl Node {
    /// Checks what a joining node says of itself: its name is a DNS label
    /// and its address one other hosts can reach.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        if let Err(e) = crate::address::validate_node_address(&self.address) {
            errors.push("address", e.to_string());
        }
        errors.into_result()
    }
}

/// A node's liveness as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum NodeCondition {
    /// Heartbeats arrive.
    Ready,
    /// No heartbeat within the grace period.
    NotReady,
    /// Heartbeats arrive, but the node's container engine (Docker) does not
    /// answer, e.g. while it restarts. The node is alive: its pods are not
    /// evicted, but nothing new is placed on it until the engine is back.
    EngineUnavailable,
}

/// A replicated pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// The service's name, a DNS-1123 label; its pods are `<name>-<n>`.
    pub name: String,
    /// Free `key: value` pairs, e.g. for `berth apply --prune -l KEY=VALUE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How many pods should run.
    pub replicas: u32,
    /// Never moved automatically: `berth move` moves its pods explicitly.
    #[serde(default)]
    pub stateful: bool,
    /// Nodes must carry these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The pod every replica runs; its `name` is replaced per replica.
    pub template: Pod,
    /// Variables for every container of its pods; a container's own
    /// value of the same name wins, and these win over link variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Services its pods reach on 127.0.0.1 (see [`Link`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// What its pods may reach besides their links.
    #[serde(default, skip_serializing_if = "EgressPolicy::is_open")]
    pub egress: EgressPolicy,
    /// Values handed to the services that link to this one, as
    /// `<SERVICE>_<NAME>` (secret: a password, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<EnvVar>,
    /// Secret variables generated once when it was made; its `env`
    /// overrides them, and link variables yield to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated_env: Vec<crate::template::GeneratedVar>,
    /// How a change to its template rolls out.
    #[serde(default, skip_serializing_if = "Strategy::is_default")]
    pub strategy: Strategy,
    /// What rolls it out: by default, any change to its template.
    #[serde(
        default = "crate::deployment::default_triggers",
        skip_serializing_if = "crate::deployment::is_default_triggers"
    )]
    pub triggers: Vec<Trigger>,
}

impl Service {
    /// The spec of the service's pod number `index` at a revision whose
    /// template and variables are `template` and `env`: the template named
    /// `<service>-<index>`, with the service's variables added, then each
    /// link's (see [`add_link_env`]); `published` says what a linked
    /// service publishes. The master makes its pods with this, and
    /// `berth diff` what they would become.
    pub fn replica_spec<'p>(
        &self,
        template: &Pod,
        env: &[EnvVar],
        index: u32,
        published: impl Fn(&str) -> &'p [EnvVar],
    ) -> Pod {
        let mut spec = template.clone();
        spec.name = format!("{}-{index}", self.name);
        add_link_env(&mut spec, env, &[]);
        let generated: Vec<EnvVar> = self
            .generated_env
            .iter()
            .map(|var| EnvVar::new(var.name.clone(), var.value.clone()))
            .collect();
        add_link_env(&mut spec, &[], &generated);
        for link in &self.links {
            let (plain, secret) = link_env(link, published(&link.service));
            add_link_env(&mut spec, &plain, &secret);
        }
        spec
    }

    /// The replica index in the name of one of its pods (`web-2` of `web`
    /// is 2); `None` for another service's pod.
    pub fn replica_index(service: &str, pod: &str) -> Option<u32> {
        pod.strip_prefix(service)?.strip_prefix('-')?.parse().ok()
    }

    /// Checks everything that needs no other object and no node's or
    /// master's settings (the master adds its host port policy, and that
    /// linked-to services exist): the name, the replica count, the links,
    /// the variable names and the template, named like the service's first
    /// pod. The master and the command line both judge by this.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        } else if self.name.len() > MAX_SERVICE_NAME_LEN {
            errors.push(
                "name",
                format!("must be at most {MAX_SERVICE_NAME_LEN} characters (pods add a suffix)"),
            );
        }
        crate::labels::validate_labels("labels", &self.labels, &mut errors);
        if let Err(message) = validate_replicas(self.replicas) {
            errors.push("replicas", message);
        } else if let Err(message) = self.check_single_writer(self.replicas) {
            errors.push("replicas", message);
        }
        validate_links("links", &self.name, &self.links, &mut errors);
        for (list, vars) in [("env", &self.env), ("publish", &self.publish)] {
            for (i, var) in vars.iter().enumerate() {
                if let Err(message) = validate_env_name(&var.name) {
                    errors.push(format!("{list}[{i}].name"), message);
                }
            }
        }
        for (i, var) in self.generated_env.iter().enumerate() {
            var.check(&format!("generatedEnv[{i}]"), &mut errors);
            if self.generated_env[..i].iter().any(|v| v.name == var.name) {
                errors.push(
                    format!("generatedEnv[{i}].name"),
                    format!("{} is generated twice", var.name),
                );
            }
        }
        self.template.validate_as_template(&self.name, &mut errors);
        self.strategy.validate("strategy.", &mut errors);
        crate::deployment::validate_triggers(&self.triggers, &self.template, &mut errors);
        errors.into_result()
    }

    /// Whether a change to its template rolls out at once.
    pub fn rolls_out_changes(&self) -> bool {
        self.triggers.contains(&Trigger::ConfigChange)
    }

    /// The ports its pods publish, with the containers that publish them.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.template
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().map(|p| p.container_port))
    }

    /// The service as users see it: every secret value blanked (its
    /// template's secret variables and the values it publishes). Only a
    /// node's own assignments carry them.
    pub fn redacted(mut self) -> Service {
        self.template = self.template.redacted();
        for var in &mut self.publish {
            var.value.clear();
        }
        for var in &mut self.generated_env {
            var.value.clear();
        }
        self
    }

    /// The service with the secret values it was sent blank (as
    /// [`Service::redacted`] shows them) taken from `stored`: its
    /// template's secret variables and the values it publishes.
    pub fn with_secrets_from(mut self, stored: &Service) -> Service {
        self.template = self.template.with_secrets_from(&stored.template);
        crate::status::restore_blank_values(&mut self.publish, &stored.publish);
        for var in &mut self.generated_env {
            if var.value.is_empty() {
                if let Some(kept) = stored.generated_env.iter().find(|s| s.name == var.name) {
                    var.value.clone_from(&kept.value);
                }
            }
        }
        self
    }
}

impl Service {
    /// Refuses more than one replica of a stateful service whose pods write
    /// to a network volume: its volumes have a single writer, which is also
    /// what lets the master move the pod when its node dies.
    pub fn check_single_writer(&self, replicas: u32) -> Result<(), String> {
        if self.stateful && replicas > 1 && self.template.writes_network_volume() {
            return Err(format!(
                "a stateful service writing to a network volume runs one replica at most (the volume has a single writer), got {replicas}"
            ));
        }
        Ok(())
    }
}

/// Checks a replica count, as a service or a scale request gives it.
pub fn validate_replicas(replicas: u32) -> Result<(), String> {
    if replicas > MAX_REPLICAS {
        return Err(format!("must be at most {MAX_REPLICAS}"));
    }
    Ok(())
}

/// A pod the master manages: its spec, where it is placed and what the
/// node last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPod {
    /// The pod's spec (its name is the pod's name).
    pub spec: Pod,
    /// The service that owns it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The job it is an attempt of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Its place in the queue while it waits for room: priority first,
    /// then when it was queued (Unix milliseconds).
    #[serde(default, skip_serializing_if = "crate::job::Priority::is_normal")]
    pub priority: crate::job::Priority,
    /// When it was queued, for first come first placed within a priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<u64>,
    /// The node it is assigned to; `None` while unschedulable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it could not be placed, while it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_reason: Option<String>,
    /// The node's last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
    /// Its service's links, which the node wires into the pod's network
    /// namespace (kept here so that changing them never changes the spec,
    /// and so never restarts the pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Its service's outbound policy.
    #[serde(default, skip_serializing_if = "EgressPolicy::is_open")]
    pub egress: EgressPolicy,
    /// Nodes where it could not start for a cause of the node's own (a
    /// host port held by a process there), each with when it may be tried
    /// there again (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub start_failed_on: BTreeMap<String, u64>,
    /// The revision of its service it runs (see [`crate::deployment`]);
    /// pods made before revisions run the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Since when it has been ready without a break (Unix milliseconds),
    /// as the master saw its node's reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since_ms: Option<u64>,
    /// Since when it has been draining: out of every router's backends and
    /// link's rules, still running, until it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since_ms: Option<u64>,
    /// Held back, placed nowhere: the service it links to with
    /// `waitReady` has no ready endpoint yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Its move with data to another node, while one is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<crate::PodMove>,
}

impl ClusterPod {
    /// A pod of `spec` that belongs to nothing yet and waits for a place;
    /// its owner fills in the rest (`ClusterPod { service, ..unplaced }`).
    pub fn unplaced(spec: Pod) -> ClusterPod {
        ClusterPod {
            spec,
            service: None,
            job: None,
            priority: Default::default(),
            queued_ms: None,
            node: None,
            unschedulable_reason: None,
            status: None,
            links: Vec::new(),
            egress: EgressPolicy::default(),
            start_failed_on: BTreeMap::new(),
            revision: None,
            ready_since_ms: None,
            draining_since_ms: None,
            waiting_for: None,
            moving: None,
        }
    }

    /// The revision of its service it runs.
    pub fn revision(&self) -> u64 {
        self.revision.unwrap_or(1)
    }

    /// Whether its node reports it running with every container ready.
    pub fn reported_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.phase == crate::status::PodPhase::Running && s.containers.iter().all(|c| c.ready)
        })
    }

    /// The pod as users see it: the secret values of its spec, and of the
    /// spec its node reported, blanked.
    pub fn redacted(mut self) -> ClusterPod {
        self.spec = self.spec.redacted();
        self.status = self.status.map(PodStatus::redacted);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> Service {
        let mut base = serde_json::json!({
            "name": "web",
            "replicas": 2,
            "template": {
                "name": "web",
                "containers": [{
                    "name": "web",
                    "image": "local/busybox",
                    "secretEnv": [{"name": "PW", "value": "hunter2"}]
                }]
            }
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("service")
    }

    fn fields(errors: &ValidationErrors) -> Vec<(&str, &str)> {
        errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect()
    }

    #[test]
    fn a_node_names_its_bad_name_and_address() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "name": "H1",
            "address": "not an address",
            "capacity": {"memoryBytes": 1, "cpuMillis": 1}
        }))
        .expect("node");
        let errors = node.validate().expect_err("invalid");
        let names: Vec<&str> = fields(&errors).iter().map(|(f, _)| *f).collect();
        assert_eq!(names, ["name", "address"]);
    }

    #[test]
    fn a_plain_service_is_valid() {
        assert_eq!(service(serde_json::json!({})).validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_named_in_field_order() {
        let bad = service(serde_json::json!({
            "name": "w".repeat(51),
            "replicas": MAX_REPLICAS + 1,
            "env": [{"name": "1X", "value": "y"}, {"name": "", "value": "y"}],
            "publish": [{"name": "A-B", "value": "s"}],
        }));
        let errors = bad.validate().expect_err("invalid");
        assert_eq!(
            fields(&errors),
            [
                ("name", "must be at most 50 characters (pods add a suffix)"),
                ("replicas", "must be at most 10000"),
                ("env[0].name", "must match [A-Za-z_][A-Za-z0-9_]*"),
                ("env[1].name", "must not be empty"),
                ("publish[0].name", "must match [A-Za-z_][A-Za-z0-9_]*"),
            ]
        );
    }

    #[test]
    fn template_problems_are_prefixed_and_its_name_comes_from_the_service() {
        let mut bad = service(serde_json::json!({"name": "Web"}));
        bad.template.containers[0].image.clear();
        let errors = bad.validate().expect_err("invalid");
        let names: Vec<&str> = fields(&errors).iter().map(|(f, _)| *f).collect();
        assert_eq!(names, ["name", "template.containers[0].image"]);
    }

    #[test]
    fn redaction_blanks_secret_and_published_values() {
        let shown = service(serde_json::json!({
            "publish": [{"name": "PASSWORD", "value": "s3cret"}],
        }))
        .redacted();
        let text = serde_json::to_string(&shown).expect("json");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(shown.publish[0].name, "PASSWORD");
    }

    #[test]
    fn a_redacted_service_sent_back_keeps_its_secrets() {
        let stored = service(serde_json::json!({
            "publish": [{"name": "PASSWORD", "value": "s3cret"}],
        }));
        let mut sent = stored.clone().redacted();
        sent.replicas = 5;
        let kept = sent.with_secrets_from(&stored);
        assert_eq!(kept.template, stored.template);
        assert_eq!(kept.publish, stored.publish);
        assert_eq!(kept.replicas, 5);

        // A new value wins; a variable the stored service lacks stays blank.
        let mut changed = stored.clone().redacted();
        changed.template.containers[0].secret_env[0].value = "new".into();
        changed.publish.push(EnvVar::new("TOKEN", ""));
        let kept = changed.with_secrets_from(&stored);
        assert_eq!(kept.template.containers[0].secret_env[0].value, "new");
        assert_eq!(kept.publish[1].value, "");
    }

    #[test]
    fn a_pods_reported_spec_is_redacted_too() {
        let spec = service(serde_json::json!({})).template;
        let pod: ClusterPod = serde_json::from_value(serde_json::json!({
            "spec": spec,
            "status": {
                "name": "web",
                "phase": "Running",
                "slice": "berth-web.slice",
                "spec": spec,
                "containers": []
            }
        }))
        .expect("pod");
        let text = serde_json::to_string(&pod.redacted()).expect("json");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_generated_variable_yields_to_the_service_env_and_comes_back_without_it() {
        let web = service(serde_json::json!({
            "generatedEnv": [{"name": "TOKEN", "from": "[a-z]{8}", "value": "abcdefgh"}],
            "links": [{"service": "db", "port": 5432}],
        }));
        assert_eq!(web.validate(), Ok(()));
        let published = [EnvVar::new("TOKEN", "from-db")];
        let spec = |env: &[EnvVar]| {
            let pod = web.replica_spec(&web.template, env, 0, |_| &published);
            let c = &pod.containers[0];
            let pairs = |vars: &[EnvVar]| -> Vec<(String, String)> {
                vars.iter()
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect()
            };
            (pairs(&c.env), pairs(&c.secret_env))
        };
        // Generated, as a secret; the link's DB_TOKEN is another name.
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let (plain, secret) = spec(&[]);
        assert!(secret.contains(&pair("TOKEN", "abcdefgh")), "{secret:?}");
        assert!(secret.contains(&pair("DB_TOKEN", "from-db")), "{secret:?}");
        assert!(!plain.iter().any(|(n, _)| n == "TOKEN"), "{plain:?}");
        // The user's override wins, and only it is set.
        let (plain, secret) = spec(&[EnvVar::new("TOKEN", "mine")]);
        assert!(plain.contains(&pair("TOKEN", "mine")), "{plain:?}");
        assert!(!secret.iter().any(|(n, _)| n == "TOKEN"), "{secret:?}");
        // Without it, the generated value is back.
        assert!(spec(&[]).1.contains(&pair("TOKEN", "abcdefgh")));
    }

    #[test]
    fn a_generated_value_is_shown_blank_and_kept_when_sent_back_blank() {
        let stored = service(serde_json::json!({
            "generatedEnv": [{"name": "TOKEN", "from": "[a-z]{8}", "value": "abcdefgh"}],
        }));
        let shown = stored.clone().redacted();
        assert_eq!(shown.generated_env[0].value, "");
        assert_eq!(shown.generated_env[0].from, "[a-z]{8}");
        assert!(!format!("{:?}", stored).contains("abcdefgh"));
        let kept = shown.with_secrets_from(&stored);
        assert_eq!(kept.generated_env, stored.generated_env);
    }

    #[test]
    fn bad_generated_variables_are_named() {
        let web = service(serde_json::json!({
            "generatedEnv": [
                {"name": "A-B", "from": "[a-z]{8}", "value": "x"},
                {"name": "OK", "from": "[z-a]", "value": "x"},
                {"name": "OK", "from": "x", "value": "x"},
            ],
        }));
        let fields: Vec<String> = web
            .validate()
            .expect_err("invalid")
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            fields,
            [
                "generatedEnv[0].name",
                "generatedEnv[1].from",
                "generatedEnv[2].name"
            ]
        );
    }

    #[test]
    fn unit_settings_at_the_defaults_say_nothing_of_builds() {
        let settings = UnitSettings {
            shim_path: "/usr/bin/berth-shim".into(),
            ..UnitSettings::default()
        };
        // What a master older than builds takes: no field it does not know.
        assert_eq!(
            serde_json::to_string(&settings).unwrap(),
            r#"{"shimPath":"/usr/bin/berth-shim"}"#
        );
        assert_eq!(settings.agent_path(), DEFAULT_AGENT_PATH);
        assert_eq!(settings.builds_dir(), DEFAULT_BUILDS_DIR);
        assert_eq!(settings.shim_root(), DEFAULT_SHIM_ROOT);
    }
}
