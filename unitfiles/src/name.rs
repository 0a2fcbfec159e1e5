//! berth's unit names, encoded and decoded in one place.
//!
//! A pod has a slice `berth-<pod>.slice`, a network holder
//! `berth-<pod>.service` and one service per container
//! `berth-<pod>-<container>.service`. Each component is escaped with
//! [`escape_unit_name_component`], which escapes `-`: the only literal `-`
//! are berth's own separators, so a name decodes one way only. A name is
//! berth's only if encoding what it decodes to gives it back; anything else
//! (another unit, a hand-made name with a stray escape) is not.
//!
//! A pod's network volume is mounted at
//! `/run/berth/volumes/<pod>/<volume>` by a mount unit, whose name systemd
//! derives from that path: `run-berth-volumes-<pod>-<volume>.mount`.

use super::escape::escape_unit_name_component;

/// One of berth's unit names, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitName {
    /// `berth-<pod>.slice`: the pod's slice.
    Slice {
        /// The pod.
        pod: String,
    },
    /// `berth-<pod>.service`: the unit holding the pod's network namespace.
    Network {
        /// The pod.
        pod: String,
    },
    /// `berth-<pod>-<container>.service`: a container's unit.
    Container {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// `run-berth-volumes-<pod>-<volume>.mount`: the mount of a pod's
    /// network volume at [`network_volume_path`].
    Mount {
        /// The pod.
        pod: String,
        /// The volume.
        volume: String,
    },
}

/// Where network volumes are mounted: one directory per pod, one mount
/// point per volume in it.
pub const NETWORK_VOLUMES_DIR: &str = "/run/berth/volumes";

/// The unit name prefix of [`NETWORK_VOLUMES_DIR`], as systemd escapes
/// the path.
const NETWORK_VOLUMES_UNIT_PREFIX: &str = "run-berth-volumes-";

impl UnitName {
    /// The unit name, components escaped.
    pub fn encode(&self) -> String {
        match self {
            UnitName::Mount { pod, volume } => format!(
                "{NETWORK_VOLUMES_UNIT_PREFIX}{}-{}.mount",
                escape_unit_name_component(pod),
                escape_unit_name_component(volume)
            ),
            UnitName::Slice { pod } => format!("berth-{}.slice", escape_unit_name_component(pod)),
            UnitName::Network { pod } => {
                format!("berth-{}.service", escape_unit_name_component(pod))
            }
            UnitName::Container { pod, container } => format!(
                "berth-{}-{}.service",
                escape_unit_name_component(pod),
                escape_unit_name_component(container)
            ),
        }
    }

    /// The berth unit `unit` names; `None` for any other unit.
    pub fn decode(unit: &str) -> Option<UnitName> {
        if let Some(stem) = unit
            .strip_prefix(NETWORK_VOLUMES_UNIT_PREFIX)
            .and_then(|rest| rest.strip_suffix(".mount"))
        {
            let (pod, volume) = stem.split_once('-')?;
            let decoded = UnitName::Mount {
                pod: unescape(pod)?,
                volume: unescape(volume)?,
            };
            return (decoded.encode() == unit).then_some(decoded);
        }
        let rest = unit.strip_prefix("berth-")?;
        let decoded = if let Some(stem) = rest.strip_suffix(".slice") {
            UnitName::Slice {
                pod: unescape(stem)?,
            }
        } else {
            let stem = rest.strip_suffix(".service")?;
            match stem.split_once('-') {
                None => UnitName::Network {
                    pod: unescape(stem)?,
                },
                Some((pod, container)) => UnitName::Container {
                    pod: unescape(pod)?,
                    container: unescape(container)?,
                },
            }
        };
        // Only the canonical spelling is berth's: this rejects a third
        // `-`, unescaped bytes that need escaping, and uppercase hex.
        (decoded.encode() == unit).then_some(decoded)
    }

    /// The pod the unit belongs to.
    pub fn pod(&self) -> &str {
        match self {
            UnitName::Slice { pod } | UnitName::Network { pod } => pod,
            UnitName::Container { pod, .. } | UnitName::Mount { pod, .. } => pod,
        }
    }
}

/// Name of the service unit of `container` in `pod`:
/// `berth-<pod>-<container>.service`, components escaped.
pub fn container_unit_name(pod: &str, container: &str) -> String {
    UnitName::Container {
        pod: pod.to_owned(),
        container: container.to_owned(),
    }
    .encode()
}

/// Name of the service that holds the pod's network namespace:
/// `berth-<pod>.service`. It has no `-` after `berth-`, so it can never be
/// a container's unit.
pub fn pod_network_unit_name(pod: &str) -> String {
    UnitName::Network {
        pod: pod.to_owned(),
    }
    .encode()
}

/// Where `volume`, a network volume of `pod`, is mounted.
pub fn network_volume_path(pod: &str, volume: &str) -> String {
    format!("{NETWORK_VOLUMES_DIR}/{pod}/{volume}")
}

/// Name of the mount unit of `volume`, a network volume of `pod`.
pub fn network_volume_unit_name(pod: &str, volume: &str) -> String {
    UnitName::Mount {
        pod: pod.to_owned(),
        volume: volume.to_owned(),
    }
    .encode()
}

/// Name of the slice of `pod`: `berth-<pod>.slice`, the pod name escaped.
pub fn pod_slice_name(pod: &str) -> String {
    UnitName::Slice {
        pod: pod.to_owned(),
    }
    .encode()
}

/// The pod a berth unit belongs to; `None` for any other unit.
pub fn pod_of_unit(unit: &str) -> Option<String> {
    UnitName::decode(unit).map(|name| name.pod().to_owned())
}

/// The pod and container of a container unit; `None` for any other unit,
/// the pod network holders and slices included.
pub fn container_of_unit(unit: &str) -> Option<(String, String)> {
    match UnitName::decode(unit)? {
        UnitName::Container { pod, container } => Some((pod, container)),
        _ => None,
    }
}

/// Undoes systemd's `\xNN` escaping of one name component; `None` for a
/// broken escape, a result that is not UTF-8, or an empty component.
fn unescape(part: &str) -> Option<String> {
    let mut out = Vec::with_capacity(part.len());
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            let hex = part.get(i + 2..i + 4)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let out = String::from_utf8(out).ok()?;
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(pod: &str, container: &str) -> UnitName {
        UnitName::Container {
            pod: pod.into(),
            container: container.into(),
        }
    }

    #[test]
    fn every_name_round_trips() {
        let pods = ["web", "web-1", "a.b", "_x:y", "é-ü", "-lead", "a b/c"];
        for pod in pods {
            for name in [
                UnitName::Slice { pod: pod.into() },
                UnitName::Network { pod: pod.into() },
                container(pod, "app"),
                container(pod, "my-app"),
                container("p", pod),
                UnitName::Mount {
                    pod: pod.into(),
                    volume: "my-data".into(),
                },
            ] {
                let encoded = name.encode();
                assert_eq!(UnitName::decode(&encoded), Some(name), "{encoded}");
            }
        }
    }

    #[test]
    fn names_are_spelled_as_systemd_escapes_them() {
        assert_eq!(container_unit_name("web", "app"), "berth-web-app.service");
        assert_eq!(
            container_unit_name("web-1", "my-app"),
            r"berth-web\x2d1-my\x2dapp.service"
        );
        assert_eq!(pod_network_unit_name("web-1"), r"berth-web\x2d1.service");
        assert_eq!(pod_slice_name("web-1"), r"berth-web\x2d1.slice");
        // As `systemd-escape --path --suffix=mount` spells the mount point.
        assert_eq!(
            network_volume_unit_name("a.web-1", "my-data"),
            r"run-berth-volumes-a.web\x2d1-my\x2ddata.mount"
        );
        assert_eq!(
            network_volume_path("a.web-1", "my-data"),
            "/run/berth/volumes/a.web-1/my-data"
        );
        assert_eq!(
            pod_of_unit(r"run-berth-volumes-a.web\x2d1-my\x2ddata.mount").as_deref(),
            Some("a.web-1")
        );
    }

    #[test]
    fn a_projects_pods_carry_the_project_in_their_units() {
        assert_eq!(
            container_unit_name("a.web-1", "app"),
            r"berth-a.web\x2d1-app.service"
        );
        assert_eq!(pod_slice_name("a.web-1"), r"berth-a.web\x2d1.slice");
        assert_ne!(
            container_unit_name("a.web-1", "app"),
            container_unit_name("b.web-1", "app")
        );
        assert_eq!(
            container_of_unit(r"berth-a.web\x2d1-app.service"),
            Some(("a.web-1".to_owned(), "app".to_owned()))
        );
    }

    #[test]
    fn decodes_the_kind_and_pod_of_each_unit() {
        assert_eq!(pod_of_unit("berth-web.service").as_deref(), Some("web"));
        assert_eq!(pod_of_unit("berth-web-app.service").as_deref(), Some("web"));
        assert_eq!(
            pod_of_unit(r"berth-web\x2dapp-x.service").as_deref(),
            Some("web-app")
        );
        assert_eq!(
            pod_of_unit(r"berth-web\x2dapp.slice").as_deref(),
            Some("web-app")
        );
        assert_eq!(
            container_of_unit(r"berth-web\x2d1-my\x2dapp.service"),
            Some(("web-1".into(), "my-app".into()))
        );
        assert_eq!(container_of_unit("berth-web.service"), None);
        assert_eq!(container_of_unit("berth-web.slice"), None);
    }

    #[test]
    fn other_units_and_broken_names_are_not_berths() {
        for unit in [
            "docker.service",
            "berth.slice",
            "berth-.service",
            "berth-web-.service",
            "berth-a-b-c.service",
            r"berth-a\x2-b.service",
            r"berth-a\y2d-b.service",
            r"berth-web\x2D1.service",
            "berth-web.socket",
            "berth-a b.service",
        ] {
            assert_eq!(UnitName::decode(unit), None, "{unit}");
        }
    }
}
