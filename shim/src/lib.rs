//! What berth-shim shares with berth-agent: opening a host path without
//! following any symlink on the way, which both do (the agent when it
//! accepts a pod, the shim right before every start).

pub mod no_symlinks;
