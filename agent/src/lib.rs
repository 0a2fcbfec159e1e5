//! berth-agent: one host's container runtime. It turns pod definitions into
//! systemd units, runs their containers through Docker's API and reports to
//! the master.
#![forbid(unsafe_code)]

pub mod unit;
