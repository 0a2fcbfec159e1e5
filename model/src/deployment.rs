//! Deployments: each change to a service's pod template is a numbered
//! revision, rolled out by the service's strategy and kept as history.
//! A deployment `<service>-<revision>` records the template it rolls out,
//! why and by whom, and how the rollout went.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pod::{EnvVar, Pod};
use crate::validation::ValidationErrors;

/// Revisions kept per service unless it says otherwise.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;

/// Seconds without progress after which a rollout fails, unless the
/// service says otherwise.
pub const DEFAULT_PROGRESS_DEADLINE_SECS: u32 = 600;

/// How long an old pod stays out of every router's backends and link's
/// rules, still running, before it is stopped: routers and agents follow
/// the endpoints by long poll and forget it well within this.
pub const DRAIN_MS: u64 = 2_000;

/// A number of pods, or a share of the replicas (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// So many pods.
    Count(u32),
    /// So many percent of the replicas, as `"N%"`.
    Percent(#[serde(with = "percent")] u32),
}

mod percent {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value}%"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        text.strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n <= 100)
            .ok_or_else(|| {
                serde::de::Error::custom("must be a count or a percentage from 0% to 100%")
            })
    }
}

impl Amount {
    /// The pods it means for `replicas`, rounding a share up (a surge) or
    /// down (what may be unavailable).
    pub fn of(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let pods = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(pods).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = match s.strip_suffix('%') {
            Some(p) => p.parse().ok().filter(|p| *p <= 100).map(Amount::Percent),
            None => s.parse().ok().map(Amount::Count),
        };
        parsed.ok_or_else(|| format!("{s:?} is not a count or a percentage from 0% to 100%"))
    }
}

/// How a new revision replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StrategyKind {
    /// New pods start beside the old, which go as the new ones are ready.
    Rolling,
    /// Every old pod stops, then the new ones start, each in its old pod's
    /// place (its node and its volumes).
    Recreate,
}

/// What a hook's failure does to its deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailurePolicy {
    /// The deployment fails and the old revision stays.
    #[default]
    Abort,
    /// The hook's job retries (its backoff limit), then aborts.
    Retry,
    /// The rollout goes on.
    Ignore,
}

/// A job run at a point of a rollout, with its own image and command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    /// The image it runs.
    pub image: String,
    /// Its command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Its variables (the service's are added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// What its failure does.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

/// Where in a rollout a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookPoint {
    /// Before the first new pod.
    Pre,
    /// Once every new pod is ready, before the deployment is complete.
    Post,
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookPoint::Pre => "pre",
            HookPoint::Post => "post",
        })
    }
}

/// The hooks of a rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// Before the first new pod starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<Hook>,
    /// Once every new pod is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Hook>,
}

impl Hooks {
    /// The hook at `point`, if there is one.
    pub fn at(&self, point: HookPoint) -> Option<&Hook> {
        match point {
            HookPoint::Pre => self.pre.as_ref(),
            HookPoint::Post => self.post.as_ref(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.pre.is_none() && self.post.is_none()
    }
}

/// How a service's new revisions roll out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `rolling` or `recreate`; by default `recreate` for a stateful
    /// service and `rolling` otherwise.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StrategyKind>,
    /// Pods beyond the replica count while rolling (default 25%, at least
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<Amount>,
    /// Replicas that may be unready while rolling (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Amount>,
    /// A new pod counts as available once it has been ready this long.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_ready_seconds: u32,
    /// No progress for this long fails the rollout (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    /// A failed rollout returns to the last complete revision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_rollback: bool,
    /// Start this many new pods beside the old ones, then wait for
    /// `berth rollout promote`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub canary: u32,
    /// Jobs run before, between and after.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// Revisions kept (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_limit: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Strategy {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == Strategy::default()
    }

    /// The kind in effect for a service that is `stateful` or not.
    pub fn kind_for(&self, stateful: bool) -> StrategyKind {
        self.kind.unwrap_or(if stateful {
            StrategyKind::Recreate
        } else {
            StrategyKind::Rolling
        })
    }

    /// Pods allowed beyond `replicas` while rolling: at least one when
    /// nothing may be unavailable, or the rollout could never start.
    pub fn surge(&self, replicas: u32) -> u32 {
        let surge = self
            .max_surge
            .unwrap_or(Amount::Percent(25))
            .of(replicas, true);
        if surge == 0 && self.unavailable(replicas) == 0 {
            1
        } else {
            surge
        }
    }

    /// Replicas that may be unready while rolling.
    pub fn unavailable(&self, replicas: u32) -> u32 {
        self.max_unavailable
            .unwrap_or(Amount::Count(0))
            .of(replicas, false)
            .min(replicas)
    }

    /// The progress deadline in milliseconds.
    pub fn progress_deadline_ms(&self) -> u64 {
        u64::from(
            self.progress_deadline_seconds
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECS),
        ) * 1000
    }

    /// Revisions kept.
    pub fn history_limit(&self) -> u32 {
        self.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT).max(1)
    }

    /// Every problem, each naming its field under `prefix`.
    pub fn validate(&self, prefix: &str, errors: &mut ValidationErrors) {
        if self.progress_deadline_seconds == Some(0) {
            errors.push(
                format!("{prefix}progressDeadlineSeconds"),
                "must be at least 1",
            );
        }
        if self.history_limit == Some(0) {
            errors.push(format!("{prefix}historyLimit"), "must be at least 1");
        }
        if self.kind == Some(StrategyKind::Recreate) && self.canary > 0 {
            errors.push(
                format!("{prefix}canary"),
                "a recreate rollout has no old pods to keep beside a canary",
            );
        }
        for point in [HookPoint::Pre, HookPoint::Post] {
            if let Some(hook) = self.hooks.at(point) {
                if hook.image.trim().is_empty() {
                    errors.push(format!("{prefix}hooks.{point}.image"), "must not be empty");
                }
                for (i, var) in hook.env.iter().enumerate() {
                    if let Err(message) = crate::name::validate_env_name(&var.name) {
                        errors.push(format!("{prefix}hooks.{point}.env[{i}].name"), message);
                    }
                }
            }
        }
    }
}

/// What rolls a service out, besides `berth rollout restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// A change to its template or variables is rolled out at once;
    /// without it, changes wait for `berth rollout restart`.
    ConfigChange,
    /// A new image on an image stream's tag is rolled out.
    ImageChange(ImageTrigger),
}

/// An image stream's tag that a container follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageTrigger {
    /// `STREAM:TAG`.
    pub from: String,
    /// The container whose image it sets.
    pub container: String,
    /// Whether a new image rolls out by itself; `berth rollout undo` turns
    /// it off, so that the next push does not undo the rollback.
    #[serde(default = "yes")]
    pub automatic: bool,
}

fn yes() -> bool {
    true
}

/// A service's triggers unless it names its own.
pub fn default_triggers() -> Vec<Trigger> {
    vec![Trigger::ConfigChange]
}

/// Whether `triggers` are the default ones.
pub fn is_default_triggers(triggers: &[Trigger]) -> bool {
    triggers == [Trigger::ConfigChange]
}

/// Checks triggers against the template's containers.
pub fn validate_triggers(triggers: &[Trigger], template: &Pod, errors: &mut ValidationErrors) {
    for (i, trigger) in triggers.iter().enumerate() {
        let Trigger::ImageChange(image) = trigger else {
            continue;
        };
        let field = format!("triggers[{i}].imageChange");
        let valid_from = image
            .from
            .split_once(':')
            .is_some_and(|(stream, tag)| !stream.is_empty() && !tag.is_empty());
        if !valid_from {
            errors.push(format!("{field}.from"), "must be STREAM:TAG");
        }
        if !template
            .containers
            .iter()
            .any(|c| c.name == image.container)
        {
            errors.push(
                format!("{field}.container"),
                format!("the template has no container {:?}", image.container),
            );
        }
    }
}

/// Why a revision was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Cause {
    /// The service's template or variables changed.
    ConfigChange,
    /// `berth rollout restart`: the same template, new pods.
    Manual,
    /// A return to an earlier revision's template.
    #[serde(rename_all = "camelCase")]
    Rollback {
        /// The revision returned to.
        to_revision: u64,
        /// Made by the master when a rollout failed (`autoRollback`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        automatic: bool,
    },
    /// An image stream's tag moved.
    #[serde(rename_all = "camelCase")]
    ImageChange {
        /// `STREAM:TAG@DIGEST`.
        image: String,
    },
    /// A webhook call.
    Webhook,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ConfigChange => f.write_str("config-change"),
            Cause::Manual => f.write_str("manual"),
            Cause::Rollback {
                to_revision,
                automatic,
            } => {
                write!(f, "rollback to {to_revision}")?;
                if *automatic {
                    f.write_str(" (automatic)")?;
                }
                Ok(())
            }
            Cause::ImageChange { image } => write!(f, "image-change {image}"),
            Cause::Webhook => f.write_str("webhook"),
        }
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentPhase {
    /// Rolling out.
    #[default]
    Running,
    /// Every replica runs this revision and is available.
    Complete,
    /// It stopped making progress, or a hook aborted it: the last complete
    /// revision serves.
    Failed,
    /// Undone while it ran.
    RolledBack,
    /// Cancelled, or replaced by a newer revision while it ran.
    Cancelled,
}

impl DeploymentPhase {
    /// Whether it is over.
    pub fn is_final(self) -> bool {
        self != DeploymentPhase::Running
    }
}

impl fmt::Display for DeploymentPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a deployment went, as the master records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Where it stands.
    pub phase: DeploymentPhase,
    /// Why it waits, failed or ended, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pods of this revision.
    #[serde(default)]
    pub updated: u32,
    /// Of those, the available ones (ready for `minReadySeconds`).
    #[serde(default)]
    pub available: u32,
    /// Pods of other revisions still running.
    #[serde(default)]
    pub old: u32,
    /// When the rollout last moved forward (Unix milliseconds).
    #[serde(default)]
    pub progress_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// `berth rollout pause`: nothing moves until resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// `berth rollout promote`: the canary may go on to the rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    /// Hooks that ended well (or were ignored), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_done: Vec<HookPoint>,
}

/// One revision of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `<service>-<revision>`.
    pub name: String,
    /// The service.
    pub service: String,
    /// Its number, from 1.
    pub revision: u64,
    /// The pod template it rolls out.
    pub template: Pod,
    /// The service's variables at this revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Why it was made.
    pub cause: Cause,
    /// Who made it.
    pub user: String,
    /// When (Unix milliseconds).
    pub created_ms: u64,
    /// How it went.
    #[serde(default)]
    pub status: DeploymentStatus,
}

impl Deployment {
    /// Revision `revision` of `service`, rolling out its template and
    /// variables as they are, begun at `now_ms` by `by`.
    pub fn begin(
        service: &crate::Service,
        revision: u64,
        cause: Cause,
        by: &str,
        now_ms: u64,
    ) -> Deployment {
        Deployment {
            name: Deployment::name_of(&service.name, revision),
            service: service.name.clone(),
            revision,
            template: service.template.clone(),
            env: service.env.clone(),
            cause,
            user: by.to_owned(),
            created_ms: now_ms,
            status: DeploymentStatus {
                progress_ms: now_ms,
                ..DeploymentStatus::default()
            },
        }
    }

    /// The name of revision `revision` of `service`.
    pub fn name_of(service: &str, revision: u64) -> String {
        format!("{service}-{revision}")
    }

    /// The service and revision in a deployment's name.
    pub fn parse_name(name: &str) -> Option<(&str, u64)> {
        let (service, revision) = name.rsplit_once('-')?;
        Some((service, revision.parse().ok()?))
    }

    /// The deployment as users see it: secret values blanked.
    pub fn redacted(mut self) -> Deployment {
        self.template = self.template.redacted();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_surges_up_and_unavailability_down() {
        assert_eq!(Amount::Percent(25).of(12, true), 3);
        assert_eq!(Amount::Percent(25).of(4, true), 1);
        assert_eq!(Amount::Percent(25).of(3, true), 1);
        assert_eq!(Amount::Percent(25).of(3, false), 0);
        assert_eq!(Amount::Count(2).of(3, false), 2);
        assert_eq!("25%".parse::<Amount>(), Ok(Amount::Percent(25)));
        assert!("101%".parse::<Amount>().is_err());
        let json: Amount = serde_json::from_str("\"50%\"").unwrap();
        assert_eq!(json, Amount::Percent(50));
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"50%\"");
    }

    #[test]
    fn a_rollout_that_may_lose_nothing_still_surges_one() {
        let strategy = Strategy {
            max_surge: Some(Amount::Count(0)),
            ..Strategy::default()
        };
        assert_eq!(strategy.surge(4), 1);
        assert_eq!(Strategy::default().surge(12), 3);
        assert_eq!(Strategy::default().unavailable(12), 0);
        assert_eq!(Strategy::default().kind_for(true), StrategyKind::Recreate);
    }

    #[test]
    fn causes_read_as_history_shows_them() {
        let rollback = Cause::Rollback {
            to_revision: 1,
            automatic: false,
        };
        assert_eq!(rollback.to_string(), "rollback to 1");
        assert_eq!(Cause::ConfigChange.to_string(), "config-change");
        assert_eq!(Deployment::parse_name("web-2-13"), Some(("web-2", 13)));
    }
}
