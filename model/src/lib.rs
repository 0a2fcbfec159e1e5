//! berth's API objects (pods, services, nodes, routes, events) and their
//! validation. This crate does no I/O: the agent, the master and the command
//! line share it so that a request is judged the same way everywhere.
#![forbid(unsafe_code)]

pub mod name;

pub use name::{validate_dns_label, NameError};
