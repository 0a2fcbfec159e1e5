//! berth's own unit files (`units/` at the repository root), compiled into
//! the lab so that `up` installs the same units the packages ship.

include!(concat!(env!("OUT_DIR"), "/units.rs"));
