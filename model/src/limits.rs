//! Numeric limits shared by every component that judges a request, so the
//! master, the agent and the command line reject the same things.

/// Largest request body an API server accepts. Pods are small; the cap keeps
/// a client from making a server buffer arbitrary amounts of memory.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Memory berth-shim may use inside a container's unit on top of the
/// container's limit: the container's own cgroup carries the limit
/// exactly, and the unit's `MemoryMax=` is this much more, bounding
/// container and shim together. `describe` shows both.
pub const SHIM_MEMORY_HEADROOM: u64 = 8 * 1024 * 1024;

/// Most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 10_000;

/// Longest image reference, in bytes (Docker's own limit is the same order).
pub const MAX_IMAGE_LEN: usize = 255;

/// Longest environment variable name, in bytes.
pub const MAX_ENV_NAME_LEN: usize = 255;

/// Longest environment variable value, in bytes (32 KiB).
pub const MAX_ENV_VALUE_LEN: usize = 32 * 1024;

/// Longest path (host path or mount path), in bytes: Linux's `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;

/// Smallest memory limit: below this a container cannot even start its
/// runtime, and Docker itself refuses less than 6 MiB on some versions.
pub const MIN_MEMORY_BYTES: u64 = 4 * 1024 * 1024;

/// Smallest CPU limit, in thousandths of a CPU (1% of one CPU).
pub const MIN_CPU_MILLIS: u32 = 10;

/// Longest grace period between the stop signal and the kill.
pub const MAX_STOP_TIMEOUT_SECS: u32 = 3600;

/// Grace period between the stop signal and the kill when the spec sets none
/// (Docker's default).
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 10;

/// Most processes (threads included) one container may run when its spec
/// sets no limit: enough for any ordinary server, few enough that a fork
/// bomb cannot take the host's PID space.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

/// Smallest PID limit a container may ask for: its init and a shell or two.
pub const MIN_PIDS_LIMIT: u32 = 8;

/// Largest PID limit a container may ask for: Linux's own ceiling
/// (`PID_MAX_LIMIT` on 64-bit hosts).
pub const MAX_PIDS_LIMIT: u32 = 4 * 1024 * 1024;

/// Longest user (`name`, `uid`, `name:group` or `uid:gid`), in bytes.
pub const MAX_USER_LEN: usize = 65;
