//! Opt-in hardening of one container. berth's defaults (no new privileges,
//! a PID limit) always apply; these settings tighten a container further.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_USER_LEN;
use crate::validation::ValidationErrors;

/// The Linux capabilities a container may drop, by the names Docker and
/// `capabilities(7)` use without the `CAP_` prefix.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// How a container's processes are confined beyond berth's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Security {
    /// Run as this user instead of the image's: `uid`, `name`, `uid:gid`
    /// or `name:group` (names must exist in the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Mount the container's root filesystem read-only; volumes keep their
    /// own mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
    /// Capabilities removed from the container (`NET_RAW`, ... or `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
}

impl Security {
    /// Whether nothing is asked beyond the defaults (then it is not
    /// serialized, so older specs keep their form).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Records every problem under `<at>.security`.
    pub(crate) fn validate(&self, errors: &mut ValidationErrors, at: &str) {
        if let Some(user) = &self.user {
            if let Some(problem) = user_problem(user) {
                errors.push(format!("{at}.security.user"), problem);
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, capability) in self.cap_drop.iter().enumerate() {
            let field = format!("{at}.security.capDrop[{i}]");
            if capability != "ALL" && !CAPABILITIES.contains(&capability.as_str()) {
                let hint = match capability.strip_prefix("CAP_") {
                    Some(bare) if CAPABILITIES.contains(&bare) => format!(" (write {bare})"),
                    _ => String::new(),
                };
                errors.push(
                    field,
                    format!("unknown capability {capability:?}{hint}: use a name such as NET_RAW, or ALL"),
                );
            } else if let Some(first) = seen.insert(capability, i) {
                errors.push(
                    field,
                    format!("duplicate capability {capability:?}, also at capDrop[{first}]"),
                );
            }
        }
    }
}

/// Why `user` is not a user Docker can take, if it is not.
fn user_problem(user: &str) -> Option<String> {
    if user.len() > MAX_USER_LEN {
        return Some(format!(
            "must be at most {MAX_USER_LEN} bytes, got {}",
            user.len()
        ));
    }
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('-')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let mut parts = user.splitn(2, ':');
    let name = parts.next().unwrap_or_default();
    let group = parts.next();
    if part_ok(name) && group.is_none_or(part_ok) {
        None
    } else {
        Some(format!(
            "{user:?} is not a user: write uid, name, uid:gid or name:group ([A-Za-z0-9_.-], not starting with '-')"
        ))
    }
}
