//! The `MESSAGE_ID=`s of the journal entries berth writes and reads back,
//! in one place: the shim writes container events, the agent writes pod
//! events, and the agent reads both (and systemd's restart entries) to ship
//! them to the master.

/// berth-shim's container events (started, exited, OOM-killed, unhealthy).
pub const CONTAINER_EVENT: &str = "6a1b9e3c5d2f4c0e8b7a94d1f3e2c580";

/// berth-agent's pod events: a pod that could not be started on the host.
pub const POD_EVENT: &str = "4fd6b5c4e7d84f9fb884c09d04dfff1d";

/// systemd's "Scheduled restart job, restart counter is at N"
/// (`SD_MESSAGE_UNIT_RESTART_SCHEDULED`).
pub const RESTART_SCHEDULED: &str = "5eb03494b6584870a536b337290809b3";
