//! What berth-shim shares with berth-agent: opening a host path without
//! following any symlink on the way, which both do (the agent when it
//! accepts a pod, the shim right before every start), and the message IDs
//! of the journal entries one writes and the other reads.

pub mod message_ids;
pub mod no_symlinks;
