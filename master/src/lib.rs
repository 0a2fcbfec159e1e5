//! berth-master: cluster state, the HTTP API, the scheduler and node
//! lifecycle.
#![forbid(unsafe_code)]

pub mod store;
