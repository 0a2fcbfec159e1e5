//! Project quotas: how many pods, how much CPU and memory a project's
//! services may ask for together. Checked when a service is created,
//! replaced or scaled: a request that would take the project over a
//! quota is refused with the quota, what is in use and what was asked.

use serde::{Deserialize, Serialize};

use crate::{Pod, Service};

/// A project's limits; an absent one is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Most pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u64>,
    /// Most CPU, in thousandths of a CPU, summed over the containers'
    /// limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// Most memory, in bytes, summed over the containers' limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Most image streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_streams: Option<u64>,
    /// Most bytes of images in the integrated registry: once the project's
    /// repositories hold this much, pushes are refused until images are
    /// pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<u64>,
}

/// The wire form of [`Quota`]: an object only (serde's derive would also
/// take `[pods, cpu, memory]`, which the API documents nowhere).
impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            pods: Option<u64>,
            #[serde(default)]
            cpu_millis: Option<u64>,
            #[serde(default)]
            memory_bytes: Option<u64>,
            #[serde(default)]
            image_streams: Option<u64>,
            #[serde(default)]
            image_bytes: Option<u64>,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Quota;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an object of pods, cpuMillis, memoryBytes, imageStreams and imageBytes",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Quota, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Quota {
                    pods: f.pods,
                    cpu_millis: f.cpu_millis,
                    memory_bytes: f.memory_bytes,
                    image_streams: f.image_streams,
                    image_bytes: f.image_bytes,
                })
            }
        }
        deserializer.deserialize_map(Object)
    }
}

impl Quota {
    /// Whether it limits nothing.
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }

    /// How many more pods each asking for `one` fit beside `used`, with
    /// the limit that allows the fewest (`None`: nothing limits them).
    pub fn room(&self, used: Usage, one: Usage) -> Option<(u64, &'static str)> {
        [
            (self.pods, used.pods, one.pods, "pods"),
            (self.cpu_millis, used.cpu_millis, one.cpu_millis, "cpu"),
            (
                self.memory_bytes,
                used.memory_bytes,
                one.memory_bytes,
                "memory",
            ),
        ]
        .into_iter()
        .filter_map(|(limit, used, each, what)| {
            let limit = limit?;
            (each > 0).then(|| (limit.saturating_sub(used) / each, what))
        })
        .min_by_key(|(room, _)| *room)
    }
}

/// What a set of pods asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Pods.
    pub pods: u64,
    /// CPU limits, thousandths of a CPU.
    pub cpu_millis: u64,
    /// Memory limits, bytes.
    pub memory_bytes: u64,
}

impl Usage {
    /// What one pod of `template` asks for.
    pub fn of_pod(template: &Pod) -> Usage {
        template.containers.iter().fold(
            Usage {
                pods: 1,
                ..Usage::default()
            },
            |usage, c| Usage {
                cpu_millis: usage.cpu_millis + u64::from(c.resources.cpu_millis.unwrap_or(0)),
                memory_bytes: usage.memory_bytes + c.resources.memory_bytes.unwrap_or(0),
                ..usage
            },
        )
    }

    /// What a service's replicas ask for together.
    pub fn of_service(service: &Service) -> Usage {
        let one = Usage::of_pod(&service.template);
        let n = u64::from(service.replicas);
        Usage {
            pods: n,
            cpu_millis: one.cpu_millis.saturating_mul(n),
            memory_bytes: one.memory_bytes.saturating_mul(n),
        }
    }

    /// The sum of both.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            pods: self.pods.saturating_add(other.pods),
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// Why a request does not fit a project's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverQuota {
    /// The project.
    pub project: String,
    /// Which quota: `pods`, `CPU millis`, `memory bytes`.
    pub what: &'static str,
    /// The quota.
    pub limit: u64,
    /// In use by the project's other services.
    pub used: u64,
    /// Asked for by the request; `None` when a container sets no limit
    /// to count.
    pub asked: Option<u64>,
}

impl std::fmt::Display for OverQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let OverQuota {
            project,
            what,
            limit,
            used,
            asked,
        } = self;
        match asked {
            Some(asked) => write!(
                f,
                "exceeds project {project}'s quota of {limit} {what}: {used} in use, this asks for {asked}"
            ),
            None => write!(
                f,
                "project {project} has a quota of {limit} {what}: every container needs a limit \
                 to count against it (--memory, --cpus)"
            ),
        }
    }
}

impl std::error::Error for OverQuota {}

/// Refuses `asked` on top of `used` if it passes any of `quota`'s limits.
/// A service without a memory or CPU limit cannot be counted against a
/// memory or CPU quota, so it counts as asking for more than any.
pub fn check(
    project: &str,
    quota: &Quota,
    used: Usage,
    asked: Usage,
    unlimited: Unlimited,
) -> Result<(), OverQuota> {
    let limits = [
        ("pods", quota.pods, used.pods, asked.pods, false),
        (
            "CPU millis",
            quota.cpu_millis,
            used.cpu_millis,
            asked.cpu_millis,
            unlimited.cpu && asked.pods > 0,
        ),
        (
            "memory bytes",
            quota.memory_bytes,
            used.memory_bytes,
            asked.memory_bytes,
            unlimited.memory && asked.pods > 0,
        ),
    ];
    for (what, limit, used, asked, without_limit) in limits {
        let Some(limit) = limit else { continue };
        if without_limit || used.saturating_add(asked) > limit {
            return Err(OverQuota {
                project: project.to_owned(),
                what,
                limit,
                used,
                asked: (!without_limit).then_some(asked),
            });
        }
    }
    Ok(())
}

/// Which of a template's containers set no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unlimited {
    /// A container without a CPU limit.
    pub cpu: bool,
    /// A container without a memory limit.
    pub memory: bool,
}

impl Unlimited {
    /// Of `template`.
    pub fn of(template: &Pod) -> Unlimited {
        Unlimited {
            cpu: template
                .containers
                .iter()
                .any(|c| c.resources.cpu_millis.is_none()),
            memory: template
                .containers
                .iter()
                .any(|c| c.resources.memory_bytes.is_none()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(replicas: u32, memory: Option<u64>) -> Service {
        let mut service: Service = serde_json::from_value(serde_json::json!({
            "name": "web", "replicas": replicas,
            "template": {"name": "web", "containers": [{"name": "app", "image": "x",
                "resources": {"cpuMillis": 100}}]},
        }))
        .expect("a service");
        service.template.containers[0].resources.memory_bytes = memory;
        service
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_quota_is_an_object_only() {
        let quota: Quota = serde_json::from_str(r#"{"pods": 2}"#).expect("an object");
        assert_eq!(quota.pods, Some(2));
        assert!(serde_json::from_str::<Quota>("[null, null]").is_err());
        assert!(serde_json::from_str::<Quota>(r#"{"cpus": 1}"#).is_err());
    }

    #[test]
    fn a_service_asks_for_its_replicas_times_its_pod() {
        let usage = Usage::of_service(&service(3, Some(64 * MIB)));
        assert_eq!(
            usage,
            Usage {
                pods: 3,
                cpu_millis: 300,
                memory_bytes: 192 * MIB
            }
        );
    }

    #[test]
    fn a_request_over_a_quota_names_it_with_use_and_ask() {
        let quota = Quota {
            pods: Some(2),
            memory_bytes: Some(256 * MIB),
            ..Quota::default()
        };
        let asked = Usage::of_service(&service(3, Some(64 * MIB)));
        let error = check("a", &quota, Usage::default(), asked, Unlimited::default())
            .expect_err("3 pods over a quota of 2");
        assert_eq!(
            error.to_string(),
            "exceeds project a's quota of 2 pods: 0 in use, this asks for 3"
        );
        let two = Usage::of_service(&service(2, Some(64 * MIB)));
        assert_eq!(
            check("a", &quota, Usage::default(), two, Unlimited::default()),
            Ok(())
        );
        let big = Usage::of_service(&service(1, Some(200 * MIB)));
        let memory_only = Quota {
            pods: None,
            ..quota
        };
        let error = check("a", &memory_only, two, big, Unlimited::default()).expect_err("memory");
        assert_eq!(error.what, "memory bytes");
        assert_eq!(error.used, 128 * MIB);
    }

    #[test]
    fn without_a_memory_limit_a_pod_cannot_fit_a_memory_quota() {
        let quota = Quota {
            memory_bytes: Some(256 * MIB),
            ..Quota::default()
        };
        let unlimited = service(1, None);
        let error = check(
            "a",
            &quota,
            Usage::default(),
            Usage::of_service(&unlimited),
            Unlimited::of(&unlimited.template),
        )
        .expect_err("no memory limit");
        assert_eq!(error.what, "memory bytes");
        // Scaling to zero asks for nothing.
        let mut none = unlimited.clone();
        none.replicas = 0;
        assert!(check(
            "a",
            &quota,
            Usage::default(),
            Usage::of_service(&none),
            Unlimited::of(&none.template)
        )
        .is_ok());
    }

    #[test]
    fn room_is_what_the_tightest_limit_leaves() {
        let quota = Quota {
            pods: Some(4),
            cpu_millis: None,
            memory_bytes: Some(256 << 20),
            ..Quota::default()
        };
        let used = Usage {
            pods: 2,
            cpu_millis: 0,
            memory_bytes: 192 << 20,
        };
        let one = Usage {
            pods: 1,
            cpu_millis: 500,
            memory_bytes: 64 << 20,
        };
        assert_eq!(quota.room(used, one), Some((1, "memory")));
        assert_eq!(Quota::default().room(used, one), None);
    }
}
