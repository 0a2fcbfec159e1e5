//! Reconciliation: which pods the master wants here ([`assignments`]),
//! what a pod should look like on this host
//! ([`desired`]), what systemd and Docker show ([`observe`]), the pure plan
//! that gets from one to the other ([`plan`]), and the executor that applies
//! it ([`execute`]).

pub mod assignments;
pub mod desired;
pub mod execute;
pub mod observe;
pub mod plan;
