//! systemd unit files for pods: rendered by the `berth-unitfiles` crate,
//! which the command line shares to show what a change would write.
//! Writing the files and talking to systemd is done elsewhere.

pub use berth_unitfiles::*;
